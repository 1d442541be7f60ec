"""Standard fixes for a graph's problems, offered as one click in the editor's Problems list
(issue 19, item 10): insert a Flatten or a Reshape in front of a layer that got the wrong
rank, move a convolution before the Flatten it follows, connect an unconnected input from a
dangling output, put a loss-less output in front of its sibling's consumer, give an output
the loss its final activation implies, delete a node, set an Input's shape to what the data
holds.

Problems and fixes are data (issue 27): a problem says what it is by its `kind` and the
facts a fix needs by its `fields` (core/errors.py; the graph, the training section and the
data check make them), and FIXES declares, for each kind that has fixes, the fields they read
and the function that finds them, which is handed those fields and never the message. A fix
is a list of edits (Step records, their kinds in STEPS): of the graph, or of an output's
loss. A graph edit is offered only when applying it to a copy of the graph clears the problem
it is for and adds none; a loss only when the output's metrics can be computed against its
targets."""
import dataclasses
import math

import numpy as np

from .errors import LayerloomError
from .graph import Graph
from .sections import training

# -- steps: the edits a fix makes, as records ------------------------------------------------
# kind -> the fields a step of that kind has. The engine applies them to a graph (apply, for
# the check on a copy); the editor applies them to its document through its own table of the
# same kinds (app/panels/problems_panel.py STEP_COMMANDS), each as an undo command.
STEPS = {
    "insert": ("node", "type", "params", "src", "src_port", "dst", "dst_port"),  # a new node
    # `node` of `type` on the edge src:src_port -> dst:dst_port (fed by src, feeding dst)
    "connect": ("src", "src_port", "dst", "dst_port"),
    "disconnect": ("src", "src_port", "dst", "dst_port"),
    "remove": ("node",),
    "set_param": ("node", "param", "value"),
    "set_loss": ("output", "loss"),  # the training section's, leaving the graph as it is
}


class UnknownStep(LayerloomError):
    """A step of a kind the one applying it has no entry for: refused before anything is
    changed."""

    def __init__(self, kind, known):
        super().__init__(f"cannot apply a fix step of kind {kind!r} (known: "
                         f"{', '.join(sorted(known))})")
        self.step_kind = kind


class Step:
    """One edit of a fix: its `kind` and the fields STEPS declares for that kind, read as
    attributes (`Step("set_loss", output="d", loss="mean_squared_error").output`). A kind not
    in STEPS is made as given, and refused where it is applied."""
    __slots__ = ("kind", "fields")

    def __init__(self, kind, **fields):
        want = STEPS.get(kind)
        if want is not None and set(fields) != set(want):
            raise TypeError(f"a {kind!r} step has the fields {', '.join(want)}; "
                            f"got {', '.join(sorted(fields)) or 'none'}")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "fields", dict(fields))

    def __getattr__(self, name):
        if name in Step.__slots__:  # not set yet (a copy being made)
            raise AttributeError(name)
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(f"a {self.kind!r} step has no field {name!r}") from None

    def __setattr__(self, name, value):
        raise AttributeError("a Step is not changed once made")

    def __eq__(self, other):
        return isinstance(other, Step) and (self.kind, self.fields) == (other.kind,
                                                                        other.fields)

    __hash__ = None  # its fields may hold a node's params (a dict)

    def __reduce__(self):  # copied and pickled through its constructor
        return _step, (self.kind, self.fields)

    def __repr__(self):
        return f"Step({self.kind!r}, " + ", ".join(f"{k}={v!r}" for k, v in
                                                    self.fields.items()) + ")"


def _step(kind, fields):
    return Step(kind, **fields)


@dataclasses.dataclass(frozen=True)
class Fix:
    label: str  # what the button says: "Insert Flatten before 'dense_1'"
    steps: tuple
    near: str = None  # where a node the fix adds goes on the canvas: beside this node


def copy_graph(graph):
    g = Graph(blocks=graph.blocks)
    for n in graph.nodes.values():
        g.add_node(n.type, dict(n.params), id=n.id)
    for e in graph.edges:
        g.connect(e.src, e.src_port, e.dst, e.dst_port, allow_cycle=True)
    return g


def _disconnect(graph, s):
    key = (s.src, s.src_port, s.dst, s.dst_port)
    edge = next((e for e in graph.edges if e.key() == key), None)
    if edge is None:
        raise KeyError(key)
    graph.disconnect(edge)


