"""The normalisation and 1-D shape layers beyond what the declarations' examples check
(tests/test_layers.py, test_onnx_export.py, test_torch_code.py and test_keras_export.py run
those): each against the real Keras (models built and saved by Keras 3 on the torch backend,
imported, predicting what Keras predicts within 1e-5), ONNX in (LayerNormalization and Pad,
from Layerloom's own export and from torch.onnx.export, against onnxruntime), the grouped
kernels on a LayerNormalization axis the examples leave out (Keras' torch backend cannot run
it), and the parameters refused by name."""
import os

import numpy as np
import pytest

from conftest import numeric_grad
from layerloom.api import Model
from layerloom.core.errors import LayerloomError
from layerloom.core.graph import Graph
from layerloom.core.registry import get_layer
from test_layers import run_layer

TOL = 1e-5


def _max_error(got, want):
    assert got.shape == want.shape
    return float(np.abs(got - want).max())


# -- Keras: a model Keras builds and saves comes in and predicts what Keras predicts ----------
KERAS_CASES = [
    ("LayerNormalization", {"epsilon": 1e-5}, (3, 5)),
    ("LayerNormalization", {"axis": [2, 3]}, (2, 3, 4)),
    ("LayerNormalization", {"axis": [1, 3], "center": False}, (3, 2, 4)),
    ("GroupNormalization", {"groups": 2}, (3, 6)),
    ("GroupNormalization", {"groups": -1, "scale": False}, (2, 2, 3)),
    ("GroupNormalization", {"groups": 3, "axis": 1}, (6, 2)),
    ("GroupNormalization", {"groups": 4}, (8,)),
    ("UnitNormalization", {}, (4, 3)),
    ("UnitNormalization", {"axis": [1, 2]}, (2, 3, 2)),
    ("ZeroPadding1D", {"padding": (2, 1)}, (3, 2)),
    ("ZeroPadding1D", {}, (4, 1)),
    ("Cropping1D", {"cropping": (1, 2)}, (5, 3)),
    ("Cropping1D", {}, (3, 2)),
    ("UpSampling1D", {"size": 3}, (2, 4)),
]


def _keras():
    pytest.importorskip("torch")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


@pytest.mark.parametrize("cls,kwargs,shape", KERAS_CASES,
                         ids=[f"{c}{k}{s}".replace(" ", "") for c, k, s in KERAS_CASES])
def test_a_keras_model_imports_and_predicts_what_keras_does(tmp_path, cls, kwargs, shape):
    keras = _keras()
    from layerloom.interop import keras_import
    x = keras.Input(shape)
    layer = getattr(keras.layers, cls)(**kwargs, name="node")
    model = keras.Model(x, layer(x))
    rng = np.random.default_rng(3)
    for w in layer.weights:  # trained-looking gamma and beta
        w.assign(rng.normal(1.0 if "gamma" in w.path else 0.0, 0.5, w.shape).astype(np.float32))
    path = str(tmp_path / "m.keras")
    model.save(path)
    xs = (rng.standard_normal((5,) + shape) * 2 + 0.5).astype(np.float32)
    project, weights = keras_import.read(path)
    assert [n.type for n in project.graph.nodes.values()] == ["Input", cls]
    got = Model(project, weights).predict(xs)
    assert _max_error(got, model.predict(xs, verbose=0)) <= TOL


