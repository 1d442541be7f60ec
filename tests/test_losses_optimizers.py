"""Losses (value and gradient), metrics and optimizer updates against float64 references."""
import numpy as np
import pytest

from conftest import ew_widths, from_dev, numeric_grad, to_dev
from layerloom.core.activations import REFERENCE
from layerloom.train.losses import Loss
from layerloom.train.metrics import Metric
from layerloom.train.optimizers import SGD, Adam

CASES = [  # (loss, from_logits, fused activation or None)
    ("sparse_categorical_crossentropy", False, None),
    ("sparse_categorical_crossentropy", False, "softmax"),
    ("sparse_categorical_crossentropy", True, None),
    ("categorical_crossentropy", False, None),
    ("categorical_crossentropy", False, "softmax"),
    ("categorical_crossentropy", True, None),
    ("binary_crossentropy", False, None),
    ("binary_crossentropy", False, "sigmoid"),
    ("binary_crossentropy", True, None),
    ("mean_squared_error", False, None),
    ("mean_absolute_error", False, None),
    ("huber", False, None),
    ("kl_divergence", False, None),
]


def _targets(rng, loss, rows, cols):
    if loss.sparse:
        return rng.integers(0, cols, rows).astype(np.float64)
    if loss.sparse is False:
        return np.eye(cols)[rng.integers(0, cols, rows)]
    if loss.name == "binary_crossentropy":
        return rng.integers(0, 2, (rows, cols)).astype(np.float64)
    if loss.name == "kl_divergence":
        return rng.dirichlet(np.ones(cols), rows)
    return rng.normal(size=(rows, cols))


@ew_widths
@pytest.mark.parametrize("name,from_logits,fused", CASES)
@pytest.mark.parametrize("rows,cols", [(1, 1), (5, 3), (33, 10), (2, 65), (16, 4)])
def test_loss_value_and_gradient(rt, ops, rng, name, from_logits, fused, rows, cols):
    if cols == 1 and name in ("sparse_categorical_crossentropy", "categorical_crossentropy",
                              "kl_divergence"):
        cols = 2
    loss = Loss(name, weight=0.7, from_logits=from_logits,
                **({"delta": 0.6} if name == "huber" else {}))
    z = rng.normal(size=(rows, cols))
    if fused or from_logits or name in ("mean_squared_error", "mean_absolute_error", "huber"):
        pred = REFERENCE[fused](z) if fused else z
    elif name == "kl_divergence":
        pred = REFERENCE["softmax"](z)
    else:  # probabilities, kept away from the clipping edges
        pred = REFERENCE["softmax" if loss.sparse is not None else "sigmoid"](z)
    t = _targets(rng, loss, rows, cols)
    lrows, grad = rt.empty(4 * rows), rt.empty(4 * rows * cols)
    logits = to_dev(rt, z) if fused else None
    loss.enqueue(ops, to_dev(rt, pred), logits, to_dev(rt, t), rows, cols, lrows, grad)
    np.testing.assert_allclose(from_dev(rt, lrows, (rows,)), loss.reference(pred, t),
                               rtol=1e-5, atol=1e-6)

    # gradient of the weighted mean loss w.r.t. what the kernel differentiates:
    # logits when fused, else the output itself
    wrt = (z if fused else pred).copy()

    def total():
        p = REFERENCE[fused](wrt) if fused else wrt
        return loss.weight * loss.reference(p, t).mean()
    num = numeric_grad(total, wrt)
    np.testing.assert_allclose(from_dev(rt, grad, (rows, cols)), num, rtol=1e-3, atol=1e-5)


@ew_widths
def test_fused_cross_entropy_is_stable(rt, ops):
    # logits far apart: probabilities underflow in float32 but log-sum-exp does not (nine
    # rows: a whole block of rows and a partial one on CPUs)
    loss = Loss("sparse_categorical_crossentropy")
    z = np.tile([[0.0, 200.0, -200.0]], (9, 1))
    t = np.zeros(9)
    lrows, grad = rt.empty(4 * 9), rt.empty(4 * 27)
    loss.enqueue(ops, to_dev(rt, REFERENCE["softmax"](z)), to_dev(rt, z), to_dev(rt, t), 9, 3,
                 lrows, grad)
    np.testing.assert_allclose(from_dev(rt, lrows, (9,)), 200.0, rtol=1e-6)
    np.testing.assert_allclose(from_dev(rt, grad, (9, 3)) * 9, np.tile([[-1, 1, 0]], (9, 1)),
                               atol=1e-5)


