"""fit / evaluate: plain functions, no Qt. The editor runs them in a child process
(cli/train_process.py); the CLI calls them directly. Losses and metrics accumulate on the
device; the host reads them back at epoch ends and, for progress display, at most every
`progress_seconds`."""
import math
import time

import numpy as np

from layerloom.core.errors import DataError, TrainingError
from layerloom.train.metrics import Metric
from layerloom.data.preprocess import take
from layerloom.project.runs import NOT_FIGURES, figures  # noqa: F401 (an epoch's record)


class Callback:
    needs_every_batch = False  # True: fit reads the logs back after every batch (TerminateOnNaN)

    def on_train_begin(self, info): pass
    def on_epoch_begin(self, epoch): pass
    def on_batch_end(self, epoch, batch, num_batches, logs): pass  # logs None unless read back
    def on_epoch_end(self, epoch, logs): pass
    def on_train_end(self, history): pass

    # a resumed run (engine/train/state.py) gives back what get_state took, after
    # on_train_begin: (JSON-able values, {name: array})
    def get_state(self): return {}, {}
    def set_state(self, values, arrays): pass

    # after every callback's on_epoch_end of a completed epoch: what a checkpoint of the
    # whole training state (all callbacks' states included) writes
    def after_epoch(self, epoch): pass


