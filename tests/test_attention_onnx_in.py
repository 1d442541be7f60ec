"""Layerloom's own MultiHeadAttention export read back (engine/layers/attention_onnx_in.py): a
project with the layer, random weights, exported to ONNX and imported again, is the same graph
(layer types and parameters, wires) whose outputs are within 1e-5 of the original engine's on
the same inputs, for MultiHeadAttention's examples and the other combinations the export
writes (self- and cross-attention, a key of its own or the value's, heads, key and value
sizes, biases, output size, the causal mask, the scores read by another layer). What the export
does not write comes back as the default (dropout 0, seed 0, initializers and regularizers,
attention_axes null...); a Dense stays a Dense; a subgraph that stops being the export's is
refused naming the node."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from layerloom.api import Model  # noqa: E402
from layerloom.core.errors import DataError  # noqa: E402
from layerloom.core.graph import Graph  # noqa: E402
from layerloom.core.registry import get_layer  # noqa: E402
from layerloom.interop import onnx_export, onnx_import  # noqa: E402
from layerloom.project import loom  # noqa: E402

TOL = 1e-5
MHA = get_layer("MultiHeadAttention")

# (params, input shapes, wiring: which input feeds each port; the same letter is the same Input)
CASES = [(p, shapes, "abc"[:len(shapes)]) for p, shapes in MHA.examples] + [
    ({"num_heads": 2, "key_dim": 4}, [(6, 8)], "aa"),  # self-attention, query = value = key
    ({"num_heads": 4, "key_dim": 3, "use_causal_mask": True}, [(5, 6)], "aaa"),  # key wired
    ({"num_heads": 2, "key_dim": 3, "value_dim": 5, "output_shape": 7, "use_bias": False},
     [(4, 6), (3, 5)], "abb"),  # the key is the value's tensor: read back as 2 inputs
    ({"num_heads": 3, "key_dim": 2, "value_dim": 4, "output_shape": 5,
      "return_attention_scores": True, "use_causal_mask": True}, [(4, 3), (4, 2), (4, 6)],
     "abc"),
    ({"num_heads": 1, "key_dim": 6, "use_bias": False}, [(7, 6)], "aa"),
    ({"num_heads": 2, "key_dim": 4, "attention_axes": 1, "dropout": 0.2, "seed": 9,
      "kernel_initializer": "he_normal", "bias_initializer": "ones",
      "bias_regularizer": {"l1": 0.1}}, [(3, 4), (5, 4)], "ab"),
    ({"num_heads": 2, "key_dim": 2, "value_dim": 2, "output_shape": 4},  # both as the default
     [(3, 4), (3, 4)], "ab"),
]


def _project(params, shapes, wiring, read_scores=True):
    """Inputs (one per letter of wiring), the attention, and (read_scores, with
    return_attention_scores) an identity Dropout reading the scores."""
    g = Graph()
    for letter, shape in zip(dict.fromkeys(wiring), shapes):
        g.add_node("Input", {"shape": list(shape)}, id=f"in_{letter}")
    g.add_node("MultiHeadAttention", params, id="mha")
    for port, letter in enumerate(wiring):
        g.connect(f"in_{letter}", 0, "mha", port)
    if params.get("return_attention_scores") and read_scores:
        g.add_node("Dropout", {"rate": 0.0}, id="scores")
        g.connect("mha", 1, "scores", 0)
    assert not g.validate()
    return _trainable(g)


def _trainable(g):
    """A project of graph g with a loss per output (what predict's session asks for)."""
    from layerloom.project.training import parse_training
    problems = []
    training = parse_training({"loss": {o: "mean_squared_error" for o in g.outputs()},
                               "metrics": ["mae"]}, g, problems)
    assert not problems
    return loom.Project(g, training=training)


def _weights(graph, rng):
    shapes = graph.analysis().shapes
    out = {}
    for nid, node in graph.nodes.items():
        in_shapes = [shapes[e.src][e.src_port] for e in graph.in_edges(nid)]
        for spec in node.layer.weights(node.params, in_shapes):
            out[f"{nid}/{spec.name}"] = rng.normal(scale=0.5, size=spec.shape).astype(np.float32)
    return out


def _expected(project):
    """The attention's parameters as the import gives them back: what the export does not
    write as the defaults, value_dim and output_shape null where they are the default's size,
    return_attention_scores where the scores are read."""
    g = project.graph
    p = dict(g.nodes["mha"].params)
    shapes = g.analysis().shapes
    dq = shapes[g.in_edges("mha")[0].src][0][-1]
    defaults = {q.name: q.default for q in MHA.params}
    for name in ("dropout", "seed", "attention_axes", "kernel_initializer",
                 "kernel_regularizer", "bias_initializer", "bias_regularizer"):
        p[name] = defaults[name]
    if p["value_dim"] == p["key_dim"]:
        p["value_dim"] = None
    if p["output_shape"] == dq:
        p["output_shape"] = None
    p["return_attention_scores"] = any(e.src == "mha" and e.src_port == 1 for e in g.edges)
    return p


def _round_trip(project, weights):
    model = onnx_export.to_onnx(project, weights)
    return onnx_import.from_model(onnx.load_from_string(model.SerializeToString()), "mha")


def _max_errors(project, weights, back, rng):
    shapes = project.graph.analysis().shapes
    x = {nid: rng.normal(size=(5, *shapes[nid][0])).astype(np.float32)
         for nid in project.graph.inputs()}
    want, got = Model(project, weights).predict(x), Model(back.project, back.weights).predict(x)
    outs = project.graph.outputs()
    want = want if isinstance(want, dict) else {outs[0]: want}
    got = got if isinstance(got, dict) else {back.project.graph.outputs()[0]: got}
    assert set(got) == set(want)
    errors = {}
    for k in want:
        assert got[k].shape == want[k].shape, k
        errors[k] = float(np.abs(got[k] - want[k]).max())
    return errors


def _check(project, weights):
    back = _round_trip(project, weights)
    g, h = project.graph, back.project.graph
    assert sorted((n.type for n in h.nodes.values())) == sorted(n.type for n in g.nodes.values())
    assert h.inputs() == g.inputs()
    assert dict(h.nodes["mha"].params) == _expected(project)
    # the wires: the key as a port of its own only where it is another tensor than the value
    ports = {e.dst_port: e.src for e in g.in_edges("mha")}
    if ports.get(2) == ports[1]:
        del ports[2]
    assert {e.dst_port: e.src for e in h.in_edges("mha")} == ports
    assert sorted((e.src, e.src_port, e.dst, e.dst_port) for e in h.edges if e.dst != "mha") \
        == sorted((e.src, e.src_port, e.dst, e.dst_port) for e in g.edges if e.dst != "mha")
    for name, w in back.weights.items():
        np.testing.assert_array_equal(w, weights[name])
    assert set(back.weights) == set(weights)
    errors = _max_errors(project, weights, back, np.random.default_rng(11))
    assert max(errors.values()) <= TOL, errors
    return back, errors


@pytest.mark.parametrize("params, shapes, wiring", CASES,
                         ids=[f"{i}-{w}" for i, (_, _, w) in enumerate(CASES)])
def test_the_export_reads_back_as_one_multi_head_attention(params, shapes, wiring):
    project = _project(params, shapes, wiring)
    _check(project, _weights(project.graph, np.random.default_rng(len(shapes) + 7)))


def test_scores_nothing_reads_come_back_without_the_second_output():
    """An unread second output leaves no trace in the file: the layer comes back without it,
    computing the same output."""
    params = {"num_heads": 2, "key_dim": 3, "return_attention_scores": True}
    project = _project(params, [(3, 4), (8, 4)], "ab", read_scores=False)
    back, _ = _check(project, _weights(project.graph, np.random.default_rng(2)))
    assert back.project.graph.nodes["mha"].params["return_attention_scores"] is False


def test_attention_between_dense_layers_and_plain_dense_layers():
    """A Dense before the attention (its MatMul read by three projections) and after it, and a
    Dense of a sequence without bias (a MatMul alone), stay Dense layers."""
    g = Graph()
    g.add_node("Input", {"shape": [5, 6]}, id="x")
    g.add_node("Dense", {"units": 8}, id="tokens")
    g.add_node("MultiHeadAttention", {"num_heads": 2, "key_dim": 4, "use_causal_mask": True},
               id="mha")
    g.add_node("Dense", {"units": 3, "use_bias": False}, id="head")
    g.add_node("Dense", {"units": 4, "use_bias": False}, id="side")
    g.connect("x", 0, "tokens", 0)
    g.connect("tokens", 0, "mha", 0)
    g.connect("tokens", 0, "mha", 1)
    g.connect("mha", 0, "head", 0)
    g.connect("x", 0, "side", 0)
    project = _trainable(g)
    weights = _weights(g, np.random.default_rng(4))
    back = _round_trip(project, weights)
    h = back.project.graph
    assert {nid: n.type for nid, n in h.nodes.items()} == {nid: n.type for nid, n in
                                                            g.nodes.items()}
    for nid in ("tokens", "head", "side"):
        assert h.nodes[nid].params == g.nodes[nid].params
    assert max(_max_errors(project, weights, back, np.random.default_rng(5)).values()) <= TOL


def test_the_transformer_example_imports_back_with_its_attention():
    """The bundled transformer_blocks (two TransformerEncoder blocks, inlined in ONNX): each
    block's attention is one MultiHeadAttention again, outputs within 1e-5."""
    from layerloom import gallery
    project = loom.load(gallery.folder() + "/transformer_blocks.loom")
    project.dataset = {}  # no fitted normalisation to export: the graph alone
    weights = _weights(project.graph.flat(), np.random.default_rng(3))
    back = _round_trip(project, weights)
    types = [n.type for n in back.project.graph.nodes.values()]
    assert types.count("MultiHeadAttention") == 2 and "Transpose" not in types
    x = {"image": np.random.default_rng(6).normal(size=(4, 28, 28, 1)).astype(np.float32)}
    want = Model(project, weights).predict(x)
    got = Model(back.project, back.weights).predict(x)
    assert np.abs(got - want).max() <= TOL


def _exported(params, shapes, wiring):
    project = _project(params, shapes, wiring)
    return onnx_export.to_onnx(project, _weights(project.graph, np.random.default_rng(1)))


def _replace_initializer(model, name, array):
    from onnx import numpy_helper
    for i, t in enumerate(model.graph.initializer):
        if t.name == name:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, name))
            return model
    raise AssertionError(name)


