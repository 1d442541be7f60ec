"""ONNX in (engine/interop/onnx_import.py): models exported by PyTorch (a CNN whose BatchNorm the
exporter folded, an MLP with Dropout, LeakyReLU and a sigmoid, a residual block with BatchNorm
after an Add, average and global pooling and a scaled output) and one written the way tf2onnx
writes a Keras model (NHWC input, Transposes around NCHW convolutions, MatMul + Add) become
projects whose outputs are within 1e-5 (absolute, float32) of onnxruntime's on the same inputs
(NCHW tensors given to Layerloom as NHWC). tests/data/make_onnx_models.py wrote the files. What
cannot be mapped is exit 2 naming the ONNX node, its op type and why."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from layerloom.api import Model  # noqa: E402
from layerloom.core.errors import DataError  # noqa: E402
from layerloom.interop import onnx_import  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
MODELS = ["torch_cnn", "torch_mlp", "torch_residual", "tf2onnx_style"]
TOLERANCE = 1e-5


def _compare(path, batch=5):
    project, weights = onnx_import.read(path)
    sess = ort.InferenceSession(path)
    inp = sess.get_inputs()[0]
    shape = [batch] + [d for d in inp.shape[1:]]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    want = sess.run(None, {inp.name: x})[0]
    model = Model(project, weights)
    ours = tuple(project.graph.nodes[model.inputs[0]].params["shape"])
    got = model.predict(x if x.shape[1:] == ours else x.transpose(0, 2, 3, 1))
    return project, float(np.abs(got - want).max())


@pytest.mark.parametrize("name", MODELS)
def test_imported_models_match_onnxruntime(name):
    project, err = _compare(os.path.join(DATA, f"{name}.onnx"))
    assert err <= TOLERANCE, err
    assert not project.graph.analysis().problems


def test_an_nchw_cnn_becomes_channels_last_layers():
    project, _ = onnx_import.read(os.path.join(DATA, "torch_cnn.onnx"))
    g = project.graph
    types = [g.nodes[n].type for n in g.topo_order()]
    assert types == ["Input", "Conv2D", "MaxPooling2D", "Conv2D", "Permute", "Flatten", "Dense"]
    first = g.nodes[g.topo_order()[1]].params
    assert first["padding"] == "same" and first["activation"] == "relu"
    assert g.nodes[g.inputs()[0]].params["shape"] == (14, 14, 1)


@pytest.mark.slow
def test_the_command_line_writes_a_project_that_predicts(tmp_path):
    to = tmp_path / "cnn.loom"
    run = [sys.executable, "-m", "layerloom.app"]
    r = subprocess.run(run + ["--import", os.path.join(DATA, "torch_cnn.onnx"), "--to", str(to)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["cnn.loom", "cnn.loom.weights.npz"]
    np.save(tmp_path / "x.npy", np.zeros((2, 14, 14, 1), np.float32))
    p = subprocess.run(run + ["--predict", str(to), "--input", str(tmp_path / "x.npy")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 3, p.stderr


def _model(nodes, inits, shape=(None, 3, 8, 8)):
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                   ["batch"] + list(shape[1:]))],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("nodes,inits,message", [
    ([onnx.helper.make_node("LRN", ["x"], ["y"], size=3, name="norm")], {},
     "ONNX node 'norm' (LRN): this operator has no Layerloom layer"),
    ([onnx.helper.make_node("Shape", ["x"], ["s"], name="shape"),
      onnx.helper.make_node("Expand", ["c", "s"], ["e"], name="ex"),
      onnx.helper.make_node("Concat", ["e", "x"], ["y"], name="cat", axis=1)],
     {"c": np.ones((1, 3, 8, 8))}, "'ex' (Expand): repeats a constant along the batch axis"),
    ([onnx.helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2],
                            name="mp")], {}, "'mp' (MaxPool): dilated pooling"),
    ([onnx.helper.make_node("Softmax", ["x"], ["y"], axis=0, name="sm")], {},
     "'sm' (Softmax): along axis 0"),
    ([onnx.helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2], name="mp"),
      onnx.helper.make_node("Relu", ["i"], ["z"], name="r")], {},
     "'mp' (MaxPool): its output 'i' (beyond the first) has no Layerloom form"),
    ([onnx.helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0, 2, 3], name="t")], {},
     "'t' (Transpose): perm [1, 0, 2, 3]; a transpose that moves the batch axis"),
    ([onnx.helper.make_node("Flatten", ["x"], ["f"], name="f"),
      onnx.helper.make_node("Reshape", ["f", "s"], ["y"], name="rs")], {"s": [4, -1]},
     "'rs' (Reshape): target shape [4, -1]"),
    ([onnx.helper.make_node("BatchNormalization", ["x", "g", "g", "g", "g"], ["y"], name="bn",
                            spatial=0)], {"g": np.ones(3)}, "'bn' (BatchNormalization): spatial 0"),
    ([onnx.helper.make_node("Cast", ["x"], ["y"], to=7, name="c")], {},
     "'c' (Cast): a cast to ONNX type 7; Layerloom's tensors are float32"),
], ids=["unknown-op", "constant-per-sample", "dilated-pool", "softmax-axis", "extra-output",
        "transpose", "reshape-batch", "bn-spatial", "cast-int"])
def test_what_cannot_be_mapped_names_the_node_and_why(tmp_path, nodes, inits, message):
    path = tmp_path / "m.onnx"
    onnx.save(_model(nodes, inits), path)
    with pytest.raises(DataError, match=re.escape(message)):
        onnx_import.read(str(path))


@pytest.mark.slow
def test_the_command_line_refuses_with_exit_2_and_writes_nothing(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_model([onnx.helper.make_node("LRN", ["x"], ["y"], size=3, name="norm")], {}), path)
    message = "ONNX node 'norm' (LRN): this operator has no Layerloom layer"
    r = subprocess.run([sys.executable, "-m", "layerloom.app", "--import", str(path), "--to",
                        str(tmp_path / "p.loom")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "p.loom").exists()


@pytest.mark.slow
@pytest.mark.parametrize("example", ["spirals", "sine", "multitask", "wine_csv", "shapes_folder"])
def test_layerloom_exports_come_back_with_the_same_outputs(tmp_path, example):
    """Export a briefly trained example to ONNX and import it back: the imported project
    (its fitted normalisation back as the project's statistics) predicts what the original
    predicts on the same raw inputs, and what onnxruntime computes (tests/test_onnx_roundtrip.py
    checks every example's graph, untrained)."""
    import layerloom
    from layerloom.data.prepare import load_arrays
    run = [sys.executable, "-m", "layerloom.app"]
    src = os.path.join(os.path.dirname(DATA), "..", "assets", "examples", f"{example}.loom")
    r = subprocess.run(run + ["--run", src, "--out", str(tmp_path / "run"), "--epochs", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    original = layerloom.load(str(tmp_path / "run" / "trained.loom"))
    original.export(str(tmp_path / "m.onnx"))
    project, weights = onnx_import.read(str(tmp_path / "m.onnx"))
    back = Model(project, weights)
    arrays = load_arrays(original.project)
    split = arrays.test or arrays.train
    names = (original.project.dataset.get("inputs") or {})
    x = {nid: np.asarray(split[names.get(nid, "x")][:16], np.float32) for nid in original.inputs}
    want = original.predict(x)
    assert project.graph.inputs() == original.inputs
    got = back.predict(x)
    want = want if isinstance(want, dict) else {original.outputs[0]: want}
    got = got if isinstance(got, dict) else {back.outputs[0]: got}
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    ort_out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, x)))
    for o in want:
        assert np.abs(got[o] - want[o]).max() <= TOLERANCE  # outputs keep their names
        assert np.abs(ort_out[o] - want[o]).max() <= TOLERANCE


def test_a_long_model_is_read_without_analysing_the_graph_per_node(monkeypatch):
    """Each node's shape comes from its layer's rule: the whole graph's analysis once per added
    node made an import of n nodes quadratic (2,000 activations: 13 s; now 0.1 s)."""
    from onnx import TensorProto, helper
    from layerloom.core.graph import Graph
    calls = []
    analysis = Graph.analysis
    monkeypatch.setattr(Graph, "analysis", lambda g: calls.append(1) or analysis(g))
    nodes = [helper.make_node("Relu" if i % 2 else "Tanh", [f"t{i}"], [f"t{i + 1}"],
                              name=f"n{i}") for i in range(300)]
    model = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("t300", TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 17)])
    imported = onnx_import.from_model(model)
    assert len(imported.project.graph.nodes) == 301
    assert len(calls) <= 5


