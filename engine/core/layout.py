"""Automatic layout of a graph for the editor: layers by longest path from the inputs, ordered
within a layer by the mean position of their predecessors (a barycentre pass), flowing left to
right (the editor's default) or top to bottom (the project's ui.flow "down")."""
from layerloom.core.errors import GraphError

FLOWS = ("right", "down")
STEPS = {"right": (260, 150), "down": (120, 220)}  # (from layer to layer, within a layer)


def flow_of(ui):
    """The direction a project's graph is drawn in: ui.flow when it is one of FLOWS (the ui
    section is view-only and read leniently), else "right"."""
    flow = ui.get("flow") if isinstance(ui, dict) else None
    return flow if flow in FLOWS else "right"


def auto_layout(graph, dx=None, dy=None, flow="right"):
    """{node_id: (x, y)} for every node; works on graphs with problems (cycles excepted). dx
    is the step from one layer to the next, dy the step between nodes of one layer (down
    the page for flow "right", across it for "down")."""
    dx, dy = dx or STEPS[flow][0], dy or STEPS[flow][1]
    try:
        order = graph.topo_order()
    except GraphError:  # a cycle: the nodes in the order they were added
        order = list(graph.nodes)
    depth = {}
    for nid in order:
        preds = [e.src for e in graph.in_edges(nid) if e.src in depth]
        depth[nid] = 1 + max((depth[p] for p in preds), default=-1)
    index = {nid: i for i, nid in enumerate(order)}
    layers = {}
    for nid in order:
        layers.setdefault(depth[nid], []).append(nid)
    rank = {}
    for d in sorted(layers):
        nodes = layers[d]

        def bary(nid):
            ps = [rank[e.src] for e in graph.in_edges(nid) if e.src in rank]
            return sum(ps) / len(ps) if ps else index[nid]
        nodes.sort(key=bary)
        for i, nid in enumerate(nodes):
            rank[nid] = i
    pos = {}
    tallest = max((len(v) for v in layers.values()), default=1)
    for d, nodes in layers.items():
        top = (tallest - len(nodes)) * dy / 2
        for i, nid in enumerate(nodes):
            pos[nid] = (d * dx, round(top + i * dy))
    if flow == "down":  # layers become rows
        pos = {nid: (y, x) for nid, (x, y) in pos.items()}
    return pos
