"""Metrics, Keras names. `accuracy` picks sparse, categorical or binary from the loss as Keras
does. Each metric owns `nslots` accumulators on the device that batches add into; the host
reads them back only when it wants values and `finalize` turns them into the metric.

A metric is a `MetricKind`, declared once (as a loss is a `LossKind`) and registered in
`KINDS` with `register`: adding one is one declaration, plus its kernel in clkernels/metrics.cl
when none computes it."""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from layerloom.core import plugins
from layerloom.core.errors import ProjectError, quote
from layerloom.core.params import Float, Int, validate_params

# what a metric's targets must be (MetricKind.targets)
ANY = None  # whatever the loss's targets are
COLUMNS = "columns"  # as wide as the output: it compares each column with its own target
CLASS_INDICES = "class_indices"  # one class index a row (a sparse loss's)


def _per_row(m, ops, pred, target, rows, cols, tmp, acc, slot):
    """The default enqueue: the kernel's value per row (ops.metric), summed into the slot."""
    ops.metric(m.kernel, pred, target, rows, cols, tmp, threshold=m.threshold,
               target_cols=m.target_cols)
    ops.reduce_sum(tmp, rows, acc, slot)


def _row_mean(m, sums, rows):
    """The default finalize: the slot's sum over the rows."""
    return sums[0] / max(rows, 1)


@dataclass(frozen=True)
class MetricKind:
    """A metric, declared once: its Keras name, aliases and parameters (validated in the
    project file, where a metric is a name or {"name", its parameters}, and shown in the
    editor), the targets it can be computed against, how a batch adds into its accumulators on
    the device, how their sums make the figure, and its float64 reference.

    The functions take the `Metric` m, which holds the parameters' values (m.params; m.k,
    m.num_thresholds, ... by name) and the arguments its loss and output imply: m.kernel,
    m.threshold (None, or as a logit when the loss is from_logits), m.sparse (the targets are
    class indices), m.target_cols (the targets' width)."""
    name: str
    help: str
    kernel: object  # its metrics.cl kernel, or kernel(loss, out_shape) -> it (accuracy's forms)
    reference: Callable  # reference(m, p, t) -> the figure over a whole set, float64 arrays
    params: tuple = ()
    aliases: tuple = ()
    enqueue: Callable = _per_row  # enqueue(m, ops, pred, target, rows, cols, tmp, acc, slot)
    finalize: Callable = _row_mean  # finalize(m, sums of its slots, rows) -> the figure
    slots: object = 1  # its accumulators: a number, or slots(m) -> it
    threshold: Callable = None  # threshold(m) -> the probability its kernel compares with
    targets: str = ANY  # ANY, COLUMNS or CLASS_INDICES; a loss with other targets is refused
    instead: str = None  # what to use against the targets it refuses (the refusal says it)
    needs_probabilities: bool = False  # refuses a from_logits loss
    # its Keras form (export and import): the keras.metrics class, or keras(loss name) -> it
    # (None there: Keras' string name); None: it has none. keras_args: (Keras argument, our
    # parameter) pairs; keras_names: other Keras names and classes that import as it
    keras: object = None
    keras_args: tuple = ()
    keras_names: tuple = ()


KINDS = {}  # name: MetricKind, in the order the editor and messages list them
ALIASES = {}  # alias: name
NAMES = ()


def register(kind):
    """Add a metric to the table the project file, the editor and training read (the built-ins
    register the same way, and installed plugins: entry point group layerloom.metrics). Refuses
    a name or alias that is already taken (ValueError). Returns the kind."""
    if not isinstance(kind, MetricKind):
        raise TypeError(f"expected a MetricKind, got {type(kind).__name__}")
    global NAMES
    NAMES = plugins.add_named(KINDS, ALIASES, kind, "metric")
    return kind


# -- the pieces the declarations below share --------------------------------------------------
def _k():
    return (Int("k", 5, min=1, max=1_000_000, help="A hit if the target is among the k "
                "highest scores."),)