def _two_output_model(nodes, inits, outputs, shape=(None, 3, 8, 8)):
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                   ["batch"] + list(shape[1:]))],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("rank", [2, 4])
def test_a_per_channel_step_after_an_alias_of_a_read_tensor_is_not_merged(tmp_path, rank):
    """Review of issue 26, item 11: t1 = x - c1 is read by Relu and, through an Identity, by
    t3 = t2 * c2: merging the Mul into t1's BatchNormalization changed the Relu's output by
    2.91 without a word. (Rank 4: NCHW after a 1x1 convolution.)"""
    from onnx import helper
    c = np.arange(1, 4, dtype=np.float32)
    inits = {"c1": c, "c2": c * 2}
    nodes = [helper.make_node("Sub", ["h", "c1"], ["t1"], name="sub"),
             helper.make_node("Identity", ["t1"], ["t2"], name="alias"),
             helper.make_node("Mul", ["t2", "c2"], ["t3"], name="mul"),
             helper.make_node("Relu", ["t1"], ["r"], name="relu"),
             helper.make_node("Sigmoid", ["t3"], ["s"], name="sig")]
    if rank == 4:
        inits = {k: v.reshape(3, 1, 1) for k, v in inits.items()}
        inits["k"] = np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1)
        nodes.insert(0, helper.make_node("Conv", ["x", "k"], ["h"], name="conv"))
    else:
        nodes.insert(0, helper.make_node("Identity", ["x"], ["h"], name="in"))
    path = str(tmp_path / "m.onnx")
    shape = (None, 3, 8, 8) if rank == 4 else (None, 3)
    onnx.save(_two_output_model(nodes, inits, ["r", "s"], shape), path)
    project, weights = onnx_import.read(path)
    x = np.random.default_rng(0).standard_normal((2,) + shape[1:]).astype(np.float32) * 3
    want = ort.InferenceSession(path).run(None, {"x": x})
    got = Model(project, weights).predict(x.transpose(0, 2, 3, 1) if rank == 4 else x)
    outs = project.graph.outputs()
    assert len(outs) == 2
    for w in want:  # the outputs, whichever order the graph lists them in
        w = w.transpose(0, 2, 3, 1) if rank == 4 else w
        assert min(np.abs(got[o] - w).max() for o in outs) <= TOLERANCE


