"""`python -m layerloom.cli`: the `layerloom` command."""
from .launch import main

if __name__ == "__main__":  # not when a walk over the package imports it (the Qt test)
    main()
