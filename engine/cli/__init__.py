"""The `layerloom` command (no Qt here; the editor, layerloom.app, is imported only when no
command is given): `launch.py` the entry point (signal handlers before anything heavy loads),
`main.py` the arguments and how a failure is said, `run.py` --run (training headless),
`use_model.py` --predict, --evaluate, --export and --import, and `train_process.py` the child
process the editor trains in. `python -m layerloom.cli` is the `layerloom` command."""