@pytest.mark.parametrize("meta", ["{not json", "[1, 2]", '{"x": {"kind": "bogus", "shift": [0],'
                                  ' "scale": [1]}}', '{"x": {"kind": "scale", "shift": "a"}}'])
def test_layerloom_metadata_that_is_not_what_we_write_is_not_trusted(tmp_path, meta):
    """Review of issue 26, item 11: the normalisation stated in a 'layerloom' file's metadata
    raised JSONDecodeError/AttributeError (exit 1), or wrote a project that could not be
    opened. It is taken only when it is what our export writes; otherwise the operators are
    read as they are."""
    from onnx import helper
    nodes = [helper.make_node("Sub", ["x", "s"], ["a"], name="sub"),
             helper.make_node("Mul", ["a", "k"], ["y"], name="mul")]
    m = _model(nodes, {"s": np.zeros(3), "k": np.ones(3)}, shape=(None, 3))
    m.producer_name = "layerloom"
    helper.set_model_props(m, {"layerloom.normalization": meta})
    path = str(tmp_path / "m.onnx")
    onnx.save(m, path)
    project, weights = onnx_import.read(path)
    from layerloom.interop import write_imported
    from layerloom.project import loom
    write_imported(project, weights, str(tmp_path / "m.loom"))
    loom.load(str(tmp_path / "m.loom"))  # the project it wrote opens
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    assert np.abs(Model(project, weights).predict(x) - x).max() <= TOLERANCE


@pytest.mark.parametrize("op, keepdims", [("GlobalAveragePool", None), ("GlobalMaxPool", None),
                                          ("ReduceMean", 0), ("ReduceMax", 1)])
