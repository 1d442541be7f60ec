"""One harness for every registered layer (in the spirit of Keras' run_layer_test):
shape inference, config round-trip through the project file, forward against the layer's
float64 numpy reference, and input and weight gradients against central differences of that
reference, on odd sizes and batch size 1.

Tolerances: forward rtol 1e-5 / atol 1e-5 (fp32 with K up to 65 terms); gradients rtol 1e-3 /
atol 1e-4 against float64 central differences (eps 1e-6), the fp32 figures mature projects use."""
import numpy as np
import pytest

from conftest import from_dev, numeric_grad, to_dev  # noqa: F401  (used by the tests below)
from layerloom.backend.ops import Tensor
from layerloom.core.registry import layer_types
from layerloom.train.model import NodeStep
from layerloom.testing import case_id, check_case, graph_for, run_layer  # noqa: F401

# host layers (StringLookup, IntegerLookup, TextVectorization: strings or integers in, run in
# numpy before the device model) are skipped here, explicitly: a float64 harness on the device
# cannot feed them strings. tests/test_text_layers.py checks them against Keras' real layers.
HOST = [l.type_id for l in layer_types() if getattr(l, "host", False)]
CASES = [(layer.type_id, i, params, shapes) for layer in layer_types()
         if not layer.is_input and layer.type_id not in HOST
         for i, (params, shapes) in enumerate(layer.examples)]


def test_every_layer_has_examples():
    missing = [l.type_id for l in layer_types() if not l.is_input and not l.examples
               and l.type_id not in HOST]
    assert not missing


def test_host_layers_are_skipped_by_name_and_have_no_device_examples():
    """The skipped layers are the text layers, which say they are host layers and declare no
    device examples (their checks against Keras are tests/test_text_layers.py's)."""
    assert sorted(HOST) == ["IntegerLookup", "StartEndPacker", "StringLookup", "TextVectorization",
                            "WordPieceTokenizer"]
    from layerloom.core.registry import get_layer
    for t in HOST:
        assert not get_layer(t).examples and get_layer(t).no_form.get("onnx")


# the harness itself is public (engine/testing.py): a plugin layer is checked by the same code
_graph_for, _case_id = graph_for, case_id


@pytest.mark.parametrize("type_id,case,params,shapes", CASES,
                         ids=[_case_id(c[0], c[2], c[3]) for c in CASES])
@pytest.mark.parametrize("batch", [1, 3])
def test_layer(rt, ops, rng, type_id, case, params, shapes, batch):
    check_case(rt, ops, rng, type_id, params, shapes, batch)


def test_dropout_training_mode(rt, ops, rng):
    from layerloom.core.registry import get_layer
    layer = get_layer("Dropout")
    p = {"rate": 0.25, "seed": 0}
    x = rng.normal(size=(4, 1001))
    dy = rng.normal(size=x.shape)
    y, (dx,), _ = run_layer(rt, ops, layer, p, [x], {}, dy, training=True, step=7)
    mask = y != 0
    assert abs(mask.mean() - 0.75) < 0.03
    np.testing.assert_allclose(y[mask], x[mask] / 0.75, rtol=1e-5)
    np.testing.assert_allclose(dx, np.where(mask, dy / 0.75, 0.0), rtol=1e-5, atol=1e-7)
    y2, _, _ = run_layer(rt, ops, layer, p, [x], {}, dy, training=True, step=7)
    np.testing.assert_array_equal(y, y2)  # same seed and step: the same mask
    y3, _, _ = run_layer(rt, ops, layer, p, [x], {}, dy, training=False)
    np.testing.assert_allclose(y3, x, rtol=1e-6)  # identity at inference


def test_maximum_ties_go_to_the_first_input_even_without_its_gradient(rt, ops):
    """When input 0 takes no gradient (it comes from an Input node), elements where it holds the
    maximum still must not send gradient to a later input that ties with it."""
    from layerloom.core.registry import get_layer
    layer = get_layer("Maximum")
    a = np.array([[1.0, 5.0, 2.0]])
    b = np.array([[1.0, 3.0, 4.0]])  # ties with a at element 0
    dy = np.array([[10.0, 20.0, 30.0]])
    _, (da, db), _ = run_layer(rt, ops, layer, {}, [a, b], {}, dy)
    np.testing.assert_array_equal(da, [[10, 20, 0]])
    np.testing.assert_array_equal(db, [[0, 0, 30]])
    # and with input 0 not differentiated (dx None), input 1 still gets only element 2
    s_db = _pick_only_second(rt, ops, layer, a, b, dy)
    np.testing.assert_array_equal(s_db, [[0, 0, 30]])


