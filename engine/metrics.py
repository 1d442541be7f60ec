"""Metrics, Keras names. `accuracy` picks sparse, categorical or binary from the loss as Keras
does; values are reduced on the device and read back only when the trainer wants them."""
import numpy as np

from .errors import ProjectError

ALIASES = {"acc": "accuracy", "mae": "mean_absolute_error", "mse": "mean_squared_error"}
NAMES = ("accuracy", "mean_absolute_error", "mean_squared_error")


class Metric:
    def __init__(self, name, loss, out_shape):
        canon = ALIASES.get(name, name)
        if canon not in NAMES:
            raise ProjectError(f"unknown metric {name!r}; expected one of "
                               f"{', '.join(NAMES + tuple(ALIASES))}")
        self.name = name  # history keys use the name the user wrote, as Keras does
        self.threshold = None
        if canon == "accuracy":
            if loss.name == "sparse_categorical_crossentropy":
                self.kernel = "acc_sparse"
            elif loss.name == "categorical_crossentropy":
                self.kernel = "acc_categorical"
            elif loss.name == "binary_crossentropy" or out_shape[-1] == 1:
                self.kernel = "acc_binary"
                self.threshold = 0.0 if loss.from_logits else 0.5
            else:
                self.kernel = "acc_categorical"
        else:
            self.kernel = "abs_err" if canon == "mean_absolute_error" else "sq_err"

    def enqueue(self, ops, pred, target, rows, cols, out):
        ops.metric(self.kernel, pred, target, rows, cols, out, threshold=self.threshold)

    def reference(self, y_pred, y_true):
        p, t = np.asarray(y_pred, np.float64), np.asarray(y_true, np.float64)
        if self.kernel == "acc_sparse":
            return (p.argmax(-1) == t).astype(float)
        if self.kernel == "acc_categorical":
            return (p.argmax(-1) == t.argmax(-1)).astype(float)
        if self.kernel == "acc_binary":
            return ((p > self.threshold) == (t > 0.5)).mean(-1)
        if self.kernel == "abs_err":
            return np.abs(p - t).mean(-1)
        return ((p - t) ** 2).mean(-1)
