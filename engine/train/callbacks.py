"""The callbacks a Keras user expects, Keras semantics. In a project file:
"callbacks": [{"name": "early_stopping", "monitor": "val_loss", "patience": 3}, ...].
A callback sees the trainer (model, optimizer) in on_train_begin and may set
trainer.stop_training."""
import math

import numpy as np

from layerloom.core.errors import ParamError, ProjectError, quote
from layerloom.core.fileio import atomic_save_npz, atomic_write_bytes, inside, relative_path_problem
from layerloom.train.state import state_path_of
from layerloom.core.params import Bool, Choice, Float, Int, Text, validate_params
from layerloom.train.fit import Callback


def _monitor():
    return (Text("monitor", "val_loss", help="Logged value to watch, e.g. val_loss, accuracy."),
            Choice("mode", "auto", ("auto", "min", "max"),
                   help="auto: max for accuracy/auc/precision/recall, else min."))


class _Monitored(Callback):
    params = ()

    def __init__(self, **c):
        self.c = c
        m, mode = c["monitor"], c["mode"]
        if mode == "auto":
            mode = "max" if any(k in m for k in ("acc", "auc", "precision", "recall")) else "min"
        self.sign = 1.0 if mode == "min" else -1.0
        self.best = None  # best monitored value so far

    def on_train_begin(self, info):
        self.trainer = info["trainer"]
        keys = info["keys"]
        if self.c["monitor"] not in keys:
            raise ParamError(f"{quote(self.c['monitor'])} is not logged in this run; logged: "
                             f"{', '.join(keys)}", f"training.callbacks[{self.index}].monitor")

    def improved(self, value, min_delta=0.0):
        """Better than the best so far by more than min_delta (the first value always is)."""
        return self.best is None or self.sign * (value - self.best) < -abs(min_delta)


class EarlyStopping(_Monitored):
    name = "early_stopping"
    help = "Stop when the monitored value stops improving (Keras' EarlyStopping)."
    params = _monitor() + (
        Float("min_delta", 0.0, min=0.0, help="Smallest change that counts as an improvement."),
        Int("patience", 0, min=0, help="Epochs without improvement before stopping."),
        Bool("restore_best_weights", False, help="On stopping, go back to the best epoch's weights."),
        Int("start_from_epoch", 0, min=0, help="Epochs to wait before watching."),
    )

    def on_train_begin(self, info):
        super().on_train_begin(info)
        self.wait, self.best_weights, self.stopped_epoch, self.best_epoch = 0, None, 0, 0

    def on_epoch_end(self, epoch, logs):
        if epoch <= self.c["start_from_epoch"] or logs.get("interrupted"):
            return
        value = logs[self.c["monitor"]]
        if self.improved(value, self.c["min_delta"]):
            self.best, self.wait, self.best_epoch = value, 0, epoch
            if self.c["restore_best_weights"]:
                self.best_weights = self.trainer.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.c["patience"]:
            self.trainer.stop_training = True
            self.stopped_epoch = epoch
            if self.c["restore_best_weights"] and self.best_weights is not None:
                self.trainer.model.set_weights(self.best_weights)

    def get_state(self):
        arrays = {f"best_weights/{k}": v for k, v in (self.best_weights or {}).items()}
        return ({"best": self.best, "wait": self.wait, "stopped_epoch": self.stopped_epoch,
                 "best_epoch": self.best_epoch, "has_best_weights": self.best_weights is not None},
                arrays)

    def set_state(self, values, arrays):
        self.best, self.wait = values["best"], values["wait"]
        self.stopped_epoch, self.best_epoch = values["stopped_epoch"], values["best_epoch"]
        if values["has_best_weights"]:
            self.best_weights = {k[len("best_weights/"):]: v for k, v in arrays.items()}

    def on_train_end(self, history):
        if self.stopped_epoch:
            history["early_stopping"] = {"stopped_epoch": self.stopped_epoch,
                                         "best_epoch": self.best_epoch,
                                         "best": self.best,
                                         "restored": bool(self.c["restore_best_weights"])}


class ModelCheckpoint(_Monitored):
    name = "model_checkpoint"
    help = ("Write the weights (and the training state) every epoch, or when the monitored "
            "value improves.")
    params = (Text("filepath", "checkpoint.weights.npz",
                   help="Weights file, relative to the run's output folder; {epoch} is "
                        "replaced by the epoch number."),) + _monitor() + (
        Bool("save_best_only", False, help="Write only when the monitored value improves."),
        Bool("save_state", True, help="Also write the whole training state beside it "
             "(NAME.state.npz), so that --resume continues from it exactly."))

    def __init__(self, **c):
        super().__init__(**c)
        self.folder = "."
        self.capture_state = None  # set by the session: the training state, for save_state
        self._due = None  # the epoch whose weights after_epoch writes

    def _path(self, epoch):
        """The file for this epoch inside the output folder; a project file is untrusted
        input, so a path leading out of the folder (a symlink in it) is refused."""
        name = self.c["filepath"].replace("{epoch}", str(epoch))
        path = inside(self.folder, name)
        if path is None:
            raise ProjectError(f"{quote(self.c['filepath'])} leads out of the output folder "
                               f"{self.folder}", f"training.callbacks[{self.index}].filepath")
        return path

    def on_train_begin(self, info):
        super().on_train_begin(info)
        self._path(1)  # refused before training, not after the first epoch

    def on_epoch_end(self, epoch, logs):
        if logs.get("interrupted"):
            return
        value = logs[self.c["monitor"]]
        if self.improved(value):
            self.best = value
        elif self.c["save_best_only"]:
            return
        self._due = epoch

    def after_epoch(self, epoch):
        """The weights, and beside them the whole training state (every callback's included,
        so after their on_epoch_end): `--resume` continues from such a checkpoint exactly. The
        state is written first; it names the weights it belongs with."""
        if self._due != epoch:
            return
        path = self._path(epoch)
        if self.c["save_state"] and self.capture_state is not None:
            atomic_write_bytes(state_path_of(path), self.capture_state().to_bytes())
        atomic_save_npz(path, self.trainer.model.get_weights())

    def get_state(self):
        return {"best": self.best}, {}

    def set_state(self, values, arrays):
        self.best = values["best"]