def _threshold():
    return (Float("threshold", 0.5, min=0.0, max=1.0, min_exclusive=True, max_exclusive=True,
                  help="Predictions above it count as positive."),)


def _accuracy_kernel(loss, out_shape):
    if loss.name == "sparse_categorical_crossentropy":
        return "acc_sparse"
    if loss.name == "categorical_crossentropy":
        return "acc_categorical"
    if loss.name == "binary_crossentropy" or out_shape[-1] == 1:
        return "acc_binary"
    return "acc_categorical"


_ACCURACY = {  # accuracy's reference for each of its kernels
    "acc_sparse": lambda m, p, t: (p.argmax(-1) == t).mean(),
    "acc_categorical": lambda m, p, t: (p.argmax(-1) == t.argmax(-1)).mean(),
    "acc_binary": lambda m, p, t: ((p > m.threshold) == (t > 0.5)).mean(),
}


def _error(f):
    """The reference of an elementwise error: class indices are compared with every column."""
    def reference(m, p, t):
        if t.shape != p.shape and t.size * p.shape[-1] == p.size:
            t = t.reshape(p.shape[:-1] + (1,))  # class indices against every column
        return f(p - t).mean()
    return reference


def _top_k(m, ops, pred, target, rows, cols, tmp, acc, slot):
    ops.top_k(pred, target, rows, cols, m.k, m.sparse, tmp)
    ops.reduce_sum(tmp, rows, acc, slot)


def _top_k_reference(m, p, t):
    y = t.reshape(p.shape[:-1]).astype(int) if m.sparse else t.argmax(-1)
    valid = (y >= 0) & (y < p.shape[-1])  # anything else is a miss, as in the kernel
    target = np.take_along_axis(p, np.where(valid, y, 0)[..., None], -1)
    return (((p > target).sum(-1) < m.k) & valid).mean()


# binary_counts' `which`: 0 true positives, 1 predicted positives, 2 actual positives
def _counts(which):
    """The enqueue of true positives (slot) over `which` positives (slot + 1)."""
    def enqueue(m, ops, pred, target, rows, cols, tmp, acc, slot):
        for k, w in enumerate((0, which)):
            ops.binary_counts(pred, target, rows, cols, m.threshold, w, tmp)
            ops.reduce_sum(tmp, rows, acc, slot + k)
    return enqueue


def _ratio(m, sums, rows):
    return sums[0] / sums[1] if sums[1] else 0.0


def _counts_reference(which):
    def reference(m, p, t):
        pp, ap = p > m.threshold, t > 0.5
        denom = pp.sum() if which == 1 else ap.sum()
        return (pp & ap).sum() / denom if denom else 0.0
    return reference


def _auc_enqueue(m, ops, pred, target, rows, cols, tmp, acc, slot):
    ops.auc_counts(pred, target, rows * cols, m.num_thresholds, acc, slot)


def _auc_finalize(m, sums, rows):
    return _auc(np.asarray(sums, np.float64).reshape(m.num_thresholds, 4))


def _auc_reference(m, p, t):
    counts = []
    n = m.num_thresholds
    for i in range(n):
        thr = -1e-7 if i == 0 else 1 + 1e-7 if i == n - 1 else i / (n - 1)
        pp, ap = p.ravel() > thr, t.ravel() > 0.5
        counts.append([(pp & ap).sum(), (pp & ~ap).sum(), (~pp & ap).sum(), (~pp & ~ap).sum()])
    return _auc(np.array(counts, np.float64))


def _auc(c):
    """ROC AUC from (tp, fp, fn, tn) per increasing threshold, trapezoidal (Keras' default
    'interpolation' summation for ROC)."""
    tp, fp, fn, tn = c.T
    tpr = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
    fpr = np.divide(fp, fp + tn, out=np.zeros_like(fp), where=(fp + tn) > 0)
    return float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2))