def test_group_normalization_keeps_keras_initializers_and_regularizers_both_ways(tmp_path):
    keras = _keras()
    from layerloom.interop import keras_export, keras_import
    from layerloom.project.loom import Project
    g = Graph()
    g.add_node("Input", {"shape": [4, 6]}, id="x")
    params = {"groups": 3, "gamma_regularizer": {"l1": 0.0, "l2": 0.01},
              "beta_initializer": "ones", "epsilon": 1e-4}
    g.add_node("GroupNormalization", params, id="gn")
    g.connect("x", 0, "gn", 0)
    weights = {"gn/gamma": np.full(6, 2.0, np.float32), "gn/beta": np.full(6, 3.0, np.float32)}
    model = keras_export.to_keras(Project(g), weights, compile=False)
    layer = model.get_layer("gn")
    assert layer.groups == 3 and layer.epsilon == 1e-4
    assert float(layer.gamma_regularizer.l2) == pytest.approx(0.01)
    assert type(layer.beta_initializer).__name__ == "Ones"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.beta), np.full(6, 3.0))
    path = str(tmp_path / "m.keras")
    model.save(path)
    project, _ = keras_import.read(path)
    back = project.graph.nodes["gn"].params
    assert back["gamma_regularizer"] == {"l1": 0.0, "l2": pytest.approx(0.01)}
    assert back["beta_initializer"] == "ones" and back["groups"] == 3
    # and the weights carry the regularizer into training
    spec = {w.name: w for w in get_layer("GroupNormalization").weights(back, [(4, 6)])}
    assert spec["gamma"].regularizer == back["gamma_regularizer"]
    assert spec["beta"].init == "ones" and spec["beta"].regularizer is None


def test_a_keras_layer_normalization_with_rms_scaling_is_refused_by_name(tmp_path):
    keras = _keras()
    from layerloom.interop import keras_import
    x = keras.Input((4,))
    with pytest.warns(UserWarning):
        y = keras.layers.LayerNormalization(rms_scaling=True, name="ln")(x)
    path = str(tmp_path / "m.keras")
    keras.Model(x, y).save(path)
    with pytest.raises(LayerloomError, match="'ln'.*rms_scaling"):
        keras_import.read(path)


# -- ONNX in -------------------------------------------------------------------------------------
def _onnx():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    return onnx, ort


def _project(g, output):
    from layerloom.project import loom
    return loom.Project(g, training={**loom.default_training(),
                                     "loss": {output: {"name": "mean_squared_error"}}})


def _one_layer(type_id, params, shape):
    g = Graph()
    g.add_node("Input", {"shape": list(shape)}, id="x")
    g.add_node(type_id, params, id="node")
    g.connect("x", 0, "node", 0)
    return _project(g, "node")


@pytest.mark.parametrize("type_id,params,shape", [
    ("LayerNormalization", {}, (6,)),
    ("LayerNormalization", {"axis": [-2, -1], "epsilon": 1e-5}, (3, 4)),
    ("LayerNormalization", {"axis": [1, 2, 3], "scale": False}, (2, 3, 2)),
    ("ZeroPadding1D", {"padding": [2, 0]}, (3, 2)),
    ("ZeroPadding2D", {"padding": [[1, 0], [0, 2]]}, (2, 3, 2)),
    ("Cropping1D", {"cropping": [0, 2]}, (5, 2)),
    ("Cropping2D", {"cropping": [[1, 0], [2, 1]]}, (3, 5, 2)),
])
def test_layerloom_s_onnx_export_comes_back_as_the_same_layer(type_id, params, shape):
    onnx, ort = _onnx()
    from layerloom.interop import onnx_export, onnx_import
    project = _one_layer(type_id, params, shape)
    rng = np.random.default_rng(5)
    weights = {f"node/{w.name}": rng.normal(1.0, 0.5, w.shape).astype(np.float32)
               for w in get_layer(type_id).weights(project.graph.nodes["node"].params, [shape])}
    model = onnx_export.to_onnx(project, weights)
    back = onnx_import.from_model(model)
    node = [n for n in back.project.graph.nodes.values() if n.type != "Input"]
    assert [n.type for n in node] == [type_id]
    xs = rng.standard_normal((4,) + shape).astype(np.float32)
    want = Model(project, weights).predict(xs)
    got = Model(back.project, back.weights).predict(xs)
    assert _max_error(got, want) <= TOL
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert _max_error(sess.run(None, {"x": xs})[0], want) <= TOL