def test_another_scale_is_refused_naming_the_node():
    model = _exported({"num_heads": 2, "key_dim": 4}, [(3, 5), (4, 5)], "ab")
    model = _replace_initializer(model, "scale", np.array(0.25, np.float32))
    with pytest.raises(DataError, match=r"'mha/Mul.*\(Mul\): Layerloom's attention .*scaled by "
                                        r"0\.25, not 1 / sqrt\(4\)"):
        onnx_import.from_model(model)


def test_another_mask_than_the_causal_one_is_refused_naming_the_node():
    model = _exported({"num_heads": 2, "key_dim": 4, "use_causal_mask": True},
                      [(3, 5), (3, 5)], "ab")
    model = _replace_initializer(model, "causal_mask", np.zeros((3, 3), np.float32))
    with pytest.raises(DataError, match=r"'mha/Add.*\(Add\): Layerloom's attention .*expected "
                                        r"the causal mask"):
        onnx_import.from_model(model)


def test_projections_with_and_without_bias_are_refused():
    """Keras' one use_bias: a value projection without its Add is not the export's."""
    model = _exported({"num_heads": 2, "key_dim": 4, "value_dim": 3}, [(3, 5), (4, 5)], "ab")
    g = model.graph
    add = next(n for n in g.node if n.op_type == "Add" and "mha/value_bias" in n.input)
    reshape = next(n for n in g.node if add.output[0] in n.input)
    reshape.input[0] = add.input[0]
    g.node.remove(add)
    with pytest.raises(DataError, match=r"Layerloom's attention .*projections with and without "
                                        r"biases"):
        onnx_import.from_model(model)


@pytest.mark.parametrize("opset", list(onnx_export.OPSETS))
def test_every_opset_the_export_writes_reads_back(opset):
    params, shapes, wiring = CASES[-4]  # causal, scores read, its own key, value_dim, output
    project = _project(params, shapes, wiring)
    weights = _weights(project.graph, np.random.default_rng(opset))
    model = onnx_export.to_onnx(project, weights, opset=opset)
    back = onnx_import.from_model(onnx.load_from_string(model.SerializeToString()), "mha")
    assert dict(back.project.graph.nodes["mha"].params) == _expected(project)
    assert max(_max_errors(project, weights, back, np.random.default_rng(1)).values()) <= TOL