# Keras' accuracy class for each loss (another loss: Keras' string name "accuracy")
_KERAS_ACCURACY = {"sparse_categorical_crossentropy": "SparseCategoricalAccuracy",
                   "categorical_crossentropy": "CategoricalAccuracy",
                   "binary_crossentropy": "BinaryAccuracy"}
_PER_COLUMN = dict(targets=COLUMNS, instead="accuracy or sparse_top_k_categorical_accuracy")

# -- the metrics ---------------------------------------------------------------------------------
for _kind in (
    MetricKind("accuracy", "Share of right predictions; sparse, categorical or binary as the "
               "loss implies.", _accuracy_kernel, lambda m, p, t: _ACCURACY[m.kernel](m, p, t),
               aliases=("acc",), threshold=lambda m: 0.5 if m.kernel == "acc_binary" else None,
               keras=_KERAS_ACCURACY.get, keras_names=(
                   "acc", "sparse_categorical_accuracy", "categorical_accuracy",
                   "binary_accuracy") + tuple(_KERAS_ACCURACY.values())),
    MetricKind("mean_absolute_error", "Mean of absolute differences.", "abs_err",
               _error(np.abs), aliases=("mae",), keras="MeanAbsoluteError"),
    MetricKind("mean_squared_error", "Mean of squared differences.", "sq_err",
               _error(lambda d: d ** 2), aliases=("mse",), keras="MeanSquaredError"),
    MetricKind("top_k_categorical_accuracy", "Share of one-hot targets among the k highest "
               "scores.", "top_k", _top_k_reference, _k(), aliases=("top_k",), enqueue=_top_k,
               keras="TopKCategoricalAccuracy", keras_args=(("k", "k"),)),
    MetricKind("sparse_top_k_categorical_accuracy", "Share of class indices among the k "
               "highest scores.", "top_k", _top_k_reference, _k(), enqueue=_top_k,
               targets=CLASS_INDICES, instead="top_k_categorical_accuracy with one-hot targets",
               keras="SparseTopKCategoricalAccuracy", keras_args=(("k", "k"),)),
    MetricKind("precision", "True positives over predicted positives.", "binary_counts",
               _counts_reference(1), _threshold(), enqueue=_counts(1), finalize=_ratio, slots=2,
               threshold=lambda m: m.params["threshold"], keras="Precision",
               keras_args=(("thresholds", "threshold"),), **_PER_COLUMN),
    MetricKind("recall", "True positives over actual positives.", "binary_counts",
               _counts_reference(2), _threshold(), enqueue=_counts(2), finalize=_ratio, slots=2,
               threshold=lambda m: m.params["threshold"], keras="Recall",
               keras_args=(("thresholds", "threshold"),), **_PER_COLUMN),
    MetricKind("auc", "Area under the ROC curve, trapezoidal over thresholds.", "auc_counts",
               _auc_reference, (Int("num_thresholds", 200, min=3, max=10_000,
                                    help="Thresholds from 0 to 1 the curve is sampled at."),),
               enqueue=_auc_enqueue, finalize=_auc_finalize,
               slots=lambda m: 4 * m.num_thresholds, needs_probabilities=True, keras="AUC",
               keras_args=(("num_thresholds", "num_thresholds"),), **_PER_COLUMN),
):
    register(_kind)
plugins.load_plugins("layerloom.metrics")  # installed metrics; a broken one is reported, skipped


def entry_name(spec):
    """The name a metric entry gives, as written: the entry itself, or its "name"."""
    return spec.get("name") if isinstance(spec, dict) else spec


def canonical(spec):
    """The declared name of a metric entry (or name): mae -> mean_absolute_error."""
    name = entry_name(spec)
    return ALIASES.get(name, name) if isinstance(name, str) else name


def _unknown(name, place=None):
    return ProjectError(f"unknown metric {quote(name)}; expected one of "
                        f"{', '.join(NAMES + tuple(ALIASES))}", place)


