"""The Primitives category (engine/layers/primitives.py) beyond what the harness
(tests/test_layers.py, every layer's examples against its float64 reference and central
differences) and the interop tests check from the examples: RandomNormal's draws (training
keyed by seed and step, fresh at inference, the distribution), gradients added into a fan-out
(acc), Reduce max's gradient on ties, the shape errors' words, and the forms read back (ONNX's
MatMul of two tensors and RandomNormalLike; the Keras classes the export defines, Weight and
RandomNormal)."""
import os

import numpy as np
import pytest

from layerloom.core.registry import ShapeError, get_layer
from layerloom.testing import graph_for, run_layer

TOL = {"rtol": 1e-5, "atol": 1e-5}


# -- RandomNormal ---------------------------------------------------------------------------------
def test_random_normal_training_draws_follow_seed_and_step(rt, ops, rng):
    layer = get_layer("RandomNormal")
    p = {"mean": 2.0, "stddev": 3.0, "seed": 0}
    x = rng.normal(size=(4, 5001))
    dy = np.zeros_like(x)
    y1, (dx,), _ = run_layer(rt, ops, layer, p, [x], {}, dy, training=True, step=3)
    y2, _, _ = run_layer(rt, ops, layer, p, [x], {}, dy, training=True, step=3)
    y3, _, _ = run_layer(rt, ops, layer, p, [x], {}, dy, training=True, step=4)
    np.testing.assert_array_equal(y1, y2)  # the same seed and step: the same samples
    assert not np.allclose(y1, y3)
    assert dx is None  # differentiable False: the input gets no gradient
    n = y1.size
    assert abs(y1.mean() - 2.0) < 4 * 3.0 / np.sqrt(n)
    assert abs(y1.std() / 3.0 - 1) < 0.02
    # the draws are independent of the input's values
    y4, _, _ = run_layer(rt, ops, layer, p, [x * 0 + 7], {}, dy, training=True, step=3)
    np.testing.assert_array_equal(y1, y4)


def test_random_normal_draws_fresh_samples_at_inference(rt, ops, rng):
    layer = get_layer("RandomNormal")
    p = {"mean": 0.0, "stddev": 1.0, "seed": 0}
    x = np.zeros((2, 3000))
    a, _, _ = run_layer(rt, ops, layer, p, [x], {}, x, backward=False)
    b, _, _ = run_layer(rt, ops, layer, p, [x], {}, x, backward=False)
    assert not np.allclose(a, b) and abs(a.std() - 1) < 0.05
    # and its two halves of one batch are not the same draws
    assert not np.allclose(a[0], a[1])


# -- gradients into a fan-out (acc), ties -----------------------------------------------------------
@pytest.mark.parametrize("type_id,params,shapes", [
    ("MatMul", {"transpose_a": True}, [(4, 3), (4, 5)]),
    ("MatMul", {"transpose_b": True}, [(2, 3, 4), (2, 5, 4)]),
    ("Reduce", {"op": "max", "axis": 1}, [(3, 4)]),
    ("Reduce", {"op": "mean", "axis": -1}, [(3, 4)]),
    ("Slice", {"axis": -1, "start": 1, "stop": 3}, [(2, 5)]),
])
def test_a_gradient_adds_to_one_already_there(rt, ops, rng, type_id, params, shapes):
    """A fan-out: dx (+)= with acc, the same gradient as without plus what was there."""
    from layerloom.backend.ops import Tensor
    from layerloom.testing import _from_dev, _to_dev
    from layerloom.train.model import NodeStep
    layer = get_layer(type_id)
    g = graph_for(type_id, params, shapes)
    p = g.nodes["node"].params
    xs = [rng.normal(size=(3,) + sh) for sh in shapes]
    out = layer.output_shapes(p, [x.shape[1:] for x in xs])[0]
    dy = rng.normal(size=(3,) + out)
    _, plain, _ = run_layer(rt, ops, layer, p, xs, {}, dy)
    before = [rng.normal(size=x.shape) for x in xs]
    s = NodeStep("node", p, n=3, x=[Tensor(_to_dev(rt, x), x.shape[1:]) for x in xs],
                 y=[Tensor(rt.empty(4 * dy.size), out)])
    layer.forward(ops, s)
    s.dy = [Tensor(_to_dev(rt, dy), out)]
    s.dx = [Tensor(_to_dev(rt, b), b.shape[1:]) for b in before]
    s.acc = [True] * len(xs)
    layer.backward(ops, s)
    for d, b, want in zip(s.dx, before, plain):
        np.testing.assert_allclose(_from_dev(rt, d.buf, b.shape), b + want, **TOL)


