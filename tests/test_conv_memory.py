"""A convolution's columns by its device's plan (engine/layers/convolution.py _columns): a pass
the direct kernels run allocates none, the forward's columns are kept only for a GEMM kernel
gradient, and the rest share one buffer per model at the largest size. Counted in bytes the
model really allocates (Runtime.empty), against core/memory.py's estimate and a count by hand;
the model's gradients with shared columns against a float64 reference."""
import numpy as np
import pytest

from layerloom.backend.conv_ops import DIRECT_DEFAULT
from layerloom.backend.ops import Ops
from layerloom.core.graph import Graph
from layerloom.core.memory import memory_needed
from layerloom.train.model import Model

ALL_DIRECT = {"forward": 32, "dw": 32, "dw_filters": 32, "dx": 32}


def _chain(*convs, shape=(10, 10, 8)):
    g = Graph()
    ids = [g.add_node("Input", {"shape": list(shape)}).id]
    for p in convs:
        ids.append(g.add_node("Conv2D", dict({"kernel_size": [3, 3]}, **p)).id)
    ids.append(g.add_node("Flatten", {}).id)
    for a, b in zip(ids, ids[1:]):
        g.connect(a, 0, b, 0)
    return g, ids


def _allocated(rt, monkeypatch, g, batch, rule):
    """(bytes the model allocated, the model), with `rule` as the device's DIRECT_CONV entry."""
    monkeypatch.setattr(Ops, "direct_conv", rule)
    sizes = []
    real = rt.empty
    monkeypatch.setattr(rt, "empty", lambda nbytes: sizes.append(int(nbytes)) or real(nbytes))
    model = Model(g, rt, batch_size=batch)
    monkeypatch.setattr(rt, "empty", real)
    return sum(sizes) - 4, model  # less the ops' 4-byte dummy


def _optimizer_slots(model):
    return sum(2 * 4 * int(np.prod(p.spec.shape)) for p in model.params if p.dw is not None)


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("rule", [ALL_DIRECT, DIRECT_DEFAULT], ids=["direct", "gemm"])
def test_the_estimate_is_what_the_model_allocates(rt, monkeypatch, rule, frozen):
    """frozen: the first convolution frozen, so nothing before the second trains: neither its
    output's gradient nor its backward's columns are allocated, its forward's are shared."""
    g, ids = _chain({"filters": 8, "padding": "same"}, {"filters": 16, "strides": [2, 2]},
                    {"filters": 8, "kernel_size": [1, 1]})
    g.nodes[ids[1]].trainable = not frozen
    got, model = _allocated(rt, monkeypatch, g, 4, rule)
    assert memory_needed(g, 4, ops=model.ops)[0] == got + _optimizer_slots(model)
    # with no device known the estimate is the most any device allocates
    assert memory_needed(g, 4)[0] >= got + _optimizer_slots(model)


def test_a_direct_plan_allocates_no_columns_and_the_rest_share_one_buffer(rt, monkeypatch):
    """Input 10x10x8 -> Conv 8 3x3 same -> Conv 8 3x3 same -> Flatten at batch 4, by hand: with
    every pass direct no columns at all; on the GEMM path the first convolution (no gradient
    to its input) keeps its forward columns for its kernel gradient, the second keeps its own,
    and the second's input-gradient columns are one shared buffer."""
    g, ids = _chain({"filters": 8, "padding": "same"}, {"filters": 8, "padding": "same"})
    B, cols = 4, 4 * 4 * 10 * 10 * 9 * 8
    direct, m = _allocated(rt, monkeypatch, g, B, ALL_DIRECT)
    assert m.ops.conv_plan(m.steps[2][1].geometry(g.nodes[ids[2]].params, (10, 10, 8)), 8) \
        == (True, True, True)
    gemm, _ = _allocated(rt, monkeypatch, g, B, DIRECT_DEFAULT)
    assert gemm - direct == 3 * cols
    for _, _, s in m.steps:
        assert not {"cols", "dcols"} & set(s.scratch)


def test_convolutions_share_the_largest_column_buffer_once(rt, monkeypatch):
    """Three GEMM-path convolutions of different column sizes, every one passing a gradient
    back: the input-gradient columns take one buffer of the largest size, not three."""
    g, ids = _chain({"filters": 8, "kernel_size": [1, 1]},  # a 1x1: reads its input, no columns
                    {"filters": 8, "padding": "same"}, {"filters": 8, "kernel_size": [5, 5]},
                    {"filters": 8, "padding": "valid"})
    B = 2
    k = [None, 10 * 10 * 9 * 8, 6 * 6 * 25 * 8, 4 * 4 * 9 * 8]  # per sample, by hand
    got, m = _allocated(rt, monkeypatch, g, B, DIRECT_DEFAULT)
    bufs = {}
    for nid, _, s in m.steps:
        for name in ("cols", "dcols"):
            if name in s.scratch:
                bufs.setdefault(name, set()).add(s.scratch[name].buf.int_ptr)
    assert len(bufs["dcols"]) == 1 and len(bufs["cols"]) == 3
    direct, _ = _allocated(rt, monkeypatch, g, B, ALL_DIRECT)
    assert got - direct == 4 * B * (sum(k[1:]) + max(k[1:]))