@pytest.mark.parametrize("metric,loss,cols", [
    ("accuracy", "sparse_categorical_crossentropy", 5),
    ("accuracy", "categorical_crossentropy", 4),
    ("accuracy", "binary_crossentropy", 3),
    ("accuracy", "mean_squared_error", 1),
    ("mae", "mean_squared_error", 3),
    ("mse", "mean_squared_error", 2),
    # class-index targets against every column, as Keras broadcasts them (the kernel read
    # past the targets: mae 1.5e34 in the trial)
    ("mae", "sparse_categorical_crossentropy", 3),
    ("mse", "sparse_categorical_crossentropy", 4),
    ("top_k_categorical_accuracy", "categorical_crossentropy", 10),
    ("sparse_top_k_categorical_accuracy", "sparse_categorical_crossentropy", 7),
    ("precision", "binary_crossentropy", 3),
    ("recall", "binary_crossentropy", 1),
    ("auc", "binary_crossentropy", 1),
    ("auc", "binary_crossentropy", 4),
    ({"name": "top_k_categorical_accuracy", "k": 2}, "categorical_crossentropy", 10),
    ({"name": "sparse_top_k_categorical_accuracy", "k": 1}, "sparse_categorical_crossentropy", 7),
    ({"name": "precision", "threshold": 0.3}, "binary_crossentropy", 3),
    ({"name": "recall", "threshold": 0.8}, "binary_crossentropy", 2),
    ({"name": "auc", "num_thresholds": 17}, "binary_crossentropy", 3),
])
def test_metrics_accumulate_over_batches(rt, ops, rng, metric, loss, cols):
    lo = Loss(loss)
    m = Metric(metric, lo, (cols,))
    batches = [37, 21]
    ps = [rng.uniform(size=(r, cols)) for r in batches]
    ts = [_targets(rng, lo, r, cols) for r in batches]
    if loss == "binary_crossentropy":  # make predictions informative so AUC is not trivial
        ps = [np.clip(0.35 * t + 0.65 * p, 0, 1) for p, t in zip(ps, ts)]
    acc = to_dev(rt, np.zeros(m.nslots + 1))
    tmp = rt.empty(4 * max(batches))
    for p, t, r in zip(ps, ts, batches):
        m.enqueue(ops, to_dev(rt, p), to_dev(rt, t), r, cols, tmp, acc, 1)
    vals = from_dev(rt, acc, (m.nslots + 1,)).astype(np.float64)
    assert vals[0] == 0  # neighbouring slots untouched
    got = m.finalize(list(vals[1:]), sum(batches))
    want = m.reference(np.concatenate(ps), np.concatenate(ts))
    assert np.isclose(got, want, rtol=1e-6, atol=1e-7), (got, want)
    if m.canon == "auc":
        assert 0.6 < got <= 1.0
    if m.canon == "sparse_top_k_categorical_accuracy" and m.k == 1:  # top 1: accuracy
        p, t = np.concatenate(ps), np.concatenate(ts)
        assert np.isclose(got, (p.argmax(-1) == t).mean())
    if m.canon == "precision" and isinstance(metric, dict):  # the threshold given, not 0.5
        p, t = np.concatenate(ps), np.concatenate(ts)
        assert np.isclose(got, ((p > 0.3) & (t > 0.5)).sum() / (p > 0.3).sum())


def test_error_metrics_with_class_index_targets_are_keras_values(rng, monkeypatch):
    """Keras broadcasts a class index shaped (N, 1) against every output column for mae and
    mse (with labels shaped (N,) its mae refuses the shapes; Layerloom's targets are a column
    either way)."""
    import os
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "torch"))
    keras = pytest.importorskip("keras")
    lo = Loss("sparse_categorical_crossentropy")
    p = rng.uniform(size=(30, 3))
    t = rng.integers(0, 3, 30).astype(np.float64)
    for name, fn in (("mae", keras.metrics.mean_absolute_error),
                     ("mse", keras.metrics.mean_squared_error)):
        want = float(np.mean(np.asarray(fn(t[:, None].astype("float32"),
                                           p.astype("float32")))))
        assert np.isclose(Metric(name, lo, (3,)).reference(p, t), want, rtol=1e-5), name


