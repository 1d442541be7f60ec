"""One-click fixes (engine/core/fixes.py): each offered fix, applied, clears its problem and
adds none; problems without a standard fix get none."""
import os

import numpy as np
import pytest

from layerloom.core import fixes
from layerloom.core.errors import DataError, GraphError, LayerloomError, ProjectError
from layerloom.core.graph import Graph
from layerloom.project import loom as projectfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "assets", "examples")


def chain(*layers):
    """Input(shape) -> layers..., each (id, type, params)."""
    g = Graph()
    prev = None
    for nid, typ, params in layers:
        g.add_node(typ, params, id=nid)
        if prev is not None:
            g.connect(prev, 0, nid, 0)
        prev = nid
    return g


def problem_at(g, node):
    (p,) = [p for p in g.validate() if p.node == node]
    return p


def no_loss(out):
    """The training section's problem "output 'd' has no loss", as project/training.py makes
    it."""
    return ProjectError(f"output {out!r} has no loss", "training.loss", kind="no_loss",
                        fields={"output": out})


def applied(g, fix):
    h = fixes.copy_graph(g)
    fixes.apply(h, fix.steps)
    return h


def labels(fs):
    return [f.label for f in fs]


def test_conv_after_dense_offers_reshape_and_moving_before_flatten():
    g = chain(("x", "Input", {"shape": [28, 28, 1]}), ("flat", "Flatten", {}),
              ("d", "Dense", {"units": 64}), ("conv", "Conv2D", {"filters": 4, "kernel_size": 3}),
              ("f2", "Flatten", {}), ("out", "Dense", {"units": 10}))
    msg = problem_at(g, "conv")
    fs = fixes.fixes_for(g, msg)
    assert labels(fs) == ["Insert Reshape to [8, 8, 1] before 'conv'", "Move 'conv' before 'flat'"]
    for f in fs:
        h = applied(g, f)
        assert h.validate() == [], f.label
    moved = applied(g, fs[1])
    assert [e.key() for e in moved.in_edges("conv")] == [("x", 0, "conv", 0)]
    assert [e.key() for e in moved.in_edges("flat")] == [("conv", 0, "flat", 0)]
    assert [e.key() for e in moved.in_edges("f2")] == [("d", 0, "f2", 0)]


def test_an_image_into_a_layer_that_wants_a_vector_offers_flatten():
    g = chain(("x", "Input", {"shape": [8, 8, 3]}), ("rep", "RepeatVector", {"n": 2}))
    msg = problem_at(g, "rep")
    fs = fixes.fixes_for(g, msg)
    assert labels(fs) == ["Insert Flatten before 'rep'"]  # no Reshape to a rank it refuses
    for f in fs:
        assert applied(g, f).validate() == [], f.label


def test_an_unconnected_input_offers_the_nearest_dangling_outputs_and_delete():
    g = chain(("x", "Input", {"shape": [4]}), ("a", "Dense", {"units": 3}))
    g.add_node("Dense", {"units": 2}, id="b")
    g.add_node("Input", {"shape": [4]}, id="far")
    msg = problem_at(g, "b")
    fs = fixes.fixes_for(g, msg, positions={"a": (100, 0), "b": (300, 0),
                                                  "far": (3000, 0)})
    assert labels(fs) == ["Connect 'a' to 'b'", "Connect 'far' to 'b'", "Delete 'b'"]
    assert applied(g, fs[0]).validate() == []
    assert "b" not in applied(g, fs[2]).nodes


def test_an_output_without_a_loss_goes_in_front_of_its_siblings_consumer():
    proj = projectfile.load(os.path.join(EXAMPLES, "spirals.loom"))
    g = proj.graph
    g.add_node("Dense", {"units": 16, "activation": "relu"}, id="extra")
    g.connect("hidden_3", 0, "extra", 0)
    (p,) = [p for p in projectfile.problems_of(proj) if "has no loss" in str(p)]
    fs = fixes.fixes_for(g, p, losses=["class"])
    assert labels(fs) == ["Insert 'extra' before 'class'", "Delete 'extra'"]
    h = applied(g, fs[0])
    assert h.outputs() == ["class"] and h.validate() == []
    assert [e.src for e in h.in_edges("class")] == ["extra"]


def _data_shape_problem(shape):
    """The data check's own problem: spirals' arrays against an Input of another shape."""
    from layerloom.data.prepare import prepare_data
    proj = projectfile.load(os.path.join(EXAMPLES, "spirals.loom"))
    proj.graph.set_params(proj.graph.inputs()[0], shape=shape)
    with pytest.raises(DataError) as e:
        prepare_data(proj)
    return proj.graph, e.value