def _grouped_reference(x, w, g, dy, groups):
    """test_conv_direct's float64 reference (y, dW, dX) per group of channels and filters."""
    from test_conv_direct import reference
    Cg, Fg = x.shape[-1] // groups, w.shape[-1] // groups
    parts = [reference(x[..., j * Cg:(j + 1) * Cg], w[..., j * Fg:(j + 1) * Fg],
                       g._replace(C=Cg), dy[..., j * Fg:(j + 1) * Fg]) for j in range(groups)]
    return tuple(np.concatenate(t, axis=-1) for t in zip(*parts))


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("rule", [ALL_DIRECT, DIRECT_DEFAULT], ids=["direct", "gemm"])
def test_gradients_through_shared_columns_match_float64(rt, monkeypatch, rule, groups):
    """Three convolutions whose input-gradient columns (and a grouped one's output buffer)
    are one shared buffer, the first's forward columns its own: the model's output and every
    kernel gradient against float64."""
    from layerloom.core.registry import get_layer
    g, ids = _chain(*({"filters": 8, "padding": pad, "use_bias": False, "groups": groups}
                      for pad in ("same", "valid", "same")), shape=(7, 9, 8))
    B = 3
    _, m = _allocated(rt, monkeypatch, g, B, rule)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((B, 7, 9, 8)).astype(np.float32)
    ws = {p.key: p for p in m.params}
    shape = (3, 3, 8 // groups, 8)
    kernels = [rt.read(ws[f"{nid}/kernel"].w.buf, int(np.prod(shape)), shape)
               for nid in ids[1:4]]
    m.load_inputs({ids[0]: x})
    m.forward(B, training=True)
    acts, geoms = [x.astype(np.float64)], []
    for w, nid in zip(kernels, ids[1:4]):
        geoms.append(get_layer("Conv2D").geometry(g.nodes[nid].params, acts[-1].shape[1:]))
        zeros = np.zeros((B, geoms[-1].OH, geoms[-1].OW, 8))
        acts.append(_grouped_reference(acts[-1], w, geoms[-1], zeros, groups)[0])
    out = m.output(ids[-1])
    y = rt.read(out.buf, B * out.size, (B, out.size))
    np.testing.assert_allclose(y, acts[-1].reshape(B, -1), rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    rt.write(m.grad[(ids[-1], 0)].buf, dy, blocking=True)
    m.backward(B)
    d = dy.astype(np.float64).reshape(acts[-1].shape)
    for i in (2, 1, 0):
        _, dw, dx = _grouped_reference(acts[i], kernels[i], geoms[i], d, groups)
        got = ws[f"{ids[i + 1]}/kernel"].dw
        np.testing.assert_allclose(rt.read(got.buf, dw.size, dw.shape), dw, rtol=1e-3, atol=1e-3)
        d = dx


@pytest.mark.parametrize("rule", [ALL_DIRECT, DIRECT_DEFAULT], ids=["direct", "gemm"])
def test_the_prebuild_holds_the_convolution_programs_a_step_builds(rt, tmp_path, monkeypatch,
                                                                   rule):
    """layer_programs (the CLI's start-up prebuild) lists exactly the convolution programs a
    training step of the model then builds, by the device's plan: after it, the step builds
    none of them; without it, the step builds each."""
    from layerloom.backend.runtime import Runtime
    from layerloom.train.model import layer_programs
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(Ops, "direct_conv", rule)
    g, ids = _chain({"filters": 16, "padding": "same", "activation": "relu"},
                    {"filters": 16, "padding": "same", "activation": "relu"},
                    {"filters": 8, "strides": [2, 2]}, shape=(12, 12, 1))
    conv = lambda builds: {b.what for b in builds if b.what.startswith(  # noqa: E731
        ("vector+activations+conv.cl", "vector+activations+conv_direct.cl"))}
    built = []
    for prebuild in (True, False):
        runtime = Runtime(rt.device, capabilities=rt.caps)
        specs = layer_programs(g, Ops(runtime)) if prebuild else []
        runtime.prebuild(specs)
        runtime.wait_for_builds()
        ahead = len(runtime.builds)
        assert ahead == len(specs)
        model = Model(g, runtime, batch_size=2)
        model.load_inputs({ids[0]: np.ones((2, 12, 12, 1), np.float32)})
        model.forward(2, training=True)
        model.backward(2)
        runtime.finish()
        built.append((conv(runtime.builds[:ahead]), conv(runtime.builds[ahead:])))
    (before, after), (_, cold) = built
    assert after == set() and before == cold and len(cold) >= 3