class Trainer:
    """Owns the device-side loss/metric plumbing for a compiled model."""

    def __init__(self, model, losses, metrics, optimizer=None):
        """losses: {output_id: Loss}; metrics: a list of metric names for every output, or
        {output_id: [names]} as Keras accepts."""
        self.model, self.losses, self.optimizer = model, losses, optimizer
        self.rt, self.ops = model.rt, model.ops
        self.outputs = list(model.outputs)
        self.multi = len(self.outputs) > 1
        per_output = metrics if isinstance(metrics, dict) else {o: metrics for o in self.outputs}
        self.metrics = {o: [Metric(m, losses[o], model.output(o).shape)
                            for m in per_output.get(o, [])] for o in self.outputs}
        self.targets, self.rows_buf, self.slots = {}, {}, {}
        nslot = 0
        for o in self.outputs:
            shape = model.output(o).shape
            tshape = losses[o].target_shape(shape)
            self.targets[o] = self.rt.empty(4 * model.max_batch * max(1, int(np.prod(tshape))))
            per_row = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            self.rows_buf[o] = (self.rt.empty(4 * model.max_batch * per_row), per_row)
            slots = [nslot]  # the loss, then each metric's first slot
            nslot += 1
            for m in self.metrics[o]:
                slots.append(nslot)
                nslot += m.nslots
            self.slots[o] = slots
        # weights with an l1/l2 penalty: its gradient is added after backward, and its value
        # (weighted by batch size, like the losses) goes into one more slot
        self.regularized = [p for p in model.params if p.spec.regularizer and p.dw is not None]
        self.reg_slot = nslot if self.regularized else None
        nslot += 1 if self.regularized else 0
        self._samples = 0
        self.acc = self.rt.empty(4 * max(nslot, 1))
        self.stop_training = False  # callbacks may set it, as Keras' model.stop_training
        self.stop_reason = None
        self.nslot = nslot
        self._rows_seen = {o: 0 for o in self.outputs}

    # -- accumulators ----------------------------------------------------------------------
    def accumulators(self):
        """The epoch's sums so far, for a training state (engine/train/state.py)."""
        return {"sums": [float(v) for v in self.rt.read(self.acc, self.nslot)],
                "rows": dict(self._rows_seen), "samples": self._samples}

    def load_accumulators(self, a):
        if self.nslot:
            self.rt.write(self.acc, np.asarray(a["sums"], np.float32), blocking=True)
        self._rows_seen, self._samples = dict(a["rows"]), int(a["samples"])

    def reset(self):
        self.ops.fill(self.acc, self.nslot)
        self._rows_seen = {o: 0 for o in self.outputs}
        self._samples = 0

    def log_keys(self, validation):
        keys = ["loss"]
        for o in self.outputs:
            if self.multi:
                keys.append(f"{o}_loss")
            keys += [f"{o}_{m.name}" if self.multi else m.name for m in self.metrics[o]]
        return keys + (["val_" + k for k in keys] if validation else [])

    def read_logs(self, prefix=""):
        vals = [float(v) for v in self.rt.read(self.acc, self.nslot)]
        logs, total = {}, 0.0
        for o in self.outputs:
            rows = max(self._rows_seen[o], 1)
            sl = self.slots[o]
            lo = vals[sl[0]] / rows
            total += self.losses[o].weight * lo
            if self.multi:
                logs[f"{prefix}{o}_loss"] = lo
            for m, slot in zip(self.metrics[o], sl[1:]):
                key = f"{o}_{m.name}" if self.multi else m.name
                logs[prefix + key] = m.finalize(vals[slot:slot + m.nslots], rows)
        if self.reg_slot is not None:
            total += vals[self.reg_slot] / max(self._samples, 1)
        out = {f"{prefix}loss": total}
        out.update(logs)
        return out

    # -- one batch -------------------------------------------------------------------------------
    def _upload(self, xs, ys):
        events = self.model.load_inputs(xs)
        for o in self.outputs:
            events.append(self.rt.write(self.targets[o], ys[o]))
        return events

    def _loss_and_metrics(self, n):
        m = self.model
        for o in self.outputs:
            t = m.output(o)
            buf, per_row = self.rows_buf[o]
            rows = n * per_row
            logits = m.logits.get(o)
            self.losses[o].enqueue(self.ops, t.buf, logits.buf if logits is not None else None,
                                   self.targets[o], rows, t.cols, buf, m.grad[(o, 0)].buf)
            sl = self.slots[o]
            self.ops.reduce_sum(buf, rows, self.acc, sl[0])
            for metric, slot in zip(self.metrics[o], sl[1:]):
                metric.enqueue(self.ops, t.buf, self.targets[o], rows, t.cols, buf, self.acc,
                               slot)
            self._rows_seen[o] += rows
        self._samples += n
        for p in self.regularized:
            r = p.spec.regularizer
            self.ops.reg_penalty(p.w.buf, p.w.size, r["l1"], r["l2"], float(n), self.acc,
                                 self.reg_slot)

    def _regularize(self):
        for p in self.regularized:
            r = p.spec.regularizer
            self.ops.reg_grad(p.w.buf, p.dw.buf, p.w.size, r["l1"], r["l2"])

    def train_batch(self, xs, ys, n, step):
        events = self._upload(xs, ys)
        self.model.forward(n, training=True, step=step)
        self._loss_and_metrics(n)
        self.model.backward(n, step=step)
        self._regularize()
        self.optimizer.step(self.model)
        return events

    def eval_batch(self, xs, ys, n):
        events = self._upload(xs, ys)
        self.model.forward(n, training=False)
        self._loss_and_metrics(n)
        return events


def _take(arrays, idx):
    return {k: v[idx] for k, v in arrays.items()}


def _part(arrays, idx):
    """Rows kept as they are stored (memory-mapped rows stay on disk)."""
    return {k: take(v, idx) for k, v in arrays.items()}


def _length(arrays):
    lens = {len(v) for v in arrays.values()}
    if len(lens) != 1:
        raise DataError("input and target arrays have different numbers of samples: "
                        + ", ".join(f"{k}: {len(v)}" for k, v in arrays.items()))
    return lens.pop()


class _Pipeline:
    """Bounds how far the host runs ahead of the device (each batch holds host copies)."""

    def __init__(self, depth=3):
        self.depth, self.pending = depth, []

    def push(self, events):
        self.pending.append(events)
        if len(self.pending) > self.depth:
            for ev in self.pending.pop(0):
                ev.wait()

    def drain(self):
        for evs in self.pending:
            for ev in evs:
                ev.wait()
        self.pending = []