def test_a_data_mismatch_sets_the_input_shape():
    g, problem = _data_shape_problem([3])
    assert problem.kind == "input_data_shape"
    assert problem.fields == {"node": g.inputs()[0], "shape": [2]}  # made by prepare, not read
    (f,) = fixes.fixes_for(g, problem)
    assert f.label == "Set the Input's shape to [2]"
    assert applied(g, f).nodes[g.inputs()[0]].params["shape"] in ([2], (2,))


def test_problems_without_a_standard_fix_get_none():
    g = chain(("x", "Input", {"shape": [4]}), ("d", "Dense", {"units": 2}))
    assert fixes.fixes_for(g, LayerloomError("some other problem")) == []
    assert fixes.fixes_for(g, GraphError("the graph has no Input node", kind="no_input")) == []


def test_the_only_output_without_a_loss_is_not_offered_for_deletion():
    """A beginner building a chain saw "Delete '<the layer just added>'" as the only fix for
    "no loss"; what helps is choosing a loss."""
    g = chain(("x", "Input", {"shape": [4]}), ("d", "Dense", {"units": 2}))
    assert labels(fixes.fixes_for(g, no_loss("d"))) == [
        "Use the loss mean_squared_error for 'd'"]


def test_an_output_without_a_loss_gets_the_loss_its_activation_implies():
    """The second trial: four of 34 actions went on finding and choosing the loss."""
    for act, want in (("softmax", ["sparse_categorical_crossentropy",
                                   "categorical_crossentropy"]),
                      ("sigmoid", ["binary_crossentropy"]), ("linear", ["mean_squared_error"])):
        g = chain(("x", "Input", {"shape": [4]}), ("d", "Dense", {"units": 3, "activation": act}))
        fs = fixes.fixes_for(g, no_loss("d"))
        assert labels(fs) == [f"Use the loss {w} for 'd'" for w in want], act
        assert fs[0].steps == (fixes.Step("set_loss", output="d", loss=want[0]),)
        h = applied(g, fs[0])  # the graph itself is unchanged
        assert [(n.id, n.type, n.params) for n in h.nodes.values()] == \
            [(n.id, n.type, n.params) for n in g.nodes.values()]
        assert [e.key() for e in h.edges] == [e.key() for e in g.edges]
    # a loss the output's metrics cannot be computed against is not offered
    g = chain(("x", "Input", {"shape": [4]}), ("d", "Dense", {"units": 3, "activation": "softmax"}))
    assert labels(fixes.fixes_for(g, no_loss("d"), metrics=["precision"])) == [
        "Use the loss categorical_crossentropy for 'd'"]
    assert labels(fixes.fixes_for(g, no_loss("d"),
                                  metrics={"d": ["sparse_top_k_categorical_accuracy"]})) == [
        "Use the loss sparse_categorical_crossentropy for 'd'"]
    g = chain(("x", "Input", {"shape": [4]}), ("d", "Dense", {"units": 3}),
              ("a", "Activation", {"activation": "softmax"}))
    assert labels(fixes.fixes_for(g, no_loss("a")))[0] == \
        "Use the loss sparse_categorical_crossentropy for 'a'"


# -- problems and fixes as data (issue 27, item 3) -------------------------------------------
def blanked(p):
    """The problem with its message replaced: what a fix finds must not change."""
    return type(p)("(message withheld)", p.place, kind=p.kind, fields=p.fields)


