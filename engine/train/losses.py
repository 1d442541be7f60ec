"""Losses, Keras names and semantics. Each output of a graph gets one, with a weight.

Cross-entropies are fused with a final softmax/sigmoid: when the output layer ends in the
matching activation, the loss reads the pre-activation (logits) and hands the gradient straight
to it, which is exact and numerically stable (log-sum-exp).

Each loss is a LossKind added with `register`, the built-ins below as an installed package's
(entry point group layerloom.losses, loaded when this module is)."""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from layerloom.core import plugins
from layerloom.core.errors import ProjectError, quote
from layerloom.core.params import Bool, Float, validate_params

EPS = 1e-7


def _onehot(p, t, sparse):
    return np.eye(p.shape[-1])[t.astype(int)] if sparse else t


def _xent(p, t, logits, sparse):
    t = _onehot(p, t, sparse)
    if logits:
        z = p - p.max(-1, keepdims=True)
        return -(t * (z - np.log(np.exp(z).sum(-1, keepdims=True)))).sum(-1)
    q = np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS)
    return -(t * np.log(q)).sum(-1)


def _bce(p, t, logits):
    if logits:
        return (np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))).mean(-1)
    q = np.clip(p, EPS, 1 - EPS)
    return -(t * np.log(q) + (1 - t) * np.log(1 - q)).mean(-1)


def _huber(p, t, delta):
    a = np.abs(p - t)
    return np.where(a <= delta, 0.5 * a * a, delta * (a - 0.5 * delta)).mean(-1)


def _kld(p, t):
    tc, pc = np.clip(t, EPS, 1), np.clip(p, EPS, 1)
    return (tc * np.log(tc / pc)).sum(-1)


@dataclass(frozen=True)
class LossKind:
    """A loss, declared once: its Keras name, parameters (validated in the project file and
    shown in the editor), the kernels that compute it and its float64 reference
    (reference(p, t, from_logits, **params) -> per-row loss on the output)."""
    name: str
    help: str
    reference: Callable
    params: tuple = ()  # the loss's own Params, besides weight and from_logits
    fuse: str = None  # the final activation it absorbs (computed from the logits)
    k_logits: str = None  # losses.cl kernel on logits (from_logits, or fused)
    k_probs: str = None  # on the output; "regression": ops.regression_loss of kind `regression`
    sparse: bool = None  # class indices (True) or one-hot (False) targets; None: not a classifier
    regression: int = None
    aliases: tuple = ()


KINDS = {}  # name: LossKind, in the order the editor and messages list them
ALIASES = {}  # alias: name
NAMES = ()


def register(kind):
    """Add a loss to the table the project file, the editor and training read; the built-ins
    below and installed plugins (entry point group layerloom.losses) register this way.
    Refuses a name or alias already taken (ValueError). Returns the kind."""
    if not isinstance(kind, LossKind):
        raise TypeError(f"expected a LossKind, got {type(kind).__name__}")
    global NAMES
    NAMES = plugins.add_named(KINDS, ALIASES, kind, "loss")
    return kind


for _kind in (
    LossKind("sparse_categorical_crossentropy", "Cross-entropy against class indices.",
             lambda p, t, lg: _xent(p, t, lg, True), fuse="softmax",
             k_logits="softmax_xent_logits", k_probs="xent_probs", sparse=True),
    LossKind("categorical_crossentropy", "Cross-entropy against one-hot targets.",
             lambda p, t, lg: _xent(p, t, lg, False), fuse="softmax",
             k_logits="softmax_xent_logits", k_probs="xent_probs", sparse=False),
    LossKind("binary_crossentropy", "Cross-entropy of independent 0/1 targets.", _bce,
             fuse="sigmoid", k_logits="bce_logits", k_probs="bce_probs"),
    LossKind("mean_squared_error", "Mean of squared differences.",
             lambda p, t, lg: ((p - t) ** 2).mean(-1), k_probs="regression", regression=0,
             aliases=("mse",)),
    LossKind("mean_absolute_error", "Mean of absolute differences.",
             lambda p, t, lg: np.abs(p - t).mean(-1), k_probs="regression", regression=1,
             aliases=("mae",)),
    LossKind("huber", "Squared below delta, linear above: robust to outliers.",
             lambda p, t, lg, delta: _huber(p, t, delta), k_probs="regression", regression=2,
             params=(Float("delta", 1.0, min=0.0, min_exclusive=True,
                           help="Where the loss turns from squared to linear."),)),
    LossKind("kl_divergence", "Kullback-Leibler divergence of the output from the target.",
             lambda p, t, lg: _kld(p, t), k_probs="kld",
             aliases=("kld", "kullback_leibler_divergence")),
):
    register(_kind)
plugins.load_plugins("layerloom.losses")  # installed losses; a broken one is reported, skipped


def canonical(name):
    return ALIASES.get(name, name) if isinstance(name, str) else name


def entry_params(kind):
    """What an output's loss entry in the project file may hold besides its name."""
    return (Float("weight", 1.0, min=0.0, help="This output's share of the total loss."),
            Bool("from_logits", False, help="The output is logits, not probabilities "
                 "(cross-entropies only).")) + kind.params


def check_entry(spec, place):
    """(the loss entry with its defaults filled, problems) for one output's loss: a name, or
    {"name", "weight", "from_logits", the loss's own parameters}."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict):
        return None, [ProjectError("expected a loss name or {\"name\", \"weight\", ...}", place)]
    name = canonical(spec.get("name"))
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        return None, [ProjectError(f"unknown loss {quote(spec.get('name'))}; expected one of "
                                   f"{', '.join(NAMES)}", f"{place}.name")]
    rest = {k: v for k, v in spec.items() if k != "name"}
    values, problems = validate_params(entry_params(kind), rest, place)
    if not problems and values["from_logits"] and not kind.k_logits:
        problems.append(ProjectError(f"{name} has no from_logits form", f"{place}.from_logits"))
    return ({"name": name, **values} if not problems else None), problems


class Loss:
    def __init__(self, name, weight=1.0, from_logits=False, **params):
        name = canonical(name)
        if name not in KINDS:
            raise ProjectError(f"unknown loss {quote(name)}; expected one of {', '.join(NAMES)}")
        self.kind = k = KINDS[name]
        self.name, self.weight, self.from_logits = name, float(weight), bool(from_logits)
        values, problems = validate_params(k.params, params, f"loss {name}")
        if problems:
            raise problems[0]
        self.params = values
        self.fuse_activation, self.k_logits, self.k_probs, self.sparse = (
            k.fuse, k.k_logits, k.k_probs, k.sparse)
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
            ops.regression_loss(self.kind.regression, self.params.get("delta", 1.0), pred,
                                target, rows, cols, scale, loss_rows, grad)
        else:
            ops.loss(self.k_probs, pred, target, rows, cols, scale, loss_rows, grad,
                     sparse=self.sparse)

    def reference(self, y_pred, y_true):
        """float64 per-row loss on the layer's output (probabilities unless from_logits)."""
        p, t = np.asarray(y_pred, np.float64), np.asarray(y_true, np.float64)
        return self.kind.reference(p, t, self.from_logits, **self.params)


def build_losses(project):
    """One Loss per output, from the project's training section (entries as check_entry
    filled them)."""
    return {o: Loss(**s)
            for o, s in project.training["loss"].items()}