def test_top_k_counts_a_target_that_is_no_class_index_as_a_miss(rt, ops):
    """The kernel indexed the prediction row with the target: -1 or 7 read outside it (a
    regression's targets reached it through a per-output metrics list)."""
    m = Metric({"name": "sparse_top_k_categorical_accuracy", "k": 2},
               Loss("sparse_categorical_crossentropy"), (4,))
    p = np.tile([[0.1, 0.2, 0.3, 0.4]], (4, 1))
    t = np.array([3.0, -1.0, 7.0, 2.0])
    acc = to_dev(rt, np.zeros(2))
    tmp = rt.empty(4 * 4)
    m.enqueue(ops, to_dev(rt, p), to_dev(rt, t), 4, 4, tmp, acc, 1)
    got = m.finalize(list(from_dev(rt, acc, (2,)).astype(np.float64)[1:]), 4)
    assert got == m.reference(p, t) == 0.5


@pytest.mark.parametrize("metric", ["precision", "recall", "auc"])
def test_metrics_that_compare_columns_refuse_class_index_targets(metric):
    from layerloom.core.errors import ProjectError
    with pytest.raises(ProjectError, match="class indices"):
        Metric(metric, Loss("sparse_categorical_crossentropy"), (3,))


def _own_metric_table(monkeypatch):
    """The metric table as a test may add to: the built-ins' again after it."""
    from layerloom.train import metrics
    for name in ("KINDS", "ALIASES"):
        monkeypatch.setattr(metrics, name, dict(getattr(metrics, name)))
    monkeypatch.setattr(metrics, "NAMES", metrics.NAMES)
    return metrics


def test_a_metric_registered_twice_is_refused(monkeypatch):
    """Issue 27, item 3: metrics have a public register; a name or alias taken is refused,
    and nothing of the refused declaration is kept."""
    metrics = _own_metric_table(monkeypatch)
    before = dict(metrics.KINDS), dict(metrics.ALIASES), metrics.NAMES

    def kind(name, aliases=()):
        return metrics.MetricKind(name, "A test's metric.", "acc_sparse",
                                  lambda m, p, t: 0.0, aliases=aliases)
    for name, aliases, taken in (("accuracy", (), "accuracy"), ("my_mae", ("mae",), "mae"),
                                 ("acc", (), "acc"), ("mine", ("mine",), "mine")):
        with pytest.raises(ValueError, match=f"metric '{taken}' is registered twice"):
            metrics.register(kind(name, aliases))
    assert (metrics.KINDS, metrics.ALIASES, metrics.NAMES) == before
    with pytest.raises(TypeError, match="expected a MetricKind"):
        metrics.register("accuracy")


def test_a_registered_metric_is_checked_and_computed_as_declared(rt, ops, rng, monkeypatch):
    """One declaration is a metric: the project file's check, the targets it refuses, the
    device's sums and the reference all follow it."""
    metrics = _own_metric_table(monkeypatch)
    kind = metrics.register(metrics.MetricKind(
        "error_rate", "Share of wrong class indices.", "acc_sparse",
        lambda m, p, t: 1 - (p.argmax(-1) == t).mean(), aliases=("err",),
        finalize=lambda m, sums, rows: 1 - sums[0] / max(rows, 1),
        targets=metrics.CLASS_INDICES, instead="accuracy"))
    assert metrics.KINDS["error_rate"] is kind and metrics.canonical("err") == "error_rate"
    assert metrics.NAMES[-1] == "error_rate"
    assert metrics.check_entry("err", "training.metrics[0]") == ("err", [])
    assert metrics.columnwise_problem("err", "categorical_crossentropy") == (
        "err reads class indices, and the targets of categorical_crossentropy are not class "
        "indices; use accuracy, or sparse_categorical_crossentropy")
    assert metrics.columnwise_problem("err", "sparse_categorical_crossentropy") is None
    m = Metric("err", Loss("sparse_categorical_crossentropy"), (4,))
    assert (m.kind, m.kernel, m.nslots, m.threshold) == (kind, "acc_sparse", 1, None)
    p, t = rng.uniform(size=(29, 4)), rng.integers(0, 4, 29).astype(np.float64)
    acc, tmp = to_dev(rt, np.zeros(2)), rt.empty(4 * 29)
    m.enqueue(ops, to_dev(rt, p), to_dev(rt, t), 29, 4, tmp, acc, 1)
    vals = from_dev(rt, acc, (2,)).astype(np.float64)
    assert vals[0] == 0 and np.isclose(m.finalize(list(vals[1:]), 29), m.reference(p, t))
    assert np.isclose(m.reference(p, t), 1 - (p.argmax(-1) == t).mean())