def evaluate(trainer, x, y, batch_size, prefix=""):
    n_total = _length({**x, **{f"y:{k}": v for k, v in y.items()}})
    trainer.reset()
    pipe = _Pipeline()
    bs = min(batch_size, trainer.model.max_batch)
    for start in range(0, n_total, bs):
        n = min(bs, n_total - start)
        sl = slice(start, start + n)
        pipe.push(trainer.eval_batch(_take(x, sl), _take(y, sl), n))
    logs = trainer.read_logs(prefix)
    pipe.drain()
    return logs


def _hold_out(x, y, n_total, validation_split):
    """Keras' validation_split: the last samples, before shuffling, kept for validation.
    Returns (x, y, n_total) for training and the validation data (None when none is held)."""
    n_val = int(n_total * validation_split)
    if not n_val:
        return x, y, n_total, None
    keep, held = slice(0, n_total - n_val), slice(n_total - n_val, None)
    return _part(x, keep), _part(y, keep), n_total - n_val, (_part(x, held), _part(y, held))


def _position(epoch, batch, step, history, accumulators=None):
    """trainer.position: the epochs completed, the next batch of an interrupted epoch (0: none),
    the step, that epoch's sums so far and the completed epochs' records."""
    return {"epoch": epoch, "batch": batch, "step": step, "history": list(history["epochs"]),
            "accumulators": accumulators}


def _resume_at(resume, trainer, resume_callbacks, history):
    """(step, first epoch, first batch) where a run starts: at the beginning, or where the
    training state `resume` stands, restored into the trainer and callbacks."""
    if resume is None:
        return 0, 1, 0
    from layerloom.train.state import restore
    restore(resume, trainer, resume_callbacks)
    history["epochs"] = [dict(r) for r in resume.history]
    return resume.step, resume.epoch + 1, resume.batch


def _epoch_order(seed, epoch, n_total, shuffle):
    """The epoch's sample order: it depends on the seed and the epoch alone, so a resumed epoch
    has it too."""
    if not shuffle:
        return np.arange(n_total)
    return np.random.default_rng([seed & 0xFFFFFFFF, epoch]).permutation(n_total)


def _epoch_record(trainer, epoch, t0, logs, stopped, validation_data, bs, history):
    """The epoch's record, appended to history: its logs and, unless it was interrupted or
    TerminateOnNaN ended it, the validation's. Losses that are not finite otherwise end
    training with a TrainingError."""
    if trainer.stop_reason is not None:  # TerminateOnNaN ended the epoch
        history["stopped_reason"] = trainer.stop_reason
    elif not all(math.isfinite(v) for v in logs.values()):
        raise TrainingError(f"the loss became {logs['loss']} in epoch {epoch}; "
                            "try a lower learning rate or check the data for NaN/inf values")
    elif validation_data is not None and not stopped:
        logs.update(evaluate(trainer, validation_data[0], validation_data[1], bs, "val_"))
    record = {"epoch": epoch, "seconds": time.perf_counter() - t0}
    record.update(logs)
    if stopped:  # the monitors (engine/train/callbacks.py) skip it: no epoch end, no val_ keys
        record["interrupted"] = True
    history["epochs"].append(record)
    return record


class _Batches:
    """A fit's batch loop: an epoch's batches in a given order, the logs read back for the
    callbacks at most every progress_seconds (and after the last batch), every batch when a
    callback needs them so; should_stop is asked after each batch."""

    def __init__(self, trainer, x, y, bs, num_batches, callbacks, should_stop, progress_seconds):
        self.trainer, self.x, self.y, self.bs = trainer, x, y, bs
        self.num_batches, self.callbacks = num_batches, callbacks
        self.should_stop, self.progress_seconds = should_stop, progress_seconds
        self.every_batch = any(cb.needs_every_batch for cb in callbacks)

    def run(self, epoch, order, start, step):
        """Batches start.. of the epoch. Returns (the epoch's logs, the step after the last
        batch run, how many of its batches are done, whether should_stop interrupted it)."""
        trainer, callbacks, bs = self.trainer, self.callbacks, self.bs
        pipe = _Pipeline()
        last_read = time.perf_counter()
        stopped = False
        done = start  # batches of this epoch finished
        for b in range(start, self.num_batches):
            idx = order[b * bs:(b + 1) * bs]
            pipe.push(trainer.train_batch(_take(self.x, idx), _take(self.y, idx), len(idx), step))
            step += 1
            done = b + 1
            logs = None
            now = time.perf_counter()
            if callbacks and (self.every_batch or now - last_read >= self.progress_seconds
                              or b == self.num_batches - 1):
                logs = trainer.read_logs()
                last_read = time.perf_counter()
            for cb in callbacks:
                cb.on_batch_end(epoch, b + 1, self.num_batches, logs)
            if self.should_stop is not None and self.should_stop():
                stopped = True
                break
            if trainer.stop_training and trainer.stop_reason:  # TerminateOnNaN
                break
        logs = trainer.read_logs()
        pipe.drain()
        return logs, step, done, stopped