def _torch_onnx(tmp_path, module, shape):
    torch = pytest.importorskip("torch")
    _onnx()
    path = str(tmp_path / "m.onnx")
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, (torch.zeros((1,) + shape),), path, opset_version=17,
                          dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    return path


def _compare_onnx(path, shape, to_ours=None):
    import onnxruntime as ort
    from layerloom.interop import onnx_import
    project, weights = onnx_import.read(path)
    x = np.random.default_rng(0).standard_normal((5,) + shape).astype(np.float32)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = Model(project, weights).predict(to_ours(x) if to_ours else x)
    return project, _max_error(got, to_ours(want) if to_ours else want)


def test_a_torch_layer_norm_exported_to_onnx_imports(tmp_path):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ln = torch.nn.LayerNorm((3, 5), eps=1e-4)
            with torch.no_grad():
                self.ln.weight.normal_(1.0, 0.3)
                self.ln.bias.normal_(0.0, 0.3)

        def forward(self, x):
            return self.ln(x) * 2.0

    path = _torch_onnx(tmp_path, Net(), (3, 5))
    project, err = _compare_onnx(path, (3, 5))
    assert err <= TOL
    ln = [n for n in project.graph.nodes.values() if n.type == "LayerNormalization"]
    assert len(ln) == 1 and ln[0].params["axis"] == (1, 2)
    assert ln[0].params["epsilon"] == pytest.approx(1e-4)


@pytest.mark.parametrize("after,type_id,want", [
    (lambda F, y: F.pad(y, (1, 2, 0, 1)), "ZeroPadding2D", [((0, 1), (1, 2))]),
    # torch writes a Slice per axis
    (lambda F, y: y[:, :, 1:, 2:-1], "Cropping2D", [((1, 0), (0, 0)), ((0, 0), (2, 1))]),
], ids=["pad", "slice"])
def test_a_torch_pad_or_slice_after_a_convolution_imports(tmp_path, after, type_id, want):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Conv2d(2, 3, 3)
            self.b = torch.nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return self.b(after(torch.nn.functional, self.a(x)))

    path = _torch_onnx(tmp_path, Net(), (2, 6, 7))
    project, err = _compare_onnx(path, (2, 6, 7), to_ours=lambda a: a.transpose(0, 2, 3, 1))
    assert err <= TOL
    got = [n.params for n in project.graph.nodes.values() if n.type == type_id]
    assert [next(iter(p.values())) for p in got] == want


def test_a_slice_with_steps_is_refused_naming_the_node_and_one_of_the_channels_imports():
    onnx, _ = _onnx()
    from onnx import TensorProto, helper
    from layerloom.interop import onnx_import

    def model(starts, ends, axes, steps, out):
        consts = [helper.make_tensor(k, TensorProto.INT64, [len(v)], v) for k, v in
                  (("s", starts), ("e", ends), ("a", axes), ("t", steps))]
        node = helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"], name="cut")
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
            "x", TensorProto.FLOAT, [None, 6, 3])], [helper.make_tensor_value_info(
                "y", TensorProto.FLOAT, [None] + out)], consts)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(LayerloomError, match="'cut' \\(Slice\\).*steps \\[2\\]"):
        onnx_import.from_model(model([0], [6], [1], [2], [3, 3]))
    # a Slice of the channels (ONNX's axis 1 of (N, C, T) read channels last): a crop between
    # two Permutes (ShuffleNet's channel split), as ONNX computes it
    x = np.random.default_rng(3).standard_normal((2, 6, 3)).astype(np.float32)
    chan = onnx_import.from_model(model([1], [3], [2], [1], [6, 2]))
    got = next(iter(chan.predict({"x": x}).values()))
    np.testing.assert_allclose(got, x[:, :, 1:3], rtol=0, atol=1e-6)
    back = onnx_import.from_model(model([1], [-1], [1], [1], [4, 3]))
    assert [n.params for n in back.project.graph.nodes.values() if n.type == "Cropping1D"] == [
        {"cropping": (1, 1)}]


