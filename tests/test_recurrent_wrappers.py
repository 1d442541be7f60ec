"""Recurrent wrappers (engine/layers/recurrent_bidirectional.py): Bidirectional read from models
Keras itself built and saved (.keras and legacy .h5), with random weights, predicting what Keras
does within 1e-5; what has no Layerloom form refused by name. The numerics (forward against the
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


@pytest.mark.parametrize("cell, merge_mode", [("LSTM", "concat"), ("GRU", None)])
def test_a_keras_bidirectional_returning_its_states_predicts_what_keras_does(keras, tmp_path,
                                                                             cell, merge_mode):
    x = keras.Input((4, 3))
    outs = keras.layers.Bidirectional(getattr(keras.layers, cell)(3, return_state=True),
                                      merge_mode=merge_mode, name="bi")(x)
    model = keras.Model(x, [keras.layers.Dense(2, name=f"d{i}")(o)
                            for i, o in enumerate(outs)])
    _randomize(model)
    xs = np.random.default_rng(1).standard_normal((5, 4, 3)).astype(np.float32)
    project, err = _imports_as_keras_predicts(keras, model, str(tmp_path / "m.keras"), xs)
    assert err <= TOLERANCE, err
    node = project.graph.nodes["bi"]
    states = ["h", "c"] if cell == "LSTM" else ["h"]
    assert node.layer.output_names(node.params) == (
        ["forward", "backward"] if merge_mode is None else ["y"]) + [
        f"{d}_{st}" for d in ("forward", "backward") for st in states]


def test_what_a_bidirectional_cannot_be_is_refused_by_name(keras, tmp_path):
    x = keras.Input((5, 3))
    y = keras.layers.Bidirectional(keras.layers.LSTM(3, recurrent_dropout=0.2), name="bi")(x)
    path = str(tmp_path / "dropout.keras")
    keras.Model(x, y).save(path)
    with pytest.raises(DataError, match=r"'bi/forward_lstm\w*' \(LSTM\): option "
                                        r"recurrent_dropout=0.2"):
        keras_import.read(path)
    y = keras.layers.Bidirectional(keras.layers.LSTM(3), backward_layer=keras.layers.LSTM(
        5, go_backwards=True), name="bi")(x)
    path = str(tmp_path / "back.keras")
    keras.Model(x, y).save(path)
    with pytest.raises(DataError, match=r"'bi' \(Bidirectional\): option backward_layer"):
        keras_import.read(path)


# -- ONNX in: torch.onnx.export of nn.LSTM, nn.GRU and nn.RNN (batch_first) ---------------------
class _TorchRecurrent:
    """nn.<cell>(batch_first) over 5 steps, its outputs flattened, then a Linear."""

    def __new__(cls, torch, cell, bidirectional, last=False, **kw):
        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = getattr(torch.nn, cell)(3, 4, batch_first=True,
                                                   bidirectional=bidirectional, **kw)
                self.head = torch.nn.Linear((1 if last else 5) * (8 if bidirectional else 4), 2)

            def forward(self, x):
                y, _ = self.rnn(x)
                return self.head(y[:, -1] if last else torch.flatten(y, 1))
        return M()


@pytest.mark.parametrize("cell, bidirectional, kw", [
    ("LSTM", False, {}), ("GRU", False, {}), ("RNN", False, {}),
    ("RNN", False, {"nonlinearity": "relu"}), ("LSTM", True, {}), ("GRU", True, {}),
    ("GRU", False, {"last": True}), ("LSTM", False, {"last": True})])
def test_a_torch_recurrent_layer_exported_to_onnx_imports_and_predicts_what_torch_does(
        tmp_path, cell, bidirectional, kw):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from layerloom.interop import onnx_import
    torch.manual_seed(0)
    model = _TorchRecurrent(torch, cell, bidirectional, **kw).eval()
    x = torch.randn(3, 5, 3)
    path = str(tmp_path / "m.onnx")
    torch.onnx.export(model, (x,), path, dynamo=False, input_names=["x"],
                      output_names=["y"])
    project, weights = onnx_import.read(path)
    kinds = {n.type for n in project.graph.nodes.values()}
    want_type = "Bidirectional" if bidirectional else {"RNN": "SimpleRNN"}.get(cell, cell)
    assert want_type in kinds, kinds
    xs = np.random.default_rng(2).standard_normal((6, 5, 3)).astype(np.float32)
    got = Model(project, weights).predict(xs)
    with torch.no_grad():
        want = model(torch.from_numpy(xs)).numpy()
    assert _max_error(got, want) <= TOLERANCE, _max_error(got, want)


@pytest.mark.parametrize("attrs, inputs, words", [
    ({"direction": "reverse"}, 4, "direction 'reverse'"),
    ({"clip": 1.0}, 4, "attribute 'clip'"),
    ({}, 6, "sequence_lens"),
])
def test_an_onnx_lstm_without_a_layerloom_form_is_refused_naming_it(tmp_path, attrs, inputs,
                                                                      words):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from layerloom.interop import onnx_import
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("W", (1, 8, 3)), ("R", (1, 8, 2)), ("B", (1, 16)))]
    inits.append(numpy_helper.from_array(np.full(2, 5, np.int32), "lens"))
    names = ["xt", "W", "R", "B", "lens", ""][:inputs]
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("LSTM", names, ["Y"], name="lstm", hidden_size=2, **attrs),
             helper.make_node("Squeeze", ["Y", "axes"], ["Ys"]),
             helper.make_node("Transpose", ["Ys"], ["y"], perm=[1, 0, 2])]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axes"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [2, 5, 3])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [2, 5, 2])], inits)
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(DataError) as e:
        onnx_import.read(path)
    assert "'lstm' (LSTM)" in str(e.value) and words in str(e.value), str(e.value)


# -- TimeDistributed ----------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_a_keras_time_distributed_model_predicts_what_keras_does(keras, tmp_path, ext):
    """Frames (steps of images) through TimeDistributed Conv2D, MaxPooling2D, Flatten, Dropout
    and Dense, then an LSTM: Keras' model with random weights, saved and read back."""
    L = keras.layers
    x = keras.Input((3, 6, 6, 2))
    h = L.TimeDistributed(L.Conv2D(3, 3, activation="relu"), name="conv")(x)
    h = L.TimeDistributed(L.MaxPooling2D(2), name="pool")(h)
    h = L.TimeDistributed(L.Flatten(), name="flat")(h)
    h = L.TimeDistributed(L.Dropout(0.4), name="drop")(h)
    h = L.TimeDistributed(L.Dense(5, activation="tanh"), name="dense")(h)
    model = keras.Model(x, L.Dense(2, name="out")(L.LSTM(4, name="lstm")(h)))
    _randomize(model)
    xs = np.random.default_rng(1).standard_normal((4, 3, 6, 6, 2)).astype(np.float32)
    project, err = _imports_as_keras_predicts(keras, model, str(tmp_path / f"m.{ext}"), xs)
    assert err <= TOLERANCE, err
    g = project.graph
    assert g.nodes["conv"].type == "TimeDistributed"
    assert g.nodes["conv"].params["layer"]["type"] == "Conv2D"
    assert g.nodes["conv"].params["layer"]["params"]["filters"] == 3
    assert g.nodes["drop"].params["layer"] == {"type": "Dropout", "params": dict(
        g.nodes["drop"].params["layer"]["params"], rate=0.4)}
    assert g.analysis().shapes["dense"][0] == (3, 5)


