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
