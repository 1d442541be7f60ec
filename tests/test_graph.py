"""The graph model: editing, events, refusals, validation and shape-inference messages."""
import subprocess
import sys

import pytest

from layerloom.core.errors import GraphError, ParamError
from layerloom.core.graph import Graph
from layerloom.core.registry import Layer, layer_types, register


def chain():
    g = Graph()
    g.add_node("Input", {"shape": [4]}, id="in")
    g.add_node("Dense", {"units": 8}, id="d1")
    g.add_node("Dense", {"units": 2}, id="d2")
    g.connect("in", 0, "d1", 0)
    g.connect("d1", 0, "d2", 0)
    return g


def test_events_follow_edits():
    g = Graph()
    seen = []
    for ev in (g.node_added, g.node_removed, g.edge_added, g.edge_removed, g.params_changed):
        ev.connect(lambda *a, name=ev.name: seen.append(name))
    g.add_node("Input", {"shape": [3]}, id="a")
    g.add_node("Dense", id="b")
    g.connect("a", 0, "b", 0)
    g.set_params("b", units=4)
    g.remove_node("a")
    assert seen == ["node_added", "node_added", "edge_added", "params_changed", "edge_removed",
                    "node_removed"]
    assert g.nodes["b"].params["units"] == 4 and not g.edges


def test_ids_are_generated_and_unique():
    g = Graph()
    assert g.add_node("Dense").id == "dense_1"
    assert g.add_node("Dense").id == "dense_2"
    with pytest.raises(GraphError, match="duplicate node id 'dense_1'"):
        g.add_node("Dense", id="dense_1")
    with pytest.raises(GraphError, match="unknown layer type"):
        g.add_node("Dens")


def test_refuses_cycles_and_double_inputs():
    g = chain()
    with pytest.raises(GraphError, match="cycle"):
        g.connect("d2", 0, "d1", 0)
    with pytest.raises(GraphError, match="cycle"):
        g.connect("d1", 0, "d1", 0)
    g.add_node("Dense", id="d3")
    with pytest.raises(GraphError, match="already connected"):
        g.connect("d3", 0, "d2", 0)
    with pytest.raises(GraphError, match="no input port 1"):
        g.connect("d3", 0, "d2", 1)
    assert len(g.edges) == 2


def test_param_validation_names_the_place():
    g = chain()
    with pytest.raises(ParamError) as e:
        g.set_params("d1", units=-5)
    assert str(e.value) == "node 'd1'.params.units: expected a positive integer, got -5"
    with pytest.raises(ParamError, match="expected one of linear, relu"):
        g.set_params("d1", activation="swishy")
    assert g.nodes["d1"].params["units"] == 8


def test_topo_order_inputs_outputs():
    g = chain()
    assert g.topo_order() == ["in", "d1", "d2"]
    assert g.inputs() == ["in"] and g.outputs() == ["d2"]
    assert g.validate() == []


def test_unconnected_input_and_no_input_are_problems():
    g = Graph()
    g.add_node("Dense", id="lonely")
    msgs = [str(p) for p in g.validate()]
    assert "graph.nodes: the graph has no Input node" in msgs
    assert "graph.nodes[0] 'lonely' (Dense): input 0 (x) is not connected" in msgs


def test_shape_error_names_node_and_shapes_and_only_the_culprit():
    g = Graph()
    g.add_node("Input", {"shape": [4]}, id="in")
    g.add_node("Dense", {"units": 8}, id="a")
    g.add_node("Dense", {"units": 6}, id="b")
    g.add_node("Add", id="sum")
    g.add_node("Dense", {"units": 2}, id="after")
    for s, d, p in [("in", "a", 0), ("in", "b", 0), ("a", "sum", 0), ("b", "sum", 1),
                    ("sum", "after", 0)]:
        g.connect(s, 0, d, p)
    shapes, problems = g.infer_shapes()
    assert [str(p) for p in problems] == [
        "graph.nodes[3] 'sum' (Add): inputs must have the same shape; input 0 is (None, 8) "
        "but input 1 is (None, 6)"]
    assert shapes["a"] == [(8,)] and "after" not in shapes
    a = g.analysis()  # and neither the culprit nor what follows it gets a parameter count
    assert "sum" not in a.params and "after" not in a.params and a.params["a"].total == 40
    assert a.node_problems("sum") and not a.node_problems("after")


def test_variadic_ports_must_not_have_gaps():
    g = Graph()
    g.add_node("Input", {"shape": [2]}, id="in")
    g.add_node("Concatenate", id="cat")
    g.connect("in", 0, "cat", 0)
    g.connect("in", 0, "cat", 2)
    assert any("input port 1 is not connected" in str(p) for p in g.validate())


