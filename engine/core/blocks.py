"""Blocks: a named sub-network used as one node (Keras' nested model, NNC's Unit, a ResBlock).

A block type is declared in the project file's "blocks" section (or in a block file of the
user's library) as a graph of its own: one Input node per input port (its shape is only what
the block was made with; an instance takes whatever arrives), the inner nodes, and the outputs
as [node, port]. Chosen inner parameters are promoted to the block's parameters: `filters`
may set conv_1.filters and conv_3.filters * 4. An instance is a node of type "ResBlock" with
those parameters and `repeat` (a chain of N copies, weights separate).

Everything that reads a node's declaration sees a block type as a layer (`BlockType`): ports,
parameters, the shape rule (its inner graph expanded for the shapes that arrive), weights
(the inner ones, named `<inner id>/<weight>`, so an instance's weight keys are those of the
expanded graph) and the parameter count. Editing with blocks (Make Block, Expand, an opened
block's edit) is planned in core/block_edits.py. The engine never runs a block as such: `flatten`
inlines every instance (ids `<instance>/<inner id>`, copy k of a repeat `<instance>/#k/...`)
before the model is compiled or exported, so a block costs nothing at run time.
"""
import copy
import json
import re

from layerloom.core.analysis import shared_weight_problems
from layerloom.core.errors import GraphError, ParamError, ProjectError, quote
from layerloom.core.limits import too_many_nodes
from layerloom.core.params import Int, Float
from layerloom.core.registry import Layer, ShapeError, WeightSpec, get_layer
from layerloom.core.sections import unknown_keys

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_BLOCKS = 1000     # block types one file may declare
MAX_REPEAT = 1000     # copies one instance may chain
SEP = "/"             # between an instance's id and its inner node's in the expanded graph
COPY = "#"            # copy k >= 2 of a repeated instance: <instance>/#k/<inner id>