class TerminateOnNaN(Callback):
    """Stops at the first batch whose loss is NaN or infinite (reads the loss every batch)."""
    name = "terminate_on_nan"
    help = "Stop at the first batch whose loss is NaN or infinite."
    params = ()
    needs_every_batch = True

    def __init__(self, **c):
        self.c = c

    def on_train_begin(self, info):
        self.trainer = info["trainer"]
        # the last finite weights (the initial ones, then each epoch's): what the run keeps
        # when the loss turns NaN, instead of the NaN weights the last updates made
        self.finite, self.finite_epoch = self.trainer.model.get_weights(), 0

    def on_batch_end(self, epoch, batch, num_batches, logs):
        if logs is not None and not math.isfinite(logs["loss"]):
            self.trainer.stop_training = True
            self.trainer.stop_reason = f"the loss became {logs['loss']} at epoch {epoch}, " \
                                       f"batch {batch}"

    def on_epoch_end(self, epoch, logs):
        if logs.get("interrupted"):
            return
        weights = self.trainer.model.get_weights()
        if all(np.isfinite(w).all() for w in weights.values()):
            self.finite, self.finite_epoch = weights, epoch

    def get_state(self):
        return {"finite_epoch": self.finite_epoch}, dict(self.finite)

    def set_state(self, values, arrays):
        self.finite, self.finite_epoch = dict(arrays), values["finite_epoch"]

    def on_train_end(self, history):
        if not history.get("stopped_reason"):
            return
        if not all(np.isfinite(w).all() for w in self.trainer.model.get_weights().values()):
            self.trainer.model.set_weights(self.finite)
            history["weights_from_epoch"] = self.finite_epoch


class ReduceLROnPlateau(_Monitored):
    name = "reduce_lr_on_plateau"
    help = ("Multiply the learning rate by factor when the monitored value stops "
            "improving.")
    params = _monitor() + (
        Float("factor", 0.1, min=0.0, max=1.0, min_exclusive=True, max_exclusive=True,
              help="new_lr = lr * factor."),
        Int("patience", 10, min=0, help="Epochs without improvement before reducing."),
        Float("min_delta", 1e-4, min=0.0, help="Smallest change that counts as an improvement."),
        Int("cooldown", 0, min=0, help="Epochs to wait after a reduction."),
        Float("min_lr", 0.0, min=0.0, help="Lower bound on the learning rate."),
    )

    def on_train_begin(self, info):
        super().on_train_begin(info)
        if self.trainer.optimizer.schedule is not None:
            raise ParamError("cannot be combined with a learning-rate schedule",
                             f"training.callbacks[{self.index}]")
        self.wait, self.cooldown = 0, 0

    def get_state(self):
        return {"best": self.best, "wait": self.wait, "cooldown": self.cooldown}, {}

    def set_state(self, values, arrays):
        self.best, self.wait, self.cooldown = values["best"], values["wait"], values["cooldown"]

    def on_epoch_end(self, epoch, logs):
        if logs.get("interrupted"):
            return
        value = logs[self.c["monitor"]]
        opt = self.trainer.optimizer
        logs["learning_rate"] = opt.config["learning_rate"]
        if self.cooldown > 0:
            self.cooldown -= 1
            self.wait = 0
        if self.improved(value, self.c["min_delta"]):
            self.best, self.wait = value, 0
        elif self.cooldown <= 0:
            self.wait += 1
            if self.wait >= self.c["patience"]:
                new = max(opt.config["learning_rate"] * self.c["factor"], self.c["min_lr"])
                opt.config["learning_rate"] = new
                self.cooldown, self.wait = self.c["cooldown"], 0


CALLBACKS = {cls.name: cls for cls in (EarlyStopping, ModelCheckpoint, TerminateOnNaN,
                                       ReduceLROnPlateau)}


def validate(specs, place="training.callbacks"):
    """[(name, params)] and problems, each naming its place."""
    out, problems = [], []
    if not isinstance(specs, list):
        return out, [ParamError("expected a list of {\"name\": ..., params}", place)]
    for i, spec in enumerate(specs):
        p = f"{place}[{i}]"
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) \
                or spec.get("name") not in CALLBACKS:
            got = spec.get("name") if isinstance(spec, dict) else spec
            problems.append(ParamError(f"expected a callback, one of {', '.join(CALLBACKS)}; "
                                       f"got {quote(got)}", p))
            continue
        cls = CALLBACKS[spec["name"]]
        values, perr = validate_params(cls.params, {k: v for k, v in spec.items()
                                                    if k != "name"}, p)
        problems.extend(perr)
        if not perr and "filepath" in values:
            why = relative_path_problem(values["filepath"])
            if why:
                problems.append(ParamError(f"{why}, got {quote(values['filepath'])}",
                                           f"{p}.filepath"))
                continue
        if not perr:
            out.append({"name": spec["name"], **values})
    return out, problems


def build(specs, out_dir=None):
    cbs = []
    for i, spec in enumerate(specs):
        cb = CALLBACKS[spec["name"]](**{k: v for k, v in spec.items() if k != "name"})
        cb.index = i
        if isinstance(cb, ModelCheckpoint) and out_dir:
            cb.folder = out_dir
        cbs.append(cb)
    return cbs
