"""The graph's analysis (core/analysis.py): shapes, problems on their nodes and parameter counts,
computed once per version of the graph and shared by every view; edits go through the graph's
methods, which is what keeps the version true."""
import pytest

from layerloom.core.graph import Graph


def chain():
    g = Graph()
    g.add_node("Input", {"shape": [4]}, id="in")
    g.add_node("Dense", {"units": 8}, id="d1")
    g.add_node("BatchNormalization", id="bn")
    g.connect("in", 0, "d1", 0)
    g.connect("d1", 0, "bn", 0)
    return g


def test_computed_once_per_version_and_afresh_after_each_kind_of_edit():
    g = chain()
    a = g.analysis()
    assert g.analysis() is a and g.infer_shapes()[0] == a.shapes
    edits = [lambda: g.set_params("d1", units=3), lambda: g.add_node("Dense", id="d2"),
             lambda: g.connect("bn", 0, "d2", 0), lambda: g.disconnect(g.edges[-1]),
             lambda: g.remove_node("d2")]
    for edit in edits:
        before = g.analysis()
        edit()
        assert g.analysis() is not before
    assert g.analysis().shapes["bn"] == [(3,)]


def test_parameter_counts_total_and_trainable():
    a = chain().analysis()
    assert a.params["in"].total == 0
    assert (a.params["d1"].total, a.params["d1"].trainable) == (4 * 8 + 8, 4 * 8 + 8)
    # gamma, beta trainable; moving mean and variance not
    assert (a.params["bn"].total, a.params["bn"].trainable) == (4 * 8, 2 * 8)
    assert (a.total_params().total, a.total_params().trainable) == (40 + 32, 40 + 16)


def test_the_graph_can_be_edited_only_through_its_methods():
    g = chain()
    with pytest.raises(TypeError):
        g.nodes["x"] = g.nodes["in"]
    with pytest.raises(AttributeError):
        g.edges.append(g.edges[0])


def test_a_node_added_at_an_index_takes_that_place_in_the_file_order():
    g = chain()
    g.add_node("Dense", id="between", index=1)
    assert list(g.nodes) == ["in", "between", "d1", "bn"]
    assert "graph.nodes[1]" in g.place("between")


def test_each_nodes_problems_are_found_without_walking_every_problem(monkeypatch):
    """Issue 26, item 9: the canvas and the inspector ask for each node's problems; with a
    problem on each of N nodes, asking for all of them walked the N problems N times."""
    from layerloom.core import analysis
    g = Graph()
    g.add_node("Input", {"shape": [4]}, id="in")
    for i in range(300):
        g.add_node("Dense", {"units": 2}, id=f"d{i}")
    a = g.analysis()
    walks = []
    problems = analysis.Analysis.problems
    monkeypatch.setattr(analysis.Analysis, "problems",
                        property(lambda self: walks.append(1) or problems.fget(self)))
    found = {nid: a.node_problems(nid) for nid in g.nodes}
    assert found["d7"] == ["input 0 (x) is not connected"] and found["in"] == []
    assert len(walks) <= 1
