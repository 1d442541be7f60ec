"""The direct convolution kernels (clkernels/conv_direct.cl) for few channels: forward with its
epilogue, the kernel gradient as a direct reduction and the input gradient as a stride-1
transposed convolution, each against a float64 numpy reference, in the device's vector form and
the narrower forms a GPU runs (vector width 4, and 1: a filter per lane); and the plan that
picks them per shape (engine/backend/conv_ops.py conv_plan), through the Conv2D layer."""
import numpy as np
import pytest

from conftest import from_dev, to_dev
from layerloom.backend.conv_ops import DIRECT_CONV
from layerloom.core.registry import get_layer

CONV = get_layer("Conv2D")


def reference(x, w, g, dy):
    """Forward, kernel gradient and input gradient of a convolution, float64, by taps over the
    padded input."""
    x, w, dy = (np.asarray(a, np.float64) for a in (x, w, dy))
    n = x.shape[0]
    eh = max((g.OH - 1) * g.SH + (g.KH - 1) * g.DH + 1 - g.H - g.PT, 0)
    ew = max((g.OW - 1) * g.SW + (g.KW - 1) * g.DW + 1 - g.W - g.PL, 0)
    xp = np.pad(x, [(0, 0), (g.PT, eh), (g.PL, ew), (0, 0)])
    dxp = np.zeros_like(xp)
    y = np.zeros((n, g.OH, g.OW, w.shape[-1]))
    dw = np.zeros_like(w)
    for kh in range(g.KH):
        for kw in range(g.KW):
            sl = (slice(None), slice(kh * g.DH, kh * g.DH + (g.OH - 1) * g.SH + 1, g.SH),
                  slice(kw * g.DW, kw * g.DW + (g.OW - 1) * g.SW + 1, g.SW))
            y += xp[sl] @ w[kh, kw]
            dw[kh, kw] = np.einsum("bhwc,bhwf->cf", xp[sl], dy)
            dxp[sl] += dy @ w[kh, kw].T
    return y, dw, dxp[:, g.PT:g.PT + g.H, g.PL:g.PL + g.W]


def case(rng, params, shape, n):
    """A convolution's geometry, filters, input, kernel and output gradient, random."""
    g = CONV.geometry(_full(params), shape)
    F = params["filters"]
    x = rng.standard_normal((n,) + shape).astype(np.float32)
    w = rng.standard_normal((g.KH, g.KW, g.C, F)).astype(np.float32)
    dy = rng.standard_normal((n, g.OH, g.OW, F)).astype(np.float32)
    return g, F, x, w, dy


GEOMETRIES = [  # (params, input shape): ragged sizes, strides 2, valid/same/explicit padding
    ({"filters": 16, "kernel_size": [3, 3], "padding": "same"}, (9, 11, 16)),
    ({"filters": 16, "kernel_size": [3, 3], "padding": "same"}, (7, 13, 1)),
    ({"filters": 8, "kernel_size": [3, 3], "padding": "valid"}, (10, 9, 8)),
    ({"filters": 32, "kernel_size": [3, 3], "padding": "same", "strides": [2, 2]}, (9, 10, 3)),
    ({"filters": 12, "kernel_size": [5, 5], "padding": "valid", "strides": [2, 1]}, (11, 12, 4)),
    ({"filters": 4, "kernel_size": [3, 2], "padding": [[0, 2], [1, 0]],
      "dilation_rate": [1, 2]}, (6, 7, 2)),
    ({"filters": 3, "kernel_size": [3, 3], "padding": [[2, 1], [1, 2]]}, (5, 6, 5)),
    ({"filters": 2, "kernel_size": [2, 3], "padding": "same", "strides": [2, 2]}, (7, 5, 6)),
    ({"filters": 24, "kernel_size": [3, 3], "padding": "same", "dilation_rate": [2, 2]},
     (8, 8, 12)),
]