def test_a_global_pooling_of_a_sequence_is_the_1d_layer(tmp_path, op, keepdims):
    """GlobalAveragePool/GlobalMaxPool of an (N, C, T) sequence: GlobalAverage/MaxPooling1D
    with keepdims (ONNX's (N, C, 1)); a ReduceMean/ReduceMax over the steps of a channels-last
    (N, T, F) one (Layerloom's export) with its keepdims."""
    from onnx import helper
    if keepdims is None:
        node, shape = helper.make_node(op, ["x"], ["y"], name="pool"), (None, 3, 6)
    else:
        node = helper.make_node(op, ["x"], ["y"], name="pool", axes=[1], keepdims=keepdims)
        shape = (None, 6, 3)
    path = str(tmp_path / "m.onnx")
    onnx.save(_two_output_model([node], {}, ["y"], shape), path)
    project, weights = onnx_import.read(path)
    want_type = ("GlobalAveragePooling1D" if "Mean" in op or "Average" in op
                 else "GlobalMaxPooling1D")
    node_params = [n.params for n in project.graph.nodes.values() if n.type == want_type]
    assert node_params == [{"keepdims": keepdims is None or bool(keepdims)}]
    x = np.random.default_rng(0).standard_normal((4,) + shape[1:]).astype(np.float32)
    want = ort.InferenceSession(path).run(None, {"x": x})[0]
    got = Model(project, weights).predict(x.transpose(0, 2, 1) if keepdims is None else x)
    assert np.abs(got - (want.transpose(0, 2, 1) if keepdims is None else want)).max() \
        <= TOLERANCE


def _hard_sigmoid_model():
    from onnx import TensorProto, helper
    node = helper.make_node("HardSigmoid", ["x"], ["y"], name="hs", alpha=0.5)
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 4]) for n in "xy"]
    return helper.make_model(helper.make_graph([node], "g", vi[:1], vi[1:]),
                             opset_imports=[helper.make_opsetid("", 17)])


def test_several_readers_of_one_operator_are_tried_in_turn(monkeypatch):
    """The dispatch protocol (onnx_import's docstring): a reader lacking an attribute is
    skipped, one that declines passes the node on, the first that takes it wins; when none
    does, the refusal gives each one's reason, naming the node and its op type."""
    from layerloom.core.registry import OnnxRead
    tried = []

    def declines(imp, node, type_id):
        tried.append(type_id)
        imp.decline(node, "not a row of numbers")

    def takes(imp, node, type_id):
        tried.append(type_id)
        v = imp.value(node, 0)
        imp.set(node, imp.result(imp.add(node, "Activation", {"activation": "hard_sigmoid"},
                                         [v])))

    readers = [("A", OnnxRead((), declines)), ("B", OnnxRead({"alpha"}, declines)),
               ("C", OnnxRead({"alpha"}, takes)), ("D", OnnxRead({"alpha"}, takes))]
    monkeypatch.setitem(onnx_import.READS, "HardSigmoid", readers)
    imported = onnx_import.from_model(_hard_sigmoid_model())
    assert tried == ["B", "C"]
    assert "Activation" in {n.type for n in imported.project.graph.nodes.values()}
    monkeypatch.setitem(onnx_import.READS, "HardSigmoid", readers[:2])
    with pytest.raises(DataError, match=re.escape(
            "ONNX node 'hs' (HardSigmoid): A: attribute 'alpha' is not mapped by A's reader; "
            "B: not a row of numbers")):
        onnx_import.from_model(_hard_sigmoid_model())


def test_a_reader_that_declines_after_adding_a_layer_is_a_bug_said_as_one(monkeypatch):
    from layerloom.core.registry import OnnxRead

    def adds_then_declines(imp, node, type_id):
        imp.add(node, "Activation", {"activation": "relu"}, [imp.value(node, 0)])
        imp.decline(node, "changed its mind")
    monkeypatch.setitem(onnx_import.READS, "HardSigmoid",
                        [("A", OnnxRead({"alpha"}, adds_then_declines))])
    with pytest.raises(RuntimeError, match="declined ONNX node 'hs' after adding"):
        onnx_import.from_model(_hard_sigmoid_model())