def _insert(graph, s):
    _disconnect(graph, s)
    graph.add_node(s.type, s.params, id=s.node)
    graph.connect(s.src, s.src_port, s.node, 0)
    graph.connect(s.node, 0, s.dst, s.dst_port)


def _set_loss(graph, s):
    if s.output not in graph.nodes:  # the graph itself is left as it is
        raise KeyError(s.output)


# step kind -> how it edits a Graph
APPLY = {
    "insert": _insert,
    "connect": lambda g, s: g.connect(s.src, s.src_port, s.dst, s.dst_port),
    "disconnect": _disconnect,
    "remove": lambda g, s: g.remove_node(s.node),
    "set_param": lambda g, s: g.set_params(s.node, **{s.param: s.value}),
    "set_loss": _set_loss,
}


def apply(graph, steps):
    """Make the edits on `graph` (raises LayerloomError where one is refused, UnknownStep
    before any edit where a step's kind has no entry in APPLY)."""
    for s in steps:
        if s.kind not in APPLY:
            raise UnknownStep(s.kind, APPLY)
    for s in steps:
        APPLY[s.kind](graph, s)


# -- problems and their fixes ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FixKind:
    """The fixes of one kind of problem: `find(graph, facts, context)` gives the checked Fix
    list from `facts`, the problem's fields named in `reads` (never its message)."""
    problem: str
    reads: tuple
    find: object


@dataclasses.dataclass(frozen=True)
class Context:
    """What a fix may use beyond the graph: the canvas positions, the outputs that have a
    loss, the training section's metrics."""
    positions: dict
    losses: frozenset
    metrics: object = None


FIXES = {}  # problem kind -> FixKind


def fixes_problem(kind, reads):
    """Declare the function below as the fixes of problems of `kind`, reading `reads`."""
    def register(find):
        FIXES[kind] = FixKind(kind, tuple(reads), find)
        return find
    return register


def fixes_for(graph, problem, positions=None, losses=(), metrics=None):
    """The checked fixes for `problem` (a LayerloomError with its kind and fields, as the
    graph's analysis, the project's training section or the data check make them); `losses`
    the outputs that have one, `metrics` the training section's (a loss offered must suit
    them). A problem without a kind, of a kind without fixes, or without the fields its
    fixes read gets none."""
    entry = FIXES.get(getattr(problem, "kind", None))
    fields = getattr(problem, "fields", None) or {}
    if entry is None or any(f not in fields for f in entry.reads):
        return []
    facts = {f: fields[f] for f in entry.reads}
    return entry.find(graph, facts, Context(positions or {}, frozenset(losses), metrics))


def _problems(graph):
    """The graph's problems, each as a whole (kind, node, message): compared, never read."""
    return [(p.kind, p.node, p.message) for p in graph.validate()]


def _works(graph, steps, clears):
    """Whether the steps, applied to a copy, clear the problem `clears` (one of the graph's
    problems, or a predicate over the copy) and add no other."""
    before = _problems(graph)
    g = copy_graph(graph)
    try:
        apply(g, steps)
    except (LayerloomError, KeyError):
        return False
    after = _problems(g)
    if callable(clears):
        if not clears(g):
            return False
    elif (clears.kind, clears.node, clears.message) in after:
        return False
    return not [m for m in after if m not in before]


@fixes_problem("unconnected_input", reads=("node", "port"))
def _unconnected_input(graph, facts, context):
    """Connect the input from a dangling output, nearest first; or delete the node."""
    node = facts["node"]
    if node not in graph.nodes:
        return []
    if _is_merge(graph, node):  # the other branch of a merge: a node whose shape fits
        out = _connect_fitting(graph, node, facts["port"], context.positions)
    else:
        out = _connect_input(graph, node, facts["port"], context.positions)
    if not graph.nodes[node].layer.is_input:
        out.append(Fix(f"Delete {node!r}", (Step("remove", node=node),)))
    return out


@fixes_problem("shape_mismatch", reads=("node", "in_shapes"))
def _shape_mismatch(graph, facts, context):
    """A layer refused its input's shape: Flatten or a Reshape in front, or moved before the
    Flatten it follows."""
    node = facts["node"]
    if node not in graph.nodes or not graph.in_edges(node):
        return []
    own = [p for p in graph.validate() if p.kind == "shape_mismatch" and p.node == node]
    if not own:  # not this graph's problem (any more)
        return []
    sizes = _merge_size_fixes(graph, node, facts["in_shapes"], own[0]) \
        if _is_merge(graph, node) else []
    return sizes + _rank_fixes(graph, node, facts["in_shapes"], own[0])


