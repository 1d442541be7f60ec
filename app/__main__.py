"""`python -m layerloom.app`: the `layerloom` command (layerloom.cli), the editor when no
command is given."""
from layerloom.cli.launch import main

main()
