"""The training dock's callbacks as widgets (issue 19, item 14), from their declarations
(engine/train/callbacks.py) in an EntryPicker: early_stopping, model_checkpoint,
terminate_on_nan, reduce_lr_on_plateau to tick, with their parameters' fields. A value is
checked as the project file's reader checks it (a checkpoint's filepath stays inside the
output folder)."""
from layerloom.train.callbacks import CALLBACKS, validate

from .entry_picker import EntryPicker, Kinds

PLACE = "training.callbacks"


def _check(p, value, where, name, entries):
    trial = [dict(e, **({p.name: value} if e.get("name") == name else {})) for e in entries]
    _, problems = validate(trial, PLACE)
    mine = [e for e in problems if (e.place or "") == where]
    if mine:
        raise mine[0]
    return p.validate(value, where)


CALLBACK_KINDS = Kinds({name: (cls.help, cls.params) for name, cls in CALLBACKS.items()},
                       bare=False, check=_check)


def callbacks_picker():
    """sigEntries(list) reports an edit of training.callbacks."""
    return EntryPicker(CALLBACK_KINDS, PLACE, "Callbacks run during training, as in Keras")
