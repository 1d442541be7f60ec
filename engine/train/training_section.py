"""What the project file's training section is read against, declared for project/training.py
(core/sections.py `declare_training`): project/ sits below train/ and never imports it, so
train/ hands its declarations down (and data/prepare.py, below it too, asks for the losses
its targets are checked against). core/plugins.py loads this module, by name, the first time
a part is asked for.

| part | what | from |
| --- | --- | --- |
| optimizers | `kinds`: {name: Optimizer} with their Params | train/optimizers.py |
| losses | `check_entry(spec, place)` -> (entry, problems), `build(project)` | train/losses.py |
| metrics | `check_entry`, `canonical`, `entry_name`, `columnwise_problem` | train/metrics.py |
| callbacks | `validate(specs)` -> (entries, problems) | train/callbacks.py |
| schedules | `validate(spec, place)` -> (schedule, problems) | train/schedules.py |
"""
from layerloom.core.sections import declare_training
from layerloom.train import callbacks, losses, metrics, schedules
from layerloom.train.optimizers import OPTIMIZERS

declare_training("optimizers", kinds=OPTIMIZERS)
declare_training("losses", check_entry=losses.check_entry, build=losses.build_losses)
declare_training("metrics", check_entry=metrics.check_entry, canonical=metrics.canonical,
                 entry_name=metrics.entry_name, columnwise_problem=metrics.columnwise_problem)
declare_training("callbacks", validate=callbacks.validate)
declare_training("schedules", validate=schedules.validate)
