"""Blocks (issue 30, item 1): a named sub-network used as one node. The file's "blocks"
section, checked with each problem's place; an instance's shapes, weights and parameter count
from its inner graph; the engine running it inlined (the same numbers as the layers written
out, against the float64 references); repeat; nested blocks; Make Block of a selection and
Expand back, with the trained weights carried; the exports (ONNX against onnxruntime, Keras,
PyTorch code) of a project with blocks."""
import copy
import json

import numpy as np
import pytest

from layerloom import api
from layerloom.core import block_edits, blocks
from layerloom.core.errors import ProjectError
from layerloom.core.graph import Graph
from layerloom.project import loom
from layerloom.project.loom import Project
from layerloom.train.model import Model

RES_BLOCK = {
    "help": "Two 3x3 convolutions and a shortcut",
    "inputs": ["x"], "outputs": [["relu", 0]],
    "params": {"filters": {"default": 4, "sets": ["conv_1.filters", "conv_2.filters"]}},
    "graph": {"nodes": [
        {"id": "x", "type": "Input", "params": {"shape": [6, 6, 4]}},
        {"id": "conv_1", "type": "Conv2D", "params": {"filters": 4, "kernel_size": [3, 3],
                                                      "padding": "same", "activation": "relu"}},
        {"id": "conv_2", "type": "Conv2D", "params": {"filters": 4, "kernel_size": [3, 3],
                                                      "padding": "same"}},
        {"id": "add", "type": "Add", "params": {}},
        {"id": "relu", "type": "Activation", "params": {"activation": "relu"}}],
        "edges": [{"from": ["x", 0], "to": ["conv_1", 0]},
                  {"from": ["conv_1", 0], "to": ["conv_2", 0]},
                  {"from": ["conv_2", 0], "to": ["add", 0]},
                  {"from": ["x", 0], "to": ["add", 1]},
                  {"from": ["add", 0], "to": ["relu", 0]}]}}


def project_dict(repeat=1, filters=4, blocks_=None):
    return {"format": "layerloom-project", "version": 1,
            "blocks": blocks_ if blocks_ is not None else {"ResBlock": copy.deepcopy(RES_BLOCK)},
            "graph": {"nodes": [
                {"id": "image", "type": "Input", "params": {"shape": [6, 6, 1]}},
                {"id": "stem", "type": "Conv2D", "params": {"filters": filters,
                                                            "kernel_size": [3, 3],
                                                            "padding": "same"}},
                {"id": "res", "type": "ResBlock", "params": {"filters": filters,
                                                             "repeat": repeat}},
                {"id": "gap", "type": "GlobalAveragePooling2D", "params": {}},
                {"id": "out", "type": "Dense", "params": {"units": 3,
                                                          "activation": "softmax"}}],
                "edges": [{"from": ["image", 0], "to": ["stem", 0]},
                          {"from": ["stem", 0], "to": ["res", 0]},
                          {"from": ["res", 0], "to": ["gap", 0]},
                          {"from": ["gap", 0], "to": ["out", 0]}]},
            "training": {"loss": {"out": "sparse_categorical_crossentropy"}, "epochs": 1,
                         "batch_size": 8}}


def load(d):
    return loom.from_dict(json.loads(json.dumps(d)))


def random_weights(graph, rng):
    shapes = graph.analysis().shapes
    out = {}
    for nid, node in graph.nodes.items():
        ins = [shapes[e.src][e.src_port] for e in graph.in_edges(nid)]
        for w in node.weights(ins):
            out[f"{nid}/{w.name}"] = rng.normal(0, 0.3, size=w.shape).astype(np.float32)
    return out


def reference(graph, weights, xs):
    """float64 forward of the graph with its blocks inlined, from the layers' references."""
    flat = blocks.flatten(graph)
    vals = {}
    for nid in flat.topo_order():
        node = flat.nodes[nid]
        if node.layer.is_input:
            vals[(nid, 0)] = xs[nid].astype(np.float64)
            continue
        ins = [vals[(e.src, e.src_port)] for e in flat.in_edges(nid)]
        ws = {k.rsplit("/", 1)[1]: v.astype(np.float64) for k, v in weights.items()
              if k.rsplit("/", 1)[0] == nid}
        for port, o in enumerate(node.layer.reference(node.params, ins, ws)):
            vals[(nid, port)] = o
    return vals