def _torch_export(module, x, path, dynamic=True):
    torch = pytest.importorskip("torch")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.from_numpy(x),), path, dynamo=False,
                          opset_version=17, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}} if dynamic else None)
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("dynamic", [True, False], ids=["batch-open", "batch-fixed"])
@pytest.mark.parametrize("gelu", ["none", "tanh"])
def test_torch_shape_arithmetic_is_folded_and_its_gelu_is_one_activation(tmp_path, dynamic,
                                                                        gelu):
    """x.view(x.size(0), -1) exports as Shape, Gather, Unsqueeze, Concat, Reshape (computed
    at import: the batch kept), nn.GELU as Div, Erf, Add, Mul, Mul (one gelu folded into the
    Dense), the tanh GELU as its formula (gelu_tanh)."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4 * 5 * 6, 7)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return torch.nn.functional.gelu(self.fc(y.view(y.size(0), -1)), approximate=gelu)
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((3, 3, 5, 6)).astype(np.float32) * 2
    path = str(tmp_path / "m.onnx")
    want = _torch_export(Net(), x, path, dynamic)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"Reshape", "Erf" if gelu == "none" else "Tanh"} <= ops
    assert ("Shape" in ops) == dynamic
    imported = onnx_import.from_model(onnx.load(path))
    g = imported.project.graph
    assert [(g.nodes[n].type, g.nodes[n].params.get("activation")) for n in g.topo_order()] \
        == [("Input", None), ("Conv2D", "relu"), ("Permute", None), ("Flatten", None),
            ("Dense", "gelu" if gelu == "none" else "gelu_tanh")]
    got = imported.predict({"x": x})["y"]
    assert np.abs(got - want).max() <= 1e-5


def test_a_gelu_whose_input_is_read_elsewhere_is_an_activation_layer(tmp_path):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(5, 4)

        def forward(self, x):
            h = self.fc(x)
            return 0.5 * h * (1 + torch.erf(h / 2 ** 0.5)) + h  # the factors in another order
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32) * 3
    path = str(tmp_path / "m.onnx")
    want = _torch_export(Net(), x, path)
    imported = onnx_import.from_model(onnx.load(path))
    types = sorted(n.type for n in imported.project.graph.nodes.values())
    assert types == ["Activation", "Add", "Dense", "Input"]
    assert np.abs(imported.predict({"x": x})["y"] - want).max() <= 1e-5


def test_a_reshape_that_keeps_the_batch_is_a_reshape_layer_in_onnx_order(tmp_path):
    """(N, C, H, W) -> (N, C, H * W) -> softmax over H * W: our channels-last tensor is put
    in ONNX's order first (Permute), then reshaped."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 1)

        def forward(self, x):
            y = self.conv(x)
            return torch.softmax(y.reshape(y.shape[0], y.shape[1], -1), dim=-1)
    x = np.random.default_rng(2).standard_normal((2, 2, 3, 4)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    want = _torch_export(Net(), x, path)
    imported = onnx_import.from_model(onnx.load(path))
    assert "Reshape" in {n.type for n in imported.project.graph.nodes.values()}
    assert np.abs(imported.predict({"x": x})["y"] - want).max() <= 1e-5


def test_identity_of_initializers_is_a_constant(tmp_path):
    """torch shares equal initial weights through Identity nodes of an initializer (refused
    before: 'a constant where a tensor is expected?')."""
    from onnx import helper
    nodes = [helper.make_node("Identity", ["b0"], ["b"], name="share"),
             helper.make_node("Identity", ["k0"], ["k"], name="share_k"),
             helper.make_node("Conv", ["x", "k", "b"], ["y"], name="conv", pads=[1, 1, 1, 1],
                              kernel_shape=[3, 3])]
    rng = np.random.default_rng(3)
    inits = {"k0": rng.standard_normal((4, 3, 3, 3)), "b0": rng.standard_normal(4)}
    path = str(tmp_path / "m.onnx")
    onnx.save(_model(nodes, inits), path)
    project, weights = onnx_import.read(path)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(path).run(None, {"x": x})[0]
    got = Model(project, weights).predict(x.transpose(0, 2, 3, 1))
    assert np.abs(got - want.transpose(0, 2, 3, 1)).max() <= TOLERANCE


def test_a_squeeze_and_excitation_block_with_silu_imports(tmp_path):
    """EfficientNet's block: SiLU (x * sigmoid(x): one silu folded into the convolution), a
    global pooling kept (N, C, 1, 1), 1x1 convolutions of it (Dense layers), and the scale
    multiplied into the image (repeated over it, as ONNX broadcasts)."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
            self.fc1, self.fc2 = torch.nn.Conv2d(6, 2, 1), torch.nn.Conv2d(2, 6, 1)

        def forward(self, x):
            h = torch.nn.functional.silu(self.conv(x))
            s = torch.nn.functional.adaptive_avg_pool2d(h, 1)
            s = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
            return torch.flatten(h * s, 1)
    torch.manual_seed(1)
    x = np.random.default_rng(5).standard_normal((3, 3, 5, 4)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    want = _torch_export(Net(), x, path)
    imported = onnx_import.from_model(onnx.load(path))
    g = imported.project.graph
    layers = [(g.nodes[n].type, g.nodes[n].params.get("activation")) for n in g.topo_order()]
    assert ("Conv2D", "silu") in layers and ("Dense", "relu") in layers
    assert ("Dense", "sigmoid") in layers and ("UpSampling2D", None) in layers
    assert np.abs(imported.predict({"x": x})["y"] - want).max() <= 1e-5


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_a_torch_recurrent_layer_with_its_zero_state_and_last_step_imports(tmp_path, kind):
    """torch's nn.LSTM/GRU without a state exports a zero state the size of the batch
    (Shape, Gather, Concat, ConstantOfShape: folded with a batch of 1, zeros as the readers
    take them), y[:, -1] as Gather: the layer's return_sequences off."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, kind)(4, 5, batch_first=True)
            self.fc = torch.nn.Linear(5, 3)

        def forward(self, x):
            return self.fc(self.rnn(x)[0][:, -1])
    torch.manual_seed(2)
    x = np.random.default_rng(6).standard_normal((3, 6, 4)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    want = _torch_export(Net(), x, path)
    imported = onnx_import.from_model(onnx.load(path))
    g = imported.project.graph
    assert [g.nodes[n].type for n in g.topo_order()] == ["Input", kind, "Dense"]
    assert np.abs(imported.predict({"x": x})["y"] - want).max() <= 1e-5


def test_a_cast_to_float32_is_the_same_tensor(tmp_path):
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=TensorProto.FLOAT, name="c"),
             helper.make_node("Relu", ["c"], ["y"], name="r")]
    path = str(tmp_path / "m.onnx")
    onnx.save(_model(nodes, {}, shape=(None, 5)), path)
    project, weights = onnx_import.read(path)
    x = np.random.default_rng(7).standard_normal((3, 5)).astype(np.float32)
    assert np.abs(Model(project, weights).predict(x) - np.maximum(x, 0)).max() == 0