def test_a_dropout_inside_time_distributed_drops_in_training_only():
    """Inference passes the steps through; training zeroes about `rate` of them and scales the
    rest by 1 / (1 - rate), and its backward uses the same mask."""
    from layerloom.backend.runtime import Runtime
    from layerloom.core.graph import Graph
    from layerloom.train.model import Model as Compiled
    g = Graph()
    g.add_node("Input", {"shape": [20, 50]}, id="x")
    g.add_node("TimeDistributed", {"layer": {"type": "Dropout", "params": {"rate": 0.5}}},
               id="td")
    g.connect("x", 0, "td", 0)
    m = Compiled(g, Runtime(), 4)
    xs = np.ones((4, 20, 50), np.float32)
    np.testing.assert_array_equal(m.predict({"x": xs})["td"], xs)
    m.load_inputs({"x": xs})
    m.forward(4, training=True, step=3)
    t = m.output("td")
    y = m.rt.read(t.buf, 4 * t.size, (4,) + t.shape)
    assert set(np.unique(y)) == {0.0, 2.0}
    assert 0.45 < (y == 0).mean() < 0.55


def test_a_time_distributed_layer_is_validated_against_the_wrapped_declaration():
    from layerloom.core.errors import LayerloomError
    from layerloom.core.graph import Graph
    g = Graph()
    g.add_node("Input", {"shape": [4, 3]}, id="x")
    with pytest.raises(LayerloomError, match="Dense has no parameter 'filters'"):
        g.add_node("TimeDistributed", {"layer": {"type": "Dense", "params": {"filters": 3}}})
    with pytest.raises(LayerloomError, match="no layer type is called 'Dence'"):
        g.add_node("TimeDistributed", {"layer": {"type": "Dence", "params": {}}})
    with pytest.raises(LayerloomError, match="units"):
        g.add_node("TimeDistributed", {"layer": {"type": "Dense", "params": {"units": 0}}})
    node = g.add_node("TimeDistributed", {"layer": {"type": "Dense", "params": {"units": 7}}})
    layer = node.params["layer"]
    assert layer["type"] == "Dense" and layer["params"]["units"] == 7
    assert layer["params"]["use_bias"] is True  # the wrapped layer's defaults filled in
    assert node.layer.headline_text(node.params) == "Dense 7"