# -- the file and the graph -----------------------------------------------------------------------
def test_an_instance_has_its_inner_graphs_shapes_weights_and_count():
    p = load(project_dict(repeat=1))
    a = p.graph.analysis()
    assert not a.problems
    assert a.shapes["res"] == [(6, 6, 4)]
    assert a.params["res"].total == 2 * (3 * 3 * 4 * 4 + 4)
    names = [w.name for w in p.graph.nodes["res"].weights([(6, 6, 4)])]
    assert names == ["conv_1/kernel", "conv_1/bias", "conv_2/kernel", "conv_2/bias"]
    layer = p.graph.nodes["res"].layer
    assert layer.category == "Blocks" and layer.help == RES_BLOCK["help"]
    assert layer.headline_text(p.graph.nodes["res"].params) == "4"
    assert [q.name for q in layer.params] == ["filters", "repeat"]


def test_block_parameters_set_inner_ones_and_repeat_copies_with_own_weights():
    p = load(project_dict(repeat=3, filters=8))
    a = p.graph.analysis()
    assert not a.problems
    assert a.shapes["res"] == [(6, 6, 8)]
    one = 2 * (3 * 3 * 8 * 8 + 8)
    assert a.params["res"].total == 3 * one
    assert p.graph.nodes["res"].layer.headline_text(p.graph.nodes["res"].params) == "8 x3"
    flat = blocks.flatten(p.graph)
    assert list(flat.nodes) == [
        "image", "stem", "res/conv_1", "res/conv_2", "res/add", "res/relu",
        "res/#2/conv_1", "res/#2/conv_2", "res/#2/add", "res/#2/relu",
        "res/#3/conv_1", "res/#3/conv_2", "res/#3/add", "res/#3/relu", "res", "gap", "out"]
    assert flat.nodes["res/#3/conv_2"].params["filters"] == 8
    assert flat.nodes["res"].type == "Identity"
    assert flat.in_edges("res/#2/conv_1")[0].src == "res/relu"
    assert {e.src for e in flat.in_edges("res/#2/add")} == {"res/#2/conv_2", "res/relu"}
    assert blocks.flatten(p.graph) is flat  # once per version


def test_a_mismatch_inside_a_block_is_placed_on_the_instance():
    d = project_dict(filters=4)
    d["graph"]["nodes"][1]["params"]["filters"] = 5  # the shortcut Add gets 5 and 4 channels
    p = loom.from_dict(d, strict=False)
    problem = next(e for e in p.graph.validate() if e.node == "res")
    assert "in block ResBlock, 'add' (Add)" in problem.message


def test_the_file_round_trips_and_writes_every_declared_block():
    d = project_dict(repeat=2)
    p = load(d)
    again = json.loads(loom.dumps(p))
    block = again["blocks"]["ResBlock"]
    for key in ("help", "inputs", "outputs", "params"):
        assert block[key] == RES_BLOCK[key], key
    assert [(n["id"], n["type"]) for n in block["graph"]["nodes"]] == [
        (n["id"], n["type"]) for n in RES_BLOCK["graph"]["nodes"]]
    assert block["graph"]["edges"] == RES_BLOCK["graph"]["edges"]
    assert block["graph"]["nodes"][1]["params"]["padding"] == "same"
    assert loom.dumps(load(again)) == loom.dumps(p)  # a fixed point
    p.graph.remove_node("res")  # no instance left: the type stays in the file
    assert "ResBlock" in json.loads(loom.dumps(p))["blocks"]