def _connect_merge_port(field):
    """A merge with fewer inputs than it needs (an Add fed by one branch: the next port,
    `have`) or with a gap in its ports (1 without 0: `port`): that port connected from the
    nearest node whose output shape fits."""
    def find(graph, facts, context):
        node = facts["node"]
        if node not in graph.nodes:
            return []
        return _connect_fitting(graph, node, facts[field], context.positions)
    return find


fixes_problem("too_few_inputs", reads=("node", "have"))(_connect_merge_port("have"))
fixes_problem("input_gap", reads=("node", "port"))(_connect_merge_port("port"))


@fixes_problem("input_data_shape", reads=("node", "shape"))
def _input_data_shape(graph, facts, context):
    """The data's samples are not shaped as the Input says: the Input takes their shape."""
    node, shape = facts["node"], list(facts["shape"])
    if node not in graph.nodes or not graph.nodes[node].layer.is_input:
        return []
    return [Fix(f"Set the Input's shape to {shape}",
                (Step("set_param", node=node, param="shape", value=shape),))]


@fixes_problem("no_loss", reads=("output",))
def _no_loss(graph, facts, context):
    out = facts["output"]
    if out not in graph.nodes:
        return []
    return _output_without_loss(graph, out, set(context.losses), context.metrics)


def _new_id(graph, type_id, taken=()):
    return graph.new_id(type_id, taken)


def _rank_fixes(graph, node, in_shapes, clears):
    """A layer refused the shape at its first input (in_shapes[0]): Flatten in front, a
    Reshape in front, or (after a Flatten) the layer moved before that Flatten; each clearing
    the problem `clears`."""
    edge = graph.in_edges(node)[0]
    src_shape = in_shapes[0] if in_shapes else None
    if src_shape is None:
        return []
    fixes = []

    def insert(nid, type_id, params):
        return (Step("insert", node=nid, type=type_id, params=params, src=edge.src,
                     src_port=edge.src_port, dst=node, dst_port=edge.dst_port),)
    if len(src_shape) > 1:
        steps = insert(_new_id(graph, "Flatten"), "Flatten", {})
        if _works(graph, steps, clears):
            fixes.append(Fix(f"Insert Flatten before {node!r}", steps, near=node))
    size = math.prod(src_shape)
    rid = _new_id(graph, "Reshape")
    for target in _reshape_targets(size, len(src_shape)):
        steps = insert(rid, "Reshape", {"target_shape": list(target)})
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
    steps = [_edge_step("disconnect", edge), _edge_step("disconnect", into)]
    steps += [_edge_step("disconnect", e) for e in outs]
    steps += [Step("connect", src=into.src, src_port=into.src_port, dst=node, dst_port=0),
              Step("connect", src=node, src_port=0, dst=flatten, dst_port=0)]
    steps += [Step("connect", src=edge.src, src_port=edge.src_port, dst=e.dst,
                   dst_port=e.dst_port) for e in outs]
    steps = tuple(steps)
    if _works(graph, steps, clears):
        return [Fix(f"Move {node!r} before {flatten!r}", steps)]
    return []


def _edge_step(kind, edge):
    return Step(kind, src=edge.src, src_port=edge.src_port, dst=edge.dst, dst_port=edge.dst_port)


def _dangling(graph, exclude):
    return [nid for nid in graph.nodes if nid != exclude and not graph.out_edges(nid)
            and graph.nodes[nid].layer.output_names(graph.nodes[nid].params)]


def _connect_input(graph, node, port, positions):
    """Connect input `port` of `node` from a node whose output feeds nothing, nearest first."""
    here = positions.get(node, (0, 0))

    def distance(nid):
        x, y = positions.get(nid, (0, 0))
        return (x - here[0]) ** 2 + (y - here[1]) ** 2
    fixes = []
    for src in sorted(_dangling(graph, node), key=distance):
        steps = (Step("connect", src=src, src_port=0, dst=node, dst_port=port),)
        if _works(graph, steps, lambda g: not any(
                p.kind == "unconnected_input" and p.fields["node"] == node
                and p.fields["port"] == port for p in g.validate())):
            fixes.append(Fix(f"Connect {src!r} to {node!r}", steps))
        if len(fixes) == 2:
            break
    return fixes


