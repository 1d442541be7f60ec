"""Host layers in a graph (issue 28): layers declaring `host = True` (StringLookup,
IntegerLookup, TextVectorization: layers/text.py) take strings or integers and run in numpy
while the data is prepared and on a trained model's raw inputs (data/hostrun.py), never on the
device. Here: where they may stand (directly after an Input or another host layer, their
Input of the dtype they read; no device layer reads a string Input), as problems placed on
their nodes, and the device graph: the graph with its host layers and the Inputs only they
read taken out, each host layer whose output a device layer reads standing as an Input of its
output's shape, under its own id (so the device model's inputs are keyed by those ids and
every device node keeps its id and weights)."""
from layerloom.core.errors import GraphError, ProjectError, quote


def is_host(graph, nid):
    return bool(getattr(graph.nodes[nid].layer, "host", False))


def has_host(graph):
    return any(is_host(graph, nid) for nid in graph.nodes)


def input_dtype(graph, nid):
    """What a node's output holds: an Input's dtype, "float32" for any other."""
    node = graph.nodes[nid]
    return node.params.get("dtype", "float32") if node.layer.is_input else "float32"


def _reads(layer, dtype):
    return (dtype == "string") == (getattr(layer, "input_dtype", "") == "string")


def problems(graph):
    """The host layers' placement problems, each on its node (graph.problems() adds them)."""
    out = []
    used = {e.src for e in graph.edges}
    for nid, node in graph.nodes.items():
        layer = node.layer
        for e in graph.in_edges(nid):
            src = graph.nodes.get(e.src)
            if src is None:
                continue
            dtype = input_dtype(graph, e.src)
            if getattr(layer, "host", False):
                if not (src.layer.is_input or is_host(graph, e.src)):
                    out.append(graph.node_error(
                        f"{node.type} runs on the host, before the device model: it must read "
                        f"an Input (or another host layer), not {src.type} {quote(e.src)}",
                        nid, "host_input", src=e.src))
                elif src.layer.is_input and not _reads(layer, dtype):
                    want = "string" if layer.input_dtype == "string" else "float32 or int32"
                    out.append(graph.node_error(
                        f"{node.type} reads {'strings' if want == 'string' else 'numbers'}: "
                        f"set Input {quote(e.src)}'s dtype to {want} (it is {dtype})", nid,
                        "host_dtype", src=e.src, dtype=want))
            elif dtype == "string":
                out.append(graph.node_error(
                    f"{node.type} runs on the device, which holds numbers: Input {quote(e.src)} "
                    "gives strings; put a TextVectorization or StringLookup between them",
                    nid, "string_input", src=e.src))
        if layer.is_input:  # one Input, two preparations: raw for the host, formed for the device
            readers = [graph.nodes[e.dst] for e in graph.out_edges(nid) if e.dst in graph.nodes]
            hosts = [r for r in readers if getattr(r.layer, "host", False)]
            devices = [r for r in readers if not getattr(r.layer, "host", False)]
            if hosts and devices:
                out.append(graph.node_error(
                    f"Input {quote(nid)} feeds a host layer ({hosts[0].type} "
                    f"{quote(hosts[0].id)}) and a device layer ({devices[0].type} "
                    f"{quote(devices[0].id)}): give the device layer an Input of its own",
                    nid, "host_and_device", host=hosts[0].id, device=devices[0].id))
        if getattr(layer, "host", False) and nid not in used:
            # placed in the file, not on the node: a graph being built (an import adds a layer
            # before what reads it) checks each node's own problems as it goes
            out.append(GraphError(
                f"{node.type} runs on the host, before the device model: a device layer must "
                "read its output (it cannot be the model's output)", graph.place(nid),
                kind="host_output", fields={"node": nid}))
    return out


def boundary(graph):
    """The host layers a device layer reads, in topological order: the device model's
    inputs beside the Inputs it reads itself."""
    order = graph.topo_order()
    return [nid for nid in order if is_host(graph, nid) and any(
        not is_host(graph, e.dst) for e in graph.out_edges(nid))]


def host_order(graph):
    """Every host layer, in topological order."""
    return [nid for nid in graph.topo_order() if is_host(graph, nid)]


def device_graph(graph):
    """The graph the device model is compiled from (the graph itself where it has no host
    layer); made once per graph version. Raises ProjectError with the graph's first problem
    where it has one (a host layer out of place, an unknown shape)."""
    graph = graph.flat()  # the engine runs a block inlined
    if not has_host(graph):
        return graph
    kept = getattr(graph, "_device_graph", None)
    if kept is not None and kept[0] == graph.version:
        return kept[1]
    found = graph.validate()
    if found:
        raise ProjectError(str(found[0]), problems=found)
    shapes = graph.analysis().shapes
    feeds = set(boundary(graph))
    g = type(graph)()
    for nid, node in graph.nodes.items():
        if nid in feeds:
            g.add_node("Input", {"shape": list(shapes[nid][0])}, id=nid)
        elif is_host(graph, nid) or (node.layer.is_input and all(
                is_host(graph, e.dst) for e in graph.out_edges(nid))):
            continue
        else:
            g.add_node(node.type, dict(node.params), id=nid, trainable=node.trainable,
                       shares=node.shares)
    for e in graph.edges:
        if e.src in g.nodes and e.dst in g.nodes:
            g.connect(e.src, e.src_port, e.dst, e.dst_port)
    graph._device_graph = (graph.version, g)
    return g
