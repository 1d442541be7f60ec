"""The vector forms of GlobalAveragePooling, GroupNormalization and the recurrent cells (EW
channels or units per work-item where the width is a multiple of EW: 8 on CPUs, 1 on GPUs) and
GroupNormalization's two forms (per sample, in blocks of rows), through the float64 layer
harness (engine/testing.py check_case) on widths the declarations' examples leave out: lanes
that span several groups, ragged blocks and rows not a multiple of the unrolling."""
import numpy as np
import pytest

from conftest import from_dev, to_dev
from layerloom.testing import case_id, check_case

GROUP_NORM = [({"groups": 8}, (5, 16)),  # two channels a group: a vector spans four groups
              ({"groups": 3}, (9, 24)),  # eight a group
              ({"groups": 2, "center": False}, (3, 3, 8)),
              ({"groups": -1, "scale": False}, (7, 8)),
              ({"groups": 5}, (6, 5))]  # five channels: the scalar kernels


@pytest.mark.parametrize("params,shape", GROUP_NORM,
                         ids=[case_id("GroupNormalization", p, [s]) for p, s in GROUP_NORM])
@pytest.mark.parametrize("per_sample", [True, False], ids=["per_sample", "blocks"])
def test_group_normalization_forms(rt, ops, rng, monkeypatch, params, shape, per_sample):
    monkeypatch.setattr(ops, "gn_per_sample", per_sample)
    # blocks of 4 rows (or 32 / channels): several a sample, the last one short
    monkeypatch.setattr(ops, "GN_BLOCK_FLOATS", 32)
    assert ops._gn_blocks(9, 8) == (4, 3)
    check_case(rt, ops, rng, "GroupNormalization", params, [shape], 3)


@pytest.mark.parametrize("per_sample", [True, False], ids=["per_sample", "blocks"])
def test_group_normalization_adds_to_an_input_gradient_already_there(rt, ops, rng, monkeypatch,
                                                                     per_sample):
    monkeypatch.setattr(ops, "gn_per_sample", per_sample)
    monkeypatch.setattr(ops, "GN_BLOCK_FLOATS", 32)
    n, A, C, G = 2, 9, 16, 4
    x, dy = rng.normal(size=(n, A, C)), rng.normal(size=(n, A, C))
    gamma, beta = rng.normal(size=C), rng.normal(size=C)
    bufs = [to_dev(rt, a) for a in (x, dy, gamma, beta)]
    mean, rstd, y = rt.empty(4 * n * G), rt.empty(4 * n * G), rt.empty(4 * x.size)
    ops.group_norm_forward(bufs[0], y, bufs[2], bufs[3], mean, rstd, n, A, C, G, 1e-3)
    fresh, added = to_dev(rt, np.zeros(x.size)), to_dev(rt, np.ones(x.size))
    for dx, acc in ((fresh, False), (added, True)):
        ops.group_norm_backward(bufs[0], bufs[1], bufs[2], mean, rstd, n, A, C, G, dx=dx,
                                accumulate=acc)
    want = from_dev(rt, fresh, x.shape)
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(from_dev(rt, added, x.shape), want + 1, rtol=1e-6, atol=1e-6)


POOLING = [("GlobalAveragePooling2D", {}, (3, 5, 16)),
           ("GlobalAveragePooling2D", {"keepdims": True}, (1, 1, 8)),
           ("GlobalAveragePooling1D", {}, (7, 24))]


@pytest.mark.parametrize("type_id,params,shape", POOLING,
                         ids=[case_id(t, p, [s]) for t, p, s in POOLING])
def test_global_average_pooling_on_vectors(rt, ops, rng, type_id, params, shape):
    check_case(rt, ops, rng, type_id, params, [shape], 3)


def test_global_average_pooling_adds_to_an_input_gradient_already_there(rt, ops, rng):
    n, S, C = 3, 5, 16
    dy = to_dev(rt, rng.normal(size=(n, C)))
    fresh, added = to_dev(rt, np.zeros(n * S * C)), to_dev(rt, np.ones(n * S * C))
    for dx, acc in ((fresh, False), (added, True)):
        ops.global_pool_backward(dy, None, dx, n, S, C, True, accumulate=acc)
    want = from_dev(rt, fresh, (n, S, C))
    np.testing.assert_allclose(want, np.repeat(from_dev(rt, dy, (n, 1, C)) / S, S, 1),
                               rtol=1e-6)
    np.testing.assert_allclose(from_dev(rt, added, (n, S, C)), want + 1, rtol=1e-6)


RECURRENT = [("LSTM", {"units": 16, "return_sequences": True}, (4, 3)),
             ("LSTM", {"units": 8, "return_state": True}, (3, 5)),
             ("SimpleRNN", {"units": 8, "return_sequences": True}, (4, 3)),
             ("SimpleRNN", {"units": 16, "activation": "relu"}, (3, 2)),
             ("GRU", {"units": 8, "return_sequences": True}, (3, 4))]


@pytest.mark.parametrize("type_id,params,shape", RECURRENT,
                         ids=[case_id(t, p, [s]) for t, p, s in RECURRENT])
def test_recurrent_cells_on_vectors(rt, ops, rng, type_id, params, shape):
    check_case(rt, ops, rng, type_id, params, [shape], 3)