class _FakeModel:
    def __init__(self, rt, ops, w, g):
        from layerloom.backend.ops import Tensor
        from layerloom.core.registry import WeightSpec
        from layerloom.train.model import ModelWeight
        self.rt, self.ops = rt, ops
        self.w, self.g = to_dev(rt, w), to_dev(rt, g)
        self.params = [ModelWeight("n", WeightSpec("kernel", w.shape), Tensor(self.w, w.shape),
                                   Tensor(self.g, w.shape))]


@ew_widths
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_matches_keras_rule(rt, ops, rng, momentum, nesterov):
    w, v = rng.normal(size=33), np.zeros(33)
    grads = [rng.normal(size=33) for _ in range(3)]
    opt = SGD(learning_rate=0.1, momentum=momentum, nesterov=nesterov)
    model = _FakeModel(rt, ops, w, grads[0])
    for g in grads:
        rt.write(model.g, g, blocking=True)
        opt.step(model)
        v = momentum * v - 0.1 * g
        w = w + (momentum * v - 0.1 * g if nesterov else v)
    np.testing.assert_allclose(from_dev(rt, model.w, (33,)), w, rtol=1e-5, atol=1e-6)


@ew_widths
def test_adam_matches_keras_rule(rt, ops, rng):
    w, m, v = rng.normal(size=65), np.zeros(65), np.zeros(65)
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    opt = Adam(learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=eps)
    model = _FakeModel(rt, ops, w, np.zeros(65))
    for t in range(1, 6):
        g = rng.normal(size=65)
        rt.write(model.g, g, blocking=True)
        opt.step(model)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
    np.testing.assert_allclose(from_dev(rt, model.w, (65,)), w, rtol=1e-5, atol=1e-6)


def _run_steps(rt, ops, opt, w, grads):
    model = _FakeModel(rt, ops, w, grads[0])
    for g in grads:
        rt.write(model.g, g, blocking=True)
        opt.step(model)
    return from_dev(rt, model.w, w.shape)


