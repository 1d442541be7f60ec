"""Metrics, Keras names. `accuracy` picks sparse, categorical or binary from the loss as Keras
does. Each metric owns `nslots` accumulators on the device that batches add into; the host
reads them back only when it wants values and `finalize` turns them into the metric."""
from dataclasses import dataclass

import numpy as np

from layerloom.core.errors import ProjectError, quote
from layerloom.core.params import Float, Int, validate_params


@dataclass(frozen=True)
class MetricKind:
    """A metric, declared once: its Keras name, aliases and parameters (validated in the
    project file, where a metric is a name or {"name", its parameters})."""
    name: str
    help: str
    params: tuple = ()
    aliases: tuple = ()


def _k():
    return (Int("k", 5, min=1, max=1_000_000, help="A hit if the target is among the k "
                "highest scores."),)


def _threshold():
    return (Float("threshold", 0.5, min=0.0, max=1.0, min_exclusive=True, max_exclusive=True,
                  help="Predictions above it count as positive."),)


KINDS = {k.name: k for k in (
    MetricKind("accuracy", "Share of right predictions; sparse, categorical or binary as the "
               "loss implies.", aliases=("acc",)),
    MetricKind("mean_absolute_error", "Mean of absolute differences.", aliases=("mae",)),
    MetricKind("mean_squared_error", "Mean of squared differences.", aliases=("mse",)),
    MetricKind("top_k_categorical_accuracy", "Share of one-hot targets among the k highest "
               "scores.", _k(), aliases=("top_k",)),
    MetricKind("sparse_top_k_categorical_accuracy", "Share of class indices among the k "
               "highest scores.", _k()),
    MetricKind("precision", "True positives over predicted positives.", _threshold()),
    MetricKind("recall", "True positives over actual positives.", _threshold()),
    MetricKind("auc", "Area under the ROC curve, trapezoidal over thresholds.",
               (Int("num_thresholds", 200, min=3, max=10_000,
                    help="Thresholds from 0 to 1 the curve is sampled at."),)),
)}
NAMES = tuple(KINDS)
ALIASES = {a: k.name for k in KINDS.values() for a in k.aliases}
COLUMNWISE = ("precision", "recall", "auc")  # compare each output column with its own target


def entry_name(spec):
    """The name a metric entry gives, as written: the entry itself, or its "name"."""
    return spec.get("name") if isinstance(spec, dict) else spec


def canonical(spec):
    """The declared name of a metric entry (or name): mae -> mean_absolute_error."""
    name = entry_name(spec)
    return ALIASES.get(name, name) if isinstance(name, str) else name


def columnwise_problem(name, loss_name):
    """Why metric `name` cannot be computed against the targets of loss `loss_name`, or None:
    class indices cannot be compared column by column, and a sparse metric needs them."""
    from layerloom.train.losses import KINDS as LOSSES
    canon = canonical(name)
    loss = LOSSES.get(loss_name)
    if loss is None:
        return None
    if canon in COLUMNWISE and loss.sparse is True:
        return (f"{name} compares each output column with its target, and the targets are "
                f"class indices ({loss_name}); use accuracy or sparse_top_k_categorical_"
                "accuracy, or one-hot targets with categorical_crossentropy")
    if canon == "sparse_top_k_categorical_accuracy" and loss.sparse is not True:
        return (f"{name} reads class indices, and the targets of {loss_name} are not "
                "class indices; use top_k_categorical_accuracy with one-hot targets, or "
                "sparse_categorical_crossentropy")
    return None


def check_entry(spec, place):
    """(the metric entry as the file had it, problems): a name, or {"name", parameters}."""
    name = entry_name(spec)
    kind = KINDS.get(canonical(name)) if isinstance(name, str) else None
    if kind is None:
        return None, [ProjectError(f"unknown metric {quote(name)}; expected one of "
                                   f"{', '.join(NAMES + tuple(ALIASES))}",
                                   f"{place}.name" if isinstance(spec, dict) else place)]
    if isinstance(spec, dict):
        _, problems = validate_params(kind.params, {k: v for k, v in spec.items()
                                                    if k != "name"}, place)
        return (spec if not problems else None), problems
    return spec, []


