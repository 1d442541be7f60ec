"""Automatic layout of a graph for the editor: layers by longest path from the inputs, ordered
within a layer by the mean position of their predecessors (a barycentre pass), left to right."""


def auto_layout(graph, dx=260, dy=150):
    """{node_id: (x, y)} for every node; works on graphs with problems (cycles excepted)."""
    try:
        order = graph.topo_order()
    except Exception:
        order = list(graph.nodes)
    depth = {}
    for nid in order:
        preds = [e.src for e in graph.in_edges(nid) if e.src in depth]
        depth[nid] = 1 + max((depth[p] for p in preds), default=-1)
    layers = {}
    for nid in order:
        layers.setdefault(depth[nid], []).append(nid)
    rank = {}
    for d in sorted(layers):
        nodes = layers[d]

        def bary(nid):
            ps = [rank[e.src] for e in graph.in_edges(nid) if e.src in rank]
            return sum(ps) / len(ps) if ps else order.index(nid)
        nodes.sort(key=bary)
        for i, nid in enumerate(nodes):
            rank[nid] = i
    pos = {}
    tallest = max((len(v) for v in layers.values()), default=1)
    for d, nodes in layers.items():
        top = (tallest - len(nodes)) * dy / 2
        for i, nid in enumerate(nodes):
            pos[nid] = (d * dx, round(top + i * dy))
    return pos
