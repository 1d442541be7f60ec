"""Cross-entropy from logits of large magnitude (review of issue 26: the loss kernel computed
log-sum-exp as max + log(sum), whose rounding at the max's magnitude loses the log sum: at
logits near 1e4 the loss was off by about 1e-3, the softmax fix of item 11 left it)."""
import numpy as np
import pytest

from conftest import ew_widths, from_dev, to_dev
from layerloom.core.activations import REFERENCE
from layerloom.train.losses import Loss


@ew_widths
@pytest.mark.parametrize("name", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_cross_entropy_of_shifted_logits_is_the_same(rt, ops, name):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((9, 5))
    t = rng.integers(0, 5, 9).astype(np.float64)
    if name == "categorical_crossentropy":
        t = np.eye(5)[t.astype(int)]
    loss = Loss(name)
    want = None
    for shift in (0.0, 1e4, 3e4):  # softmax and its cross-entropy ignore a shift of the row
        zs = (z + shift).astype(np.float32)
        lrows, grad = rt.empty(4 * 9), rt.empty(4 * 45)
        loss.enqueue(ops, to_dev(rt, REFERENCE["softmax"](zs)), to_dev(rt, zs), to_dev(rt, t),
                     9, 5, lrows, grad)
        got = from_dev(rt, lrows, (9,)), from_dev(rt, grad, (9, 5))
        if want is None:
            want = got
        else:  # float32 logits near 3e4 are 0.002 apart: the shifted z differs by that much
            np.testing.assert_allclose(got[0], want[0], atol=5e-3, rtol=0)
            np.testing.assert_allclose(got[1], want[1], atol=5e-4, rtol=0)
    # and against float64 on the rounded logits themselves
    zs = (z + 3e4).astype(np.float32).astype(np.float64)
    lse = zs.max(1) + np.log(np.exp(zs - zs.max(1, keepdims=True)).sum(1))
    tt = np.eye(5)[t.astype(int)] if t.ndim == 1 else t
    np.testing.assert_allclose(got[0], (tt * (lse[:, None] - zs)).sum(1), atol=1e-5, rtol=0)