def _pick_only_second(rt, ops, layer, a, b, dy):
    n = a.shape[0]
    s = NodeStep("m", {}, n=n, training=False,
                 x=[Tensor(to_dev(rt, v), v.shape[1:]) for v in (a, b)],
                 y=[Tensor(rt.empty(4 * a.size), a.shape[1:])],
                 scratch={k: Tensor(rt.empty(4 * a.size), sh)
                          for k, sh in layer.scratch({}, [a.shape[1:]] * 2).items()})
    layer.forward(ops, s)
    s.dy = [Tensor(to_dev(rt, dy), a.shape[1:])]
    s.dx = [None, Tensor(rt.empty(4 * b.size), b.shape[1:])]
    s.acc = [False, False]
    layer.backward(ops, s)
    return from_dev(rt, s.dx[1].buf, b.shape)


def test_batchnorm_inference_and_moving_statistics(rt, ops, rng):
    from layerloom.core.registry import get_layer
    layer = get_layer("BatchNormalization")
    p = {"axis": -1, "momentum": 0.9, "epsilon": 1e-3, "center": True, "scale": True}
    x = rng.normal(2.0, 3.0, size=(6, 4, 5))
    ws = {"gamma": rng.normal(size=5), "beta": rng.normal(size=5),
          "moving_mean": rng.normal(size=5), "moving_variance": rng.uniform(0.5, 2, 5)}
    dy = np.zeros_like(x)
    # inference: moving statistics, nothing updated
    y, _, _ = run_layer(rt, ops, layer, p, [x], ws, dy, training=False, backward=False)
    np.testing.assert_allclose(y, layer.reference(p, [x], ws, False)[0], rtol=1e-5, atol=1e-5)
    # training: batch statistics, and moving = 0.9 * moving + 0.1 * batch (biased variance)
    n = x.shape[0]
    s = NodeStep("bn", p, n=n, training=True, seed=0, step=0,
                 x=[Tensor(to_dev(rt, x), x.shape[1:])],
                 y=[Tensor(rt.empty(4 * x.size), x.shape[1:])],
                 w={k: Tensor(to_dev(rt, v), v.shape) for k, v in ws.items()},
                 scratch={k: Tensor(rt.empty(4 * int(np.prod(sh))), sh)
                          for k, sh in layer.scratch(p, [x.shape[1:]]).items()})
    layer.forward(ops, s)
    flat = x.reshape(-1, 5)
    np.testing.assert_allclose(from_dev(rt, s.w["moving_mean"].buf, (5,)),
                               0.9 * ws["moving_mean"] + 0.1 * flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(from_dev(rt, s.w["moving_variance"].buf, (5,)),
                               0.9 * ws["moving_variance"] + 0.1 * flat.var(0), rtol=1e-5)


def test_spatial_dropout_drops_whole_channels(rt, ops, rng):
    from layerloom.core.registry import get_layer
    layer = get_layer("SpatialDropout2D")
    p = {"rate": 0.4, "seed": 0}
    x = rng.uniform(1, 2, size=(50, 3, 4, 40))
    dy = rng.normal(size=x.shape)
    y, (dx,), _ = run_layer(rt, ops, layer, p, [x], {}, dy, training=True, step=2)
    kept = y != 0
    per_channel = kept.reshape(50, 12, 40)
    assert (per_channel.all(1) | ~per_channel.any(1)).all()  # a channel is all kept or all dropped
    assert abs(per_channel[:, 0, :].mean() - 0.6) < 0.05
    np.testing.assert_allclose(y[kept], x[kept] / 0.6, rtol=1e-5)
    np.testing.assert_allclose(dx, np.where(kept, dy / 0.6, 0), rtol=1e-5, atol=1e-7)


def test_gaussian_noise_statistics(rt, ops):
    from layerloom.core.registry import get_layer
    layer = get_layer("GaussianNoise")
    x = np.zeros((4, 50_001))
    y, (dx,), _ = run_layer(rt, ops, layer, {"stddev": 0.5, "seed": 3}, [x], {}, np.ones_like(x),
                            training=True, step=1)
    assert abs(y.mean()) < 0.01 and abs(y.std() - 0.5) < 0.01
    assert abs(((y / 0.5) ** 4).mean() - 3) < 0.1  # gaussian kurtosis
    y2, _, _ = run_layer(rt, ops, layer, {"stddev": 0.5, "seed": 3}, [x], {}, np.ones_like(x),
                         training=True, step=1)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(dx, np.ones_like(x))


def test_a_nodes_headline_typed_back_gives_its_parameters():
    """The Tab box takes "Dense 128 relu" as the node's face shows it: for every layer's
    examples, parsing the headline text gives back the headline's parameters."""
    from layerloom.core.graph import Graph
    from layerloom.core.registry import layer_types
    checked = 0
    for layer in layer_types():
        for params, _ in layer.examples:
            g = Graph()
            full = g.add_node(layer.type_id, params).params  # as validated
            text = layer.headline_text(full)
            if not text or any(q.name == "expression" for q in layer.params):
                continue  # nothing to type, or a formula with its own spaces
            got = layer.parse_headline(text.split())
            for name, value in got.items():
                want = full[name]
                assert list(np.ravel(value)) == list(np.ravel(want)), (layer.type_id, name)
            checked += 1
    assert checked > 20