def test_reduce_max_sends_the_gradient_to_the_first_maximum(rt, ops):
    layer = get_layer("Reduce")
    p = {"op": "max", "axis": -1, "keepdims": True}
    x = np.array([[1.0, 5.0, 5.0, 2.0], [3.0, 3.0, 3.0, 3.0]])
    y, (dx,), _ = run_layer(rt, ops, layer, p, [x], {}, np.array([[10.0], [20.0]]))
    np.testing.assert_array_equal(y, [[5], [3]])
    np.testing.assert_array_equal(dx, [[0, 10, 0, 0], [20, 0, 0, 0]])


# -- shape errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("type_id,params,shapes,words", [
    ("MatMul", {}, [(3, 4), (5, 6)], "a has 4 columns but b has 5 rows"),
    ("MatMul", {"transpose_b": True}, [(3, 4), (4, 6)], "b transposed has 6 rows"),
    ("MatMul", {}, [(2, 3, 4), (3, 4, 5)], "the same leading axes"),
    ("MatMul", {}, [(4,), (4, 2)], "at least 2 axes"),
    ("Reduce", {"axis": 0}, [(3, 4)], "0 is the batch"),
    ("Reduce", {"axis": 3}, [(3, 4)], "axis 3 is not an axis of the input (None, 3, 4)"),
    ("Reduce", {"axis": -1}, [(5,)], "set keepdims"),
    ("Slice", {"axis": 1, "start": 3, "stop": 2}, [(4, 2)], "is empty on axis 1 of 4"),
    ("Slice", {"axis": -1, "start": 7}, [(4, 2)], "start 7 to stop the end is empty"),
])
def test_shape_errors_say_what_does_not_fit(type_id, params, shapes, words):
    layer = get_layer(type_id)
    p = {**layer.defaults(), **params}
    with pytest.raises(ShapeError) as e:
        layer.output_shapes(p, shapes)
    assert words in str(e.value)
    # and the graph places it on the node
    problems = graph_for(type_id, params, shapes).validate()
    assert problems and any(words in str(x) for x in problems)


# -- forms read back ----------------------------------------------------------------------------------
def test_onnx_matmul_of_two_tensors_and_random_normal_like_read_back():
    onnx = pytest.importorskip("onnx")
    from layerloom.core.graph import Graph
    from layerloom.interop import onnx_export, onnx_import
    from layerloom.project import loom
    g = Graph()
    g.add_node("Input", {"shape": [3, 4]}, id="a")
    g.add_node("Input", {"shape": [5, 4]}, id="b")
    g.add_node("MatMul", {"transpose_b": True}, id="mm")
    g.add_node("RandomNormal", {"mean": 0.5, "stddev": 0.25, "seed": 3}, id="noise")
    g.add_node("Add", {}, id="out")
    g.connect("a", 0, "mm", 0)
    g.connect("b", 0, "mm", 1)
    g.connect("mm", 0, "noise", 0)
    g.connect("mm", 0, "out", 0)
    g.connect("noise", 0, "out", 1)
    model = onnx_export.to_onnx(loom.Project(g), {})
    ops = [n.op_type for n in model.graph.node]
    assert "RandomNormalLike" in ops and "MatMul" in ops
    back = onnx_import.from_model(onnx.load_from_string(model.SerializeToString()))
    types = {n.type: n.params for n in back.project.graph.nodes.values()}
    assert types["MatMul"] == {"transpose_a": False, "transpose_b": True}
    assert types["RandomNormal"]["mean"] == 0.5
    assert types["RandomNormal"]["stddev"] == 0.25