def test_every_problem_kind_with_a_fix_carries_the_fields_its_fix_reads():
    """Each kind FIXES declares, made as analysis, the training section and the data check make
    it, has the fields its fixes read; the fixes come from those fields, not the message."""
    made = {}
    g = chain(("x", "Input", {"shape": [4]}), ("a", "Dense", {"units": 3}))
    g.add_node("Dense", {"units": 2}, id="b")
    made["unconnected_input"] = (g, problem_at(g, "b"), {})
    g = chain(("x", "Input", {"shape": [8, 8, 3]}), ("rep", "RepeatVector", {"n": 2}))
    made["shape_mismatch"] = (g, problem_at(g, "rep"), {})
    proj = projectfile.load(os.path.join(EXAMPLES, "spirals.loom"))
    proj.graph.add_node("Dense", {"units": 16, "activation": "relu"}, id="extra")
    proj.graph.connect("hidden_3", 0, "extra", 0)
    (p,) = [p for p in projectfile.problems_of(proj) if p.kind == "no_loss"]
    made["no_loss"] = (proj.graph, p, {"losses": ["class"]})
    made["input_data_shape"] = _data_shape_problem([3]) + ({},)
    g, pos = residual(skip=False)
    made["too_few_inputs"] = (g, problem_at(g, "add"), {"positions": pos})
    g, pos = residual(skip=False)
    g.disconnect(g.in_edges("add")[0])
    g.connect("b", 0, "add", 1)
    made["input_gap"] = (g, problem_at(g, "add"), {"positions": pos})
    assert set(made) == set(fixes.FIXES)  # a new fixable kind gets its case here
    for kind, (g, p, extra) in made.items():
        entry = fixes.FIXES[kind]
        assert p.kind == kind, kind
        assert set(entry.reads) <= set(p.fields), (kind, p.fields)
        found = fixes.fixes_for(g, p, **extra)
        assert found, kind
        assert [(f.label, f.steps) for f in fixes.fixes_for(g, blanked(p), **extra)] == \
            [(f.label, f.steps) for f in found], kind
        missing = type(p)(p.message, p.place, kind=p.kind,
                          fields={k: v for k, v in p.fields.items() if k != entry.reads[0]})
        assert fixes.fixes_for(g, missing, **extra) == [], kind  # no field, no fix
    # the graph's problems keep their messages and say their node as a field too
    assert problem_at(made["unconnected_input"][0], "b").message == \
        "input 0 (x) is not connected"
    assert problem_at(made["unconnected_input"][0], "b").fields == \
        {"node": "b", "port": 0, "port_name": "x"}
    assert problem_at(made["shape_mismatch"][0], "rep").fields["in_shapes"] == [(8, 8, 3)]
    loss = made["no_loss"][1]
    assert (loss.message, loss.fields) == ("output 'extra' has no loss", {"output": "extra"})


def test_every_problem_of_the_graph_says_its_kind():
    g = Graph()
    assert [p.kind for p in g.validate()] == ["no_input"]
    g = chain(("x", "Input", {"shape": [4]}), ("a", "Dense", {"units": 3}),
              ("b", "Dense", {"units": 3}))
    g.add_node("Add", {}, id="add")
    g.connect("a", 0, "add", 0)
    g.connect("b", 0, "add", 2)
    g.add_node("Concatenate", {}, id="cat")
    g.connect("x", 0, "cat", 0)
    kinds = {(p.kind, p.node) for p in g.validate()}
    assert ("input_gap", "add") in kinds and ("too_few_inputs", "cat") in kinds, kinds
    assert all(p.kind for p in g.validate())
    assert all(p.fields.get("node") == p.node for p in g.validate() if p.node is not None)
    h = chain(("x", "Input", {"shape": [4]}), ("a", "Dense", {"units": 3}),
              ("b", "Dense", {"units": 3}))
    h.disconnect(h.in_edges("a")[0])
    h.connect("b", 0, "a", 0, allow_cycle=True)
    assert {p.kind for p in h.validate()} >= {"cycle", "no_output"}
    (cycle,) = [p for p in h.validate() if p.kind == "cycle"]
    assert set(cycle.fields["nodes"]) == {"a", "b"}


def test_steps_are_records_and_an_unknown_kind_is_refused_before_any_edit():
    s = fixes.Step("set_loss", output="d", loss="mean_squared_error")
    assert (s.kind, s.output, s.loss) == ("set_loss", "d", "mean_squared_error")
    assert s == fixes.Step("set_loss", loss="mean_squared_error", output="d")
    try:
        fixes.Step("set_loss", output="d")
    except TypeError as e:
        assert "output, loss" in str(e)
    else:
        raise AssertionError("a step without its fields was made")
    assert set(fixes.STEPS) == set(fixes.APPLY)  # every declared kind can be applied
    g = chain(("x", "Input", {"shape": [4]}), ("d", "Dense", {"units": 2}))
    g.add_node("Dense", {"units": 2}, id="e")
    steps = (fixes.Step("connect", src="d", src_port=0, dst="e", dst_port=0),
             fixes.Step("teleport", node="e"))
    try:
        fixes.apply(g, steps)
    except fixes.UnknownStep as e:
        assert "'teleport'" in str(e) and "set_param" in str(e)
        assert e.step_kind == "teleport"
    else:
        raise AssertionError("an unknown step kind was applied")
    assert not g.in_edges("e")  # nothing was changed, not even the step before it