@pytest.mark.parametrize("change,where,words", [
    (lambda b: b.update(inputs=["y"]), "blocks.ResBlock.inputs", "each Input node"),
    (lambda b: b.update(outputs=[["nope", 0]]), "blocks.ResBlock.outputs[0]", "[node, port]"),
    (lambda b: b.update(outputs=[["relu", 3]]), "blocks.ResBlock.outputs[0]", "[node, port]"),
    (lambda b: b["params"]["filters"].update(sets=["conv_9.filters"]),
     "blocks.ResBlock.params.filters.sets[0]", "no node parameter"),
    (lambda b: b["params"]["filters"].update(sets=["conv_1.filters*x"]),
     "blocks.ResBlock.params.filters.sets[0]", "node.parameter*factor"),
    (lambda b: b["params"]["filters"].update(sets=["conv_1.padding*2"]),
     "blocks.ResBlock.params.filters.sets[0]", "a factor needs a number"),
    (lambda b: b["params"]["filters"].update(default=-3),
     "blocks.ResBlock.params.filters.default", "positive integer"),
    (lambda b: b["params"].update(repeat={"default": 1, "sets": ["conv_1.filters"]}),
     "blocks.ResBlock.params.repeat", "not 'repeat'"),
    (lambda b: (b["graph"]["nodes"].append({"id": "loose", "type": "Dense",
                                            "params": {"units": 2}}),
                b["graph"]["edges"].append({"from": ["conv_1", 0], "to": ["loose", 0]})),
     "blocks.ResBlock.graph", "feeds nothing"),
    (lambda b: b["graph"]["nodes"][1].update(type="ResBlock"),
     "blocks.ResBlock.graph.nodes[1].type", "unknown layer type"),  # itself: not yet declared
    (lambda b: b["graph"]["nodes"][2]["params"].update(filters="many"),
     "blocks.ResBlock.graph.nodes[2].params.filters", "positive integer"),
    (lambda b: b["graph"]["edges"].pop(0), "blocks.ResBlock.graph", "not connected"),
    (lambda b: b.update(surprise=1), "blocks.ResBlock.surprise", "unknown"),
])
def test_a_broken_block_is_refused_with_its_place(change, where, words):
    d = project_dict()
    change(d["blocks"]["ResBlock"])
    with pytest.raises(ProjectError) as e:
        load(d)
    places = [p.place for p in e.value.problems]
    assert where in places, [str(p) for p in e.value.problems]
    assert words in str(e.value.problems[places.index(where)])


@pytest.mark.parametrize("name,words", [("Dense", "is a layer type"), ("2fast", "letters"),
                                        ("a" * 65, "letters")])
def test_a_block_name_must_be_free_and_plain(name, words):
    d = project_dict(blocks_={name: copy.deepcopy(RES_BLOCK)})
    with pytest.raises(ProjectError) as e:
        load(d)
    assert words in str(e.value.problems[0]) and e.value.problems[0].place == f"blocks.{name}"


def test_a_repeat_that_would_pass_the_node_bound_is_refused_not_built():
    d = project_dict()
    d["blocks"]["Big"] = copy.deepcopy(RES_BLOCK)
    d["blocks"]["Big"]["graph"]["nodes"][1] = {"id": "conv_1", "type": "ResBlock",
                                               "params": {"repeat": 1000}}
    d["blocks"]["Big"]["params"] = {}
    d["graph"]["nodes"][2] = {"id": "res", "type": "Big", "params": {"repeat": 1000}}
    with pytest.raises(ProjectError, match="more than the 10,000"):  # before any is built
        loom.from_dict(json.loads(json.dumps(d)), strict=False)


def test_nested_blocks_expand_with_paths():
    d = project_dict()
    d["blocks"]["Stage"] = {
        "inputs": ["x"], "outputs": [["second", 0]],
        "params": {"width": {"default": 4, "sets": ["first.filters", "second.filters"]}},
        "graph": {"nodes": [{"id": "x", "type": "Input", "params": {"shape": [6, 6, 4]}},
                            {"id": "first", "type": "ResBlock", "params": {"filters": 4}},
                            {"id": "second", "type": "ResBlock", "params": {"filters": 4}}],
                  "edges": [{"from": ["x", 0], "to": ["first", 0]},
                            {"from": ["first", 0], "to": ["second", 0]}]}}
    d["graph"]["nodes"][2] = {"id": "res", "type": "Stage", "params": {"width": 4}}
    p = load(d)
    flat = blocks.flatten(p.graph)
    assert "res/second/conv_2" in flat.nodes and "res/first/relu" in flat.nodes
    assert p.graph.analysis().params["res"].total == 4 * (3 * 3 * 4 * 4 + 4)
    out = json.loads(loom.dumps(p))
    assert list(out["blocks"]) == ["ResBlock", "Stage"]  # each after those it uses