def test_concatenate_axis_errors():
    g = Graph()
    g.add_node("Input", {"shape": [2, 3]}, id="a")
    g.add_node("Input", {"shape": [2, 4]}, id="b")
    g.add_node("Concatenate", {"axis": 1}, id="cat")
    g.connect("a", 0, "cat", 0)
    g.connect("b", 0, "cat", 1)
    assert "must match except on axis 1" in str(g.validate()[0])
    g.set_params("cat", axis=-1)
    assert g.validate() == [] and g.infer_shapes()[0]["cat"] == [(2, 7)]
    g.set_params("cat", axis=0)
    assert "axis 0 is out of range" in str(g.validate()[0])


def test_registry_refuses_duplicates_and_lists_layers():
    types = {l.type_id for l in layer_types()}
    assert {"Input", "Dense", "Activation", "Dropout", "Flatten", "Add", "Concatenate"} <= types
    with pytest.raises(ValueError, match="registered twice"):
        @register
        class Dense(Layer):  # noqa: F811 - the point of the test
            type_id = "Dense"


def test_engine_does_not_import_qt():
    code = ("import importlib, pkgutil, sys, layerloom, layerloom.cli, layerloom.cli.main; "
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(layerloom.__path__, 'layerloom.') "
            "if not m.name.startswith('layerloom.app')]; "
            "from layerloom.core.registry import layer_types; layer_types(); "
            "assert 'PySide6' not in sys.modules, 'engine imported PySide6'; "
            "assert not any(m.startswith('pyqtgraph') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_layer_table_in_the_docs_is_current():
    import os
    from layerloom.core.docs import layer_table
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = open(os.path.join(root, "docs", "layers.md"), encoding="utf-8").read()
    table = text.split("<!-- layers:begin -->\n", 1)[1].split("<!-- layers:end -->", 1)[0]
    assert table == layer_table(), \
        "docs/layers.md's layer table is stale: run python -m layerloom.core.docs"


def test_readme_quick_start_matches_ci():
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    readme = open(os.path.join(root, "README.md"), encoding="utf-8").read()
    block = readme.split("## Quick start", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands = block.strip().splitlines()
    assert len(commands) == 2
    ci = open(os.path.join(root, ".ci", "run"), encoding="utf-8").read()
    assert commands[1] in ci.splitlines()


def test_activation_alias_is_normalised():
    g = Graph()
    g.add_node("Dense", {"activation": "swish"}, id="d")
    assert g.nodes["d"].params["activation"] == "silu"


def test_incomplete_layer_declaration_is_refused_at_registration():
    with pytest.raises(TypeError, match="abstract method"):
        @register
        class Half(Layer):  # no forward, backward or reference
            type_id = "HalfDeclared"

            def output_shapes(self, p, in_shapes):
                return in_shapes
    assert "HalfDeclared" not in {l.type_id for l in layer_types()}


def test_edge_indexes_follow_connects_disconnects_and_the_parsers_cycles():
    import random
    from layerloom.core.graph import Graph
    g = Graph()
    for i in range(12):
        g.add_node("Add", id=f"n{i}")
    rnd = random.Random(0)
    for _ in range(200):
        if g.edges and rnd.random() < 0.4:
            g.disconnect(rnd.choice(g.edges))
        else:
            a, b = sorted(rnd.sample(range(12), 2))
            try:
                g.connect(f"n{a}", 0, f"n{b}", rnd.randrange(4))
            except Exception:
                pass
        if rnd.random() < 0.05:  # the file parser's edges may close a cycle
            try:
                g.connect("n11", 0, "n0", rnd.randrange(4), allow_cycle=True)
            except Exception:
                pass
        for i in range(12):
            nid = f"n{i}"
            assert g.in_edges(nid) == sorted((e for e in g.edges if e.dst == nid),
                                             key=lambda e: e.dst_port)
            assert g.out_edges(nid) == [e for e in g.edges if e.src == nid]


def test_nodes_tell_themselves_apart_by_their_key_parameters():
    """The node's face (app/canvas/canvas_items.py) shows Layer.headline_text: issue 19, item 12."""
    from layerloom.core.registry import get_layer
    cases = [("Dense", {"units": 64, "activation": "relu"}, "64 relu"),
             ("Dense", {"units": 10, "activation": "linear"}, "10"),
             ("Conv2D", {"filters": 32, "kernel_size": [3, 3], "activation": "relu"},
              "32 3x3 relu"),
             ("Dropout", {"rate": 0.3}, "0.3"),
             ("Input", {"shape": [28, 28, 1]}, "28x28x1"),
             ("Flatten", {}, "")]
    for type_id, params, want in cases:
        layer = get_layer(type_id)
        full = {q.name: q.default for q in layer.params}
        full.update(params)
        assert layer.headline_text(full) == want, type_id


def test_auto_layout_flows_right_or_down_and_a_bad_flow_reads_as_right():
    import os
    from layerloom.core.layout import auto_layout, flow_of
    from layerloom.project import loom
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets",
                        "examples")
    g = loom.load(os.path.join(root, "multitask.loom")).graph
    right, down = auto_layout(g), auto_layout(g, flow="down")
    assert right["joined"][0] > right["point_branch"][0] > right["point"][0]
    assert down["joined"][1] > down["point_branch"][1] > down["point"][1]
    assert down["point"][1] == down["features"][1] and down["point"][0] != down["features"][0]
    assert flow_of({"flow": "down"}) == "down"
    for ui in ({}, {"flow": 5}, {"flow": "up"}, [], None):
        assert flow_of(ui) == "right"


class _CountingDict(dict):
    """A node table that counts how often it is walked whole."""
    walks = 0

    def __iter__(self):
        _CountingDict.walks += 1
        return super().__iter__()

    def values(self):
        _CountingDict.walks += 1
        return super().values()

    def items(self):
        _CountingDict.walks += 1
        return super().items()


def _big_file(n, chain):
    """The issue's graph: an Input and n Dense nodes, unconnected or in a chain."""
    nodes = [{"id": "in", "type": "Input", "params": {"shape": [4]}}]
    nodes += [{"id": f"d{i}", "type": "Dense", "params": {"units": 4}} for i in range(n)]
    ids = ["in"] + [f"d{i}" for i in range(n)]
    edges = [{"from": [a, 0], "to": [b, 0]} for a, b in zip(ids, ids[1:])] if chain else []
    return {"format": "layerloom-project", "version": 1, "graph": {"nodes": nodes, "edges": edges},
            "dataset": {"source": "synthetic", "name": "spirals"},
            "training": {"loss": "categorical_crossentropy"}}


def _scans(fn):
    """(whole walks of a node table, the longest list fn searches or shifts with list.index,
    remove or insert) while fn runs."""
    import sys as _sys
    longest = [0]

    def profile(frame, event, arg):
        if event == "c_call" and getattr(arg, "__name__", "") in ("index", "remove", "insert") \
                and isinstance(getattr(arg, "__self__", None), list):
            longest[0] = max(longest[0], len(arg.__self__))
    _CountingDict.walks = 0
    _sys.setprofile(profile)
    from layerloom.core.errors import LayerloomError
    try:
        fn()
    except LayerloomError:
        pass  # a refusal (strict loading) is an outcome here; any other error fails the test
    finally:
        _sys.setprofile(None)
    return _CountingDict.walks, longest[0]


def test_graph_operations_take_linear_time(monkeypatch):
    """Issue 26, item 9: reading a file, problems(), shapes, the analysis and the auto-layout
    walk the node table a fixed number of times whatever the node count (place() had searched
    the node list once per problem, so 20000 unconnected nodes took 5 s), and search no list
    longer than a node's inputs (the auto-layout searched the topological order per node,
    removing an edge searched every edge). Counted, not timed: bench/graph_scale.py times it."""
    import json
    from layerloom.core import graph as graph_module
    from layerloom.core.layout import auto_layout
    from layerloom.project import loom as projectfile
    init = graph_module.Graph.__init__

    def counting_init(self, blocks=None):
        init(self, blocks)
        self._nodes = _CountingDict()
    monkeypatch.setattr(graph_module.Graph, "__init__", counting_init)
    counts = {}
    for n in (300, 1200):
        for chain in (False, True):
            text = json.dumps(_big_file(n, chain))
            proj = projectfile.loads(text, strict=False)
            g = proj.graph
            ops = {"read": lambda: projectfile.loads(text, strict=False),
                   "run's strict read": lambda: projectfile.loads(text),
                   "problems": g.problems, "shapes": g.compute_shapes, "topo": g.topo_order,
                   "analysis": lambda: graph_module.analysis.analyse(g, -1),
                   "layout": lambda: auto_layout(g),
                   "remove every node": lambda: [g.remove_node(i) for i in list(g._nodes)]}
            for name, op in ops.items():
                walks, longest = _scans(op)
                assert longest <= graph_module.MAX_VARIADIC_INPUTS, (name, n, chain, longest)
                counts[name, chain, n] = walks
    for (name, chain, n), walks in counts.items():
        if n == 1200 and name != "remove every node":
            assert walks == counts[name, chain, 300], (name, chain, walks)
