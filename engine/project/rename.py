"""Renaming a node (issue 19, item 12: Keras users name their layers): the node id is the
layer's name in the project file, the Keras and ONNX exports and the weights file
("<id>/kernel"), so a rename changes every reference the project holds to it: the wires, the
training section's per-output losses and metrics, the dataset's mapping of arrays onto Inputs
and outputs (an implicit one, arrays named like the nodes, is written out first so the data
stays where it was), and the canvas position."""
import re

from ..core.errors import GraphError, quote

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def problem(graph, old, new):
    """Why `new` cannot be `old`'s name, or None."""
    if new == old:
        return None
    if not isinstance(new, str) or not NAME.fullmatch(new):
        return (f"{quote(new)} is not a layer name: letters, digits and _ (not first a digit), "
                "at most 64")
    if new in graph.nodes:
        return f"there is already a node {quote(new)}"
    return None


def rename(project, old, new):
    """Rename node `old` to `new` in the project, with every reference to it (raises GraphError
    with the reason when `new` is not a free, valid name)."""
    g = project.graph
    why = problem(g, old, new)
    if why:
        raise GraphError(why, node=old)
    if new == old:
        return
    node = g.nodes[old]
    index = list(g.nodes).index(old)
    _explicit_mapping(project)
    edges = [e.key() for e in g.edges if old in (e.src, e.dst)]
    ui = project.ui.setdefault("positions", {})
    if old in ui:
        ui[new] = ui.pop(old)
    g.remove_node(old)
    g.add_node(node.type, dict(node.params), id=new, index=index, trainable=node.trainable)
    for src, sp, dst, dp in edges:
        g.connect(new if src == old else src, sp, new if dst == old else dst, dp)
    t = project.training
    for key in ("loss", "metrics"):
        if isinstance(t.get(key), dict) and old in t[key]:
            t[key] = {new if k == old else k: v for k, v in t[key].items()}
    d = project.dataset
    for key in ("inputs", "targets"):
        if isinstance(d.get(key), dict) and old in d[key]:
            project.dataset = d = {**d, key: {new if k == old else k: v
                                              for k, v in d[key].items()}}
    if isinstance(d.get("targets"), dict):  # an output trained towards this Input's rows
        project.dataset = {**d, "targets": {k: "=input:" + new if v == "=input:" + old else v
                                            for k, v in d["targets"].items()}}


def _explicit_mapping(project):
    """Several Inputs (or outputs) without a mapping take the arrays named like them: write
    that mapping out, so renaming a node keeps its array."""
    d, g = project.dataset, project.graph
    if not d:
        return
    for key, ids in (("inputs", g.inputs()), ("targets", g.outputs())):
        if len(ids) > 1 and not d.get(key):
            project.dataset = d = {**d, key: {nid: nid for nid in ids}}
