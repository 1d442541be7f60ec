"""Activations beyond the harness (tests/test_layers.py runs every example against the float64
references): each entry of the activation table against Keras' own function on the same inputs,
the Activation category's layers (ReLU, LeakyReLU, PReLU, ELU, Softmax) against Keras' layers
through a saved .keras file read back, ONNX's activation operators read back as those layers and
checked against onnxruntime, the elementwise kernels' GPU form (one element per work-item), and
what is refused, by name."""
import os
import re

import numpy as np
import pytest

from conftest import ew_widths, numeric_grad
from layerloom.core.activations import ALIASES, NAMES, REFERENCE
from layerloom.core.errors import LayerloomError
from layerloom.core.graph import Graph
from layerloom.core.registry import get_layer
from layerloom.train.model import Model
from test_layers import run_layer

TOL = 1e-5
# Keras' own warnings about numpy 2's __array__ protocol, not ours
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _activation_graph(act, shape):
    g = Graph()
    g.add_node("Input", {"shape": list(shape)}, id="x")
    g.add_node("Activation", {"activation": act}, id="node")
    g.connect("x", 0, "node", 0)
    return g


def _inputs(rng, shape):
    """Values over the activations' interesting ranges: the kinks of the hard ones at +-3,
    saturation and large arguments out to +-12, and random ones."""
    n = int(np.prod(shape))
    x = np.concatenate([np.linspace(-12.0, 12.0, n // 2), rng.normal(scale=3.0, size=n - n // 2)])
    return x.reshape(shape).astype(np.float32)


def _keras_activation(keras, name):
    if name == "gelu_tanh":  # Keras names the tanh form only by its argument
        return lambda x: keras.activations.gelu(x, approximate=True)
    return keras.activations.get(name)


@pytest.mark.parametrize("act", NAMES)
def test_each_activation_is_keras_own(rt, rng, act):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    x = _inputs(rng, (6, 40))
    got = Model(_activation_graph(act, (40,)), rt, 6).predict({"x": x})["node"]
    want = np.asarray(keras.ops.convert_to_numpy(_keras_activation(keras, act)(x)))
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


def test_keras_aliases_name_the_same_activation():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    x = np.linspace(-5, 5, 41).astype(np.float32)
    for alias, name in ALIASES.items():
        a = keras.ops.convert_to_numpy(keras.activations.get(alias)(x))
        np.testing.assert_allclose(a, REFERENCE[name](x.astype(np.float64)), rtol=1e-6,
                                   atol=1e-6)
    assert ALIASES["hard_swish"] == "hard_silu" and ALIASES["swish"] == "silu"


# -- the layers against Keras' layers, through a .keras file read back -----------------------------
KERAS_LAYERS = [
    ("ReLU", {}, (5, 3)),
    ("ReLU", {"max_value": 6.0}, (5, 3)),
    ("ReLU", {"max_value": 1.5, "negative_slope": 0.1, "threshold": 0.4}, (5, 3)),
    ("ReLU", {"negative_slope": 0.25}, (5, 3)),
    ("ReLU", {"threshold": 0.5}, (5, 3)),
    ("LeakyReLU", {}, (4, 4)),
    ("LeakyReLU", {"negative_slope": 0.05}, (4, 4)),
    ("ELU", {"alpha": 0.5}, (4, 4)),
    ("PReLU", {}, (3, 4, 2)),
    ("PReLU", {"shared_axes": [1, 2]}, (3, 4, 2)),
    ("PReLU", {"shared_axes": [2]}, (3, 4, 2)),
    ("Softmax", {}, (3, 5)),
    ("Softmax", {"axis": 1}, (3, 5)),
    ("Softmax", {"axis": -2}, (2, 3, 4)),
]


@pytest.mark.parametrize("cls,kwargs,shape", KERAS_LAYERS,
                         ids=[f"{c}{k}" for c, k, _ in KERAS_LAYERS])
def test_keras_layers_come_in_as_the_layers_and_predict_what_keras_does(tmp_path, rng, cls,
                                                                        kwargs, shape):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    import layerloom
    from layerloom.interop import keras_import
    x = keras.Input(shape=shape, name="x")
    layer = getattr(keras.layers, cls)(name="act", **kwargs)
    model = keras.Model(x, layer(x))
    if cls == "PReLU":  # alpha learned: not Keras' zeros, so that it shows
        layer.set_weights([rng.normal(size=w.shape).astype(np.float32)
                           for w in layer.get_weights()])
    path = str(tmp_path / "m.keras")
    model.save(path)
    keras_import.convert(path, str(tmp_path / "m.loom"))
    loaded = layerloom.load(str(tmp_path / "m.loom"))
    node = loaded.project.graph.nodes["act"]
    assert node.type == cls
    for k, v in kwargs.items():
        assert node.params[k] == (tuple(v) if isinstance(v, list) else v), k
    data = (rng.normal(scale=2.0, size=(6,) + shape)).astype(np.float32)
    assert float(np.abs(loaded.predict(data) - model.predict(data, verbose=0)).max()) <= TOL


def test_leaky_relu_reads_keras_old_alpha(tmp_path):
    from layerloom.interop import keras_in_layers
    type_id, params = keras_in_layers.convert("lr", "LeakyReLU", {"alpha": 0.1}, [(3,)])
    assert (type_id, params) == ("LeakyReLU", {"negative_slope": 0.1})
    type_id, params = keras_in_layers.convert("lr", "LeakyReLU", {}, [(3,)])
    assert params == {"negative_slope": 0.3}  # Keras 3's default


def test_a_softmax_over_several_axes_is_refused_by_name():
    from layerloom.interop import keras_in_layers
    with pytest.raises(LayerloomError, match=r"'sm' \(Softmax\): option axis=\[1, 2\]"):
        keras_in_layers.convert("sm", "Softmax", {"axis": [1, 2]}, [(3, 4)])


def test_bad_parameters_are_refused_naming_them():
    g = Graph()
    g.add_node("Input", {"shape": [3, 4]}, id="x")
    with pytest.raises(LayerloomError, match="max_value"):
        g.add_node("ReLU", {"max_value": -1.0}, id="r")
    with pytest.raises(LayerloomError, match="negative_slope"):
        g.add_node("LeakyReLU", {"negative_slope": -0.1}, id="l")
    with pytest.raises(LayerloomError, match="shared_axes"):
        g.add_node("PReLU", {"shared_axes": [0]}, id="p")
    for layer, params, why in (("Softmax", {"axis": 0}, "axis 0 is not an axis"),
                               ("Softmax", {"axis": 3}, "axis 3 is not an axis"),
                               ("PReLU", {"shared_axes": [3]}, "shared_axes names axis 3")):
        with pytest.raises(LayerloomError, match=why):
            get_layer(layer).output_shapes({**get_layer(layer).defaults(), **params}, [(3, 4)])


def test_a_prelu_alpha_regularizer_is_refused_by_the_pytorch_export(tmp_path):
    pytest.importorskip("torch")
    from layerloom.interop import export as interop_export
    from layerloom.project import loom
    g = Graph()
    g.add_node("Input", {"shape": [4]}, id="x")
    g.add_node("PReLU", {"alpha_regularizer": {"l2": 0.1}}, id="p")
    g.connect("x", 0, "p", 0)
    with pytest.raises(LayerloomError, match="'p'.*alpha_regularizer"):
        interop_export(loom.Project(g), None, str(tmp_path / "t.py"), "pytorch-code")


# -- ONNX's activation operators in ------------------------------------------------------------
def _onnx_model(nodes, inits=None, shape=(None, 6), opset=17):
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k)
         for k, v in (inits or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _onnx_node(op, inputs, output="y", name=None, **attrs):
    from onnx import helper
    return helper.make_node(op, list(inputs), [output], name=name or f"{op}_{output}", **attrs)


def _node(op, inputs=("x",), **attrs):
    return _onnx_node(op, inputs, name="act", **attrs)


def _conv():
    return _onnx_node("Conv", ["x", "k"], "c", pads=[1, 1, 1, 1])


CONV_K = np.random.default_rng(5).normal(size=(4, 3, 3, 3))
ONNX_CASES = [  # (id, nodes, constants, input shape, opset, the layer types it becomes)
    ("clip6", [_node("Clip", ["x", "lo", "hi"])], {"lo": 0.0, "hi": 6.0}, (None, 6), 17,
     {"Activation"}),
    ("clip-max", [_node("Clip", ["x", "lo", "hi"])], {"lo": 0.0, "hi": 1.5}, (None, 6), 17,
     {"ReLU"}),
    ("clip-opset6", [_node("Clip", min=0.0, max=2.0)], {}, (None, 6), 6, {"ReLU"}),
    ("leaky", [_node("LeakyRelu", alpha=0.1)], {}, (None, 6), 17, {"LeakyReLU"}),
    ("leaky-default", [_node("LeakyRelu")], {}, (None, 6), 17, {"LeakyReLU"}),
    ("leaky-0.2", [_node("LeakyRelu", alpha=0.2)], {}, (None, 6), 17, {"Activation"}),
    ("elu", [_node("Elu", alpha=0.5)], {}, (None, 6), 17, {"ELU"}),
    ("elu-1", [_node("Elu")], {}, (None, 6), 17, {"Activation"}),
    ("hardswish", [_node("HardSwish")], {}, (None, 6), 17, {"Activation"}),
    ("mish", [_node("Mish")], {}, (None, 6), 18, {"Activation"}),
    ("hardsigmoid", [_node("HardSigmoid", alpha=1.0 / 6.0, beta=0.5)], {}, (None, 6), 17,
     {"Activation"}),
    ("hardsigmoid-0.2", [_node("HardSigmoid")], {}, (None, 6), 17, {"Lambda"}),
    ("prelu-vector", [_node("PRelu", ["x", "s"])], {"s": [0.1, -0.2, 0.3, 0.5, 2.0, 0.0]},
     (None, 6), 17, {"PReLU"}),
    ("prelu-scalar", [_node("PRelu", ["x", "s"])], {"s": [0.25]}, (None, 3, 6), 17, {"PReLU"}),
    ("prelu-nchw", [_conv(), _node("PRelu", ["c", "s"])],
     {"k": CONV_K, "s": np.array([0.1, 0.2, 0.3, 0.4]).reshape(4, 1, 1)}, (None, 3, 5, 5), 17,
     {"Conv2D", "PReLU"}),
    ("prelu-nchw-full", [_conv(), _node("PRelu", ["c", "s"])],
     {"k": CONV_K, "s": np.random.default_rng(2).normal(size=(4, 5, 1))}, (None, 3, 5, 5), 17,
     {"Conv2D", "PReLU"}),
    ("conv-clip6-folds", [_conv(), _node("Clip", ["c", "lo", "hi"])],
     {"k": CONV_K, "lo": 0.0, "hi": 6.0}, (None, 3, 5, 5), 17, {"Conv2D"}),
    ("conv-hardswish-folds", [_conv(), _node("HardSwish", ["c"])], {"k": CONV_K},
     (None, 3, 5, 5), 17, {"Conv2D"}),
    ("hardtanh", [_node("Clip", ["x", "lo", "hi"])], {"lo": -1.0, "hi": 1.0}, (None, 6), 17,
     {"Activation"}),
    ("softshrink", [_node("Shrink", bias=0.5, lambd=0.5)], {}, (None, 6), 17, {"Activation"}),
    ("hardshrink", [_node("Shrink")], {}, (None, 6), 17, {"Activation"}),
    ("shrink-other", [_node("Shrink", bias=0.25, lambd=1.0)], {}, (None, 6), 17, {"Lambda"}),
    ("celu", [_node("Celu")], {}, (None, 6), 17, {"Activation"}),
    ("thresholded", [_node("ThresholdedRelu", alpha=0.5)], {}, (None, 6), 17, {"ReLU"}),
    ("softmax-axis", [_node("Softmax", axis=1)], {}, (None, 3, 6), 17, {"Softmax"}),
    ("softmax-axis-opset11", [_node("Softmax", axis=1)], {}, (None, 3, 1), 11, {"Softmax"}),
    ("softmax-last", [_node("Softmax", axis=-1)], {}, (None, 3, 6), 17, {"Activation"}),
    ("softmax-nchw", [_conv(), _node("Softmax", ["c"], axis=3)], {"k": CONV_K},
     (None, 3, 5, 5), 17, {"Conv2D", "Softmax"}),
    ("softmax-nchw-channels", [_conv(), _node("Softmax", ["c"], axis=1)], {"k": CONV_K},
     (None, 3, 5, 5), 17, {"Conv2D"}),
    # an NCHW input reaching a convolution through them: they pass the layout question on
    ("input-clip-conv",
     [_onnx_node("Clip", ["x", "lo", "hi"], "c"), _onnx_node("Conv", ["c", "k"])],
     {"k": CONV_K, "lo": 0.0, "hi": 6.0}, (None, 3, 5, 5), 17, {"Activation", "Conv2D"}),
    ("input-hardswish-conv",
     [_onnx_node("HardSwish", ["x"], "c"), _onnx_node("Conv", ["c", "k"])],
     {"k": CONV_K}, (None, 3, 5, 5), 17, {"Activation", "Conv2D"}),
]


@pytest.mark.parametrize("nodes,inits,shape,opset,types", [c[1:] for c in ONNX_CASES],
                         ids=[c[0] for c in ONNX_CASES])
def test_onnx_activation_operators_come_in_and_match_onnxruntime(rng, nodes, inits, shape, opset,
                                                                 types):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from layerloom.interop import onnx_import
    model = _onnx_model(nodes, inits, shape, opset)
    imported = onnx_import.from_model(model)
    got_types = {n.type for n in imported.project.graph.nodes.values()} - {"Input"}
    assert got_types == types
    x = rng.normal(scale=3.0, size=(4,) + tuple(shape[1:])).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    got = imported.predict({"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


ACTIVATION_LAYERS = ("ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax")
# the examples whose ONNX form is no single operator the importer maps back (the refusal names
# it); PReLU's 4-axis example comes back since the importer reads 5-D inputs (the 3-D layers)
NOT_BACK = {("ReLU", 2): r"\(Greater\)", ("ReLU", 4): r"\(Greater\)",
            ("ReLU", 5): r"\(Greater\)"}


@pytest.mark.parametrize("type_id,i", [(t, i) for t in ACTIVATION_LAYERS
                                       for i in range(len(get_layer(t).examples))])
def test_the_layers_exported_to_onnx_come_back(rt, rng, type_id, i):
    """Layerloom's ONNX export of each example read back: the same outputs, or (where the
    export is a formula of several operators) refused naming the operator."""
    pytest.importorskip("onnx")
    from layerloom.interop import onnx_export, onnx_import
    from layerloom.project import loom
    from test_onnx_export import _graph_for, _random_weights
    params, shapes = get_layer(type_id).examples[i]
    g = _graph_for(type_id, params, shapes)
    ws = _random_weights(g, rng)
    model = onnx_export.to_onnx(loom.Project(g), ws)
    if (type_id, i) in NOT_BACK:
        with pytest.raises(LayerloomError, match=NOT_BACK[type_id, i]):
            onnx_import.from_model(model)
        return
    imported = onnx_import.from_model(model)
    x = rng.normal(scale=2.0, size=(4,) + tuple(shapes[0])).astype(np.float32)
    want = Model(g, rt, 4, weights=ws).predict({"in0": x})["node"]
    got = imported.predict({model.graph.input[0].name: x})[model.graph.output[0].name]
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


def test_onnx_clip_from_other_than_0_is_refused_naming_the_node():
    pytest.importorskip("onnx")
    from layerloom.interop import onnx_import
    model = _onnx_model([_node("Clip", ["x", "lo", "hi"])], {"lo": -2.0, "hi": 1.0})
    with pytest.raises(LayerloomError, match=re.escape("ONNX node 'act' (Clip): min -2.0")):
        onnx_import.from_model(model)


@pytest.mark.parametrize("opset", [17, 18, 20])
@pytest.mark.parametrize("act", ["gelu_tanh", "mish", "hard_silu"])
def test_new_activations_export_at_each_opset(rt, rng, act, opset):
    """Mish is an operator from opset 18 and Gelu from 20; before, their formulas."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from layerloom.interop import onnx_export
    from layerloom.project import loom
    g = _activation_graph(act, (9,))
    model = onnx_export.to_onnx(loom.Project(g), {}, opset=opset)
    ops = {n.op_type for n in model.graph.node}
    assert ("Mish" in ops) == (act == "mish" and opset >= 18)
    assert ("Gelu" in ops) == (act == "gelu_tanh" and opset >= 20)
    x = _inputs(rng, (5, 9))
    want = Model(g, rt, 5).predict({"x": x})["node"]
    sess = ort.InferenceSession(model.SerializeToString())
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


# -- the GPU form of the kernels (one element per work-item), on the CPU device -----------------
GPU_FORM = [("ReLU", {"max_value": 1.5, "negative_slope": 0.1, "threshold": 0.3}, (3, 11)),
            ("ELU", {"alpha": 0.7}, (13,)), ("LeakyReLU", {}, (13,)),
            ("PReLU", {"shared_axes": [1]}, (3, 4, 5)), ("Softmax", {"axis": 1}, (4, 3)),
            ("Softmax", {}, (6,))] + [("Activation", {"activation": a}, (13,))
                                      for a in ("gelu_tanh", "mish", "hard_silu")]


@ew_widths
@pytest.mark.parametrize("type_id,params,shape", GPU_FORM,
                         ids=[f"{t}{p}" for t, p, _ in GPU_FORM])
def test_the_kernels_at_each_elementwise_width(rt, ops, rng, type_id, params, shape):
    layer = get_layer(type_id)
    p = {**layer.defaults(), **params}
    xs = [rng.normal(scale=2.0, size=(3,) + shape)]
    ws = {s.name: rng.normal(size=s.shape) for s in layer.weights(p, [shape])}
    ref = layer.reference(p, xs, ws)[0]
    dy = rng.normal(size=ref.shape)
    y, dxs, dws = run_layer(rt, ops, layer, p, xs, ws, dy)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)

    def f():
        return float((layer.reference(p, xs, ws)[0] * dy).sum())
    for got, arr in [(dxs[0], xs[0])] + [(dws[k], ws[k]) for k in dws]:
        np.testing.assert_allclose(got, numeric_grad(f, arr), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("type_id,i", [(t, i) for t in ACTIVATION_LAYERS
                                       for i in range(len(get_layer(t).examples))])
def test_the_layers_exported_to_keras_come_back(tmp_path, rng, type_id, i):
    """Layerloom's .keras export of each example read back: the same layer, parameters and
    weights (test_keras_export checks the exported model's outputs against the engine)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("keras")
    from layerloom.interop import export as interop_export
    from layerloom.interop import keras_import
    from layerloom.project import loom
    from test_onnx_export import _graph_for, _random_weights
    params, shapes = get_layer(type_id).examples[i]
    g = _graph_for(type_id, params, shapes)
    ws = _random_weights(g, rng)
    path = str(tmp_path / "m.keras")
    interop_export(loom.Project(g), ws, path)
    back, back_ws = keras_import.read(path)
    node = back.graph.nodes["node"]
    assert node.type == type_id and node.params == g.nodes["node"].params
    for k, a in ws.items():
        np.testing.assert_array_equal(back_ws[k], a)


@pytest.mark.parametrize("approximate", [True, False])
def test_a_dense_with_gelu_comes_back_from_its_keras_export(tmp_path, rng, approximate):
    """Bug (review): gelu_tanh is written to Keras as ops.gelu(..., approximate=True) after a
    linear layer, a node of class Gelu the importer had no reader for. Now it reads back as
    that Dense and a gelu_tanh (or gelu) Activation, predicting the same."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("keras")
    from layerloom.api import Model as ApiModel
    from layerloom.interop import export as interop_export
    from layerloom.interop import keras_import
    from layerloom.project import loom
    from test_onnx_export import _graph_for, _random_weights
    act = "gelu_tanh" if approximate else "gelu"
    g = _graph_for("Dense", {"units": 4, "activation": act}, [(5,)])
    ws = _random_weights(g, rng)
    path = str(tmp_path / "m.keras")
    interop_export(loom.Project(g), ws, path)
    back, back_ws = keras_import.read(path)
    acts = [n.params["activation"] for n in back.graph.nodes.values() if not n.layer.is_input]
    assert act in acts
    x = rng.normal(size=(6, 5)).astype(np.float32)
    want = REFERENCE[act](x.astype(np.float64) @ ws["node/kernel"] + ws["node/bias"])
    got = ApiModel(back, back_ws).predict({back.graph.inputs()[0]: x})
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