@pytest.fixture(params=[None, 4, 1], ids=["device_vw", "vw4", "vw1"])
def form(ops, request):
    """The direct kernels' vector width: the device's, or the narrower forms (a GPU's)."""
    old = ops.direct_vw
    ops.direct_vw = request.param
    yield ops
    ops.direct_vw = old


@pytest.mark.parametrize("params,shape", GEOMETRIES,
                         ids=[f"{p['filters']}f{p['kernel_size']}{p['padding']}<-{s}"
                              .replace(" ", "") for p, s in GEOMETRIES])
def test_direct_kernels_against_float64(rt, form, rng, params, shape):
    ops = form
    n = 3
    g, F, x, w, dy = case(rng, params, shape, n)
    b = rng.standard_normal(F).astype(np.float32)
    y_ref, dw_ref, dx_ref = reference(x, w, g, dy)
    xd, wd, bd, dyd = (to_dev(rt, a) for a in (x, w, b, dy))
    assert ops._direct_vector(F) is not None
    # forward, bias and ReLU in the epilogue; then accumulating onto what is there
    y = rt.empty(4 * dy.size)
    ops.conv_direct(xd, wd, y, n, g, F, bias=bd, act="relu")
    np.testing.assert_allclose(from_dev(rt, y, dy.shape), np.maximum(y_ref + b, 0),
                               rtol=1e-5, atol=1e-4)
    ops.conv_direct(xd, wd, y, n, g, F, accumulate=True)
    np.testing.assert_allclose(from_dev(rt, y, dy.shape), np.maximum(y_ref + b, 0) + y_ref,
                               rtol=1e-5, atol=1e-4)
    # the kernel gradient
    dw = rt.empty(4 * w.size)
    ops.conv_direct_dw(xd, dyd, dw, n, g, F)
    np.testing.assert_allclose(from_dev(rt, dw, w.shape), dw_ref, rtol=1e-5, atol=1e-3)
    # the input gradient: stride 1 only, written and accumulated
    if g.SH == g.SW == 1 and ops._direct_vector(g.C) is not None:
        dx = to_dev(rt, np.full(x.shape, 0.5, np.float32))
        ops.conv_direct_dx(dyd, wd, dx, n, g, F, accumulate=True)
        np.testing.assert_allclose(from_dev(rt, dx, x.shape), dx_ref + 0.5, rtol=1e-5,
                                   atol=1e-4)
        ops.conv_direct_dx(dyd, wd, dx, n, g, F)
        np.testing.assert_allclose(from_dev(rt, dx, x.shape), dx_ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("F", [6, 3])
def test_input_gradient_of_filters_without_a_vector_form(rt, form, rng, F):
    # 4 channels in, 6 filters: the input gradient runs directly (its outputs, the channels,
    # are whole vectors) while the filters have no vector form; flipping their kernel had
    # asked for one and failed with a TypeError in the backward pass
    ops = form
    params, shape = {"filters": F, "kernel_size": [3, 3], "padding": "same"}, (6, 7, 4)
    n = 2
    g, F, x, w, dy = case(rng, params, shape, n)
    if not ops.conv_plan(g, F).dx:
        pytest.skip("this form runs the input gradient on the GEMM")
    _, _, dx_ref = reference(x, w, g, dy)
    dx = rt.empty(4 * x.size)
    ops.conv_direct_dx(to_dev(rt, dy), to_dev(rt, w), dx, n, g, F)
    np.testing.assert_allclose(from_dev(rt, dx, x.shape), dx_ref, rtol=1e-5, atol=1e-4)


ONE_CHANNEL = [  # (params, input shape) with one input channel: padding, strides, dilation
    ({"filters": 16, "kernel_size": [3, 3], "padding": "same"}, (7, 13, 1)),
    ({"filters": 32, "kernel_size": [3, 3], "padding": "valid", "strides": [2, 2]}, (9, 10, 1)),
    ({"filters": 8, "kernel_size": [3, 2], "padding": [[0, 2], [1, 0]],
      "dilation_rate": [1, 2]}, (6, 7, 1)),
    ({"filters": 12, "kernel_size": [1, 3], "padding": "same"}, (5, 9, 1)),
]


@pytest.mark.parametrize("params,shape", ONE_CHANNEL,
                         ids=[f"{p['filters']}f{p['kernel_size']}<-{s}".replace(" ", "")
                              for p, s in ONE_CHANNEL])
def test_one_channel_kernel_and_bias_gradients(rt, form, rng, params, shape):
    # conv_direct_dw1: every tap of a block of filters in one work-item, and the bias's
    # gradient beside them (forced on where the form's registers would leave it to the
    # general kernel, so each form's code is checked)
    ops = form
    n = 3
    g, F, x, w, dy = case(rng, params, shape, n)
    _, dw_ref, _ = reference(x, w, g, dy)
    old = ops.dw1
    ops.dw1 = True
    try:
        assert ops._dw1_defines(g, F) is not None
        dw, db = rt.empty(4 * w.size), rt.empty(4 * F)
        assert ops.conv_direct_dw(to_dev(rt, x), to_dev(rt, dy), dw, n, g, F, db=db)
        np.testing.assert_allclose(from_dev(rt, dw, w.shape), dw_ref, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(from_dev(rt, db, (F,)), dy.astype(np.float64).sum((0, 1, 2)),
                                   rtol=1e-5, atol=1e-3)
        # an empty batch: zeros, the bias's too
        assert ops.conv_direct_dw(to_dev(rt, x), to_dev(rt, dy), dw, 0, g, F, db=db)
        assert not from_dev(rt, dw, w.shape).any() and not from_dev(rt, db, (F,)).any()
    finally:
        ops.dw1 = old


def test_one_channel_layer_trains_the_bias_once(rt, rng):
    # the layer's backward leaves the bias to the one-channel kernel where it runs, and to
    # bias_grad elsewhere: the same gradients as the float64 reference either way
    from layerloom.core.graph import Graph
    from layerloom.train.model import Model
    g = Graph()
    g.add_node("Input", {"shape": [8, 9, 1]}, id="x")
    g.add_node("Conv2D", {"filters": 16, "kernel_size": [3, 3]}, id="c")
    g.connect("x", 0, "c", 0)
    m = Model(g, rt, batch_size=4, seed=2)
    xs = rng.standard_normal((4, 8, 9, 1)).astype(np.float32)
    m.load_inputs({"x": xs})
    m.forward(4, training=True)
    dy = rng.standard_normal((4, 6, 7, 16)).astype(np.float32)
    rt.write(m.grad[("c", 0)].buf, dy)
    m.backward(4)
    rt.finish()
    grads = {p.key: rt.read(p.dw.buf, int(np.prod(p.spec.shape)), p.spec.shape)
             for p in m.params}
    w = m.get_weights()["c/kernel"]
    geo = CONV.geometry(_full({"filters": 16, "kernel_size": [3, 3]}), (8, 9, 1))
    _, dw_ref, _ = reference(xs, w, geo, dy)
    np.testing.assert_allclose(grads["c/kernel"], dw_ref, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(grads["c/bias"], dy.astype(np.float64).sum((0, 1, 2)),
                               rtol=1e-5, atol=1e-3)


def _full(params):
    """Conv2D's parameters with its defaults for those a case leaves out."""
    full = {q.name: q.default for q in CONV.params}
    full.update(params)
    return full


def test_kernel_gradient_of_an_empty_batch_is_zero(rt, ops):
    g = CONV.geometry(_full({"filters": 8, "kernel_size": [3, 3]}), (5, 5, 4))
    dw = to_dev(rt, np.ones((3, 3, 4, 8), np.float32))
    ops.conv_direct_dw(ops._dummy, ops._dummy, dw, 0, g, 8)
    assert not from_dev(rt, dw, (3, 3, 4, 8)).any()


def test_plan_per_shape(ops, monkeypatch):
    monkeypatch.setattr(ops, "direct_conv", {"forward": 16, "dw": 16, "dx": 16})
    monkeypatch.setattr(ops, "direct_vw", 16)
    few = CONV.geometry(_full({"filters": 16, "kernel_size": [3, 3], "padding": "same"}),
                        (28, 28, 16))
    assert ops.conv_plan(few, 16) == (True, True, True)
    many = CONV.geometry(_full({"filters": 16, "kernel_size": [3, 3]}), (28, 28, 64))
    assert ops.conv_plan(many, 16) == (False, False, True)  # dX reduces over the 16 filters
    assert ops.conv_plan(few, 64) == (True, True, False)
    strided = CONV.geometry(_full({"filters": 16, "kernel_size": [3, 3], "strides": [2, 2]}),
                            (28, 28, 8))
    assert ops.conv_plan(strided, 16) == (True, True, False)  # dX directly at stride 1 only
    one = CONV.geometry(_full({"filters": 16, "kernel_size": [1, 1]}), (28, 28, 8))
    assert ops.conv_plan(one, 16) == (False, False, False)  # a GEMM on the input itself
    assert ops.conv_plan(few, 10) == (False, False, True)  # 10 filters: no whole vectors
    assert ops.conv_plan(few, 16, groups=2) == (False, False, False)
    first = CONV.geometry(_full({"filters": 16, "kernel_size": [3, 3]}), (28, 28, 3))
    assert ops.conv_plan(first, 16) == (True, True, False)  # dX of 3 channels: scalar, no
    monkeypatch.setenv("LAYERLOOM_DIRECT_CONV", "0")
    assert ops.conv_plan(few, 16) == (False, False, False)
    monkeypatch.delenv("LAYERLOOM_DIRECT_CONV")
    monkeypatch.setattr(ops, "direct_conv", {"forward": 16, "dw": 16, "dw_filters": 32,
                                             "dx": 16})
    # 64 filters' kernel gradient on the GEMM, and so the forward pass, which writes its columns
    assert ops.conv_plan(few, 64) == (False, False, False)
    monkeypatch.setattr(ops, "direct_conv", {"forward": 0, "dw": 0, "dx": 0})
    assert ops.conv_plan(few, 16) == (False, False, False)


def test_cpu_rule_is_data():
    assert set(DIRECT_CONV["cpu"]) == {"forward", "dw", "dw_filters", "dx"}


@pytest.mark.parametrize("rule", [{"forward": 16, "dw": 16, "dx": 16},
                                  {"forward": 0, "dw": 0, "dx": 16},
                                  {"forward": 0, "dw": 16, "dx": 0}],
                         ids=["all_direct", "dx_only", "dw_only"])
def test_layer_with_each_plan_matches_reference(rt, ops, rng, monkeypatch, rule):
    """Conv2D through the layer (NodeStep), with the passes mixed between the direct kernels
    and im2col + GEMM."""
    from test_layers import run_layer
    monkeypatch.setattr(ops, "direct_conv", rule)
    params = _full({"filters": 8, "kernel_size": [3, 3], "padding": "same",
                    "activation": "tanh"})
    shape, n = (6, 7, 4), 2
    g = CONV.geometry(params, shape)
    x = rng.standard_normal((n,) + shape).astype(np.float32)
    w = rng.standard_normal((3, 3, 4, 8)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    dy = rng.standard_normal((n, g.OH, g.OW, 8)).astype(np.float32)
    y, dxs, dws = run_layer(rt, ops, CONV, params, [x], {"kernel": w, "bias": b}, dy)
    z, dw_ref, _ = reference(x, w, g, np.ones_like(dy))
    z = z + b
    np.testing.assert_allclose(y, np.tanh(z), rtol=1e-5, atol=1e-5)
    dz = dy * (1 - np.tanh(z) ** 2)
    _, dw_ref, dx_ref = reference(x, w, g, dz)
    np.testing.assert_allclose(dws["kernel"], dw_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dws["bias"], dz.sum((0, 1, 2)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dxs[0], dx_ref, rtol=1e-4, atol=1e-4)