def test_a_pad_layerloom_cannot_compute_is_refused_naming_the_node(tmp_path):
    onnx, _ = _onnx()
    from onnx import TensorProto, helper
    from layerloom.interop import onnx_import
    pads = helper.make_tensor("pads", TensorProto.INT64, [6], [0, 1, 0, 0, 1, 0])
    value = helper.make_tensor("v", TensorProto.FLOAT, [], [1.5])
    node = helper.make_node("Pad", ["x", "pads", "v"], ["y"], name="pad1", mode="constant")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [None, 3, 2])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [None, 5, 2])], [pads, value])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(LayerloomError, match="'pad1' \\(Pad\\).*constant value 1.5"):
        onnx_import.from_model(model)
    reflect = helper.make_node("Pad", ["x", "pads"], ["y"], name="pad2", mode="reflect")
    graph = helper.make_graph([reflect], "g", list(graph.input), list(graph.output), [pads])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(LayerloomError, match="'pad2' \\(Pad\\).*mode 'reflect'"):
        onnx_import.from_model(model)


# -- the grouped kernels where the examples do not reach them -------------------------------------
@pytest.mark.parametrize("type_id,params,shape", [
    ("LayerNormalization", {"axis": 1}, (4, 3)),          # Keras' torch backend fails on it
    ("LayerNormalization", {"axis": [1, 2]}, (3, 2, 2)),  # contiguous, not trailing
    ("GroupNormalization", {"groups": 2, "axis": 2}, (2, 4, 3)),
])
def test_grouped_normalisation_forward_and_gradients(rt, ops, rng, type_id, params, shape):
    layer = get_layer(type_id)
    p = {**layer.defaults(), **params}
    p = {q.name: q.validate(p[q.name], q.name) for q in layer.params}
    xs = [rng.normal(size=(3,) + shape)]
    ws = {w.name: rng.normal(1.0, 0.5, w.shape) for w in layer.weights(p, [shape])}
    dy = rng.normal(size=xs[0].shape)
    y, (dx,), dws = run_layer(rt, ops, layer, p, xs, ws, dy)
    np.testing.assert_allclose(y, layer.reference(p, xs, ws)[0], rtol=1e-5, atol=1e-5)

    def f():
        return float((layer.reference(p, xs, ws)[0] * dy).sum())
    for got, arr in [(dx, xs[0])] + [(dws[k], ws[k]) for k in dws]:
        np.testing.assert_allclose(got, numeric_grad(f, arr), rtol=1e-3, atol=1e-4)


def test_layer_normalization_over_one_middle_axis_exports_to_onnx_and_torch(rt, tmp_path):
    pytest.importorskip("torch")
    _onnx()
    import onnxruntime as ort
    from layerloom.interop import export as interop_export
    from layerloom.interop import onnx_export
    from test_torch_code import _load_script
    project = _one_layer("LayerNormalization", {"axis": 1}, (4, 3))
    rng = np.random.default_rng(2)
    weights = {"node/gamma": rng.normal(1, .5, (4,)).astype(np.float32),
               "node/beta": rng.normal(0, .5, (4,)).astype(np.float32)}
    xs = rng.standard_normal((3, 4, 3)).astype(np.float32)
    want = Model(project, weights).predict(xs)
    model = onnx_export.to_onnx(project, weights)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert _max_error(sess.run(None, {"x": xs})[0], want) <= TOL
    path = str(tmp_path / "t.py")
    interop_export(project, weights, path, "pytorch-code")
    import torch
    net = _load_script(path).build_model()
    with torch.no_grad():
        got = net({"x": torch.from_numpy(xs)}).numpy()
    assert _max_error(got, want) <= TOL


