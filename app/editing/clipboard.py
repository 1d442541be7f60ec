"""Copy and paste of nodes as JSON text, so they travel between windows through the system
clipboard. Pasted text is validated like a project file's graph."""
import json

from layerloom.core import blocks
from layerloom.project import loom as projectfile
from layerloom.core.errors import ProjectError, quote
from layerloom.core.sections import unknown_keys

MARK = "layerloom-nodes"


def copy_text(doc, node_ids):
    g = doc.graph
    wanted = set(node_ids)
    ids = [n for n in g.nodes if n in wanted]
    wanted = set(ids)
    nodes = [projectfile.node_dict(g.nodes[nid]) for nid in ids]
    for d in nodes:  # the weights of a node not copied cannot be shared in the paste
        if d.get("shares") not in wanted:
            d.pop("shares", None)
    edges = [{"from": [e.src, e.src_port], "to": [e.dst, e.dst_port]} for e in g.edges
             if e.src in wanted and e.dst in wanted]
    pos = {nid: doc.positions().get(nid, [0, 0]) for nid in ids}
    d = {"format": MARK, "nodes": nodes, "edges": edges, "positions": pos}
    sub = type(g)(blocks=g.blocks)  # the block types the copied instances need travel along
    for nid in ids:
        sub.add_node(g.nodes[nid].type, dict(g.nodes[nid].params), id=nid)
    if blocks.used_blocks(sub):
        d["blocks"] = projectfile.blocks_dict(sub, blocks.used_blocks(sub))
    return json.dumps(d)


POSITION_LIMIT = 10_000_000  # of a pasted node's x and y: far beyond any canvas


def parse_text(text):
    """(graph of the pasted nodes, positions) or raises ProjectError naming the problem. The
    text is untrusted input, read as a project file's graph is (project/loom.py: its JSON
    limits, nodes, edges and cycles, with the file's messages), so that whatever it holds is
    refused here, before the paste changes anything."""
    try:
        d = projectfile.parse_json(text, "Layerloom nodes")
    except (json.JSONDecodeError, TypeError):
        raise ProjectError("the clipboard holds no Layerloom nodes") from None
    if not isinstance(d, dict) or d.get("format") != MARK:
        raise ProjectError("the clipboard holds no Layerloom nodes")
    problems = unknown_keys(d, {"format", "nodes", "edges", "positions", "blocks"}, "")
    types = projectfile.parse_blocks(d.get("blocks"), problems)
    graph = projectfile.parse_graph({"nodes": d.get("nodes"), "edges": d.get("edges", [])},
                                    problems, blocks=types)
    pos = d.get("positions", {})
    problems.extend(_position_problems(pos, graph.nodes))
    if not problems:
        cycle = graph.cycle_problem()  # a file lists it with the network's problems
        if cycle is not None:
            problems.append(ProjectError(cycle.message, cycle.place))
    if problems:
        raise ProjectError(_first_with_types(problems), problems=problems)
    if not graph.nodes:
        raise ProjectError("the clipboard holds no Layerloom nodes")
    return graph, pos


def _first_with_types(problems):
    """The first problem; after an unknown type with no near miss (the reader then lists the
    layer types, in a line too long for the status bar) where to find the types."""
    first = str(problems[0])
    if "unknown layer type" in first and any(
            p.message.startswith("the layer types are ") for p in problems[1:]):
        return f"{first}; the palette lists the layer types (docs/layers.md)"
    return first


def _position_problems(pos, nodes):
    if not isinstance(pos, dict):
        return [ProjectError("expected an object {node_id: [x, y]}", "positions")]
    out = []
    for k, v in pos.items():
        if k not in nodes:  # where the paste goes is taken from every position
            out.append(ProjectError(f"no pasted node {quote(k)}", f"positions.{k}"))
            continue
        if not (isinstance(v, list) and len(v) == 2 and all(
                isinstance(c, (int, float)) and not isinstance(c, bool)
                and -POSITION_LIMIT <= c <= POSITION_LIMIT for c in v)):  # NaN fails this too
            out.append(ProjectError(f"expected [x, y], two numbers from -{POSITION_LIMIT:,} "
                                    f"to {POSITION_LIMIT:,}, got {quote(v)}", f"positions.{k}"))
    return out