# -- the mask: token ids whose 0 skips a step ---------------------------------------------------
MASKED = [("SimpleRNN", {"units": 3, "return_sequences": True}),
          ("LSTM", {"units": 2, "return_sequences": True, "return_state": True}),
          ("GRU", {"units": 3}),
          ("Bidirectional", {"layer": "LSTM", "units": 2, "return_sequences": True}),
          ("Bidirectional", {"layer": "GRU", "units": 2, "merge_mode": "sum"}),
          ("Bidirectional", {"layer": "SimpleRNN", "units": 2, "merge_mode": "none",
                             "return_sequences": True}),
          # eight units: the cells' vector forms on CPUs (rnn.cl *_ew)
          ("SimpleRNN", {"units": 8, "return_sequences": True}),
          ("LSTM", {"units": 8, "return_sequences": True, "return_state": True})]


@pytest.mark.parametrize("type_id, params", MASKED, ids=[f"{t}{i}" for i, (t, _) in
                                                          enumerate(MASKED)])
def test_a_masked_step_is_skipped_forward_and_backward(rt, ops, type_id, params):
    """With ids holding zeros (first, in the middle, last, a whole row), the engine's outputs
    are the float64 reference's and its gradients (weights and input) its central
    differences; the ids get none."""
    from conftest import numeric_grad
    from test_layers import run_layer
    from layerloom.core.registry import get_layer
    layer = get_layer(type_id)
    p = {**layer.defaults(), **params}
    rng = np.random.default_rng(5)
    T, D = 5, 3
    ids = np.array([[0, 4, 0, 2, 1], [3, 1, 2, 0, 0], [0, 0, 0, 0, 0], [5, 6, 7, 8, 9]],
                   np.float64)
    xs = [rng.normal(size=(4, T, D)), ids]
    ws = {w.name: rng.normal(size=w.shape) * 0.5 for w in layer.weights(p, [(T, D), (T,)])}
    refs = layer.reference(p, xs, ws)
    dys = [rng.normal(size=r.shape) for r in refs]
    ys, dxs, dws = run_layer(rt, ops, layer, p, xs, ws, dys if len(dys) > 1 else dys[0])
    for y, r in zip(ys if len(refs) > 1 else [ys], refs):
        np.testing.assert_allclose(y, r, rtol=1e-5, atol=1e-5)

    def f():
        return float(sum((r * d).sum() for r, d in zip(layer.reference(p, xs, ws), dys)))
    for k in dws:
        np.testing.assert_allclose(dws[k], numeric_grad(f, ws[k]), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(dxs[0], numeric_grad(f, xs[0]), rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(dxs[1], 0)
    # a masked step changes nothing: the all-masked row's state stays zero
    assert np.abs(refs[0][2]).max() == 0


@pytest.mark.parametrize("cell, wrap, sequences", [
    ("LSTM", False, True), ("GRU", False, False), ("SimpleRNN", False, True),
    ("LSTM", True, True), ("GRU", True, False)])
def test_a_keras_embedding_with_mask_zero_imports_with_its_mask(keras, tmp_path, cell, wrap,
                                                                sequences):
    """Embedding(mask_zero=True) -> the recurrent layer: Keras skips the padded steps; the
    import wires the ids to the recurrent layer's mask input and predicts the same."""
    L = keras.layers
    ids = keras.Input((6,), dtype="int32", name="ids")
    e = L.Embedding(10, 4, mask_zero=True, name="embed")(ids)
    rnn = getattr(L, cell)(3, return_sequences=sequences, **({} if wrap else {"name": "rnn"}))
    h = (L.Bidirectional(rnn, name="rnn") if wrap else rnn)(e)
    if sequences:
        h = L.Flatten(name="flat")(h)
    model = keras.Model(ids, L.Dense(2, name="out")(h))
    _randomize(model)
    xs = np.array([[0, 0, 3, 4, 5, 6], [1, 2, 0, 3, 0, 4], [7, 8, 9, 1, 0, 0],
                   [0, 0, 0, 0, 0, 0], [5, 5, 5, 5, 5, 5]], np.int32)
    project, err = _imports_as_keras_predicts(keras, model, str(tmp_path / "m.keras"),
                                              xs.astype(np.float32))
    assert err <= TOLERANCE, err
    g = project.graph
    assert g.nodes["embed"].params["mask_zero"] is True
    assert [(e.src, e.dst_port) for e in g.in_edges("rnn")] == [("embed", 0), ("ids", 1)]


def test_stacked_masked_layers_and_a_mask_layerloom_cannot_use(keras, tmp_path):
    """The mask passes through a recurrent layer returning sequences and a Dropout to the
    next one (both wired to the ids); a GlobalAveragePooling1D, which would average the
    unmasked steps only, is refused by name."""
    L = keras.layers
    ids = keras.Input((5,), dtype="int32", name="ids")
    e = L.Embedding(8, 3, mask_zero=True, name="embed")(ids)
    h = L.LSTM(4, return_sequences=True, name="first")(e)
    h = L.GRU(2, name="second")(L.Dropout(0.2, name="drop")(h))
    model = keras.Model(ids, L.Dense(2, name="out")(h))
    _randomize(model)
    xs = np.array([[0, 1, 2, 0, 3], [4, 0, 0, 5, 0], [0, 0, 0, 0, 1]], np.float32)
    project, err = _imports_as_keras_predicts(keras, model, str(tmp_path / "m.keras"), xs)
    assert err <= TOLERANCE, err
    g = project.graph
    assert [e.src for e in g.in_edges("second")] == ["drop", "ids"]
    pooled = L.GlobalAveragePooling1D(name="avg")(L.Embedding(8, 3, mask_zero=True)(ids))
    path = str(tmp_path / "avg.keras")
    keras.Model(ids, pooled).save(path)
    with pytest.raises(DataError, match=r"'avg' \(GlobalAveragePooling1D\).*mask_zero=True"):
        keras_import.read(path)


@pytest.mark.parametrize("rnn", [{"type": "LSTM", "params": {"units": 3,
                                                            "return_sequences": True}},
                                 {"type": "Bidirectional", "params": {"layer": "GRU",
                                                                      "units": 2}}])
def test_a_masked_graph_exports_to_keras_and_pytorch_with_its_mask(keras, rt, tmp_path, rnn):
    """Layerloom's graph with the ids wired to the recurrent layer's mask: the Keras model and
    the PyTorch module written from it predict what Layerloom does; ONNX refuses the mask by
    name."""
    torch = pytest.importorskip("torch")
    import importlib.util
    from layerloom.core.errors import LayerloomError
    from layerloom.core.graph import Graph
    from layerloom.interop import export as interop_export, keras_export
    from layerloom.project import loom
    g = Graph()
    g.add_node("Input", {"shape": [6]}, id="ids")
    g.add_node("Embedding", {"input_dim": 9, "output_dim": 3, "mask_zero": True}, id="embed")
    g.add_node(rnn["type"], rnn["params"], id="rnn")
    g.add_node("Flatten", {}, id="flat")
    g.add_node("Dense", {"units": 2}, id="out")
    for a, b, port in (("ids", "embed", 0), ("embed", "rnn", 0), ("ids", "rnn", 1),
                       ("rnn", "flat", 0), ("flat", "out", 0)):
        g.connect(a, 0, b, port)
    from layerloom.project.training import parse_training
    project = loom.Project(g, training=parse_training({"loss": {"out": "mse"}}, g, []))
    rng = np.random.default_rng(4)
    shapes = g.analysis().shapes
    weights = {f"{nid}/{s.name}": rng.uniform(-0.7, 0.7, s.shape).astype(np.float32)
               for nid in ("embed", "rnn", "out") for s in g.nodes[nid].layer.weights(
                   g.nodes[nid].params, [shapes[e.src][e.src_port] for e in g.in_edges(nid)])}
    xs = np.array([[0, 1, 2, 0, 3, 0], [4, 0, 0, 5, 0, 8], [0, 0, 0, 0, 0, 0],
                   [1, 2, 3, 4, 5, 6]], np.float32)
    want = Model(project, weights).predict(xs)
    got = keras_export.to_keras(project, weights).predict(xs, verbose=0)
    assert _max_error(got, want) <= TOLERANCE
    path = str(tmp_path / "train_torch.py")
    interop_export(project, weights, path, "pytorch-code")
    spec = importlib.util.spec_from_file_location("train_torch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with torch.no_grad():
        got = module.build_model()({"ids": torch.from_numpy(xs)}).numpy()
    assert _max_error(got, want) <= TOLERANCE
    with pytest.raises(LayerloomError, match="mask input has no ONNX form"):
        interop_export(project, weights, str(tmp_path / "m.onnx"), "onnx")


@pytest.mark.parametrize("rnn", [
    {"type": "LSTM", "params": {"units": 3}},
    {"type": "LSTM", "params": {"units": 3, "return_sequences": True}},
    {"type": "GRU", "params": {"units": 2}},
    {"type": "SimpleRNN", "params": {"units": 3, "activation": "relu",
                                     "return_sequences": True}},
    {"type": "Bidirectional", "params": {"layer": "LSTM", "units": 2,
                                         "return_sequences": True}}])
def test_layerloom_s_onnx_export_of_a_recurrent_layer_imports_back(tmp_path, rnn):
    pytest.importorskip("onnx")
    from layerloom.core.graph import Graph
    from layerloom.interop import export as interop_export, onnx_import
    from layerloom.project import loom
    from layerloom.project.training import parse_training
    g = Graph()
    g.add_node("Input", {"shape": [5, 4]}, id="x")
    g.add_node(rnn["type"], rnn["params"], id="rnn")
    g.add_node("Flatten", {}, id="flat")
    g.add_node("Dense", {"units": 2}, id="out")
    for a, b in (("x", "rnn"), ("rnn", "flat"), ("flat", "out")):
        g.connect(a, 0, b, 0)
    project = loom.Project(g, training=parse_training({"loss": {"out": "mse"}}, g, []))
    original = Model(project)
    weights = original.session.model.get_weights()
    path = str(tmp_path / "m.onnx")
    interop_export(project, weights, path, "onnx")
    back, back_weights = onnx_import.read(path)
    node = next(n for n in back.graph.nodes.values() if n.type == rnn["type"])
    assert {k: node.params[k] for k in rnn["params"]} == rnn["params"]
    xs = np.random.default_rng(0).standard_normal((3, 5, 4)).astype(np.float32)
    err = _max_error(Model(back, back_weights).predict(xs), original.predict(xs))
    assert err <= TOLERANCE, err
