"""ONNX export (engine/interop/onnx_export.py) against the engine itself: every layer type's
harness examples (as tests/test_layers.py takes them from the declarations) as a one-layer
graph with random weights, run by Layerloom on the device and by onnxruntime on the same
float32 inputs; then the bundled example projects through their fitted normalisation, the
exported model taking the raw arrays.

Tolerance: max |onnxruntime - Layerloom| <= 1e-5 everywhere (both compute in float32; the
largest difference measured is ~1e-6, a 3x3 convolution's sums in another order). No case
needs a looser bound: GELU and the Lambda's erf agree to ~3e-7."""
import json
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from layerloom.core import expr  # noqa: E402
from layerloom.core.errors import LayerloomError, ProjectError  # noqa: E402
from layerloom.core.graph import Graph  # noqa: E402
from layerloom.core.registry import layer_types  # noqa: E402
from layerloom.interop import onnx_export, onnx_graph, onnx_layers  # noqa: E402
from layerloom.project import loom  # noqa: E402
from layerloom.train.model import Model  # noqa: E402
from test_layers import _case_id, _graph_for as layer_graph  # noqa: E402

TOL = 1e-5
EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "assets", "examples")
MEASURED = {}  # case id -> max abs error; $LAYERLOOM_ONNX_REPORT=FILE.json keeps them


@pytest.fixture(scope="module", autouse=True)
def _report():
    """docs/onnx.md's table of measured errors: written where $LAYERLOOM_ONNX_REPORT says."""
    yield
    path = os.environ.get("LAYERLOOM_ONNX_REPORT")
    if path and MEASURED:
        with open(path, "w") as f:
            json.dump(MEASURED, f, indent=1, sort_keys=True)

# cases beyond the declarations' examples: the forms those do not reach (SimpleRNN's unrolled
# activations, every Lambda function and comparison, windows that leave a remainder)
EXTRA = [
    ("SimpleRNN", {"units": 3, "activation": "elu", "return_sequences": True}, [(4, 2)]),
    ("SimpleRNN", {"units": 2, "activation": "hard_sigmoid", "return_state": True}, [(3, 3)]),
    ("SimpleRNN", {"units": 2, "activation": "linear"}, [(1, 2)]),
    ("SimpleRNN", {"units": 3, "activation": "sigmoid", "return_sequences": True}, [(3, 2)]),
    ("Lambda", {"expression": "sin(a) * cos(b) + tan(a / 4) - sign(b)"}, [(6,), (6,)]),
    ("Lambda", {"expression": "(a >= b) + (a < b) * 2 + (a <= 0) * 3 + (a == a) + (a != b)"},
     [(5,), (5,)]),
    ("Lambda", {"expression": "-relu(x) + sqrt(abs(x)) * pi + e"}, [(4,)]),
    ("Lambda", {"expression": "2.5"}, [(2, 3)]),
    ("Lambda", {"expression": "softplus(30 * x) - sigmoid(x) ** 2"}, [(8,)]),
    ("Conv1D", {"filters": 2, "kernel_size": 2, "strides": 2}, [(5, 3)]),
    ("Conv2D", {"filters": 3, "kernel_size": 3, "strides": 2, "activation": "softmax"},
     [(6, 5, 2)]),
    ("MaxPooling2D", {"pool_size": 2}, [(5, 5, 2)]),
    ("AveragePooling1D", {"pool_size": 2, "strides": 3}, [(8, 2)]),
    ("Dense", {"units": 4, "activation": "softmax"}, [(2, 3, 5)]),
]
CASES = [(layer.type_id, params, shapes) for layer in layer_types() if not layer.is_input
         for params, shapes in layer.examples] + EXTRA


def _graph_for(type_id, params, shapes):
    """test_layers' one-layer graph; a layer with several outputs (return_state) feeds an
    identity Dropout per port, so each becomes a graph output."""
    g = layer_graph(type_id, params, shapes)
    node = g.nodes["node"]
    ports = node.layer.output_names(node.params)
    if len(ports) > 1:
        for i, port in enumerate(ports):
            g.add_node("Dropout", {"rate": 0.0}, id=f"node_{port}")
            g.connect("node", i, f"node_{port}", 0)
    assert not g.validate()
    return g


