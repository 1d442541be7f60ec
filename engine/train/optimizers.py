"""Optimizers, Keras 3 names, defaults and update rules. Parameters are declared with the same
typed Param objects as layers, so the project file and the editor validate them the same way.
State (momentum, moments) lives on the device next to the weights. Every optimizer also takes
Keras' common options: weight_decay (decoupled: w -= w * decay * lr), clipvalue, clipnorm (per
weight tensor) and global_clipnorm (over all of them), applied on the device."""
import math
from abc import ABC, abstractmethod

import numpy as np

from layerloom.core.params import Bool, Float
from layerloom.train.schedules import Schedule


def _lr(default):
    return Float("learning_rate", default, min=0.0, min_exclusive=True,
                 help="Step size (or a schedule object, see README).")


COMMON = (
    Float("weight_decay", 0.0, min=0.0, help="Decoupled weight decay: w -= w * decay * lr."),
    Float("clipvalue", 0.0, min=0.0, help="If > 0, clip each gradient element to +-clipvalue."),
    Float("clipnorm", 0.0, min=0.0, help="If > 0, rescale each weight's gradient to this norm."),
    Float("global_clipnorm", 0.0, min=0.0,
          help="If > 0, rescale all gradients together to this global norm."),
)


class Optimizer(ABC):
    name = ""
    params = ()
    default_weight_decay = 0.0
    nstate = 0

    def __init__(self, **values):
        self.config = dict(values)
        lr = self.config.get("learning_rate")
        self.schedule = lr if isinstance(lr, Schedule) else None
        self._state = {}
        self._clip_acc = None
        self.iterations = 0

    def current_lr(self):
        if self.schedule is not None:
            return self.schedule(self.iterations)
        return self.config["learning_rate"]

    def _slots(self, rt, key, n, count):
        st = self._state.get(key)
        if st is None:
            st = []
            for _ in range(count):
                b = rt.empty(4 * n)
                rt.write(b, np.full(n, self.initial_state(), np.float32), blocking=True)
                st.append(b)
            self._state[key] = st
        return st

    def initial_state(self):
        return 0.0

    def state_dict(self, rt):
        """(JSON-able counters, {"node/weight/k": slot array}) for a training state."""
        arrays = {}
        for (nid, name), bufs in self._state.items():
            size = bufs[0].size // 4
            for k, b in enumerate(bufs):
                arrays[f"{nid}/{name}/{k}"] = rt.read(b, size)
        lr = self.config.get("learning_rate")
        return {"iterations": self.iterations, "extra": self.extra_state(),
                "learning_rate": None if isinstance(lr, Schedule) else lr}, arrays

    def load_state(self, rt, values, arrays):
        self.iterations = int(values["iterations"])
        if values.get("learning_rate") is not None:  # as a plateau callback left it
            self.config["learning_rate"] = values["learning_rate"]
        self.set_extra_state(values.get("extra") or {})
        slots = {}
        for key, a in arrays.items():
            nid, name, k = key.rsplit("/", 2)
            slots.setdefault((nid, name), {})[int(k)] = a
        for key, parts in slots.items():
            bufs = []
            for k in sorted(parts):
                b = rt.empty(4 * parts[k].size)
                rt.write(b, parts[k], blocking=True)
                bufs.append(b)
            self._state[key] = bufs

    def extra_state(self):
        """Host-side counters beyond the step (Nadam's running product)."""
        return {}

    def set_extra_state(self, values):
        pass

    @abstractmethod
    def update(self, ops, rt, key, w, g, n, lr):
        """Enqueue the update of one weight tensor (key identifies its state slots)."""

    def step(self, model):
        """One update of every trainable weight from its gradient buffer."""
        c, ops, rt = self.config, model.ops, model.rt
        lr = float(self.current_lr())
        self.iterations += 1
        trainable = [p for p in model.params if p.dw is not None]
        # (np.prod of each shape here, every step, was 13% of the MLP's host time: py-spy)
        sizes = [p.w.size for p in trainable]
        if c.get("clipvalue", 0) > 0:
            for p, n in zip(trainable, sizes):
                ops.clip_value(p.dw.buf, n, c["clipvalue"])
        if c.get("clipnorm", 0) > 0 or c.get("global_clipnorm", 0) > 0:
            if self._clip_acc is None:
                self._clip_acc = rt.empty(4 * (len(trainable) + 1))
            acc = self._clip_acc
            ops.fill(acc, len(trainable) + 1)
            if c.get("clipnorm", 0) > 0:
                for k, (p, n) in enumerate(zip(trainable, sizes)):
                    ops.sum_squares(p.dw.buf, n, acc, k)
                    ops.clip_norm(p.dw.buf, n, acc, k, c["clipnorm"])
            if c.get("global_clipnorm", 0) > 0:
                g = len(trainable)
                for p, n in zip(trainable, sizes):
                    ops.sum_squares(p.dw.buf, n, acc, g)
                for p, n in zip(trainable, sizes):
                    ops.clip_norm(p.dw.buf, n, acc, g, c["global_clipnorm"])
        wd = c.get("weight_decay", 0.0)
        for p, n in zip(trainable, sizes):
            if wd > 0:
                ops.decay(p.w.buf, n, wd * lr)
            self.update(ops, rt, (p.node_id, p.spec.name), p.w.buf, p.dw.buf, n, lr)