def test_unit_normalization_of_a_zero_vector_is_zero_with_finite_gradients(rt, ops):
    layer = get_layer("UnitNormalization")
    p = {"axis": (-1,)}
    x = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 4.0]])
    dy = np.array([[1.0, -2.0, 0.5], [1.0, 1.0, 1.0]])
    y, (dx,), _ = run_layer(rt, ops, layer, p, [x], {}, dy)
    np.testing.assert_allclose(y, [[0, 0, 0], [0.6, 0, 0.8]], atol=1e-6)
    # Keras' cap: x * min(1 / |x|, 1e12), so the zero vector's gradient is dy * 1e12
    np.testing.assert_allclose(dx[0], dy[0] * 1e12, rtol=1e-6)
    np.testing.assert_allclose(dx[1], (dy[1] - y[1] * (dy[1] * y[1]).sum()) / 5.0, atol=1e-6)


# -- parameters refused by name -----------------------------------------------------------------
@pytest.mark.parametrize("type_id,params,shape,words", [
    ("LayerNormalization", {"axis": 0}, (3,), "axis 0 is the batch axis"),
    ("LayerNormalization", {"axis": [1, -2]}, (3, 2), "names axis 1 twice"),
    ("LayerNormalization", {"axis": 3}, (3, 2), "axis 3 is out of range"),
    ("UnitNormalization", {"axis": -4}, (3, 2), "axis -4 is out of range"),
    ("GroupNormalization", {"groups": 4}, (6,), "groups 4 does not divide the 6 channels"),
    ("GroupNormalization", {"groups": 0}, (6,), "groups 0"),
    ("GroupNormalization", {"groups": 2, "axis": 0}, (6,), "axis 0 is the batch axis"),
    ("ZeroPadding1D", {}, (3, 2, 1), "expects input shaped (None, steps, features)"),
    ("Cropping1D", {"cropping": [2, 1]}, (3, 2), "removes the whole input"),
    ("UpSampling1D", {}, (4,), "expects input shaped (None, steps, features)"),
])
def test_what_a_layer_cannot_do_is_a_problem_on_its_node(type_id, params, shape, words):
    g = Graph()
    g.add_node("Input", {"shape": list(shape)}, id="x")
    g.add_node(type_id, params, id="node")
    g.connect("x", 0, "node", 0)
    problems = g.validate()
    assert problems and words in str(problems[0]) and "node" in str(problems[0])


def test_an_axis_is_a_list_or_one_integer_in_the_project_file():
    from layerloom.project import loom
    g = Graph()
    g.add_node("Input", {"shape": [3, 4]}, id="x")
    g.add_node("LayerNormalization", {"axis": "1, 2"}, id="a")  # as the editor's field gives it
    g.add_node("LayerNormalization", {}, id="b")
    g.connect("x", 0, "a", 0)
    g.connect("a", 0, "b", 0)
    text = loom.dumps(_project(g, "b"))
    assert '"axis": [\n' in text or '"axis": [1, 2]' in text
    back = loom.loads(text).graph
    assert back.nodes["a"].params["axis"] == (1, 2) and back.nodes["b"].params["axis"] == (-1,)
    with pytest.raises(LayerloomError, match="axis"):
        g.add_node("LayerNormalization", {"axis": [1, 1]}, id="c")


# -- Normalization: Keras' statistics in, adapt at fit ---------------------------------------
def _dense_then(layer_kwargs, keras, adapt_rows=None):
    x = keras.Input((3,), name="x")
    h = keras.layers.Dense(4, name="d")(x)
    norm = keras.layers.Normalization(**layer_kwargs, name="norm")
    if adapt_rows is not None:
        norm.adapt(adapt_rows)
    return keras.Model(x, norm(h)), norm


@pytest.mark.parametrize("kwargs", [{}, {"invert": True}, {"axis": None}],
                         ids=["adapted", "adapted_invert", "adapted_one_statistic"])