# -- merges (issue 31, item 4): an input left unconnected, inputs of different sizes ----------
def residual(pad_b="same", skip=True):
    """x (28x28x1) -> a (conv 8, same) -> b (conv 8, pad_b) -> add <- a (the skip, unless
    not `skip`) -> flat -> out; positions down the canvas in that order."""
    g = chain(("x", "Input", {"shape": [28, 28, 1]}),
              ("a", "Conv2D", {"filters": 8, "kernel_size": 3, "padding": "same"}),
              ("b", "Conv2D", {"filters": 8, "kernel_size": 3, "padding": pad_b}),
              ("add", "Add", {}), ("flat", "Flatten", {}), ("out", "Dense", {"units": 10}))
    if skip:
        g.connect("a", 0, "add", 1)
    pos = {n: (0, 100 * k) for k, n in enumerate(["x", "a", "b", "add", "flat", "out"])}
    return g, pos


def test_an_add_with_one_input_connects_from_the_nearest_node_whose_shape_fits():
    g, pos = residual(skip=False)
    problem = problem_at(g, "add")
    assert problem.kind == "too_few_inputs"
    fs = fixes.fixes_for(g, problem, pos)
    # 'a' is 28x28x8 as 'b' is; 'x' (28x28x1) would broadcast but is not the same shape, and
    # 'b' already feeds the Add: the skip connection from 'a' first
    assert labels(fs)[0] == "Connect 'a' to 'add'", labels(fs)
    assert fs[0].steps == (fixes.Step("connect", src="a", src_port=0, dst="add", dst_port=1),)
    assert applied(g, fs[0]).validate() == []
    for f in fs:  # every one offered clears the problem and adds none
        assert applied(g, f).validate() == [], f.label
    assert "Connect 'flat' to 'add'" not in labels(fs)  # downstream: a cycle
    assert "Connect 'b' to 'add'" not in labels(fs)  # feeds it already


def test_a_merge_with_a_gap_or_an_unconnected_port_is_connected_from_a_fitting_node():
    g, pos = residual(skip=False)
    g.disconnect(g.in_edges("add")[0])
    g.connect("b", 0, "add", 1)  # port 0 empty: a gap
    problem = problem_at(g, "add")
    assert problem.kind == "input_gap"
    fs = fixes.fixes_for(g, problem, pos)
    assert fs and fs[0].steps == (fixes.Step("connect", src="a", src_port=0, dst="add",
                                             dst_port=0),)
    assert applied(g, fs[0]).validate() == []
    s, pos = residual(skip=False)
    s.disconnect(s.in_edges("add")[0])
    s.remove_node("add")
    s.add_node("Subtract", {}, id="add")
    s.connect("b", 0, "add", 0)
    s.connect("add", 0, "flat", 0)
    fs = fixes.fixes_for(s, problem_at(s, "add"), pos)
    assert labels(fs)[0] == "Connect 'a' to 'add'", labels(fs)
    assert applied(s, fs[0]).validate() == []
    # a merge of fixed ports (Dot's a and b): port b from the node shaped as a's input
    d = chain(("x", "Input", {"shape": [6]}), ("a", "Dense", {"units": 4}),
              ("b", "Dense", {"units": 4}), ("dot", "Dot", {}))
    d.add_node("Dense", {"units": 4}, id="c")
    d.add_node("Dense", {"units": 3}, id="e")  # dangling too, nearest, 3 wide: no fit
    for n in ("c", "e"):
        d.connect("x", 0, n, 0)
    d.connect("c", 0, "dot", 1)
    d.disconnect(d.in_edges("dot")[0])
    problem = problem_at(d, "dot")
    assert problem.kind == "unconnected_input"
    fs = fixes.fixes_for(d, problem, {"x": (0, 0), "a": (0, 100), "b": (0, 200),
                                      "dot": (0, 300), "c": (200, 100), "e": (0, 290)})
    assert labels(fs)[0] == "Connect 'b' to 'dot'", labels(fs)
    assert "Connect 'e' to 'dot'" not in labels(fs)
    assert applied(d, fs[0]).validate() == []