# the losses a Keras user picks after each final activation, the likeliest first
LOSSES_AFTER = {"softmax": ("sparse_categorical_crossentropy", "categorical_crossentropy"),
                "sigmoid": ("binary_crossentropy",)}


def output_activation(graph, out):
    """The final activation of output `out` ("linear" where it has none)."""
    n = graph.nodes[out]
    if n.type == "Softmax":
        return "softmax"
    return n.params.get("activation") or "linear"


def implied_loss(activation, units, targets, rows=10000):
    """The loss an output's final activation and its targets leave no doubt about (issue 31,
    item 6), else None: softmax with class indices 0..units-1 -> sparse categorical
    cross-entropy, with one-hot rows -> categorical; sigmoid with 0/1 targets -> binary
    cross-entropy; linear with real (not all whole) targets -> mean squared error. Read from
    the first `rows` targets."""
    t = np.asarray(targets[:rows], np.float64)
    if t.size == 0 or not np.all(np.isfinite(t)):
        return None
    whole = bool(np.all(t == np.round(t)))
    if activation == "softmax" and whole:
        if t.ndim == 1 or t.shape[1:] == (1,):
            return "sparse_categorical_crossentropy" if 0 <= t.min() and t.max() < units \
                else None
        if t.shape[1:] == (units,) and np.all((t == 0) | (t == 1)) and \
                np.all(t.sum(1) == 1):
            return "categorical_crossentropy"
        return None
    if activation == "sigmoid":
        return "binary_crossentropy" if np.all((t == 0) | (t == 1)) else None
    if activation in (None, "linear"):
        return None if whole else "mean_squared_error"
    return None


