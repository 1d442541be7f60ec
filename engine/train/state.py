"""The whole state of a training run, so that a run interrupted and resumed equals one that was
not, bit for bit on the same device (what Keras' BackupAndRestore promises): the position
(epochs done, the next batch of an interrupted epoch, the optimizer step, which also keys
dropout's random masks and the schedule), the optimizer's slots and counters, the epoch's
loss and metric sums so far, every callback's state (early stopping's best value and
weights, a plateau's wait and learning rate), and the history so far. The weights
themselves are in weights.npz beside it; the shuffle order follows from the seed and the
epoch.

In a file: one .npz (read with allow_pickle=False) holding the arrays and a member "meta",
the JSON of the rest as bytes."""
import hashlib
import json
import os

import numpy as np

from layerloom.core.errors import DataError, ProjectError

FORMAT = "layerloom-training-state"
VERSION = 1
FILENAME = "training_state.npz"


def state_path_of(weights_path):
    """A checkpoint's training state beside its weights: ck/e3.npz -> ck/e3.state.npz."""
    root = weights_path[:-4] if weights_path.endswith(".npz") else weights_path
    return root + ".state.npz"


def fingerprint(project, batch_size, seed):
    """What a resumed run must share with the one that saved the state: the graph, the
    dataset section, the training setup but its epochs, the batch size and the seed."""
    from layerloom.project import loom as projectfile
    d = projectfile.to_dict(project)
    training = {k: v for k, v in d["training"].items() if k != "epochs"}
    dataset = {k: v for k, v in (d.get("dataset") or {}).items() if k != "fitted"}
    text = json.dumps([d["graph"], dataset, training, int(batch_size), int(seed)],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class TrainingState:
    """epoch: epochs completed; batch: the next batch of epoch `epoch + 1` (0: at an epoch's
    start); step: optimizer steps taken; history: the records of the completed epochs;
    accumulators: the interrupted epoch's sums; optimizer, callbacks: their own states (JSON
    and arrays)."""

    def __init__(self, meta, arrays):
        self.meta, self.arrays = meta, arrays

    epoch = property(lambda self: self.meta["epoch"])
    batch = property(lambda self: self.meta["batch"])
    step = property(lambda self: self.meta["step"])
    history = property(lambda self: self.meta["history"])

    def arrays_under(self, prefix):
        return {k[len(prefix):]: v for k, v in self.arrays.items() if k.startswith(prefix)}

    def to_bytes(self):
        import io
        buf = io.BytesIO()
        meta = np.frombuffer(json.dumps(self.meta).encode("utf-8"), np.uint8)
        np.savez(buf, meta=meta, **self.arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data, place="--resume"):
        import tempfile
        with tempfile.TemporaryDirectory() as d:  # one reading path for files and bytes
            path = os.path.join(d, FILENAME)
            with open(path, "wb") as f:
                f.write(data)
            return cls.load(path, place)

    @classmethod
    def load(cls, path, place="--resume"):
        if not os.path.isfile(path):
            raise DataError(f"no training state in {os.path.dirname(path) or '.'} ({FILENAME} "
                            "is written by every run; this folder has none)", place)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(bytes(arrays.pop("meta")).decode("utf-8"))
        except Exception as e:  # a damaged file: one message, whatever numpy or zip said
            raise DataError(f"{path}: not a readable training state ({type(e).__name__}: "
                            f"{str(e)[:100]})", place) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise DataError(f"{path}: not a Layerloom training state", place)
        if meta.get("version", 0) > VERSION:
            raise DataError(f"{path}: written by a newer Layerloom", place)
        return cls(meta, arrays)

    def check_weights(self, weights, place="--resume"):
        """Refuse weights other than those the state was saved with (a kill between writing
        a checkpoint's two files, a weights file from elsewhere)."""
        if self.meta.get("weights") != weights_digest(weights):
            raise DataError("the weights beside this training state are not the ones it was "
                            "saved with", place)

    def check(self, project, batch_size, seed, epochs, place="--resume"):
        """Refuse to resume another project, batch size or seed, or past the last epoch."""
        if self.meta.get("fingerprint") != fingerprint(project, batch_size, seed):
            raise ProjectError("the project, its batch size or its seed differ from the run "
                               "that wrote this training state; resume with the same ones",
                               place)
        if self.epoch >= epochs and not self.batch:
            raise ProjectError(f"the run already trained {self.epoch} epoch(s); ask for more "
                               f"with --epochs (the total, as Keras' epochs)", place)


def weights_digest(weights):
    """A digest of {name: array}: a state names the weights it belongs with."""
    h = hashlib.sha256()
    for k in sorted(weights):
        a = np.ascontiguousarray(weights[k], np.float32)
        h.update(k.encode("utf-8") + b"\0" + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:32]


def capture(trainer, callbacks, position, fp):
    """The state after fit() returned: position is trainer.position (see training.fit)."""
    meta = {"format": FORMAT, "version": VERSION, "fingerprint": fp,
            "weights": weights_digest(trainer.model.get_weights()),
            "epoch": position["epoch"], "batch": position["batch"], "step": position["step"],
            "history": position["history"], "accumulators": position["accumulators"]}
    arrays = {}
    opt_meta, opt_arrays = trainer.optimizer.state_dict(trainer.model.rt)
    meta["optimizer"] = opt_meta
    arrays.update({f"optimizer/{k}": v for k, v in opt_arrays.items()})
    cb_meta = []
    for i, cb in enumerate(callbacks):
        m, a = cb.get_state()
        cb_meta.append({"class": type(cb).__name__, "state": m})
        arrays.update({f"callback{i}/{k}": v for k, v in a.items()})
    meta["callbacks"] = cb_meta
    return TrainingState(meta, arrays)


def restore(state, trainer, callbacks):
    """Put the optimizer and the callbacks back as they were (fit() does the rest)."""
    trainer.optimizer.load_state(trainer.model.rt, state.meta["optimizer"],
                                 state.arrays_under("optimizer/"))
    saved = state.meta["callbacks"]
    mine = [type(cb).__name__ for cb in callbacks]
    if [c["class"] for c in saved] != mine:
        raise ProjectError("the run that wrote this training state had other callbacks ("
                           + (", ".join(c["class"] for c in saved) or "none") + ")",
                           "training.callbacks")
    for i, (cb, s) in enumerate(zip(callbacks, saved)):
        cb.set_state(s["state"], state.arrays_under(f"callback{i}/"))