def fit(trainer, x, y, epochs, batch_size, seed=0, validation_split=0.0, validation_data=None,
        test_data=None, callbacks=(), should_stop=None, shuffle=True, progress_seconds=0.25,
        resume=None, resume_callbacks=()):
    """Train. x: {input_id: array}, y: {output_id: array}. Returns a history dict:
    {"epochs": [{"epoch", "seconds", "loss", metrics..., "val_loss", ...}], "test": {...},
     "stopped": bool}. Afterwards trainer.position says where training stands (epochs
    completed, the next batch of an interrupted epoch, the step, the epoch's sums, the
    completed epochs' records): what a training state keeps. resume: such a state
    (engine/train/state.py), continued to `epochs` in all; resume_callbacks: the callbacks
    whose state it holds."""
    n_total = _length({**x, **{f"y:{k}": v for k, v in y.items()}})
    if validation_data is None and validation_split > 0:
        x, y, n_total, validation_data = _hold_out(x, y, n_total, validation_split)
    if n_total == 0:
        raise DataError("no training samples (the dataset is empty or all went to validation)")
    bs = min(batch_size, trainer.model.max_batch)
    num_batches = math.ceil(n_total / bs)
    history = {"epochs": [], "stopped": False}
    trainer.stop_training, trainer.stop_reason = False, None
    batches = _Batches(trainer, x, y, bs, num_batches, callbacks, should_stop, progress_seconds)
    info = {"samples": n_total, "batches": num_batches, "epochs": epochs, "trainer": trainer,
            "keys": trainer.log_keys(validation_data is not None)}
    for cb in callbacks:
        cb.on_train_begin(info)
    step, first_epoch, first_batch = _resume_at(resume, trainer, resume_callbacks, history)
    trainer.position = _position(first_epoch - 1, first_batch, step, history)
    for epoch in range(first_epoch, epochs + 1):
        t0 = time.perf_counter()
        for cb in callbacks:
            cb.on_epoch_begin(epoch)
        order = _epoch_order(seed, epoch, n_total, shuffle)
        trainer.reset()
        start = 0
        if epoch == first_epoch and first_batch:
            trainer.load_accumulators(resume.meta["accumulators"])
            start = first_batch
        logs, step, done, stopped = batches.run(epoch, order, start, step)
        if stopped:  # interrupted: a resumed run continues this epoch at batch `done`
            trainer.position = _position(epoch - 1, done, step, history, trainer.accumulators())
        record = _epoch_record(trainer, epoch, t0, logs, stopped, validation_data, bs, history)
        if trainer.stop_reason is not None:
            break  # TerminateOnNaN: monitors are not called on a NaN epoch
        for cb in callbacks:
            cb.on_epoch_end(epoch, record)
        if not stopped:
            trainer.position = _position(epoch, 0, step, history)
            for cb in callbacks:
                cb.after_epoch(epoch)
        if stopped:
            history["stopped"] = True
            break
        if trainer.stop_training:
            break
    if test_data is not None and not history["stopped"]:
        history["test"] = evaluate(trainer, test_data[0], test_data[1], bs)
    for cb in callbacks:
        cb.on_train_end(history)
    return history