def _random_weights(g, rng):
    node = g.nodes["node"]
    shapes = g.infer_shapes()[0]
    in_shapes = [shapes[e.src][e.src_port] for e in g.in_edges("node")]
    ws = {}
    for spec in node.layer.weights(node.params, in_shapes):
        a = rng.normal(size=spec.shape) * (0.5 if spec.init != "zeros" else 0.1)
        if spec.name in ("moving_variance", "variance"):
            a = np.abs(a) + 0.5
        ws[f"node/{spec.name}"] = a.astype(np.float32)
    return ws


def _inputs(g, rng, batch):
    node = g.nodes["node"]
    shapes = g.infer_shapes()[0]
    xs = {}
    for nid in g.inputs():
        sh = (batch,) + tuple(shapes[nid][0])
        if node.layer.integer_inputs:  # indices, some out of range on purpose
            top = node.params.get("input_dim", node.params.get("vocabulary_size"))
            xs[nid] = rng.integers(-1, top + 1, sh).astype(np.float32)
        else:
            xs[nid] = rng.normal(size=sh).astype(np.float32)
    return xs


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _run(model, xs):
    s = _session(model)
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, xs)))


def _max_error(got, want):
    assert set(got) == set(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
    return max(float(np.abs(got[k] - want[k]).max()) if want[k].size else 0.0 for k in want)


@pytest.mark.parametrize("type_id,params,shapes", CASES,
                         ids=[_case_id(*c) for c in CASES])
def test_layer_matches_engine(rt, rng, type_id, params, shapes):
    g = _graph_for(type_id, params, shapes)
    ws = _random_weights(g, rng)
    xs = _inputs(g, rng, batch=3)
    want = Model(g, rt, 3, weights=ws).predict(xs)
    model = onnx_export.to_onnx(loom.Project(g), ws)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    assert [i.name for i in model.graph.input] == g.inputs()
    assert [o.name for o in model.graph.output] == g.outputs()
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"
    err = _max_error(_run(model, xs), want)
    MEASURED[_case_id(type_id, params, shapes)] = err
    assert err <= TOL


def test_every_layer_type_has_a_converter():
    missing = [l.type_id for l in layer_types()
               if not l.is_input and l.type_id not in onnx_layers.CONVERTERS]
    # the host layers (text: strings in) have no ONNX form and say why (refused by name)
    assert missing == [l.type_id for l in layer_types() if getattr(l, "host", False)
                       and l.no_form.get("onnx")]
    assert sorted(missing) == ["IntegerLookup", "StartEndPacker", "StringLookup",
                               "TextVectorization", "WordPieceTokenizer"]
    assert set(onnx_layers.LAYER_OPS) == set(onnx_layers.CONVERTERS)


def test_every_activation_and_expression_function_is_mapped():
    from layerloom.core.activations import NAMES
    assert set(NAMES) == set(onnx_graph._ACTIVATIONS) == set(onnx_graph.ACTIVATION_OPS)
    ops = set(expr.FUNCTIONS) | {"+", "-", "*", "/", "**", "neg", ">", ">=", "<", "<=", "==",
                                 "!="}
    assert ops <= set(onnx_graph._EXPR)


def _conv_graph():
    g = Graph()
    g.add_node("Input", {"shape": [6, 6, 2]}, id="image")
    g.add_node("Conv2D", {"filters": 3, "kernel_size": 3, "activation": "relu"}, id="conv")
    g.add_node("GlobalAveragePooling2D", {}, id="pool")
    g.add_node("Dense", {"units": 2}, id="score")
    g.add_node("Dot", {}, id="dot")
    g.add_node("LayerNormalization", {}, id="norm")
    for a, b, port in (("image", "conv", 0), ("conv", "pool", 0), ("pool", "score", 0),
                       ("score", "dot", 0), ("score", "dot", 1), ("score", "norm", 0)):
        g.connect(a, 0, b, port)
    return g


@pytest.mark.parametrize("opset", [17, 18, 21])
def test_opsets_and_a_dynamic_batch(rt, rng, opset):
    """Reduce* change form at opset 18; one exported model takes any batch size."""
    g = _conv_graph()
    m = Model(g, rt, 7)
    ws = m.get_weights()
    model = onnx_export.to_onnx(loom.Project(g), ws, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == opset
    s = _session(model)
    for batch in (1, 7):
        x = rng.normal(size=(batch, 6, 6, 2)).astype(np.float32)
        want = m.predict({"image": x})
        got = dict(zip(["dot", "norm"], s.run(["dot", "norm"], {"image": x})))
        assert _max_error(got, want) <= TOL


def test_shared_output_tensors_get_their_own_names(rt, rng):
    """Two outputs that are the same tensor (identity layers at inference) and an output read
    by another node."""
    g = Graph()
    g.add_node("Input", {"shape": [3]}, id="x")
    g.add_node("Dense", {"units": 2}, id="d")
    g.add_node("Dropout", {"rate": 0.3}, id="out_a")
    g.add_node("GaussianNoise", {}, id="out_b")
    g.add_node("Dropout", {}, id="straight")
    for a, b in (("x", "d"), ("d", "out_a"), ("d", "out_b"), ("x", "straight")):
        g.connect(a, 0, b, 0)
    m = Model(g, rt, 4)
    model = onnx_export.to_onnx(loom.Project(g), m.get_weights())
    onnx.checker.check_model(model, full_check=True)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    assert _max_error(_run(model, {"x": x}), m.predict({"x": x})) <= TOL


# -- errors -------------------------------------------------------------------------------------
def _dense_project():
    g = Graph()
    g.add_node("Input", {"shape": [3]}, id="x")
    g.add_node("Dense", {"units": 2, "activation": "softmax"}, id="probs")
    g.connect("x", 0, "probs", 0)
    return loom.Project(g)


def _dense_weights():
    return {"probs/kernel": np.ones((3, 2), np.float32), "probs/bias": np.zeros(2, np.float32)}


def test_a_layer_without_converter_is_refused_naming_it(monkeypatch):
    monkeypatch.delitem(onnx_layers.CONVERTERS, "Dense")
    with pytest.raises(onnx_export.ExportError) as e:
        onnx_export.to_onnx(_dense_project(), _dense_weights())
    assert isinstance(e.value, ProjectError)
    assert "Dense layer 'probs' cannot be exported to ONNX" in str(e.value)
    assert "'probs' (Dense)" in str(e.value)  # the place: graph.nodes[1] 'probs' (Dense)


def test_an_expression_op_without_form_is_refused_naming_the_node(monkeypatch):
    monkeypatch.delitem(onnx_graph._EXPR, "sin")
    g = Graph()
    g.add_node("Input", {"shape": [3]}, id="x")
    g.add_node("Lambda", {"expression": "sin(x) + 1"}, id="wave")
    g.connect("x", 0, "wave", 0)
    with pytest.raises(onnx_export.ExportError, match="Lambda layer 'wave'.*'sin'"):
        onnx_export.to_onnx(loom.Project(g), {})


def test_missing_onnx_names_the_extra(monkeypatch):
    monkeypatch.setattr(onnx_graph, "onnx", None)
    with pytest.raises(LayerloomError, match=r"pip install 'layerloom\[onnx\]'"):
        onnx_export.to_onnx(_dense_project(), _dense_weights())


@pytest.mark.parametrize("change,message", [
    (lambda w: w.pop("probs/bias"), "no array 'probs/bias'"),
    (lambda w: w.update({"probs/kernel": np.ones((2, 3))}), r"shape \(2, 3\).*needs \(3, 2\)"),
    (lambda w: w.update({"other/kernel": np.ones(1)}), "'other/kernel' name no weight"),
], ids=["missing", "wrong_shape", "unknown"])
def test_weights_that_do_not_fit_are_refused(change, message):
    w = _dense_weights()
    change(w)
    with pytest.raises(ProjectError, match=message):
        onnx_export.to_onnx(_dense_project(), w)


def test_unsupported_opset_and_missing_statistics_are_refused():
    with pytest.raises(ProjectError, match="opset 13 is not supported"):
        onnx_export.to_onnx(_dense_project(), _dense_weights(), opset=13)
    p = _dense_project()
    p.dataset = {"source": "npz", "path": "x.npz", "normalize": "standardize"}
    with pytest.raises(ProjectError, match="no standardize statistics fitted"):
        onnx_export.to_onnx(p, _dense_weights())
    onnx_export.to_onnx(p, _dense_weights(), normalization=False)  # the caller normalises


def test_export_writes_the_file_atomically(tmp_path):
    path = tmp_path / "sub" / "model.onnx"
    model = onnx_export.export(_dense_project(), _dense_weights(), str(path))
    assert onnx.load(str(path)) == model
    assert os.listdir(path.parent) == ["model.onnx"]  # no temporary file left
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["layerloom.outputs"]) == ["probs"]
    assert model.producer_name == "layerloom"


# -- the bundled examples ----------------------------------------------------------------------
# wine_csv trains and shapes_folder decodes 900 images on a first run: seconds each
EXAMPLE_PROJECTS = ["spirals", "sine", "multitask",
                    pytest.param("wine_csv", marks=pytest.mark.slow),
                    pytest.param("shapes_folder", marks=pytest.mark.slow)]


def _raw_inputs(project, rows=64):
    """{array name: raw rows} of the training split, before any normalisation."""
    from layerloom.data.prepare import load_arrays
    arrays = load_arrays(project).train
    names = (project.dataset.get("inputs") or {}).values() or ["x"]
    return {name: np.asarray(arrays[name][:rows], np.float32) for name in names}


def example_case(rt, name):
    """A bundled example as the export tests take it: initial weights (wine_csv trained for 3
    epochs), the normalisation fitted on the project's own data. Returns (project with the
    fitted statistics, weights, {Input id: raw rows}, Layerloom's outputs for them through its
    predict path: prepare_inputs (mapping, checks, normalisation), then the model)."""
    from layerloom.data.prepare import prepare_data, prepare_inputs
    from layerloom.train.session import Session
    project = loom.load(os.path.join(EXAMPLES, f"{name}.loom"))
    session = Session(project, runtime=rt)
    data = prepare_data(project)
    if name == "wine_csv":
        session.fit(data, epochs=3)
    project.dataset = {**project.dataset, "fitted": data.fitted}
    raw = _raw_inputs(project)
    want = session.model.predict(prepare_inputs(project, raw))
    by_node = {nid: raw[arr] for nid, arr in (project.dataset.get("inputs") or {
        project.graph.inputs()[0]: "x"}).items()}
    return project, session.model.get_weights(), by_node, want


@pytest.mark.parametrize("name", EXAMPLE_PROJECTS)
def test_bundled_example_matches_engine_on_raw_inputs(rt, tmp_path, name):
    """The exported model takes the raw arrays that Layerloom's predict path takes."""
    project, weights, by_node, want = example_case(rt, name)
    path = tmp_path / f"{name}.onnx"
    onnx_export.export(project, weights, str(path))
    exported = onnx.load(str(path))
    onnx.checker.check_model(exported, full_check=True)
    err = _max_error(_run(exported, by_node), want)
    MEASURED[f"example {name}"] = err
    assert err <= TOL
    stats = json.loads({p.key: p.value for p in exported.metadata_props}[
        "layerloom.normalization"])
    if name in ("wine_csv", "shapes_folder"):  # standardize, scale: in the graph
        nid = project.graph.inputs()[0]  # by Input node
        assert set(stats) == {nid} and stats[nid]["kind"] == project.dataset["normalize"]
        assert any(n.op_type == "Sub" for n in exported.graph.node)


def test_the_python_api_exports(tmp_path, rng):
    """layerloom.Model.export (engine/api.py) writes the same model."""
    api = pytest.importorskip("layerloom.api")
    model = api.load(os.path.join(EXAMPLES, "sine.loom"))
    path = tmp_path / "sine.onnx"
    model.export(str(path))
    x = rng.uniform(-3, 3, size=(9, 1)).astype(np.float32)
    got = _run(onnx.load(str(path)), {"x": x})
    assert _max_error(got, {"y": model.predict(x)}) <= TOL
