"""Standard fixes for a graph's problems, offered as one click in the editor's Problems list
(issue 19, item 10): insert a Flatten or a Reshape in front of a layer that got the wrong
rank, move a convolution before the Flatten it follows, connect an unconnected input from a
dangling output, put a loss-less output in front of its sibling's consumer, give an output
the loss its final activation implies, delete a node, set an Input's shape to what the data
holds.

A fix is a list of edits (Step): of the graph, or of an output's loss. A graph edit is
offered only when applying it to a copy of the graph clears the problem it is for and adds
none; a loss only when the output's metrics can be computed against its targets."""
import dataclasses
import math
import re

from .errors import LayerloomError
from .graph import Graph
from .sections import training

_NOT_CONNECTED = re.compile(r"input (\d+) \((.+?)\) is not connected")
_NO_LOSS = re.compile(r"output '([^']+)' has no loss")
_SET_SHAPE = re.compile(r"set the Input's shape to (\[[0-9, ]+\])")


@dataclasses.dataclass(frozen=True)
class Step:
    """One edit: ("add", id, type, params) | ("remove", id) | ("connect", src, src_port, dst,
    dst_port) | ("disconnect", src, src_port, dst, dst_port) | ("set", id, {param: value}) |
    ("loss", output id, loss name): the training section's, leaving the graph as it is."""
    op: str
    args: tuple


@dataclasses.dataclass(frozen=True)
class Fix:
    label: str  # what the button says: "Insert Flatten before 'dense_1'"
    steps: tuple
    near: str = None  # where a node the fix adds goes on the canvas: beside this node


def copy_graph(graph):
    g = Graph()
    for n in graph.nodes.values():
        g.add_node(n.type, dict(n.params), id=n.id)
    for e in graph.edges:
        g.connect(e.src, e.src_port, e.dst, e.dst_port, allow_cycle=True)
    return g


def apply(graph, steps):
    """Make the edits on `graph` (raises LayerloomError where one is refused)."""
    for s in steps:
        a = s.args
        if s.op == "add":
            graph.add_node(a[1], a[2], id=a[0])
        elif s.op == "remove":
            graph.remove_node(a[0])
        elif s.op == "connect":
            graph.connect(*a)
        elif s.op == "disconnect":
            edge = next(e for e in graph.edges if e.key() == tuple(a))
            graph.disconnect(edge)
        elif s.op == "set":
            graph.set_params(a[0], **a[1])
        elif s.op == "loss":
            if a[0] not in graph.nodes:
                raise KeyError(a[0])
        else:
            raise ValueError(f"unknown step {s.op!r}")


def _messages(graph):
    return [(p.node, p.message) for p in graph.validate()]


def _works(graph, steps, clears):
    """Whether the steps, applied to a copy, clear the problem `clears` ((node, message), or a
    predicate over the copy) and add no other."""
    before = _messages(graph)
    g = copy_graph(graph)
    try:
        apply(g, steps)
    except (LayerloomError, StopIteration, KeyError):
        return False
    after = _messages(g)
    if callable(clears):
        if not clears(g):
            return False
    elif clears in after:
        return False
    return not [m for m in after if m not in before]


def fixes_for(graph, node, message, positions=None, losses=(), metrics=None):
    """The checked fixes for the problem `message` placed on `node` (None for a problem of
    the training section such as an output without a loss); `losses` the outputs that have
    one, `metrics` the training section's (a loss offered must suit them)."""
    positions = positions or {}
    out = []
    if node is not None and node in graph.nodes:
        m = _NOT_CONNECTED.search(message)
        if m:
            out += _connect_input(graph, node, int(m.group(1)), positions, m.group(0))
        else:  # the graph's own problem at the node ("message" may carry its place first)
            own = [m for n, m in _messages(graph) if n == node and m in message]
            if own and graph.in_edges(node):
                out += _rank_fixes(graph, node, own[0])
        m = _SET_SHAPE.search(message)
        if m and graph.nodes[node].layer.is_input:
            shape = [int(v) for v in m.group(1).strip("[]").split(",")]
            out.append(Fix(f"Set the Input's shape to {m.group(1)}",
                           (Step("set", (node, {"shape": shape})),)))
    m = _NO_LOSS.search(message)
    if m and m.group(1) in graph.nodes:
        out += _output_without_loss(graph, m.group(1), set(losses), metrics)
    if node is not None and node in graph.nodes and not graph.nodes[node].layer.is_input \
            and _NOT_CONNECTED.search(message):
        out.append(Fix(f"Delete {node!r}", (Step("remove", (node,)),)))
    return out


def _new_id(graph, type_id, taken=()):
    return graph.new_id(type_id, taken)


def _rank_fixes(graph, node, message):
    """A layer refused its input's shape: Flatten in front, a Reshape in front, or (after a
    Flatten) the layer moved before that Flatten."""
    edge = graph.in_edges(node)[0]
    shapes = graph.analysis().shapes
    src_shape = shapes.get(edge.src, [None])[edge.src_port] if edge.src in shapes else None
    if src_shape is None:
        return []
    clears = (node, message)
    fixes = []
    rewire = (Step("disconnect", (edge.src, edge.src_port, node, edge.dst_port)),)
    if len(src_shape) > 1:
        fid = _new_id(graph, "Flatten")
        steps = rewire + (Step("add", (fid, "Flatten", {})),
                          Step("connect", (edge.src, edge.src_port, fid, 0)),
                          Step("connect", (fid, 0, node, edge.dst_port)))
        if _works(graph, steps, clears):
            fixes.append(Fix(f"Insert Flatten before {node!r}", steps, near=node))
    size = math.prod(src_shape)
    rid = _new_id(graph, "Reshape")
    for target in _reshape_targets(size, len(src_shape)):
        steps = rewire + (Step("add", (rid, "Reshape", {"target_shape": list(target)})),
                          Step("connect", (edge.src, edge.src_port, rid, 0)),
                          Step("connect", (rid, 0, node, edge.dst_port)))
        if _works(graph, steps, clears):
            fixes.append(Fix(f"Insert Reshape to {list(target)} before {node!r}", steps,
                             near=node))
            break
    fixes += _move_before_flatten(graph, node, clears)
    return fixes