def columnwise_problem(name, loss_name):
    """Why metric `name` cannot be computed against the targets of loss `loss_name`, or None:
    class indices cannot be compared column by column, and a sparse metric needs them."""
    from layerloom.train.losses import KINDS as LOSSES
    canon = canonical(name)
    loss = LOSSES.get(loss_name)
    kind = KINDS.get(canon) if isinstance(canon, str) else None
    if loss is None or kind is None:
        return None
    if kind.targets == COLUMNS and loss.sparse is True:
        return (f"{name} compares each output column with its target, and the targets are "
                f"class indices ({loss_name}); use {kind.instead}, or one-hot targets with "
                "categorical_crossentropy")
    if kind.targets == CLASS_INDICES and loss.sparse is not True:
        return (f"{name} reads class indices, and the targets of {loss_name} are not "
                f"class indices; use {kind.instead}, or sparse_categorical_crossentropy")
    return None


def check_entry(spec, place):
    """(the metric entry as the file had it, problems): a name, or {"name", parameters}."""
    name = entry_name(spec)
    kind = KINDS.get(canonical(name)) if isinstance(name, str) else None
    if kind is None:
        return None, [_unknown(name, f"{place}.name" if isinstance(spec, dict) else place)]
    if isinstance(spec, dict):
        _, problems = validate_params(kind.params, {k: v for k, v in spec.items()
                                                    if k != "name"}, place)
        return (spec if not problems else None), problems
    return spec, []


class Metric:
    """One metric of one output, as its declaration computes it against that output's loss."""

    def __init__(self, spec, loss, out_shape):
        """spec: a metric name, or {"name", parameters}."""
        name = entry_name(spec)
        canon = canonical(name)
        kind = KINDS.get(canon) if isinstance(canon, str) else None
        if kind is None:
            raise _unknown(name)
        given = {k: v for k, v in spec.items() if k != "name"} if isinstance(spec, dict) else {}
        values, problems = validate_params(kind.params, given, f"metric {name}")
        if problems:
            raise problems[0]
        self.kind, self.params = kind, values
        self.name = name  # history keys use the name the user wrote, as Keras does
        self.canon = canon
        # class indices (a sparse loss) are one value a row; other targets are as wide as the
        # output
        self.sparse = loss.sparse is True
        self.target_cols = 1 if self.sparse else out_shape[-1]
        why = columnwise_problem(name, loss.name)  # the project check's rule, the same
        if why:
            raise ProjectError(why)
        if kind.needs_probabilities and loss.from_logits:
            raise ProjectError(f"{canon} needs probabilities; use from_logits: false with a "
                               "sigmoid output")
        self.kernel = kind.kernel(loss, out_shape) if callable(kind.kernel) else kind.kernel
        threshold = kind.threshold(self) if kind.threshold else None
        if threshold is not None and loss.from_logits:  # it applies to probabilities: its logit
            threshold = float(np.log(threshold / (1 - threshold)))
        self.threshold = threshold
        self.nslots = kind.slots(self) if callable(kind.slots) else kind.slots

    def __getattr__(self, name):
        """A parameter's value by its name: m.k, m.num_thresholds."""
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def enqueue(self, ops, pred, target, rows, cols, tmp, acc, slot):
        """Add a batch into the metric's slots slot .. slot + nslots - 1 of acc."""
        self.kind.enqueue(self, ops, pred, target, rows, cols, tmp, acc, slot)

    def finalize(self, vals, rows):
        """The metric from its slots' sums over `rows` rows."""
        return self.kind.finalize(self, vals, rows)

    # -- float64 references (tests) -------------------------------------------------------------
    def reference(self, y_pred, y_true):
        """The metric over a whole set of predictions."""
        p, t = np.asarray(y_pred, np.float64), np.asarray(y_true, np.float64)
        return self.kind.reference(self, p, t)
