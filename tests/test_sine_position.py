"""keras-hub's SinePositionEncoding (layers/sequence_tables.py): the fixed sin/cos table of the
positions, returned (not added to the input), its shape rule, a model training with
x + SinePositionEncoding(x), and its forms: ONNX (run by onnxruntime), the PyTorch script and
Keras out and in (keras-hub's class name and config), against the engine and a numpy formula
written here on its own; against keras_hub itself where it is installed."""
import math
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from layerloom import api  # noqa: E402
from layerloom.core.errors import DataError, LayerloomError  # noqa: E402
from layerloom.core.graph import Graph  # noqa: E402
from layerloom.core.registry import ShapeError, get_layer  # noqa: E402
from layerloom.project.loom import Project  # noqa: E402
from layerloom.train.model import Model  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # keras' numpy 2 notes
CASES = [((5, 4), 10000.0), ((9, 33), 10000.0), ((6, 5), 50.5), ((12, 8), 3.0),
         ((2, 3, 6), 10000.0)]
IDS = [f"{'x'.join(map(str, s))}-{m:g}" for s, m in CASES]
TOL = 1e-5  # float32 tables; positions < 12


def formula(shape, max_wavelength):
    """The encoding written out element by element (keras_hub/src/layers/modeling/
    sine_position_encoding.py, call with start_index 0): feature i of position p is
    sin(p * (1 / max_wavelength) ** (2 * (i // 2) / features)) at even i, cos at odd i;
    broadcast over any leading axes."""
    T, D = shape[-2:]
    table = np.empty((T, D))
    for p in range(T):
        for i in range(D):
            angle = p * (1.0 / max_wavelength) ** (2 * (i // 2) / D)
            table[p, i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
    return np.broadcast_to(table, tuple(shape))


def encoding_graph(shape, max_wavelength=None, add=False):
    """Input -> SinePositionEncoding (its default max_wavelength for None) [-> Add with the
    input]; the output node is "out"."""
    g = Graph()
    g.add_node("Input", {"shape": list(shape)}, id="x")
    params = {} if max_wavelength is None else {"max_wavelength": max_wavelength}
    g.add_node("SinePositionEncoding", params, id="pe" if add else "out")
    g.connect("x", 0, "pe" if add else "out", 0)
    if add:
        g.add_node("Add", {}, id="out")
        g.connect("x", 0, "out", 0)
        g.connect("pe", 0, "out", 1)
    assert not g.validate()
    return g


def _predict(rt, g, x):
    out = Model(g, rt, len(x)).predict({"x": x})
    return out["out"] if isinstance(out, dict) else out


# -- values and shapes -------------------------------------------------------------------------
@pytest.mark.parametrize("shape,mw", CASES, ids=IDS)
def test_the_engine_gives_the_formula_for_every_sample(rt, rng, shape, mw):
    x = rng.normal(size=(3,) + shape).astype(np.float32)
    got = _predict(rt, encoding_graph(shape, mw), x)
    want = np.broadcast_to(formula(shape, mw), x.shape)
    assert got.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    # the float64 reference is the same formula
    ref = get_layer("SinePositionEncoding").reference({"max_wavelength": mw}, [x], {})[0]
    np.testing.assert_allclose(ref, want, rtol=0, atol=1e-12)


def test_even_features_are_sines_and_odd_ones_cosines_at_the_default_wavelength(rt):
    x = np.zeros((1, 4, 6), np.float32)
    got = _predict(rt, encoding_graph((4, 6)), x)[0]
    assert get_layer("SinePositionEncoding").defaults() == {"max_wavelength": 10000.0}
    np.testing.assert_allclose(got[0], [0, 1, 0, 1, 0, 1], atol=1e-7)  # position 0
    np.testing.assert_allclose(got[:, 0], np.sin(np.arange(4)), atol=1e-6)
    np.testing.assert_allclose(got[:, 1], np.cos(np.arange(4)), atol=1e-6)
    np.testing.assert_allclose(got[:, 2], np.sin(np.arange(4) * 10000.0 ** (-2 / 6)), atol=1e-6)


def test_the_output_is_the_input_shape_and_the_input_only_gives_its_shape(rt, rng):
    layer = get_layer("SinePositionEncoding")
    assert layer.output_shapes({"max_wavelength": 1e4}, [(7, 3)]) == [(7, 3)]
    assert layer.output_shapes({"max_wavelength": 1e4}, [(2, 7, 3)]) == [(2, 7, 3)]
    assert layer.weights({"max_wavelength": 1e4}, [(7, 3)]) == []
    assert not layer.differentiable
    with pytest.raises(ShapeError, match="steps, features"):
        layer.output_shapes({"max_wavelength": 1e4}, [(7,)])
    a = rng.normal(size=(2, 5, 4)).astype(np.float32)
    g = encoding_graph((5, 4))
    np.testing.assert_array_equal(_predict(rt, g, a), _predict(rt, g, 3 * a + 1))


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_max_wavelength_must_be_positive(bad):
    param = get_layer("SinePositionEncoding").params[0]
    with pytest.raises(LayerloomError):
        param.validate(bad, "graph.nodes.pe.params.max_wavelength")


def test_the_same_formula_as_keras_hub(rt, rng):
    keras_hub = pytest.importorskip("keras_hub")
    for shape, mw in CASES:
        x = rng.normal(size=(2,) + shape).astype(np.float32)
        layer = keras_hub.layers.SinePositionEncoding(max_wavelength=mw)
        want = np.asarray(layer(x))
        np.testing.assert_allclose(_predict(rt, encoding_graph(shape, mw), x), want,
                                   rtol=0, atol=TOL)


# -- training x + SinePositionEncoding(x) --------------------------------------------------------
def test_a_model_adding_the_encoding_to_its_input_trains(rng):
    g = Graph()
    g.add_node("Input", {"shape": [6, 4]}, id="x")
    g.add_node("Dense", {"units": 8}, id="d1")
    g.add_node("SinePositionEncoding", {}, id="pe")
    g.add_node("Add", {}, id="add")
    g.add_node("Flatten", {}, id="flat")
    g.add_node("Dense", {"units": 3}, id="out")
    g.connect("x", 0, "d1", 0)
    g.connect("d1", 0, "pe", 0)
    g.connect("d1", 0, "add", 0)
    g.connect("pe", 0, "add", 1)
    g.connect("add", 0, "flat", 0)
    g.connect("flat", 0, "out", 0)
    assert not g.validate()
    p = Project(g)
    p.training.update({"loss": {"out": {"name": "mean_squared_error"}}, "metrics": [],
                       "optimizer": {"name": "adam", "params": {"learning_rate": 0.01}},
                       "batch_size": 8, "shuffle": False})
    x = rng.normal(size=(48, 6, 4)).astype(np.float32)
    y = (x.sum(axis=1)[:, :3] * 0.5).astype(np.float32)
    model = api.Model(p)
    history = model.fit(x, y, epochs=15, verbose=False)
    losses = [e["loss"] for e in history["epochs"]]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]
    # the trained model is still d1 + its encoding: the float64 formula after d1
    w = {k: v.astype(np.float64) for k, v in model.get_weights().items()}
    h = x.astype(np.float64) @ w["d1/kernel"] + w["d1/bias"]
    h = h + formula((6, 8), 10000.0)
    want = h.reshape(len(x), -1) @ w["out/kernel"] + w["out/bias"]
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-4, atol=1e-4)


# -- ONNX --------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,mw", CASES, ids=IDS)
def test_the_onnx_export_runs_in_onnxruntime_as_the_engine(rt, rng, shape, mw):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from layerloom.interop import onnx_export
    g = encoding_graph(shape, mw, add=True)
    x = rng.normal(size=(3,) + shape).astype(np.float32)
    want = _predict(rt, g, x)
    np.testing.assert_allclose(want, x + formula(shape, mw), rtol=0, atol=TOL)
    model = onnx_export.to_onnx(Project(g), {})
    onnx.checker.check_model(model, full_check=True)
    assert "Expand" in [n.op_type for n in model.graph.node]
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = s.run(None, {s.get_inputs()[0].name: x})[0]
    # another batch size than the export's test: the table is expanded to the input's shape
    got5 = s.run(None, {s.get_inputs()[0].name: np.zeros((5,) + shape, np.float32)})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got5, np.broadcast_to(formula(shape, mw), got5.shape),
                               rtol=0, atol=TOL)