@ew_widths
def test_rmsprop_adagrad_nadam_adamw_match_keras_rules(rt, ops, rng):
    from layerloom.train.optimizers import Adagrad, AdamW, Nadam, RMSprop
    w0 = rng.normal(size=31)
    grads = [rng.normal(size=31) for _ in range(4)]
    for centered, momentum in [(False, 0.0), (True, 0.5)]:
        w, v, a, m = w0.copy(), np.zeros(31), np.zeros(31), np.zeros(31)
        for g in grads:
            v = 0.9 * v + 0.1 * g * g
            denom = v
            if centered:
                a = 0.9 * a + 0.1 * g
                denom = v - a * a
            inc = 0.01 * g / np.sqrt(denom + 1e-7)
            if momentum:
                m = momentum * m + inc
                w = w - m
            else:
                w = w - inc
        opt = RMSprop(learning_rate=0.01, rho=0.9, momentum=momentum, epsilon=1e-7,
                      centered=centered)
        np.testing.assert_allclose(_run_steps(rt, ops, opt, w0, grads), w, rtol=1e-5, atol=1e-6)
    w, acc = w0.copy(), np.full(31, 0.1)
    for g in grads:
        acc = acc + g * g
        w = w - 0.05 * g / np.sqrt(acc + 1e-7)
    opt = Adagrad(learning_rate=0.05, initial_accumulator_value=0.1, epsilon=1e-7)
    np.testing.assert_allclose(_run_steps(rt, ops, opt, w0, grads), w, rtol=1e-5, atol=1e-6)
    # Nadam (Keras 3)
    w, m, v, up = w0.copy(), np.zeros(31), np.zeros(31), 1.0
    b1, b2, lr, eps = 0.9, 0.999, 0.01, 1e-7
    for t, g in enumerate(grads, 1):
        u_t = b1 * (1 - 0.5 * 0.96 ** (0.004 * t))
        u_t1 = b1 * (1 - 0.5 * 0.96 ** (0.004 * (t + 1)))
        up = up * u_t
        up1 = up * u_t1
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        m_hat = u_t1 * m / (1 - up1) + (1 - u_t) * g / (1 - up)
        v_hat = v / (1 - b2 ** t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    opt = Nadam(learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=eps)
    np.testing.assert_allclose(_run_steps(rt, ops, opt, w0, grads), w, rtol=1e-5, atol=1e-6)
    # AdamW: decay w -= w * wd * lr, then the Adam step
    w, m, v = w0.copy(), np.zeros(31), np.zeros(31)
    for t, g in enumerate(grads, 1):
        w = w - w * 0.004 * lr
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
    opt = AdamW(learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=eps, weight_decay=0.004)
    np.testing.assert_allclose(_run_steps(rt, ops, opt, w0, grads), w, rtol=1e-5, atol=1e-6)


def test_gradient_clipping(rt, ops, rng):
    w0, g = rng.normal(size=33), rng.normal(size=33) * 10
    for cfg, clipped in [({"clipvalue": 0.5}, np.clip(g, -0.5, 0.5)),
                         ({"clipnorm": 1.0}, g / np.linalg.norm(g)),
                         ({"global_clipnorm": 2.0}, g * 2.0 / np.linalg.norm(g)),
                         ({"clipnorm": 1e6}, g)]:
        opt = SGD(learning_rate=0.1, momentum=0.0, nesterov=False, **cfg)
        np.testing.assert_allclose(_run_steps(rt, ops, opt, w0, [g]), w0 - 0.1 * clipped,
                                   rtol=1e-5, atol=1e-6, err_msg=str(cfg))


def test_schedules_match_keras_formulas():
    from layerloom.train.schedules import build, validate
    e = build({"schedule": "exponential_decay", "initial_learning_rate": 0.1,
               "decay_steps": 10, "decay_rate": 0.5, "staircase": False})
    assert np.isclose(e(5), 0.1 * 0.5 ** 0.5) and np.isclose(e(20), 0.025)
    spec, probs = validate({"schedule": "piecewise_constant_decay", "boundaries": [10, 20],
                            "values": [1.0, 0.5, 0.1]}, "lr")
    pw = build(spec)
    assert [pw(s) for s in (0, 10, 11, 20, 21)] == [1.0, 1.0, 0.5, 0.5, 0.1]
    spec, _ = validate({"schedule": "cosine_decay", "initial_learning_rate": 0.0,
                        "decay_steps": 100, "warmup_target": 0.1, "warmup_steps": 10}, "lr")
    c = build(spec)
    assert np.isclose(c(5), 0.05) and np.isclose(c(10), 0.1) and np.isclose(c(60), 0.05)
    assert np.isclose(c(110), 0.0) and np.isclose(c(500), 0.0)
    _, probs = validate({"schedule": "warp"}, "training.optimizer.params.learning_rate")
    assert "training.optimizer.params.learning_rate.schedule" in str(probs[0])


def test_schedule_drives_the_optimizer(rt, ops, rng):
    from layerloom.train.schedules import build
    sched = build({"schedule": "piecewise_constant_decay", "boundaries": [0],
                   "values": [1.0, 0.1]})
    w0, g = np.zeros(5), np.ones(5)
    opt = SGD(learning_rate=sched, momentum=0.0, nesterov=False)
    # step 0 uses 1.0, step 1 uses 0.1
    np.testing.assert_allclose(_run_steps(rt, ops, opt, w0, [g, g]), -1.1 * np.ones(5),
                               rtol=1e-6)
