"""Automatic layout of a graph for the editor: layers by longest path from the inputs, ordered
within a layer by the mean position of their predecessors (a barycentre pass), flowing left to
right (the editor's default) or top to bottom (the project's ui.flow "down"). A graph too long
for the window at a readable zoom (an imported ResNet50 is 177 nodes in a row) is wrapped into
rows of consecutive layers, as text wraps, chosen so that the whole has the window's shape
(issue 30, item 4)."""
import math

from layerloom.core.errors import GraphError

FLOWS = ("right", "down")
STEPS = {"right": (260, 150), "down": (120, 220)}  # (from layer to layer, within a layer)
VIEW = (1200, 750)  # the canvas's size in pixels that a layout without a window aims at
READABLE = 0.6  # the zoom below which node text is hard to read: wider rows than the view at
# this zoom are wrapped, when they are longer than SHORT layers (a small model stays one row
# or column, however small the window)
SHORT = 24


def flow_of(ui):
    """The direction a project's graph is drawn in: ui.flow when it is one of FLOWS (the ui
    section is view-only and read leniently), else "right"."""
    flow = ui.get("flow") if isinstance(ui, dict) else None
    return flow if flow in FLOWS else "right"


def auto_layout(graph, dx=None, dy=None, flow="right", view=VIEW, short=None):
    """{node_id: (x, y)} for every node; works on graphs with problems (cycles excepted). dx
    is the step from one layer to the next, dy the step between nodes of one layer (down
    the page for flow "right", across it for "down"). `view`: the (width, height) the graph
    is shown in, whose shape a long graph's rows take (None: one row however long); short:
    the layers a row holds however narrow the view (SHORT; an opened block wraps sooner)."""
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
    sizes = [len(layers[d]) for d in range(len(layers))]
    if view is None:
        per_row = len(sizes)
    else:  # flowing down, the rows are columns: the view's shape is taken transposed
        w, h = view if flow == "right" else (view[1], view[0])
        per_row = wrap_width(sizes, dx, dy, w / READABLE, w / h,
                             SHORT if short is None else short)
    pos, top = {}, 0
    for start in range(0, len(sizes), per_row):
        tallest = max(sizes[start:start + per_row])
        for d in range(start, min(start + per_row, len(sizes))):
            nodes = layers[d]
            first = top + (tallest - len(nodes)) * dy / 2
            for i, nid in enumerate(nodes):
                pos[nid] = ((d - start) * dx, round(first + i * dy))
        top += (tallest + GAP) * dy
    if flow == "down":  # layers become rows
        pos = {nid: (y, x) for nid, (x, y) in pos.items()}
    return pos


GAP = 0.5  # between wrapped rows, in steps within a layer: room for the wires between rows


def wrap_width(sizes, dx, dy, width, aspect, short=SHORT):
    """How many layers a row holds: all of them when they fit in `width` or are few (SHORT),
    else the number
    whose rows (each as tall as its tallest layer, `sizes` the layers' node counts) make a
    whole closest to `aspect` (width / height)."""
    n = len(sizes)
    if n <= short or n * dx <= width:
        return max(n, 1)
    best = None
    k = 1
    while k <= n:  # row lengths spaced about 5% apart: a few dozen tried, each in one pass
        w = k * dx
        h = sum((max(sizes[s:s + k]) + GAP) * dy for s in range(0, n, k)) - GAP * dy
        miss = abs(math.log(w / h / aspect))
        if best is None or miss < best[0]:
            best = (miss, k)
        k = max(k + 1, round(k * 1.05))
    return best[1]