def test_add_inputs_of_26x26_and_28x28_offer_padding_same_cropping_and_zero_padding():
    g, pos = residual(pad_b="valid")
    problem = problem_at(g, "add")
    assert problem.kind == "shape_mismatch"
    assert problem.fields["in_shapes"] == [(26, 26, 8), (28, 28, 8)]
    fs = fixes.fixes_for(g, problem, pos)
    assert labels(fs)[:3] == ["Set padding same on 'b'",
                              "Insert Cropping2D [[1, 1], [1, 1]] before 'add'",
                              "Insert ZeroPadding2D [[1, 1], [1, 1]] before 'add'"], labels(fs)
    assert fs[0].steps == (fixes.Step("set_param", node="b", param="padding", value="same"),)
    crop = applied(g, fs[1])
    assert crop.validate() == []
    (c,) = [n for n in crop.nodes.values() if n.type == "Cropping2D"]
    assert crop.in_edges(c.id)[0].src == "a" and crop.out_edges(c.id)[0].dst_port == 1
    assert crop.analysis().shapes["add"] == [(26, 26, 8)]
    pad = applied(g, fs[2])
    assert pad.validate() == []
    (z,) = [n for n in pad.nodes.values() if n.type == "ZeroPadding2D"]
    assert pad.in_edges(z.id)[0].src == "b"
    assert pad.analysis().shapes["add"] == [(28, 28, 8)]
    assert applied(g, fs[0]).analysis().shapes["add"] == [(28, 28, 8)]


def test_an_odd_difference_is_cropped_unevenly_as_keras_cropping_takes_it():
    # a 4x4 valid convolution shrinks 28 to 25: three rows and columns, 1 above and 2 below
    g, pos = residual(pad_b="valid")
    g.set_params("b", kernel_size=4)
    fs = fixes.fixes_for(g, problem_at(g, "add"), pos)
    crop = [f for f in fs if "Cropping2D" in f.label]
    assert crop and crop[0].label == "Insert Cropping2D [[1, 2], [1, 2]] before 'add'"
    assert applied(g, crop[0]).validate() == []
    pad = [f for f in fs if "ZeroPadding2D" in f.label]
    assert pad and applied(g, pad[0]).analysis().shapes["add"] == [(28, 28, 8)]


def test_sequences_of_different_lengths_get_cropping1d_and_channels_that_differ_get_none():
    g = chain(("x", "Input", {"shape": [20, 4]}),
              ("a", "Conv1D", {"filters": 6, "kernel_size": 3, "padding": "same"}),
              ("b", "Conv1D", {"filters": 6, "kernel_size": 5}), ("add", "Add", {}))
    g.connect("a", 0, "add", 1)
    fs = fixes.fixes_for(g, problem_at(g, "add"))
    assert "Set padding same on 'b'" in labels(fs)
    assert "Insert Cropping1D [2, 2] before 'add'" in labels(fs), labels(fs)
    assert "Insert ZeroPadding1D [2, 2] before 'add'" in labels(fs)
    for f in fs:
        assert applied(g, f).validate() == [], f.label
    g.set_params("b", filters=5, padding="same")  # 20x5 and 20x6: no size fix is any help
    fs = fixes.fixes_for(g, problem_at(g, "add"))
    assert not [f for f in fs if "padding" in f.label.lower() or "Cropping" in f.label], \
        labels(fs)


# -- the loss an output's activation and targets leave no doubt about (issue 31, item 6) -----
def test_the_implied_loss_follows_the_activation_and_the_targets():
    labels3 = np.array([0, 2, 1, 1, 0], np.float32)
    onehot = np.eye(3, dtype=np.float32)[[0, 2, 1]]
    bits = np.array([[0], [1], [1], [0]], np.float32)
    real = np.array([[0.5], [-1.25], [3.0]], np.float32)
    case = fixes.implied_loss
    assert case("softmax", 3, labels3) == "sparse_categorical_crossentropy"
    assert case("softmax", 3, labels3[:, None]) == "sparse_categorical_crossentropy"
    assert case("softmax", 3, onehot) == "categorical_crossentropy"
    assert case("sigmoid", 1, bits) == "binary_crossentropy"
    assert case("sigmoid", 3, (onehot > 0).astype(np.float32)) == "binary_crossentropy"
    assert case("linear", 1, real) == "mean_squared_error"
    assert case(None, 1, real) == "mean_squared_error"
    # not unambiguous: no loss set by itself
    assert case("linear", 3, labels3) is None  # logits of classes, or counts to regress?
    assert case("softmax", 3, real) is None
    assert case("softmax", 2, labels3) is None  # label 2 for two units: the data's problem
    assert case("sigmoid", 1, labels3[:, None]) is None
    assert case("relu", 1, real) is None
    assert case("softmax", 3, np.zeros((0,), np.float32)) is None  # no rows to tell from