def test_a_channel_split_and_shuffle_import(tmp_path):
    """ShuffleNet's unit: x.chunk(2, dim=1) (Slices of the channels: Reshape, Permute,
    Cropping1D and back), a branch, Concat, and the channel shuffle (Reshape to 5-D, Transpose
    [0, 2, 1, 3, 4], Reshape back: our Reshape, Permute, Reshape)."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            a, b = x.chunk(2, dim=1)
            y = torch.cat([a, torch.relu(self.conv(torch.cat([b, b], 1)))[:, :2]], 1)
            n, c, h, w = y.shape
            return y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
    torch.manual_seed(3)
    x = np.random.default_rng(8).standard_normal((2, 4, 3, 5)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    want = _torch_export(Net(), x, path)
    imported = onnx_import.from_model(onnx.load(path))
    types = [n.type for n in imported.project.graph.nodes.values()]
    assert "Cropping1D" in types and "Permute" in types
    assert np.abs(imported.predict({"x": x})["y"] - want).max() <= 1e-5


def test_a_sum_of_tensors_is_an_add(tmp_path):
    """ONNX's Sum (Caffe2's ResNet-50 and ShuffleNet write their residuals with it)."""
    from onnx import helper
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r"),
             helper.make_node("Sigmoid", ["x"], ["b"], name="s"),
             helper.make_node("Sum", ["a", "b", "x"], ["y"], name="sum")]
    path = str(tmp_path / "m.onnx")
    onnx.save(_model(nodes, {}), path)
    project, weights = onnx_import.read(path)
    assert "Add" in {n.type for n in project.graph.nodes.values()}
    x = np.random.default_rng(9).standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(path).run(None, {"x": x})[0]
    got = Model(project, weights).predict(x)
    assert np.abs(got - want).max() <= TOLERANCE


def _torch_attention(torch, heads, mask=None):
    class Net(torch.nn.Module):
        """torch's self-attention as torchvision's ViT calls it (batch_first, no weights)."""

        def __init__(self):
            super().__init__()
            self.attention = torch.nn.MultiheadAttention(12, heads, batch_first=True)

        def forward(self, x):
            return self.attention(x, x, x, need_weights=False, attn_mask=mask)[0]
    net = Net()
    with torch.no_grad():  # its biases start at zero
        net.attention.in_proj_bias.normal_(0, 0.5)
        net.attention.out_proj.bias.normal_(0, 0.5)
    return net


@pytest.mark.parametrize("dynamic", [True, False], ids=["batch-open", "batch-fixed"])
@pytest.mark.parametrize("heads", [1, 3])
def test_torch_attention_is_one_multi_head_attention(tmp_path, heads, dynamic):
    """nn.MultiheadAttention's export (the batch moved, heads folded into it, packed in_proj,
    the scale split between q and k) is one MultiHeadAttention with torch's weights in Keras'
    (D, heads, d) layout, computing torch's outputs."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    net = _torch_attention(torch, heads)
    x = np.random.default_rng(4).standard_normal((3, 5, 12)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    want = _torch_export(net, x, path, dynamic)
    imported = onnx_import.from_model(onnx.load(path))
    g = imported.project.graph
    assert [g.nodes[n].type for n in g.topo_order()] == ["Input", "MultiHeadAttention"]
    node = next(n for n in g.nodes.values() if n.type == "MultiHeadAttention")
    d = 12 // heads
    assert (node.params["num_heads"], node.params["key_dim"]) == (heads, d)
    a = net.attention
    w, b = a.in_proj_weight.detach().numpy(), a.in_proj_bias.detach().numpy()
    ws = {k.split("/")[1]: v for k, v in imported.weights.items()}
    for i, name in enumerate(("query", "key", "value")):
        np.testing.assert_array_equal(ws[f"{name}_kernel"],
                                      w[i * 12:(i + 1) * 12].T.reshape(12, heads, d))
        np.testing.assert_array_equal(ws[f"{name}_bias"], b[i * 12:(i + 1) * 12].reshape(heads, d))
    np.testing.assert_array_equal(ws["output_kernel"],
                                  a.out_proj.weight.detach().numpy().T.reshape(heads, d, 12))
    assert np.abs(imported.predict({"x": x})["y"] - want).max() <= 1e-5


def test_torch_attention_with_a_mask_is_refused_by_name(tmp_path):
    """An attention mask (added to the scores) has no Layerloom form: the import names the
    node where the pattern stops and what it expected."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    mask = torch.triu(torch.full((5, 5), float("-inf")), 1)
    x = np.random.default_rng(4).standard_normal((3, 5, 12)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    _torch_export(_torch_attention(torch, 2, mask), x, path)
    with pytest.raises(DataError, match=r"torch's attention .*expected the scores' Softmax, "
                                        r"found Add \(an attention mask"):
        onnx_import.from_model(onnx.load(path))


@pytest.mark.parametrize("tokens", [1, 2], ids=["class", "class-and-distillation"])
def test_class_tokens_positions_and_the_first_step_import(tmp_path, tokens):
    """A ViT's sequence: a Dense along the steps' features (MatMul of a sequence), learned
    tokens Expanded to the batch and put before it (ClassToken each; DeiT has two), a
    position table added (PositionEmbedding + Add), x[:, 0] (Cropping1D, Reshape)."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Linear(4, 6)
            self.tokens = torch.nn.ParameterList(
                [torch.nn.Parameter(torch.randn(1, 1, 6)) for _ in range(tokens)])
            self.positions = torch.nn.Parameter(torch.randn(1, 5 + tokens, 6))

        def forward(self, x):
            x = self.embed(x)
            t = [p.expand(x.shape[0], -1, -1) for p in self.tokens]
            x = torch.cat(t + [x], dim=1) + self.positions
            return torch.tanh(x)[:, 0] + x[:, tokens]
    torch.manual_seed(5)
    net = Net()
    x = np.random.default_rng(7).standard_normal((3, 5, 4)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    want = _torch_export(net, x, path)
    imported = onnx_import.from_model(onnx.load(path))
    g = imported.project.graph
    types = [g.nodes[n].type for n in g.topo_order()]
    assert types.count("ClassToken") == tokens and types.count("PositionEmbedding") == 1
    assert types.count("Cropping1D") == 2 and "Dense" in types
    ws = {k: v for k, v in imported.weights.items() if k.endswith("/token")}
    assert sorted(float(v[0, 0]) for v in ws.values()) == sorted(
        float(p.detach()[0, 0, 0]) for p in net.tokens)
    got = imported.predict({"x": x})["y"]
    assert np.abs(got - want).max() <= 1e-5
    # out through Layerloom's export and in again: the same layers (the Reshape to the
    # features comes back as the Flatten it is)
    from layerloom.interop import onnx_export
    again = onnx_import.from_model(onnx_export.to_onnx(imported.project, imported.weights))
    types2 = [n.type for n in again.project.graph.nodes.values()]
    assert sorted(types2) == sorted("Flatten" if t == "Reshape" else t for t in types)
    assert np.abs(again.predict({"x": x})["y"] - got).max() <= 1e-6


def test_a_token_after_the_sequence_is_refused_by_name(tmp_path):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.token = torch.nn.Parameter(torch.randn(1, 1, 4))

        def forward(self, x):
            return torch.cat([x, self.token.expand(x.shape[0], -1, -1)], dim=1)
    x = np.random.default_rng(7).standard_normal((3, 5, 4)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    _torch_export(Net(), x, path)
    with pytest.raises(DataError, match=r"\(Concat\): constants repeated along the batch "
                                        r"\(class tokens\) that are not all before"):
        onnx_import.from_model(onnx.load(path))


def test_a_layer_norm_over_the_channels_of_a_pooled_image_is_read(tmp_path):
    """timm's ConvNeXt head (LayerNorm2d after a global pool): Transpose [0, 2, 3, 1] of the
    pooled (N, C, 1, 1), a LayerNormalization over the last axis, the Transpose back, Flatten;
    refused before as 'only the transposes between channels-last and channels-first'."""
    from onnx import helper
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], name="conv"),
             helper.make_node("GlobalAveragePool", ["c"], ["p"], name="pool"),
             helper.make_node("Transpose", ["p"], ["t"], perm=[0, 2, 3, 1], name="to_last"),
             helper.make_node("LayerNormalization", ["t", "g", "b"], ["n"], axis=-1,
                              epsilon=1e-6, name="norm"),
             helper.make_node("Transpose", ["n"], ["u"], perm=[0, 3, 1, 2], name="to_first"),
             helper.make_node("Flatten", ["u"], ["y"], name="flat")]
    inits = {"w": rng.standard_normal((5, 3, 3, 3)), "g": rng.uniform(0.5, 1.5, 5),
             "b": rng.standard_normal(5)}
    path = str(tmp_path / "m.onnx")
    onnx.save(_model(nodes, inits), path)
    project, weights = onnx_import.read(path)
    assert "LayerNormalization" in [n.type for n in project.graph.nodes.values()]
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(path).run(None, {"x": x})[0]
    got = Model(project, weights).predict(x.transpose(0, 2, 3, 1))
    assert np.abs(got - want).max() <= TOLERANCE


