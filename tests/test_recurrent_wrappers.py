"""Recurrent wrappers (engine/layers/recurrent.py): Bidirectional read from models Keras itself
built and saved (.keras and legacy .h5), with random weights, predicting what Keras does
within 1e-5; what has no Layerloom form refused by name. The numerics (forward against the
float64 reference, backward by finite differences) and the ONNX, PyTorch and Keras exports of
every example run in tests/test_layers.py and the export tests from the declaration."""
import os

import numpy as np
import pytest

pytest.importorskip("h5py")

from layerloom.api import Model  # noqa: E402
from layerloom.core.errors import DataError  # noqa: E402
from layerloom.interop import keras_import  # noqa: E402

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


def _randomize(model, seed=0):
    """Weights drawn at random (biases too, which Keras starts at zero)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32)
                       for w in model.get_weights()])


def _max_error(got, want):
    if isinstance(want, list):
        return max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    return float(np.abs(got - want).max())


def _imports_as_keras_predicts(keras, model, path, xs):
    model.save(path)
    project, weights = keras_import.read(path)
    assert not project.graph.analysis().problems
    got = Model(project, weights).predict(xs)
    want = model.predict(xs, verbose=0)
    if isinstance(want, list):  # the outputs by their Keras names
        got = [got[name] for name in model.output_names]
    return project, _max_error(got, want)


@pytest.mark.parametrize("cell, merge_mode, sequences", [
    ("LSTM", "concat", True), ("GRU", "sum", False), ("SimpleRNN", "mul", True),
    ("LSTM", "ave", False), ("GRU", None, True), ("SimpleRNN", "concat", False)])
@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_a_keras_bidirectional_predicts_what_keras_does(keras, tmp_path, cell, merge_mode,
                                                        sequences, ext):
    x = keras.Input((5, 3))
    kw = {"activation": "relu"} if cell == "SimpleRNN" else {}
    inner = getattr(keras.layers, cell)(4, return_sequences=sequences, **kw)
    y = keras.layers.Bidirectional(inner, merge_mode=merge_mode, name="bi")(x)
    if merge_mode is None:
        model = keras.Model(x, [keras.layers.Dense(2, name="a")(y[0]),
                                keras.layers.Dense(2, name="b")(y[1])])
    else:
        model = keras.Model(x, keras.layers.Dense(2, name="out")(y))
    _randomize(model)
    xs = np.random.default_rng(1).standard_normal((6, 5, 3)).astype(np.float32)
    project, err = _imports_as_keras_predicts(keras, model, str(tmp_path / f"m.{ext}"), xs)
    assert err <= TOLERANCE, err
    node = project.graph.nodes["bi"]
    assert node.type == "Bidirectional"
    assert node.params["layer"] == cell and node.params["units"] == 4
    assert node.params["merge_mode"] == ("none" if merge_mode is None else merge_mode)
    assert node.params["return_sequences"] == sequences


def test_a_bidirectional_keras_exports_comes_back_with_its_weights(keras, tmp_path):
    """Layerloom's Keras export of a Bidirectional GRU (its stacked (2, 3u) biases) read back
    gives the same weights."""
    from layerloom.core.graph import Graph
    from layerloom.interop import keras_export
    from layerloom.project.loom import Project
    g = Graph()
    g.add_node("Input", {"shape": [4, 3]}, id="x")
    g.add_node("Bidirectional", {"layer": "GRU", "units": 2, "return_sequences": True},
               id="bi")
    g.add_node("Flatten", {}, id="flat")
    g.add_node("Dense", {"units": 1}, id="out")
    for a, b in (("x", "bi"), ("bi", "flat"), ("flat", "out")):
        g.connect(a, 0, b, 0)
    from layerloom.project.training import parse_training
    project = Project(g, training=parse_training({"loss": {"out": "mse"}}, g, []))
    rng = np.random.default_rng(3)
    specs = {f"{nid}/{s.name}": s.shape for nid in ("bi", "out")
             for s in g.nodes[nid].layer.weights(g.nodes[nid].params,
                                                  [g.analysis().shapes[e.src][e.src_port]
                                                   for e in g.in_edges(nid)])}
    weights = {k: rng.uniform(-0.5, 0.5, s).astype(np.float32) for k, s in specs.items()}
    path = str(tmp_path / "bi.keras")
    keras_export.export(project, weights, path)
    _, back = keras_import.read(path)
    assert sorted(back) == sorted(weights)
    for k in weights:
        np.testing.assert_array_equal(back[k], weights[k])


def test_what_a_bidirectional_cannot_be_is_refused_by_name(keras, tmp_path):
    x = keras.Input((5, 3))
    y = keras.layers.Bidirectional(keras.layers.LSTM(3, return_state=True), name="bi")(x)
    path = str(tmp_path / "state.keras")
    keras.Model(x, y[0]).save(path)
    with pytest.raises(DataError, match=r"'bi/forward_lstm\w*' \(LSTM\): option "
                                        r"return_state=True"):
        keras_import.read(path)
    y = keras.layers.Bidirectional(keras.layers.LSTM(3), backward_layer=keras.layers.LSTM(
        5, go_backwards=True), name="bi")(x)
    path = str(tmp_path / "back.keras")
    keras.Model(x, y).save(path)
    with pytest.raises(DataError, match=r"'bi' \(Bidirectional\): option backward_layer"):
        keras_import.read(path)
