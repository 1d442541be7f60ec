"""Metrics, Keras names. `accuracy` picks sparse, categorical or binary from the loss as Keras
does. Each metric owns `nslots` accumulators on the device that batches add into; the host
reads them back only when it wants values and `finalize` turns them into the metric."""
import numpy as np

from layerloom.core.errors import ProjectError, quote

ALIASES = {"acc": "accuracy", "mae": "mean_absolute_error", "mse": "mean_squared_error",
           "top_k": "top_k_categorical_accuracy"}
NAMES = ("accuracy", "mean_absolute_error", "mean_squared_error", "top_k_categorical_accuracy",
         "sparse_top_k_categorical_accuracy", "precision", "recall", "auc")
TOP_K = 5
AUC_THRESHOLDS = 200


class Metric:
    def __init__(self, name, loss, out_shape):
        canon = ALIASES.get(name, name)
        if canon not in NAMES:
            raise ProjectError(f"unknown metric {quote(name)}; expected one of "
                               f"{', '.join(NAMES + tuple(ALIASES))}")
        self.name = name  # history keys use the name the user wrote, as Keras does
        self.canon = canon
        self.threshold = None
        self.nslots = 1
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
            self.threshold = binary_threshold
            self.nslots = 2
        elif canon == "auc":
            self.kernel = "auc_counts"
            self.nslots = 4 * AUC_THRESHOLDS
            if loss.from_logits:
                raise ProjectError("auc needs probabilities; use from_logits: false with a "
                                   "sigmoid output")
        else:
            self.kernel = "abs_err" if canon == "mean_absolute_error" else "sq_err"

    def enqueue(self, ops, pred, target, rows, cols, tmp, acc, slot):
        if self.kernel == "top_k":
            ops.top_k(pred, target, rows, cols, TOP_K, self.sparse, tmp)
            ops.reduce_sum(tmp, rows, acc, slot)
        elif self.kernel == "binary_counts":
            # slot: true positives; slot + 1: predicted (precision) or actual (recall) positives
            for k, which in enumerate((0, 1 if self.canon == "precision" else 2)):
                ops.binary_counts(pred, target, rows, cols, self.threshold, which, tmp)
                ops.reduce_sum(tmp, rows, acc, slot + k)
        elif self.kernel == "auc_counts":
            ops.auc_counts(pred, target, rows * cols, AUC_THRESHOLDS, acc, slot)
        else:
            ops.metric(self.kernel, pred, target, rows, cols, tmp, threshold=self.threshold)
            ops.reduce_sum(tmp, rows, acc, slot)

    def finalize(self, vals, rows):
        if self.kernel == "binary_counts":
            return vals[0] / vals[1] if vals[1] else 0.0
        if self.kernel == "auc_counts":
            return _auc(np.asarray(vals, np.float64).reshape(AUC_THRESHOLDS, 4))
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
            y = t.astype(int) if self.sparse else t.argmax(-1)
            target = np.take_along_axis(p, y[..., None], -1)
            return ((p > target).sum(-1) < TOP_K).mean()
        if self.kernel == "binary_counts":
            pp, ap = p > self.threshold, t > 0.5
            denom = pp.sum() if self.canon == "precision" else ap.sum()
            return (pp & ap).sum() / denom if denom else 0.0
        if self.kernel == "auc_counts":
            counts = []
            for i in range(AUC_THRESHOLDS):
                thr = -1e-7 if i == 0 else 1 + 1e-7 if i == AUC_THRESHOLDS - 1 else \
                    i / (AUC_THRESHOLDS - 1)
                pp, ap = p.ravel() > thr, t.ravel() > 0.5
                counts.append([(pp & ap).sum(), (pp & ~ap).sum(), (~pp & ap).sum(),
                               (~pp & ~ap).sum()])
            return _auc(np.array(counts, np.float64))
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
