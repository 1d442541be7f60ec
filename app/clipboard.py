"""Copy and paste of nodes as JSON text, so they travel between windows through the system
clipboard. Pasted text is validated like a project file's graph."""
import json

from layerloom.project import loom as projectfile
from layerloom.core.errors import ProjectError

MARK = "layerloom-nodes"


def copy_text(doc, node_ids):
    g = doc.graph
    ids = [n for n in g.nodes if n in set(node_ids)]
    nodes = []
    for nid in ids:
        node = g.nodes[nid]
        decls = {p.name: p for p in node.layer.params}
        nodes.append({"id": nid, "type": node.type,
                      "params": {k: decls[k].to_json(v) for k, v in node.params.items()}})
    edges = [{"from": [e.src, e.src_port], "to": [e.dst, e.dst_port]} for e in g.edges
             if e.src in ids and e.dst in ids]
    pos = {nid: doc.positions().get(nid, [0, 0]) for nid in ids}
    return json.dumps({"format": MARK, "nodes": nodes, "edges": edges, "positions": pos})


def parse_text(text):
    """(graph of the pasted nodes, positions) or raises ProjectError naming the problem."""
    try:
        d = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        raise ProjectError("the clipboard holds no Layerloom nodes") from None
    if not isinstance(d, dict) or d.get("format") != MARK:
        raise ProjectError("the clipboard holds no Layerloom nodes")
    problems = []
    graph = projectfile.parse_graph({"nodes": d.get("nodes"), "edges": d.get("edges", [])},
                                     problems)
    if problems:
        raise ProjectError(str(problems[0]), problems=problems)
    pos = d.get("positions") if isinstance(d.get("positions"), dict) else {}
    return graph, pos