# -- the engine -----------------------------------------------------------------------------------
def test_an_instance_computes_its_layers_against_the_float64_reference(rt, rng):
    p = load(project_dict(repeat=2))
    ws = random_weights(p.graph, rng)
    x = rng.normal(size=(5, 6, 6, 1)).astype(np.float32)
    got = Model(p.graph, rt, 5, weights=ws).predict({"image": x})["out"]
    want = reference(p.graph, ws, {"image": x})[("out", 0)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_training_an_instance_updates_each_copy_and_a_frozen_one_not_at_all(rng):
    d = project_dict(repeat=2)
    d["graph"]["nodes"].insert(3, {"id": "res2", "type": "ResBlock",
                                   "params": {"filters": 4}, "trainable": False})
    d["graph"]["edges"][2] = {"from": ["res", 0], "to": ["res2", 0]}
    d["graph"]["edges"].append({"from": ["res2", 0], "to": ["gap", 0]})
    p = load(d)
    assert p.graph.analysis().params["res2"].trainable == 0
    model = api.Model(p)
    before = {k: v.copy() for k, v in model.session.model.get_weights().items()}
    x = rng.normal(size=(32, 6, 6, 1)).astype(np.float32)
    y = rng.integers(0, 3, size=32)
    model.fit(x, y, epochs=2, verbose=False)
    after = model.get_weights()
    assert set(after) == set(before)
    for k in before:
        if k.startswith("res2/"):
            np.testing.assert_array_equal(after[k], before[k], err_msg=k)
        else:
            assert not np.array_equal(after[k], before[k]), k
    assert {"res/conv_1/kernel", "res/#2/conv_1/kernel"} <= set(after)


# -- Make Block and Expand ------------------------------------------------------------------------
def plain_project():
    """A residual CNN written out, with a residual pair of convolutions to make a block of."""
    p = load(project_dict())
    flat = blocks.flatten(p.graph)
    g = Graph()
    for nid, n in flat.nodes.items():
        if nid != "res":
            g.add_node(n.type, dict(n.params), id=nid.replace("res/", "r_"))
    for e in flat.edges:
        ids = [("gap" if x == "res" else x.replace("res/", "r_")) for x in (e.src, e.dst)]
        if ids[0] != ids[1]:
            g.connect(ids[0], e.src_port, ids[1], e.dst_port)
    out = Project(g)
    out.training = copy.deepcopy(p.training)
    return out


def test_make_block_replaces_the_selection_and_computes_the_same(rt, rng):
    p = plain_project()
    g = p.graph
    ws = random_weights(g, rng)
    x = rng.normal(size=(4, 6, 6, 1)).astype(np.float32)
    want = Model(g, rt, 4, weights=ws).predict({"image": x})["out"]
    sel = ["r_conv_1", "r_conv_2", "r_add", "r_relu"]
    suggested = block_edits.suggested_params(g, sel)
    assert [t.text() for t in suggested["filters"][1]] == ["r_conv_1.filters", "r_conv_2.filters"]
    made = block_edits.make_block(g, sel, "Residual", {"filters": suggested["filters"][1]})
    assert made.inputs == [("stem", 0)] and made.outputs == [(0, "gap", 0)]
    assert made.params == {"filters": 4, "repeat": 1}
    assert loom.block_dict(made.block)["params"] == {
        "filters": {"default": 4, "sets": ["r_conv_1.filters", "r_conv_2.filters"]}}
    g.define_block(made.block)
    for nid in made.removed:
        g.remove_node(nid)
    g.add_node("Residual", made.params, id=made.instance)
    for port, (src, sp) in enumerate(made.inputs):
        g.connect(src, sp, made.instance, port)
    for port, dst, dp in made.outputs:
        g.connect(made.instance, port, dst, dp)
    assert not g.validate()
    moved = block_edits.rename_weights(ws, made.weights_renamed())
    assert "residual_1/r_conv_1/kernel" in moved
    got = Model(g, rt, 4, weights=moved).predict({"image": x})["out"]
    np.testing.assert_array_equal(got, want)
    # Expand puts the layers back in place, with their weights
    plan = block_edits.inline_plan(g, made.instance)
    assert sorted(n[0] for n in plan.nodes) == sorted(sel)
    g.remove_node(made.instance)
    for nid, typ, params, trainable in plan.nodes:
        g.add_node(typ, params, id=nid, trainable=trainable)
    for e in plan.edges:
        g.connect(*e)
    back = block_edits.rename_weights(moved, plan.weights_renamed())
    assert set(back) == set(ws)
    np.testing.assert_array_equal(Model(g, rt, 4, weights=back).predict({"image": x})["out"],
                                  want)


@pytest.mark.parametrize("sel,words", [
    ([], "select the layers"),
    (["image", "stem"], "leave the Input out"),
])
def test_make_block_refuses_what_is_no_block(sel, words):
    p = plain_project()
    with pytest.raises(ProjectError, match=words):
        block_edits.make_block(p.graph, sel, "Bad")


def test_make_block_refuses_a_taken_name():
    p = load(project_dict())
    with pytest.raises(ProjectError, match="already"):
        block_edits.make_block(p.graph, ["stem"], "ResBlock")
    with pytest.raises(ProjectError, match="is a layer type"):
        block_edits.make_block(p.graph, ["stem"], "Conv2D")


def test_make_block_refuses_a_parameter_that_would_change_the_model():
    p = plain_project()
    p.graph.set_params("r_conv_2", filters=4)
    p.graph.set_params("stem", filters=4)
    g = p.graph
    g.set_params("r_conv_1", filters=4)
    with pytest.raises(ProjectError, match="r_conv_2.filters is 4, not 8"):
        block_edits.make_block(g, ["r_conv_1", "r_conv_2"], "Pair",
                          {"filters": ["r_conv_1.filters*0.5", "r_conv_2.filters"]})


def test_a_factor_is_suggested_for_a_bottleneck():
    g = Graph()
    g.add_node("Input", {"shape": [8, 8, 16]}, id="x")
    g.add_node("Conv2D", {"filters": 4, "kernel_size": [1, 1]}, id="a")
    g.add_node("Conv2D", {"filters": 4, "kernel_size": [3, 3], "padding": "same"}, id="b")
    g.add_node("Conv2D", {"filters": 16, "kernel_size": [1, 1]}, id="c")
    for s, t in (("x", "a"), ("a", "b"), ("b", "c")):
        g.connect(s, 0, t, 0)
    base, targets = block_edits.suggested_params(g, ["a", "b", "c"])["filters"]
    assert base == 4 and [t.text() for t in targets] == ["a.filters", "b.filters", "c.filters*4"]
    made = block_edits.make_block(g, ["a", "b", "c"], "Bottleneck", {"filters": targets})
    inner = made.block.inner_params({"filters": 8, "repeat": 1})
    assert (inner["a"]["filters"], inner["c"]["filters"]) == (8, 32)


# -- exports --------------------------------------------------------------------------------------
def test_onnx_export_of_blocks_matches_onnxruntime(rng, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from layerloom.interop import export
    p = load(project_dict(repeat=2))
    ws = random_weights(p.graph, rng)
    export(p, ws, str(tmp_path / "m.onnx"))
    x = rng.normal(size=(3, 6, 6, 1)).astype(np.float32)
    s = ort.InferenceSession(str(tmp_path / "m.onnx"))
    got = s.run(None, {s.get_inputs()[0].name: x})[0]
    want = reference(p.graph, ws, {"image": x})[("out", 0)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_pytorch_code_of_blocks_matches_the_reference(rng, tmp_path):
    torch = pytest.importorskip("torch")
    from test_torch_code import _script
    p = load(project_dict(repeat=2))
    ws = random_weights(p.graph, rng)
    module = _script(tmp_path, p, ws)
    x = rng.normal(size=(3, 6, 6, 1)).astype(np.float32)
    with torch.no_grad():
        got = module.build_model()({"image": torch.from_numpy(x)})
    got = got["out"] if isinstance(got, dict) else got
    want = reference(p.graph, ws, {"image": x})[("out", 0)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-5)


def test_keras_export_of_blocks_names_layers_keras_takes(rng, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    from layerloom.interop.keras_export import to_keras
    p = load(project_dict(repeat=2))
    ws = random_weights(p.graph, rng)
    model = to_keras(p, ws, compile=False)
    names = [layer.name for layer in model.layers]
    assert "res__conv_1" in names and "res__#2__conv_2" in names
    x = rng.normal(size=(3, 6, 6, 1)).astype(np.float32)
    got = np.asarray(keras.ops.convert_to_numpy(model(x)))
    want = reference(p.graph, ws, {"image": x})[("out", 0)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_onnx_writes_each_instance_as_a_call_of_one_function_per_body(rng, tmp_path):
    """ONNX has functions: a block instance is one call (domain layerloom.blocks); instances
    of one type with the same parameters call one function; onnxruntime runs it and
    Layerloom's import inlines it back."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from layerloom.interop import onnx_import
    from layerloom.interop.onnx_export import to_onnx
    d = project_dict(repeat=2)
    d["graph"]["nodes"].insert(3, {"id": "res2", "type": "ResBlock",
                                   "params": {"filters": 4, "repeat": 2}})
    d["graph"]["edges"][2] = {"from": ["res", 0], "to": ["res2", 0]}
    d["graph"]["edges"].append({"from": ["res2", 0], "to": ["gap", 0]})
    p = load(d)
    ws = random_weights(p.graph, rng)
    model = to_onnx(p, ws)
    calls = [n for n in model.graph.node if n.domain == "layerloom.blocks"]
    assert [(n.op_type, n.name) for n in calls] == [("ResBlock", "res"), ("ResBlock", "res2")]
    assert [f.name for f in model.functions] == ["ResBlock"]
    onnx.checker.check_model(model)
    x = rng.normal(size=(3, 6, 6, 1)).astype(np.float32)
    s = ort.InferenceSession(model.SerializeToString())
    got = s.run(None, {s.get_inputs()[0].name: x})[0]
    want = reference(p.graph, ws, {"image": x})[("out", 0)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    back = onnx_import.from_model(model, "m")
    from layerloom.backend.runtime import Runtime
    out = Model(back.project.graph, Runtime(), 3, weights=back.weights).predict(
        {back.project.graph.inputs()[0]: x})
    np.testing.assert_allclose(list(out.values())[0], want, rtol=1e-4, atol=1e-5)


# -- found by the review of the whole change ------------------------------------------------------
def _two_input_project():
    block = {"inputs": ["x1", "x2"], "outputs": [["sub", 0]],
             "graph": {"nodes": [{"id": "x1", "type": "Input", "params": {"shape": [4]}},
                                 {"id": "x2", "type": "Input", "params": {"shape": [4]}},
                                 {"id": "sub", "type": "Subtract"}],
                       "edges": [{"from": ["x1", 0], "to": ["sub", 0]},
                                 {"from": ["x2", 0], "to": ["sub", 1]}]}}
    d = {"format": "layerloom-project", "version": 1, "blocks": {"Diff": block},
         "graph": {"nodes": [{"id": "a", "type": "Input", "params": {"shape": [4]}},
                             {"id": "b", "type": "Input", "params": {"shape": [4]}},
                             {"id": "d", "type": "Diff"},
                             {"id": "o", "type": "Dense", "params": {"units": 1}}],
                   "edges": [{"from": ["a", 0], "to": ["d", 0]},
                             {"from": ["b", 0], "to": ["d", 1]},
                             {"from": ["d", 0], "to": ["o", 0]}]},
         "training": {"loss": {"o": "mean_squared_error"}}}
    return load(d)


def test_an_edited_block_keeps_each_input_at_its_port_and_says_what_moved():
    """Deleting Input x1 of a two-input block and adding another put x2 at port 0: the
    instance computed b - a instead of a - b, silently. Surviving ports keep their index; a
    new Input takes a removed one's; the moves are said for the editor to refuse."""
    p = _two_input_project()
    old = p.graph.blocks["Diff"]
    inner = loom.parse_graph(loom.graph_dict(old.graph), [], blocks=dict(p.graph.blocks))
    inner.remove_node("x1")
    inner.add_node("Input", {"shape": [4]}, id="input_1")
    inner.connect("input_1", 0, "sub", 0)
    new, in_moves, out_moves = block_edits.redefined(old, inner)
    assert new.input_ids == ["input_1", "x2"]
    assert in_moves == {0: None, 1: 1} and out_moves == {0: 0}
    inner.remove_node("input_1")  # x1 gone, nothing in its place: x2 would move to port 0
    inner.connect("x2", 0, "sub", 0)
    new, in_moves, _ = block_edits.redefined(old, inner)
    assert new.input_ids == ["x2"] and in_moves == {0: None, 1: 0}


def test_a_block_edited_where_another_uses_it_runs_as_saved():
    """A redefined block used inside another block: the engine ran the old one while the file
    saved the new one."""
    d = project_dict()
    d["blocks"]["Stage"] = {
        "inputs": ["x"], "outputs": [["inner", 0]],
        "graph": {"nodes": [{"id": "x", "type": "Input", "params": {"shape": [6, 6, 4]}},
                            {"id": "inner", "type": "ResBlock", "params": {"filters": 4}}],
                  "edges": [{"from": ["x", 0], "to": ["inner", 0]}]}}
    d["graph"]["nodes"][2] = {"id": "res", "type": "Stage", "params": {}}
    p = load(d)
    old = p.graph.blocks["ResBlock"]
    edited = loom.parse_graph(loom.graph_dict(old.graph), [], blocks={})
    edited.set_params("conv_1", activation="tanh")
    new, _, _ = block_edits.redefined(old, edited)
    p.graph.define_block(new)
    assert p.graph.flat().nodes["res/inner/conv_1"].params["activation"] == "tanh"
    again = load(json.loads(loom.dumps(p)))
    assert again.graph.flat().nodes["res/inner/conv_1"].params["activation"] == "tanh"


def test_a_factor_rounds_by_the_parameter_it_sets():
    """An integer block parameter times 0.1 into a Dropout rate was rounded to 0."""
    d = project_dict()
    d["blocks"]["ResBlock"]["graph"]["nodes"].insert(4, {"id": "drop", "type": "Dropout",
                                                         "params": {"rate": 0.4}})
    d["blocks"]["ResBlock"]["graph"]["edges"][4] = {"from": ["add", 0], "to": ["drop", 0]}
    d["blocks"]["ResBlock"]["graph"]["edges"].append({"from": ["drop", 0], "to": ["relu", 0]})
    d["blocks"]["ResBlock"]["params"]["filters"]["sets"].append("drop.rate*0.1")
    p = load(d)
    assert p.graph.flat().nodes["res/drop"].params["rate"] == pytest.approx(0.4)


def test_many_large_instances_are_refused_before_any_is_built():
    """Each instance of other parameters was expanded once to be analysed: 100 instances of a
    2,000-layer block took 45 s to refuse."""
    import time
    layers = [{"id": "x", "type": "Input", "params": {"shape": [4]}}]
    edges = []
    for i in range(2000):
        layers.append({"id": f"d{i}", "type": "Dense", "params": {"units": 4}})
        edges.append({"from": [layers[-2]["id"], 0], "to": [f"d{i}", 0]})
    big = {"inputs": ["x"], "outputs": [["d1999", 0]],
           "params": {"u": {"default": 4, "sets": ["d1999.units"]}},
           "graph": {"nodes": layers, "edges": edges}}
    nodes = [{"id": "in", "type": "Input", "params": {"shape": [4]}}]
    for k in range(100):
        nodes.append({"id": f"b{k}", "type": "Big", "params": {"u": 4 + (k == 0)}})
    d = {"format": "layerloom-project", "version": 1, "blocks": {"Big": big},
         "graph": {"nodes": nodes, "edges": []}}
    t = time.perf_counter()
    with pytest.raises(ProjectError, match="more than the 10,000 nodes"):
        loom.loads(json.dumps(d), strict=False)
    assert time.perf_counter() - t < 10  # (45 s before; a bound against a hang, not a timing)


def test_a_multi_output_block_ending_the_model_and_a_clashing_id_are_problems():
    d = project_dict()
    d["blocks"]["Two"] = {"inputs": ["x"], "outputs": [["a", 0], ["b", 0]],
                          "graph": {"nodes": [{"id": "x", "type": "Input",
                                               "params": {"shape": [4]}},
                                              {"id": "a", "type": "Dense", "params": {"units": 2}},
                                              {"id": "b", "type": "Dense", "params": {"units": 2}}],
                                    "edges": [{"from": ["x", 0], "to": ["a", 0]},
                                              {"from": ["x", 0], "to": ["b", 0]}]}}
    d["graph"]["nodes"].append({"id": "two", "type": "Two"})
    d["graph"]["nodes"].append({"id": "res/conv_1", "type": "Dense", "params": {"units": 4}})
    d["graph"]["edges"] += [{"from": ["gap", 0], "to": ["two", 0]},
                            {"from": ["gap", 0], "to": ["res/conv_1", 0]}]
    p = loom.from_dict(json.loads(json.dumps(d)), strict=False)
    kinds = {(e.kind, e.node) for e in p.graph.validate()}
    assert ("block_output", "two") in kinds and ("block_id_clash", "res/conv_1") in kinds