def _reshape_targets(size, rank):
    """Shapes of `size` elements a convolution or recurrent layer might want: square images
    with few channels first, then sequences."""
    out = []
    for c in (1, 3, 2, 4, 8, 16, 32, 64):
        if size % c == 0:
            s = math.isqrt(size // c)
            if s * s * c == size and s > 1:
                out.append((s, s, c))
    out += [(size, 1), (size, 1, 1)]
    return [t for t in out if len(t) != rank]


def _move_before_flatten(graph, node, clears):
    """`node` follows a chain that began with a Flatten (Flatten -> ... -> node, one input
    each): move `node` to just before that Flatten, its consumers fed by what fed it."""
    edge = graph.in_edges(node)[0]
    chain, cur = [], edge.src
    while cur in graph.nodes and len(graph.in_edges(cur)) == 1 and len(chain) < 20:
        chain.append(cur)
        if graph.nodes[cur].type == "Flatten":
            break
        cur = graph.in_edges(cur)[0].src
    if not chain or graph.nodes[chain[-1]].type != "Flatten":
        return []
    flatten = chain[-1]
    into = graph.in_edges(flatten)[0]
    outs = graph.out_edges(node)
    steps = [Step("disconnect", edge.key()), Step("disconnect", into.key())]
    steps += [Step("disconnect", e.key()) for e in outs]
    steps += [Step("connect", (into.src, into.src_port, node, 0)),
              Step("connect", (node, 0, flatten, 0))]
    steps += [Step("connect", (edge.src, edge.src_port, e.dst, e.dst_port)) for e in outs]
    steps = tuple(steps)
    if _works(graph, steps, clears):
        return [Fix(f"Move {node!r} before {flatten!r}", steps)]
    return []


def _dangling(graph, exclude):
    return [nid for nid in graph.nodes if nid != exclude and not graph.out_edges(nid)
            and graph.nodes[nid].layer.output_names(graph.nodes[nid].params)]


def _connect_input(graph, node, port, positions, message):
    """Connect input `port` of `node` from a node whose output feeds nothing, nearest first."""
    here = positions.get(node, (0, 0))

    def distance(nid):
        x, y = positions.get(nid, (0, 0))
        return (x - here[0]) ** 2 + (y - here[1]) ** 2
    fixes = []
    for src in sorted(_dangling(graph, node), key=distance):
        steps = (Step("connect", (src, 0, node, port)),)
        if _works(graph, steps, lambda g: not any(n == node and message in m
                                                  for n, m in _messages(g))):
            fixes.append(Fix(f"Connect {src!r} to {node!r}", steps))
        if len(fixes) == 2:
            break
    return fixes


# the losses a Keras user picks after each final activation, the likeliest first
LOSSES_AFTER = {"softmax": ("sparse_categorical_crossentropy", "categorical_crossentropy"),
                "sigmoid": ("binary_crossentropy",)}


def _loss_fixes(graph, out, metrics):
    """The losses the output's activation implies, leaving out those its metrics cannot be
    computed against (precision on the class indices of a sparse loss)."""
    metric = training("metrics")  # train/'s declarations (core never imports train)
    act = graph.nodes[out].params.get("activation")
    names = LOSSES_AFTER.get(act, ("mean_squared_error",))
    mine = metrics.get(out, []) if isinstance(metrics, dict) else metrics or []
    return [Fix(f"Use the loss {name} for {out!r}", (Step("loss", (out, name)),))
            for name in names
            if not any(metric.columnwise_problem(metric.entry_name(m), name) for m in mine)]


def _output_without_loss(graph, out, losses, metrics=None):
    """An output the training section has no loss for. The only output, or one whose final
    activation names its task (softmax, sigmoid): the loss that activation implies. Else
    usually a layer added after a node whose consumer was meant to follow it (hidden_3 ->
    dense_1 dangling beside hidden_3 -> class): put it in front of that consumer; or delete
    it."""
    fixes = []
    if len(graph.outputs()) == 1 or graph.nodes[out].params.get("activation") in LOSSES_AFTER:
        fixes += _loss_fixes(graph, out, metrics)
    ins = graph.in_edges(out)
    if len(ins) == 1:
        src = ins[0]
        for e in graph.out_edges(src.src):
            if e.dst == out or e.src_port != src.src_port:
                continue
            steps = (Step("disconnect", e.key()), Step("connect", (out, 0, e.dst, e.dst_port)))

            def still_outputs(g, dst=e.dst):
                return out not in g.outputs() and (not losses or losses <= set(g.outputs()))
            if _works(graph, steps, still_outputs):
                fixes.append(Fix(f"Insert {out!r} before {e.dst!r}", steps))
    if len(graph.outputs()) > 1:  # the only output: deleting it is no help; a loss is
        fixes.append(Fix(f"Delete {out!r}", (Step("remove", (out,)),)))
    return fixes