def test_onnx_matmul_with_a_constant_operand_is_still_a_dense():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from layerloom.interop import onnx_import
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="dense")],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                  ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    back = onnx_import.from_model(model)
    assert sorted(n.type for n in back.project.graph.nodes.values()) == ["Dense", "Input"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_keras_weight_and_random_normal_export_and_import_back(tmp_path, rng):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch")
    pytest.importorskip("keras")
    from layerloom.core.graph import Graph
    from layerloom.interop import export, keras_import
    from layerloom.project import loom
    g = Graph()
    g.add_node("Input", {"shape": [3, 4]}, id="x")
    g.add_node("Weight", {"shape": [3, 4], "initializer": "ones"}, id="scale")
    g.add_node("Multiply", {}, id="scaled")
    g.add_node("RandomNormal", {"mean": 0.0, "stddev": 0.5, "seed": 7}, id="noise")
    g.add_node("Add", {}, id="out")
    for a, b, port in (("x", "scale", 0), ("x", "scaled", 0), ("scale", "scaled", 1),
                       ("scaled", "noise", 0), ("scaled", "out", 0), ("noise", "out", 1)):
        g.connect(a, 0, b, port)
    p = loom.Project(g, training={**loom.default_training(), "loss": {"out": {"name": "mean_squared_error"}}})
    ws = {"scale/weight": rng.normal(size=(3, 4)).astype(np.float32)}
    path = str(tmp_path / "m.keras")
    export(p, ws, path)
    back, back_ws = keras_import.read(path)
    types = {nid: n.type for nid, n in back.graph.nodes.items()}
    assert types["scale"] == "Weight" and types["noise"] == "RandomNormal"
    assert back.graph.nodes["scale"].params["shape"] == (3, 4)
    assert back.graph.nodes["noise"].params["stddev"] == 0.5
    np.testing.assert_array_equal(back_ws["scale/weight"], ws["scale/weight"])


def test_a_learnable_scale_is_a_weight_broadcast_by_multiply(rng):
    """Issue 30, item 2's 'learnable scale' (ConvNeXt's LayerScale): Weight [1, C] times an
    (T, C) input, by Multiply's broadcast: the forward is x * gamma per channel, and training
    moves gamma."""
    from layerloom import api
    from layerloom.core.graph import Graph
    from layerloom.project.loom import Project
    g = Graph()
    g.add_node("Input", {"shape": [5, 8]}, id="x")
    g.add_node("Weight", {"shape": [1, 8], "initializer": "ones"}, id="gamma")
    g.add_node("Multiply", {}, id="scaled")
    g.add_node("Flatten", {}, id="flat")
    g.add_node("Dense", {"units": 1}, id="out")
    g.connect("x", 0, "gamma", 0)
    g.connect("x", 0, "scaled", 0)
    g.connect("gamma", 0, "scaled", 1)
    g.connect("scaled", 0, "flat", 0)
    g.connect("flat", 0, "out", 0)
    assert not g.validate() and g.analysis().params["gamma"].total == 8
    p = Project(g)
    p.training.update({"loss": {"out": {"name": "mean_squared_error"}}, "metrics": [],
                       "batch_size": 8,
                       "optimizer": {"name": "adam", "params": {"learning_rate": 0.05}}})
    model = api.Model(p)
    x = rng.normal(size=(32, 5, 8)).astype(np.float32)
    y = (x * np.linspace(0.5, 2, 8)).sum(axis=(1, 2))[:, None].astype(np.float32)
    w = model.session.model.get_weights()
    gamma = rng.normal(size=(1, 8)).astype(np.float32)
    key = next(k for k in w if k.startswith("gamma/"))  # the Weight's one tensor
    model.session.model.set_weights({**w, key: gamma})
    scaled = model.session.model.predict({"x": x[:4]})  # the graph's output: out
    want = (x[:4] * gamma).reshape(4, -1) @ w["out/kernel"] + w["out/bias"]
    np.testing.assert_allclose(np.asarray(scaled["out"] if isinstance(scaled, dict)
                                          else scaled), want, rtol=1e-5, atol=1e-5)
    model.fit(x, y, epochs=3, verbose=False)
    assert not np.allclose(model.get_weights()[key], gamma)