def _loss_fixes(graph, out, metrics):
    """The losses the output's activation implies, leaving out those its metrics cannot be
    computed against (precision on the class indices of a sparse loss)."""
    metric = training("metrics")  # train/'s declarations (core never imports train)
    act = graph.nodes[out].params.get("activation")
    names = LOSSES_AFTER.get(act, ("mean_squared_error",))
    mine = metrics.get(out, []) if isinstance(metrics, dict) else metrics or []
    return [Fix(f"Use the loss {name} for {out!r}", (Step("set_loss", output=out, loss=name),))
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
            steps = (_edge_step("disconnect", e),
                     Step("connect", src=out, src_port=0, dst=e.dst, dst_port=e.dst_port))

            def still_outputs(g, dst=e.dst):
                return out not in g.outputs() and (not losses or losses <= set(g.outputs()))
            if _works(graph, steps, still_outputs):
                fixes.append(Fix(f"Insert {out!r} before {e.dst!r}", steps))
    if len(graph.outputs()) > 1:  # the only output: deleting it is no help; a loss is
        fixes.append(Fix(f"Delete {out!r}", (Step("remove", node=out),)))
    return fixes


# -- merges: the other branch, and branches of different sizes (issue 31, item 4) -------------
def _is_merge(graph, node):
    """A layer joining several inputs (Add, Concatenate, Subtract...)."""
    layer = graph.nodes[node].layer
    return layer.max_inputs() is None or layer.max_inputs() > 1


def _connect_fitting(graph, node, port, positions, most=2):
    """Connect input `port` of merge `node` from the nearest node whose output fits: of the
    same shape as its other inputs first (a residual's skip: not the immediate input of a node
    that feeds the merge), then any the merge takes (a
    broadcast, a Concatenate's other width); not one it already reads, nor one downstream."""
    shapes = graph.analysis().shapes
    feeding = {e.src for e in graph.in_edges(node)}
    have = {shapes[e.src][e.src_port] for e in graph.in_edges(node)
            if e.src in shapes and e.src_port < len(shapes[e.src])}
    here = positions.get(node, (0, 0))
    # the immediate inputs of the nodes that feed it: a skip spans the block, so conv2d_1
    # before the BatchNormalization that feeds conv2d_2 in x -> conv2d_1 -> BN -> conv2d_2
    # -> Add(conv2d_2, ?), though the BN is nearer
    inside = {e.src for f in feeding for e in graph.in_edges(f)}

    def rank(c):
        nid, k = c
        x, y = positions.get(nid, (0, 0))
        return (shapes[nid][k] not in have, nid in inside,
                (x - here[0]) ** 2 + (y - here[1]) ** 2)
    below = {node} | graph.downstream(node)
    candidates = sorted(((nid, k) for nid in shapes if nid not in feeding and nid not in below
                         for k in range(len(shapes[nid]))), key=rank)

    def cleared(g):
        return not any(p.node == node and p.kind in ("too_few_inputs", "input_gap",
                                                     "unconnected_input")
                       and p.fields.get("port", port) == port for p in g.validate())
    fixes = []
    for src, k in candidates[:12]:  # each checked on a copy: a few, nearest first
        steps = (Step("connect", src=src, src_port=k, dst=node, dst_port=port),)
        if _works(graph, steps, cleared):
            fixes.append(Fix(f"Connect {src!r} to {node!r}", steps))
            if len(fixes) == most:
                break
    return fixes


# a merge's inputs of different sizes: inserted on the edges that differ, by the input's rank
CROP_PAD = {3: ("Cropping2D", "ZeroPadding2D"), 2: ("Cropping1D", "ZeroPadding1D")}
SHRINKING = ("Conv1D", "Conv2D", "SeparableConv1D", "SeparableConv2D", "DepthwiseConv2D")


def _margins(d):
    """Rows (or columns, steps) d split as Keras' padding='same' splits them: the smaller
    half first."""
    return [d // 2, d - d // 2]


def _merge_size_fixes(graph, node, in_shapes, clears):
    """A merge's inputs differ in their image sizes or sequence lengths, channels equal
    (26x26 beside 28x28): padding same on the convolution of the smaller branch that shrank
    it, a Cropping of the larger inputs, or a ZeroPadding of the smaller ones."""
    rank = len(in_shapes[0]) if in_shapes and in_shapes[0] else 0
    if rank not in CROP_PAD or any(len(s) != rank or s[-1] != in_shapes[0][-1]
                                   for s in in_shapes):
        return []
    spatial = [s[:-1] for s in in_shapes]
    small = tuple(min(s[a] for s in spatial) for a in range(rank - 1))
    large = tuple(max(s[a] for s in spatial) for a in range(rank - 1))
    if small == large:
        return []
    edges = sorted(graph.in_edges(node), key=lambda e: e.dst_port)
    fixes = _padding_same(graph, [e for e, s in zip(edges, spatial) if s != large], clears)
    crop, pad = CROP_PAD[rank]
    for type_id, key, edges_of, goal in (
            (crop, "cropping", [(e, s) for e, s in zip(edges, spatial) if s != small], small),
            (pad, "padding", [(e, s) for e, s in zip(edges, spatial) if s != large], large)):
        steps, taken, amounts = [], set(), None
        for e, s in edges_of:
            amounts = [_margins(abs(s[a] - goal[a])) for a in range(rank - 1)]
            nid = graph.new_id(type_id, taken)
            taken.add(nid)
            steps.append(Step("insert", node=nid, type=type_id, params={
                key: amounts if rank == 3 else amounts[0]}, src=e.src, src_port=e.src_port,
                dst=node, dst_port=e.dst_port))
        if steps and _works(graph, tuple(steps), clears):
            shown = amounts if rank == 3 else amounts[0]
            fixes.append(Fix(f"Insert {type_id} {shown} before {node!r}"
                             + (f" ({len(steps)} inputs)" if len(steps) > 1 else ""),
                             tuple(steps), near=node))
    return fixes


def _padding_same(graph, edges, clears):
    """padding same on the convolution that shrank each smaller input: up each branch (one
    input a node) to its nearest valid convolution of stride 1; one fix setting them all."""
    convs = []
    for e in edges:
        cur = e.src
        for _ in range(20):
            n = graph.nodes[cur]
            if n.type in SHRINKING and n.params.get("padding") == "valid":
                convs.append(cur)
                break
            ins = graph.in_edges(cur)
            if len(ins) != 1:
                break
            cur = ins[0].src
    if not convs:
        return []
    steps = tuple(Step("set_param", node=c, param="padding", value="same")
                  for c in dict.fromkeys(convs))
    if not _works(graph, steps, clears):
        return []
    return [Fix("Set padding same on " + ", ".join(repr(c) for c in dict.fromkeys(convs)),
                steps)]