class SGD(Optimizer):
    name = "sgd"
    params = (
        _lr(0.01),
        Float("momentum", 0.0, min=0.0, max=1.0, max_exclusive=True, help="Velocity decay."),
        Bool("nesterov", False, help="Use Nesterov momentum."),
    ) + COMMON

    def update(self, ops, rt, key, w, g, n, lr):
        c = self.config
        (v,) = self._slots(rt, key, n, 1)
        ops.sgd(w, g, v, n, lr, c["momentum"], c["nesterov"])


def _adam_params(lr=0.001, wd=0.0):
    return (
        _lr(lr),
        Float("beta_1", 0.9, min=0.0, max=1.0, max_exclusive=True,
              help="Decay of the first-moment estimate."),
        Float("beta_2", 0.999, min=0.0, max=1.0, max_exclusive=True,
              help="Decay of the second-moment estimate."),
        Float("epsilon", 1e-7, min=0.0, min_exclusive=True, help="Added to the denominator."),
    ) + tuple(Float("weight_decay", wd, min=0.0, help=p.help) if p.name == "weight_decay" else p
              for p in COMMON)


class Adam(Optimizer):
    name = "adam"
    params = _adam_params()

    def update(self, ops, rt, key, w, g, n, lr):
        c = self.config
        m, v = self._slots(rt, key, n, 2)
        t = self.iterations
        alpha = lr * math.sqrt(1 - c["beta_2"] ** t) / (1 - c["beta_1"] ** t)
        ops.adam(w, g, m, v, n, alpha, c["beta_1"], c["beta_2"], c["epsilon"])


class AdamW(Adam):
    name = "adamw"
    params = _adam_params(wd=0.004)


class Nadam(Optimizer):
    name = "nadam"
    params = _adam_params()

    def __init__(self, **values):
        super().__init__(**values)
        self.u_product = 1.0
        self._u_step = None  # the step u_product last advanced at

    def extra_state(self):
        return {"u_product": self.u_product, "u_step": self._u_step}

    def set_extra_state(self, values):
        self.u_product = values.get("u_product", 1.0)
        self._u_step = values.get("u_step")

    def update(self, ops, rt, key, w, g, n, lr):
        c = self.config
        m, v = self._slots(rt, key, n, 2)
        t = self.iterations
        b1, b2 = c["beta_1"], c["beta_2"]
        u_t = b1 * (1.0 - 0.5 * 0.96 ** (0.004 * t))
        u_t1 = b1 * (1.0 - 0.5 * 0.96 ** (0.004 * (t + 1)))
        if self._u_step != t:  # advance the product once per step
            self.u_product *= u_t
            self._u_step = t
        up_t, up_t1 = self.u_product, self.u_product * u_t1
        ops.nadam(w, g, m, v, n, lr, b1, b2, u_t1 / (1 - up_t1), (1 - u_t) / (1 - up_t),
                  1.0 / (1 - b2 ** t), c["epsilon"])


class RMSprop(Optimizer):
    name = "rmsprop"
    params = (
        _lr(0.001),
        Float("rho", 0.9, min=0.0, max=1.0, max_exclusive=True, help="Decay of the mean square."),
        Float("momentum", 0.0, min=0.0, max=1.0, max_exclusive=True, help="Momentum."),
        Float("epsilon", 1e-7, min=0.0, min_exclusive=True, help="Added to the denominator."),
        Bool("centered", False, help="Normalise by the variance instead of the mean square."),
    ) + COMMON

    def update(self, ops, rt, key, w, g, n, lr):
        c = self.config
        v, a, m = self._slots(rt, key, n, 3)
        ops.rmsprop(w, g, v, a, m, n, lr, c["rho"], c["momentum"], c["epsilon"], c["centered"])


class Adagrad(Optimizer):
    name = "adagrad"
    params = (
        _lr(0.001),
        Float("initial_accumulator_value", 0.1, min=0.0, help="Starting sum of squares."),
        Float("epsilon", 1e-7, min=0.0, min_exclusive=True, help="Added to the denominator."),
    ) + COMMON

    def initial_state(self):
        return self.config["initial_accumulator_value"]

    def update(self, ops, rt, key, w, g, n, lr):
        (acc,) = self._slots(rt, key, n, 1)
        ops.adagrad(w, g, acc, n, lr, self.config["epsilon"])


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, AdamW, Nadam, RMSprop, Adagrad)}