# -- PyTorch code ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,mw", CASES, ids=IDS)
def test_the_pytorch_script_computes_what_the_engine_does(rt, rng, tmp_path, shape, mw):
    pytest.importorskip("torch")
    from test_torch_code import _script, _torch_out
    g = encoding_graph(shape, mw, add=True)
    x = rng.normal(size=(3,) + shape).astype(np.float32)
    want = _predict(rt, g, x)
    module = _script(tmp_path, Project(g), {})
    model = module.build_model()
    assert module.TORCH_WEIGHTS == {}
    assert not any("table" in k for k in model.state_dict())  # a buffer, not a weight
    got = _torch_out(module, model, {"x": x})
    np.testing.assert_allclose(got["out"], want, rtol=0, atol=1e-6)


# -- Keras, out and in ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape,mw", [((5, 4), 10000.0), ((6, 5), 50.5)])
def test_keras_out_is_keras_hubs_class_and_config_and_comes_back(rt, rng, tmp_path, shape, mw):
    keras = pytest.importorskip("keras")
    from layerloom.interop import export as interop_export
    from layerloom.interop import keras_export, keras_import
    g = encoding_graph(shape, mw, add=True)
    x = rng.normal(size=(3,) + shape).astype(np.float32)
    want = _predict(rt, g, x)
    model = keras_export.to_keras(Project(g), {}, compile=False)
    layer = model.get_layer("pe")
    assert type(layer).__name__ == "SinePositionEncoding"
    assert layer.get_config()["max_wavelength"] == mw
    np.testing.assert_allclose(np.asarray(model.predict(x, verbose=0)), want, rtol=0, atol=TOL)
    path = str(tmp_path / "m.keras")
    interop_export(Project(g), {}, path)
    back, back_ws = keras_import.read(path)
    assert back.graph.nodes["pe"].type == "SinePositionEncoding"
    assert back.graph.nodes["pe"].params == {"max_wavelength": mw}
    assert back_ws == {}
    np.testing.assert_allclose(_predict(rt, back.graph, x), want, rtol=0, atol=1e-6)
    again = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(np.asarray(again.predict(x, verbose=0)), want, rtol=0, atol=TOL)


def test_keras_hubs_config_is_read():
    """keras-hub's get_config (its base Layer's keys and max_wavelength, an int by default)."""
    from layerloom.interop.keras_in_layers import convert
    config = {"name": "sine_position_encoding", "trainable": True,
              "dtype": {"module": "keras", "class_name": "DTypePolicy",
                        "config": {"name": "float32"}, "registered_name": None},
              "max_wavelength": 10000}
    assert convert("pe", "SinePositionEncoding", config, [(8, 16)]) == \
        ("SinePositionEncoding", {"max_wavelength": 10000.0})
    assert convert("pe", "SinePositionEncoding", {"name": "pe"}, [(8, 16)]) == \
        ("SinePositionEncoding", {"max_wavelength": 10000.0})
    with pytest.raises(DataError, match="'pe'.*max_wavelength"):
        convert("pe", "SinePositionEncoding", {"name": "pe", "max_wavelength": 0}, [(8, 16)])
