"""Losses, Keras names and semantics. Each output of a graph gets one, with a weight.

Cross-entropies are fused with a final softmax/sigmoid: when the output layer ends in the
matching activation, the loss reads the pre-activation (logits) and hands the gradient straight
to it, which is exact and numerically stable (log-sum-exp)."""
import numpy as np

from layerloom.core.errors import ProjectError, quote

EPS = 1e-7

# name -> (fusable activation, logits kernel, probs kernel, sparse flag or None)
_TABLE = {
    "sparse_categorical_crossentropy": ("softmax", "softmax_xent_logits", "xent_probs", True),
    "categorical_crossentropy": ("softmax", "softmax_xent_logits", "xent_probs", False),
    "binary_crossentropy": ("sigmoid", "bce_logits", "bce_probs", None),
    "mean_squared_error": (None, None, "regression", None),
    "mean_absolute_error": (None, None, "regression", None),
    "huber": (None, None, "regression", None),
    "kl_divergence": (None, None, "kld", None),
}
REGRESSION_KIND = {"mean_squared_error": 0, "mean_absolute_error": 1, "huber": 2}
ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error",
           "kld": "kl_divergence", "kullback_leibler_divergence": "kl_divergence"}
NAMES = tuple(_TABLE)


def canonical(name):
    return ALIASES.get(name, name) if isinstance(name, str) else name


class Loss:
    def __init__(self, name, weight=1.0, from_logits=False, delta=1.0):
        name = canonical(name)
        self.delta = float(delta)
        if name not in _TABLE:
            raise ProjectError(f"unknown loss {quote(name)}; expected one of {', '.join(NAMES)}")
        self.name, self.weight, self.from_logits = name, float(weight), bool(from_logits)
        self.fuse_activation, self.k_logits, self.k_probs, self.sparse = _TABLE[name]
        if from_logits and self.k_logits is None:
            raise ProjectError(f"loss {quote(name)} has no from_logits form")

    def can_fuse(self, activation):
        return not self.from_logits and activation == self.fuse_activation

    def target_shape(self, out_shape):
        return out_shape[:-1] if self.sparse else out_shape

    def enqueue(self, ops, pred, logits, target, rows, cols, loss_rows, grad):
        """Per-row losses into loss_rows; d(weighted mean loss)/d(pred or logits) into grad."""
        scale = self.weight / max(rows, 1)
        if logits is not None or self.from_logits:
            src = logits if logits is not None else pred
            ops.loss(self.k_logits, src, target, rows, cols, scale, loss_rows, grad,
                     sparse=self.sparse)
        elif self.k_probs == "regression":
            ops.regression_loss(REGRESSION_KIND[self.name], self.delta, pred, target, rows, cols,
                                scale, loss_rows, grad)
        else:
            ops.loss(self.k_probs, pred, target, rows, cols, scale, loss_rows, grad,
                     sparse=self.sparse)

    def reference(self, y_pred, y_true):
        """float64 per-row loss on the layer's output (probabilities unless from_logits)."""
        p, t = np.asarray(y_pred, np.float64), np.asarray(y_true, np.float64)
        if self.sparse is not None:
            if self.sparse:
                t = np.eye(p.shape[-1])[t.astype(int)]
            if self.from_logits:
                z = p - p.max(-1, keepdims=True)
                return -(t * (z - np.log(np.exp(z).sum(-1, keepdims=True)))).sum(-1)
            q = np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS)
            return -(t * np.log(q)).sum(-1)
        if self.name == "binary_crossentropy":
            if self.from_logits:
                return (np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))).mean(-1)
            q = np.clip(p, EPS, 1 - EPS)
            return -(t * np.log(q) + (1 - t) * np.log(1 - q)).mean(-1)
        d = p - t
        if self.name == "mean_absolute_error":
            return np.abs(d).mean(-1)
        if self.name == "huber":
            a = np.abs(d)
            return np.where(a <= self.delta, 0.5 * d * d,
                            self.delta * (a - 0.5 * self.delta)).mean(-1)
        if self.name == "kl_divergence":
            tc, pc = np.clip(t, EPS, 1), np.clip(p, EPS, 1)
            return (tc * np.log(tc / pc)).sum(-1)
        return (d ** 2).mean(-1)


def build_losses(project):
    """One Loss per output, from the project's training section."""
    return {o: Loss(s["name"], s.get("weight", 1.0), s.get("from_logits", False),
                    s.get("delta", 1.0))
            for o, s in project.training["loss"].items()}