def check_name(name, place="name"):
    """A block type's name: a Keras-like class name that no layer type already has."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ProjectError(f"expected a name of letters, digits and _ starting with a letter "
                           f"(at most 64), got {quote(name)}", place)
    if get_layer(name) is not None:
        raise ProjectError(f"{quote(name)} is a layer type; give the block another name", place)
    return name


class Target:
    """Where a block parameter goes: `node.param`, times a factor (`conv_3.filters*4`)."""
    __slots__ = ("node", "param", "times")

    def __init__(self, node, param, times=1):
        self.node, self.param, self.times = node, param, times

    def text(self):
        times = "" if self.times == 1 else f"*{self.times:g}"
        return f"{self.node}.{self.param}{times}"

    @classmethod
    def parse(cls, text, place):
        m = re.fullmatch(r"\s*([^.\s*]+)\.([A-Za-z_][A-Za-z0-9_]*)\s*(?:\*\s*([0-9.]+))?\s*",
                         text) if isinstance(text, str) else None
        if not m:
            raise ProjectError(f"expected \"node.parameter\" or \"node.parameter*factor\", got "
                               f"{quote(text)}", place)
        times = 1
        if m.group(3):
            try:
                times = float(m.group(3))
            except ValueError:
                times = 0
            if not (0 < times <= 1e6):
                raise ProjectError(f"expected a positive factor, got {quote(m.group(3))}", place)
            if times == int(times):
                times = int(times)
        return cls(m.group(1), m.group(2), times)


class BlockType(Layer):
    """A block as the graph sees it: a layer declaration made from a definition. Build it
    with `from_dict` (a file's, validated) or `make` (the editor's selection)."""
    category = "Blocks"
    examples = ()

    def __init__(self, name, graph, inputs, outputs, promoted, help=""):
        # graph: the inner Graph (Inputs named in `inputs`, port order); outputs: [(node,
        # port)]; promoted: [(Param, [Target, ...])]
        self.type_id = name
        self.graph, self.input_ids, self.output_refs = graph, list(inputs), list(outputs)
        self.promoted = list(promoted)
        self.help = help or (f"Block of {sum(not n.layer.is_input for n in graph.nodes.values())}"
                             " layers")
        self.inputs = tuple(self.input_ids)
        self.outputs = tuple(n if p == 0 else f"{n}:{p}" for n, p in self.output_refs)
        params = [p for p, _ in self.promoted]
        if self.chains:
            params.append(Int("repeat", 1, min=1, max=MAX_REPEAT,
                              help="Copies of the block in a chain, each with its own weights "
                                   "(ResBlock x N)."))
        self.params = tuple(params)
        self._shapes = {}  # (params, input shapes) -> (shapes of the outputs, weight specs)

    @property
    def chains(self):
        """Can copies follow one another (as many outputs as inputs)?"""
        return bool(self.input_ids) and len(self.input_ids) == len(self.output_refs)

    @property
    def layer_count(self):
        return sum(not n.layer.is_input for n in self.graph.nodes.values())

    def headline_text(self, params):
        out = []
        for p, _ in self.promoted:
            v = params.get(p.name)
            out.append(f"{v:g}" if isinstance(v, float) else str(v))
        if params.get("repeat", 1) > 1:
            out.append(f"x{params['repeat']}")
        return " ".join(out)

    # -- the inner graph with an instance's parameters --------------------------------------
    def inner_params(self, params):
        """{inner node id: its params} with the block parameters set; ParamError naming the
        inner parameter a value does not fit."""
        out = {nid: dict(n.params) for nid, n in self.graph.nodes.items()}
        for p, targets in self.promoted:
            value = params.get(p.name, p.default)
            for t in targets:
                v = value * t.times if t.times != 1 else value
                decl = next(q for q in self.graph.nodes[t.node].layer.params
                            if q.name == t.param)
                if t.times != 1 and isinstance(decl, Int):  # the target's kind rounds it
                    v = int(round(v))
                out[t.node][t.param] = decl.validate(
                    v, f"{self.type_id}.{p.name} (sets {t.text()})")
        return out

    def expand(self, out, prefix, sources, params, trainable=True, deep=True, shares=None):
        """Add this block's nodes to Graph `out` with ids prefix + inner id, fed from
        `sources` ([(node, port)] of `out`, one per input), for every copy of a repeat.
        deep=False: a block used inside stays one node. shares: the prefix of the instance
        whose weights this one uses (each inner node then uses that instance's node of its
        id, copy k of a repeat copy k's); an inner node sharing another of the block uses
        that node of its own copy. Returns the [(node, port)] of `out` the block's outputs
        are."""
        inner = self.inner_params(params)
        repeat = params.get("repeat", 1) if self.chains else 1
        for k in range(1, repeat + 1):
            pre = prefix if k == 1 else f"{prefix}{COPY}{k}{SEP}"
            spre = None if shares is None else shares if k == 1 else \
                f"{shares}{COPY}{k}{SEP}"
            sources = self._expand_once(out, pre, sources, inner, trainable, deep, spre)
        return sources

    def _expand_once(self, out, pre, sources, inner, trainable, deep=True, spre=None):
        g = self.graph
        made = {}  # inner id -> [(node of out, port)] per output port (nested blocks)
        for port, iid in enumerate(self.input_ids):
            made[iid] = [sources[port]]
        for nid in g.topo_order():
            if nid in made:
                continue
            node = g.nodes[nid]
            fed = []
            for e in g.in_edges(nid):
                ends = made[e.src]
                fed.append(ends[e.src_port] if e.src_port < len(ends) else (None, None))
            # whose weights it uses: the sharing instance's node, else its own block's
            owner = (spre + (node.shares or nid)) if spre is not None else \
                (pre + node.shares) if node.shares is not None else None
            if deep and isinstance(node.layer, BlockType):
                made[nid] = node.layer.expand(out, f"{pre}{nid}{SEP}", fed, inner[nid],
                                              trainable and node.trainable,
                                              shares=None if owner is None else owner + SEP)
                continue
            fid = pre + nid
            if fid in out.nodes:
                raise GraphError(f"block {quote(self.type_id)}: its node {quote(nid)} would "
                                 f"be {quote(fid)}, which the graph has already; rename one",
                                 kind="block_id_clash")
            out.add_node(node.type, inner[nid], id=fid,
                         trainable=bool(trainable and node.trainable),
                         shares=owner)
            for port, (src, sp) in enumerate(fed):
                if src is not None:
                    out.connect(src, sp, fid, port)
            made[nid] = [(fid, p) for p in range(len(node.layer.output_names(inner[nid])))]
        return [made[n][p] for n, p in self.output_refs]

    def expanded_size(self, params, memo=None, limit=None):
        """How many nodes an instance with `params` becomes inlined (its layers, those of the
        blocks it uses, times its repeat), without building them: a file's bound is checked
        before any instance is analysed. memo: {(type, params): size} shared by a caller;
        limit: stop counting once above it."""
        from layerloom.core.limits import MAX_NODES
        limit = MAX_NODES if limit is None else limit
        memo = {} if memo is None else memo
        key = (self.type_id, json.dumps(params, sort_keys=True, default=str))
        if key in memo:
            return memo[key]
        try:
            inner = self.inner_params(params)
        except ParamError:  # said when the graph is analysed
            inner = {nid: n.params for nid, n in self.graph.nodes.items()}
        one = 0
        for nid, node in self.graph.nodes.items():
            if node.layer.is_input:
                continue
            one += node.layer.expanded_size(inner[nid], memo, limit) + 1 \
                if isinstance(node.layer, BlockType) else 1
            if one > limit:
                break
        repeat = params.get("repeat", 1) if self.chains else 1
        memo[key] = size = min(one * (repeat if isinstance(repeat, int) else 1), limit + 1)
        return size

    # -- what the graph asks of a layer ---------------------------------------------------------
    def _analysed(self, p, in_shapes):
        key = (json.dumps(p, sort_keys=True, default=str),
               tuple(tuple(s) for s in in_shapes))
        hit = self._shapes.get(key)
        if hit is not None:
            return hit
        g = type(self.graph)(blocks={})
        sources = []
        for i, s in enumerate(in_shapes):
            g.add_node("Input", {"shape": list(s)}, id=f"{COPY}in{i}")
            sources.append((g.nodes[f"{COPY}in{i}"].id, 0))
        try:
            outs = self.expand(g, "", sources, p)
        except (ParamError, GraphError) as e:
            raise ShapeError(f"in block {self.type_id}: {e.message}") from None
        shapes, problems = g.compute_shapes()
        if problems:
            first = problems[0]
            where = first.node
            raise ShapeError(f"in block {self.type_id}, {quote(where)} "
                             f"({g.nodes[where].type}): {first.message}")
        shared = shared_weight_problems(g, shapes)  # an inner node using another's weights
        if shared:
            raise ShapeError(f"in block {self.type_id}, {quote(shared[0].node)}: "
                             f"{shared[0].message}")
        missing = [n for n, _ in outs if n not in shapes]
        if missing:
            raise ShapeError(f"in block {self.type_id}: the shape of {quote(missing[0])} is "
                             "unknown")
        specs = []
        for nid in g.topo_order():
            node = g.nodes[nid]
            if node.layer.is_input or node.shares is not None:  # shared: counted once
                continue
            ins = [shapes[e.src][e.src_port] for e in g.in_edges(nid)]
            for w in node.layer.weights(node.params, ins):
                specs.append(WeightSpec(f"{nid}/{w.name}", w.shape, w.init, w.fan_in,
                                        w.fan_out, w.trainable and node.trainable,
                                        w.regularizer))
        result = ([tuple(shapes[n][p]) for n, p in outs], specs)
        if len(self._shapes) > 256:
            self._shapes.clear()
        self._shapes[key] = result
        return result

    def output_shapes(self, p, in_shapes):
        return list(self._analysed(p, in_shapes)[0])

    def weights(self, p, in_shapes):
        return list(self._analysed(p, in_shapes)[1])

    def forward(self, ops, s):
        raise GraphError(f"block {self.type_id} runs inlined (core/blocks.py flatten)")

    backward = forward

    def reference(self, p, xs, ws, training=False):
        raise GraphError(f"block {self.type_id} runs inlined (core/blocks.py flatten)")


# -- definitions ------------------------------------------------------------------------------
def used_blocks(graph, every=False):
    """The block types `graph`'s nodes use (every=True: all it declares), with those they
    use in turn, in an order where a block comes after every block it uses: what a file or
    a clipboard must carry."""
    blocks = graph.blocks
    order, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        for n in blocks[name].graph.nodes.values():
            if n.type in blocks:
                visit(n.type)
        order.append(name)
    for name in (list(blocks) if every else [n.type for n in graph.nodes.values()]):
        if name in blocks:
            visit(name)
    return order


def define(name, inner, inputs, outputs, params=None, help="", where="block"):
    """A checked BlockType from the parts of its definition (a file's, or the editor's Make
    Block), or ProjectError with the place of what is wrong."""
    params = {} if params is None else params
    if not isinstance(help, str) or len(help) > 2000:
        raise ProjectError("expected a text of at most 2,000 characters", f"{where}.help")
    declared_inputs = [nid for nid, n in inner.nodes.items() if n.layer.is_input]
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise ProjectError("expected the list of the block's Input node ids", f"{where}.inputs")
    if sorted(inputs) != sorted(declared_inputs) or len(set(inputs)) != len(inputs):
        raise ProjectError(f"expected each Input node of the block's graph once "
                           f"({', '.join(map(quote, declared_inputs)) or 'none'}), got "
                           f"{quote(inputs)}", f"{where}.inputs")
    if not inputs:
        raise ProjectError("a block needs at least one input (an Input node)", f"{where}.inputs")
    if not isinstance(outputs, list) or not outputs:
        raise ProjectError("expected a list of [node, port]", f"{where}.outputs")
    refs = []
    for j, ref in enumerate(outputs):
        ok = (isinstance(ref, list) and len(ref) == 2 and isinstance(ref[0], str)
              and isinstance(ref[1], int) and not isinstance(ref[1], bool))
        if not ok or ref[0] not in inner.nodes or inner.nodes[ref[0]].layer.is_input or not (
                0 <= ref[1] < len(inner.nodes[ref[0]].layer.output_names(
                    inner.nodes[ref[0]].params))):
            raise ProjectError(f"expected [node, port] of a layer of the block, got "
                               f"{quote(ref)}", f"{where}.outputs[{j}]")
        refs.append((ref[0], ref[1]))
    structure = [p for p in inner.problems() if p.kind not in ("no_output",)]
    if structure:
        raise ProjectError(structure[0].message, f"{where}.graph")
    for nid, n in inner.nodes.items():
        if getattr(n.layer, "host", False):
            raise ProjectError(f"{n.type} runs on the host, before the device model: it cannot "
                               "be inside a block", f"{where}.graph")
    feeding = {e.src for e in inner.edges} | {n for n, _ in refs}
    dead = [nid for nid, n in inner.nodes.items() if nid not in feeding]
    if dead:
        raise ProjectError(f"{quote(dead[0])} feeds nothing and is not an output of the block",
                           f"{where}.graph")
    promoted = []
    if not isinstance(params, dict):
        raise ProjectError("expected an object of parameters by name", f"{where}.params")
    for pname, spec in params.items():
        place = f"{where}.params.{pname}"
        if not isinstance(pname, str) or not NAME.match(pname) or pname == "repeat":
            raise ProjectError(f"expected a parameter name (letters, digits, _; not 'repeat'), "
                               f"got {quote(pname)}", place)
        if not isinstance(spec, dict) or not isinstance(spec.get("sets"), list) or not spec["sets"]:
            raise ProjectError("expected {\"default\": value, \"sets\": [\"node.parameter\", "
                               "...]}", place)
        extra = unknown_keys(spec, {"default", "sets"}, place)
        if extra:
            raise extra[0]
        targets = [Target.parse(t, f"{place}.sets[{k}]") for k, t in enumerate(spec["sets"])]
        decl = None
        for k, t in enumerate(targets):
            node = inner.nodes.get(t.node)
            d = next((q for q in node.layer.params if q.name == t.param), None) if node else None
            if d is None:
                raise ProjectError(f"the block has no node parameter {quote(t.node + '.' + t.param)}",
                                   f"{place}.sets[{k}]")
            if t.times != 1 and not isinstance(d, (Int, Float)):
                raise ProjectError(f"a factor needs a number parameter; {t.node}.{t.param} is "
                                   f"{d.kind}", f"{place}.sets[{k}]")
            decl = decl or d
        param = copy.copy(decl)
        param.name = pname
        param.help = f"Sets {', '.join(t.text() for t in targets)}."
        param.default = param.validate(spec.get("default", decl.default), f"{place}.default")
        promoted.append((param, targets))
    bt = BlockType(name, inner, inputs, refs, promoted, help)
    try:  # the defaults must make a block whose parameters fit
        bt.inner_params({p.name: p.default for p, _ in promoted})
    except ParamError as e:
        raise ProjectError(e.message, f"{where}.params") from None
    return bt


# -- expanding a graph ------------------------------------------------------------------------
def has_blocks(graph):
    return any(isinstance(n.layer, BlockType) for n in graph.nodes.values())


def flatten(graph):
    """The graph with every block instance inlined (the graph itself where it has none); made
    once per graph version. The nodes keep the file's order, an instance's in its place. A
    single-output instance keeps its id as an Identity on its output (which costs no copy),
    so losses, metrics and predictions name it as before."""
    if not has_blocks(graph):
        return graph
    kept = getattr(graph, "_flat", None)
    if kept is not None and kept[0] == graph.version:
        return kept[1]
    Graph = type(graph)
    work = Graph(blocks={})
    ends, made = {}, {}  # top-level id -> [(node of work, port)] per output; -> its nodes
    for nid in graph.topo_order():
        node = graph.nodes[nid]
        before = len(work.nodes)
        if not isinstance(node.layer, BlockType):
            work.add_node(node.type, dict(node.params), id=nid, trainable=node.trainable,
                          shares=node.shares)
            ends[nid] = [(nid, p) for p in range(len(node.layer.output_names(node.params)))]
        else:
            sources = [ends[e.src][e.src_port] for e in graph.in_edges(nid)]
            try:
                outs = node.layer.expand(work, f"{nid}{SEP}", sources, node.params,
                                         node.trainable, shares=None if node.shares is None
                                         else f"{node.shares}{SEP}")
            except ParamError as e:
                raise graph.node_error(e.message, nid, "block_params") from None
            except GraphError as e:
                raise graph.node_error(e.message, nid, e.kind or "block") from None
            too_many = too_many_nodes(len(work.nodes) + 1)
            if too_many:
                raise graph.node_error(f"expanded, the graph would have {too_many}", nid,
                                       "too_many_nodes")
            if len(outs) == 1:
                if nid in work.nodes:
                    raise graph.node_error(f"its id {quote(nid)} is taken inside it", nid,
                                           "block_id_clash")
                work.add_node("Identity", {}, id=nid, trainable=node.trainable)
                work.connect(outs[0][0], outs[0][1], nid, 0)
                outs = [(nid, 0)]
            elif not graph.out_edges(nid):
                raise graph.node_error(f"block {node.type} has {len(outs)} outputs and ends "
                                       "the model: add a layer after each output", nid,
                                       "block_output")
            ends[nid] = outs
        made[nid] = (before, len(work.nodes))
        for e in graph.in_edges(nid):
            if not isinstance(node.layer, BlockType):
                src, sp = ends[e.src][e.src_port]
                work.connect(src, sp, nid, e.dst_port)
    out = Graph(blocks={})  # the same nodes and edges, in the file's order
    ids = list(work.nodes)
    for nid in graph.nodes:
        for fid in ids[made[nid][0]:made[nid][1]]:
            n = work.nodes[fid]
            out.add_node(n.type, n.params, id=fid, trainable=n.trainable, shares=n.shares)
    for e in work.edges:
        out.connect(e.src, e.src_port, e.dst, e.dst_port)
    graph._flat = (graph.version, out)
    return out