@pytest.mark.parametrize("perm", [[0, 1, 3, 2], [0, 2, 1, 3], [0, 3, 2, 1], [0, 3, 1, 2]])
def test_any_order_of_the_per_sample_axes_is_a_permute(tmp_path, perm):
    """A Transpose that keeps the batch first but is not a change of layout (EfficientViT's
    [0, 1, 3, 2] between its attention's products): a Permute of ours, read in ONNX's order
    after it; a second convolution after the transposed image checks the order it gets."""
    from onnx import helper
    rng = np.random.default_rng(5)
    chans = {1: 4, 2: 6, 3: 7}[perm[1]]  # the transposed tensor's axis 1: ONNX's perm[1]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], name="conv"),
             helper.make_node("Transpose", ["c"], ["t"], perm=perm, name="t"),
             helper.make_node("Conv", ["t", "w2"], ["d"], kernel_shape=[1, 1], name="conv2"),
             helper.make_node("Flatten", ["d"], ["y"], name="flat")]
    inits = {"w": rng.standard_normal((4, 3, 3, 3)), "w2": rng.standard_normal((2, chans, 1, 1))}
    path = str(tmp_path / "m.onnx")
    onnx.save(_model(nodes, inits, shape=(None, 3, 8, 9)), path)
    project, weights = onnx_import.read(path)
    x = rng.standard_normal((3, 3, 8, 9)).astype(np.float32)
    want = ort.InferenceSession(path).run(None, {"x": x})[0]
    got = Model(project, weights).predict(x.transpose(0, 2, 3, 1))
    assert got.shape == want.shape and np.abs(got - want).max() <= TOLERANCE
