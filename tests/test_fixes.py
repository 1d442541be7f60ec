"""One-click fixes (engine/core/fixes.py): each offered fix, applied, clears its problem and
adds none; problems without a standard fix get none."""
import os

from layerloom.core import fixes
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
    return p.message


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
    fs = fixes.fixes_for(g, "conv", msg)
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
    fs = fixes.fixes_for(g, "rep", msg)
    assert labels(fs) == ["Insert Flatten before 'rep'"]  # no Reshape to a rank it refuses
    for f in fs:
        assert applied(g, f).validate() == [], f.label


def test_an_unconnected_input_offers_the_nearest_dangling_outputs_and_delete():
    g = chain(("x", "Input", {"shape": [4]}), ("a", "Dense", {"units": 3}))
    g.add_node("Dense", {"units": 2}, id="b")
    g.add_node("Input", {"shape": [4]}, id="far")
    msg = problem_at(g, "b")
    fs = fixes.fixes_for(g, "b", msg, positions={"a": (100, 0), "b": (300, 0),
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
    fs = fixes.fixes_for(g, None, p.message, losses=["class"])
    assert labels(fs) == ["Insert 'extra' before 'class'", "Delete 'extra'"]
    h = applied(g, fs[0])
    assert h.outputs() == ["class"] and h.validate() == []
    assert [e.src for e in h.in_edges("class")] == ["extra"]


def test_a_data_mismatch_sets_the_input_shape():
    g = chain(("x", "Input", {"shape": [28, 28]}), ("f", "Flatten", {}), ("d", "Dense", {"units": 2}))
    msg = ("array 'x' has samples shaped (None, 28, 28, 1), Input 'x' expects (None, 28, 28); "
           "set the Input's shape to [28, 28, 1]")
    (f,) = fixes.fixes_for(g, "x", msg)
    assert f.label == "Set the Input's shape to [28, 28, 1]"
    assert applied(g, f).nodes["x"].params["shape"] in ([28, 28, 1], (28, 28, 1))


def test_problems_without_a_standard_fix_get_none():
    g = chain(("x", "Input", {"shape": [4]}), ("d", "Dense", {"units": 2}))
    assert fixes.fixes_for(g, "d", "some other problem") == []
    assert fixes.fixes_for(g, None, "the graph has no Input node") == []


def test_the_only_output_without_a_loss_is_not_offered_for_deletion():
    """A beginner building a chain saw "Delete '<the layer just added>'" as the only fix for
    "no loss"; what helps is choosing a loss."""
    g = chain(("x", "Input", {"shape": [4]}), ("d", "Dense", {"units": 2}))
    assert labels(fixes.fixes_for(g, None, "Loss: output 'd' has no loss")) == [
        "Use the loss mean_squared_error for 'd'"]


def test_an_output_without_a_loss_gets_the_loss_its_activation_implies():
    """The second trial: four of 34 actions went on finding and choosing the loss."""
    for act, want in (("softmax", ["sparse_categorical_crossentropy",
                                   "categorical_crossentropy"]),
                      ("sigmoid", ["binary_crossentropy"]), ("linear", ["mean_squared_error"])):
        g = chain(("x", "Input", {"shape": [4]}), ("d", "Dense", {"units": 3, "activation": act}))
        fs = fixes.fixes_for(g, None, "Loss: output 'd' has no loss")
        assert labels(fs) == [f"Use the loss {w} for 'd'" for w in want], act
        assert fs[0].steps == (fixes.Step("loss", ("d", want[0])),)
        h = applied(g, fs[0])  # the graph itself is unchanged
        assert [(n.id, n.type, n.params) for n in h.nodes.values()] == \
            [(n.id, n.type, n.params) for n in g.nodes.values()]
        assert [e.key() for e in h.edges] == [e.key() for e in g.edges]
    # a loss the output's metrics cannot be computed against is not offered
    g = chain(("x", "Input", {"shape": [4]}), ("d", "Dense", {"units": 3, "activation": "softmax"}))
    assert labels(fixes.fixes_for(g, None, "output 'd' has no loss", metrics=["precision"])) == [
        "Use the loss categorical_crossentropy for 'd'"]
    assert labels(fixes.fixes_for(g, None, "output 'd' has no loss",
                                  metrics={"d": ["sparse_top_k_categorical_accuracy"]})) == [
        "Use the loss sparse_categorical_crossentropy for 'd'"]
    g = chain(("x", "Input", {"shape": [4]}), ("d", "Dense", {"units": 3}),
              ("a", "Activation", {"activation": "softmax"}))
    assert labels(fixes.fixes_for(g, None, "output 'a' has no loss"))[0] == \
        "Use the loss sparse_categorical_crossentropy for 'a'"
