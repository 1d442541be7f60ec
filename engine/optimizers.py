"""Optimizers, Keras 3 names, defaults and update rules. Parameters are declared with the same
typed Param objects as layers, so the project file and the editor validate them the same way.
State (momentum, moments) lives on the device next to the weights."""
import numpy as np

from .params import Bool, Float


class Optimizer:
    name = ""
    params = ()

    def __init__(self, **values):
        self.config = values
        self._state = {}
        self.iterations = 0

    def _slots(self, rt, key, n, count):
        st = self._state.get(key)
        if st is None:
            st = []
            for _ in range(count):
                b = rt.empty(4 * n)
                rt.write(b, np.zeros(n, np.float32), blocking=True)
                st.append(b)
            self._state[key] = st
        return st

    def step(self, model):
        self.iterations += 1
        for nid, spec, w, dw in model.params:
            if dw is None:  # non-trainable state
                continue
            n = int(np.prod(spec.shape))
            self.update(model.ops, model.rt, (nid, spec.name), w.buf, dw.buf, n)


class SGD(Optimizer):
    name = "sgd"
    params = (
        Float("learning_rate", 0.01, min=0.0, min_exclusive=True, help="Step size."),
        Float("momentum", 0.0, min=0.0, max=1.0, max_exclusive=True, help="Velocity decay."),
        Bool("nesterov", False, help="Use Nesterov momentum."),
    )

    def update(self, ops, rt, key, w, g, n):
        c = self.config
        (v,) = self._slots(rt, key, n, 1)
        ops.sgd(w, g, v, n, c["learning_rate"], c["momentum"], c["nesterov"])


class Adam(Optimizer):
    name = "adam"
    params = (
        Float("learning_rate", 0.001, min=0.0, min_exclusive=True, help="Step size."),
        Float("beta_1", 0.9, min=0.0, max=1.0, max_exclusive=True,
              help="Decay of the first-moment estimate."),
        Float("beta_2", 0.999, min=0.0, max=1.0, max_exclusive=True,
              help="Decay of the second-moment estimate."),
        Float("epsilon", 1e-7, min=0.0, min_exclusive=True, help="Added to the denominator."),
    )

    def update(self, ops, rt, key, w, g, n):
        c = self.config
        m, v = self._slots(rt, key, n, 2)
        t = self.iterations
        alpha = c["learning_rate"] * np.sqrt(1 - c["beta_2"] ** t) / (1 - c["beta_1"] ** t)
        ops.adam(w, g, m, v, n, alpha, c["beta_1"], c["beta_2"], c["epsilon"])


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam)}