def test_an_adapted_keras_normalization_inside_the_graph_keeps_its_statistics(tmp_path, kwargs):
    keras = _keras()
    from layerloom.interop import keras_import
    rng = np.random.default_rng(7)
    rows = rng.normal(3.0, 2.0, (40, 4)).astype(np.float32)
    model, _ = _dense_then(kwargs, keras, adapt_rows=rows)
    path = str(tmp_path / "m.keras")
    model.save(path)
    project, weights = keras_import.read(path)
    assert project.graph.nodes["norm"].type == "Normalization"
    assert get_layer("Normalization").adapted({k.split("/")[1]: v for k, v in weights.items()
                                               if k.startswith("norm/")})  # a fit keeps them
    xs = rng.standard_normal((6, 3)).astype(np.float32)
    assert _max_error(Model(project, weights).predict(xs), model.predict(xs, verbose=0)) <= TOL


def test_keras_normalization_values_given_in_its_config_broadcast_as_keras_does(tmp_path):
    keras = _keras()
    from layerloom.interop import keras_import
    model, _ = _dense_then({"axis": -1, "mean": 0.5, "variance": 2.0, "invert": True}, keras)
    path = str(tmp_path / "m.keras")
    model.save(path)
    project, weights = keras_import.read(path)
    np.testing.assert_array_equal(weights["norm/mean"], [0.5] * 4)
    xs = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    assert _max_error(Model(project, weights).predict(xs), model.predict(xs, verbose=0)) <= TOL


def _normalization_project(after_dense=False):
    g = Graph()
    g.add_node("Input", {"shape": [3, 2]}, id="x")
    src = "x"
    if after_dense:
        g.add_node("Dense", {"units": 2}, id="d")
        g.connect("x", 0, "d", 0)
        src = "d"
    g.add_node("Normalization", {"axis": [2]}, id="norm")
    g.connect(src, 0, "norm", 0)
    g.add_node("Flatten", {}, id="f")
    g.connect("norm", 0, "f", 0)
    g.add_node("Dense", {"units": 1}, id="out")
    g.connect("f", 0, "out", 0)
    return _project(g, "out")


def test_a_normalization_is_adapted_to_the_training_rows_before_the_first_epoch():
    import layerloom
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((64, 3, 2)) * [5.0, 0.5] + [10.0, -2.0]).astype(np.float32)
    y = rng.standard_normal((64, 1)).astype(np.float32)
    model = layerloom.Model(_normalization_project())
    model.fit(x, y, epochs=1, batch_size=16, verbose=False)
    w = model.get_weights()
    np.testing.assert_allclose(w["norm/mean"], x.mean((0, 1)), rtol=1e-5)
    np.testing.assert_allclose(w["norm/variance"], x.var((0, 1)), rtol=1e-4)
    assert float(w["norm/count"]) == 64 * 3
    # adapted once: a second fit on other rows keeps the statistics (non-trainable)
    model.fit(x * 3.0, y, epochs=1, batch_size=16, verbose=False)
    np.testing.assert_array_equal(model.get_weights()["norm/mean"], w["norm/mean"])
    got = model.predict(x[:5])
    ref = get_layer("Normalization").reference(
        {"axis": (2,), "invert": False}, [x[:5].astype(np.float64)],
        {k: w[f"norm/{k}"].astype(np.float64) for k in ("mean", "variance")})[0]
    want = ref.reshape(5, -1) @ model.get_weights()["out/kernel"] + model.get_weights()["out/bias"]
    assert _max_error(got, want) <= 1e-4


def test_a_normalization_that_cannot_be_adapted_is_refused_naming_it():
    import layerloom
    x = np.ones((8, 3, 2), np.float32)
    model = layerloom.Model(_normalization_project(after_dense=True))
    with pytest.raises(LayerloomError, match="'norm' was never adapted"):
        model.fit(x, np.ones((8, 1), np.float32), epochs=1, verbose=False)