class Metric:
    def __init__(self, spec, loss, out_shape):
        """spec: a metric name, or {"name", parameters}."""
        name = entry_name(spec)
        canon = canonical(name)
        if canon not in KINDS:
            raise ProjectError(f"unknown metric {quote(name)}; expected one of "
                               f"{', '.join(NAMES + tuple(ALIASES))}")
        given = {k: v for k, v in spec.items() if k != "name"} if isinstance(spec, dict) else {}
        values, problems = validate_params(KINDS[canon].params, given, f"metric {name}")
        if problems:
            raise problems[0]
        self.name = name  # history keys use the name the user wrote, as Keras does
        self.canon = canon
        self.k = values.get("k")
        self.num_thresholds = values.get("num_thresholds")
        self.threshold = values.get("threshold")
        self.nslots = 1
        # class indices (a sparse loss) are one value a row; other targets are as wide as the
        # output
        self.target_cols = 1 if loss.sparse is True else out_shape[-1]
        why = columnwise_problem(name, loss.name)  # the project check's rule, the same
        if why:
            raise ProjectError(why)
        binary_threshold = 0.0 if loss.from_logits else 0.5
        if canon == "accuracy":
            if loss.name == "sparse_categorical_crossentropy":
                self.kernel = "acc_sparse"
            elif loss.name == "categorical_crossentropy":
                self.kernel = "acc_categorical"
            elif loss.name == "binary_crossentropy" or out_shape[-1] == 1:
                self.kernel = "acc_binary"
                self.threshold = binary_threshold
            else:
                self.kernel = "acc_categorical"
        elif canon in ("top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy"):
            self.kernel = "top_k"
            self.sparse = canon.startswith("sparse") or loss.sparse is True
        elif canon in ("precision", "recall"):
            self.kernel = "binary_counts"
            if loss.from_logits:  # the threshold applies to probabilities: its logit
                self.threshold = float(np.log(self.threshold / (1 - self.threshold)))
            self.nslots = 2
        elif canon == "auc":
            self.kernel = "auc_counts"
            self.nslots = 4 * self.num_thresholds
            if loss.from_logits:
                raise ProjectError("auc needs probabilities; use from_logits: false with a "
                                   "sigmoid output")
        else:
            self.kernel = "abs_err" if canon == "mean_absolute_error" else "sq_err"

    def enqueue(self, ops, pred, target, rows, cols, tmp, acc, slot):
        if self.kernel == "top_k":
            ops.top_k(pred, target, rows, cols, self.k, self.sparse, tmp)
            ops.reduce_sum(tmp, rows, acc, slot)
        elif self.kernel == "binary_counts":
            # slot: true positives; slot + 1: predicted (precision) or actual (recall) positives
            for k, which in enumerate((0, 1 if self.canon == "precision" else 2)):
                ops.binary_counts(pred, target, rows, cols, self.threshold, which, tmp)
                ops.reduce_sum(tmp, rows, acc, slot + k)
        elif self.kernel == "auc_counts":
            ops.auc_counts(pred, target, rows * cols, self.num_thresholds, acc, slot)
        else:
            ops.metric(self.kernel, pred, target, rows, cols, tmp, threshold=self.threshold,
                       target_cols=self.target_cols)
            ops.reduce_sum(tmp, rows, acc, slot)

    def finalize(self, vals, rows):
        if self.kernel == "binary_counts":
            return vals[0] / vals[1] if vals[1] else 0.0
        if self.kernel == "auc_counts":
            return _auc(np.asarray(vals, np.float64).reshape(self.num_thresholds, 4))
        return vals[0] / max(rows, 1)

    # -- float64 references (tests) -------------------------------------------------------------
    def reference(self, y_pred, y_true):
        """The metric over a whole set of predictions."""
        p, t = np.asarray(y_pred, np.float64), np.asarray(y_true, np.float64)
        if self.kernel == "acc_sparse":
            return (p.argmax(-1) == t).mean()
        if self.kernel == "acc_categorical":
            return (p.argmax(-1) == t.argmax(-1)).mean()
        if self.kernel == "acc_binary":
            return ((p > self.threshold) == (t > 0.5)).mean()
        if self.kernel == "top_k":
            y = t.reshape(p.shape[:-1]).astype(int) if self.sparse else t.argmax(-1)
            valid = (y >= 0) & (y < p.shape[-1])  # anything else is a miss, as in the kernel
            target = np.take_along_axis(p, np.where(valid, y, 0)[..., None], -1)
            return (((p > target).sum(-1) < self.k) & valid).mean()
        if self.kernel == "binary_counts":
            pp, ap = p > self.threshold, t > 0.5
            denom = pp.sum() if self.canon == "precision" else ap.sum()
            return (pp & ap).sum() / denom if denom else 0.0
        if self.kernel == "auc_counts":
            counts = []
            n = self.num_thresholds
            for i in range(n):
                thr = -1e-7 if i == 0 else 1 + 1e-7 if i == n - 1 else i / (n - 1)
                pp, ap = p.ravel() > thr, t.ravel() > 0.5
                counts.append([(pp & ap).sum(), (pp & ~ap).sum(), (~pp & ap).sum(),
                               (~pp & ~ap).sum()])
            return _auc(np.array(counts, np.float64))
        if t.shape != p.shape and t.size * p.shape[-1] == p.size:
            t = t.reshape(p.shape[:-1] + (1,))  # class indices against every column
        if self.kernel == "abs_err":
            return np.abs(p - t).mean()
        return ((p - t) ** 2).mean()


def _auc(c):
    """ROC AUC from (tp, fp, fn, tn) per increasing threshold, trapezoidal (Keras' default
    'interpolation' summation for ROC)."""
    tp, fp, fn, tn = c.T
    tpr = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
    fpr = np.divide(fp, fp + tn, out=np.zeros_like(fp), where=(fp + tn) > 0)
    return float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2))
