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
expanded graph) and the parameter count. The engine never runs a block as such: `flatten`
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


# -- making a block of a selection, and putting one back in place --------------------------------
PROMOTABLE = ("filters", "units", "rate", "num_heads", "key_dim", "kernel_size", "strides",
              "pool_size", "depth_multiplier", "dropout", "epsilon", "activation")


class MadeBlock:
    """What Make Block does to a graph (the editor's command applies it and takes it back):
    the block type, the nodes it replaces, the instance and its wires."""

    def __init__(self, block, instance, params, removed, inputs, outputs):
        self.block, self.instance, self.params = block, instance, params
        self.removed = removed    # the selected node ids, in file order
        self.inputs = inputs      # [(src, src_port)] of the graph, one per block input
        self.outputs = outputs    # [(block output port, dst, dst_port)] of the graph

    def weights_renamed(self):
        """{old weight key prefix: new}: a selected node's weights become the instance's."""
        return {f"{nid}/": f"{self.instance}{SEP}{nid}/" for nid in self.removed}


def suggested_params(graph, node_ids):
    """Parameters worth promoting for a selection: {name: (default, [Target])}. One entry per
    parameter name of PROMOTABLE the selection's nodes set, its smallest value the default and
    every node with a multiple of it a target times that multiple (`filters`: conv_1, conv_3*4).
    A name whose values are not multiples of one another (or not numbers) takes the nodes of
    the commonest value."""
    found = {}
    for nid in node_ids:
        node = graph.nodes[nid]
        for name in PROMOTABLE:
            if name in node.params and not node.layer.is_input:
                found.setdefault(name, []).append((nid, node.params[name]))
    out = {}
    for name, uses in found.items():
        values = [v for _, v in uses]
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                      for v in values)
        if numbers:
            base = min(values)
            targets = []
            for nid, v in uses:
                times = v / base
                if abs(times - round(times)) < 1e-9 and isinstance(base, int):
                    targets.append(Target(nid, name, int(round(times))))
                elif v == base:
                    targets.append(Target(nid, name))
            out[name] = (base, targets)
        else:
            keyed = [json.dumps(v, default=str) for v in values]
            common = max(set(keyed), key=keyed.count)
            out[name] = (values[keyed.index(common)],
                         [Target(nid, name) for (nid, _), k in zip(uses, keyed) if k == common])
    return out


def make_block(graph, node_ids, name, promote=None, help="", instance=None):
    """The block type made of the selected nodes of `graph` and what replacing them with one
    instance does (MadeBlock); the graph is not changed. Inputs are the distinct outputs of
    unselected nodes that selected ones read (in the order the selection first reads them);
    outputs are the selected nodes' outputs read outside it, and any selected node that
    feeds nothing (a model output). promote: {block parameter: [Target or "node.param*k"]}
    (default: none). Raises ProjectError saying what does not make a block."""
    check_name(name)
    if name in graph.blocks:
        raise ProjectError(f"the project has a block {quote(name)} already; choose another name",
                           "name")
    chosen = [nid for nid in graph.nodes if nid in set(node_ids)]
    if not chosen:
        raise ProjectError("select the layers the block is made of", "selection")
    inputs_in = [nid for nid in chosen if graph.nodes[nid].layer.is_input]
    if inputs_in:
        raise ProjectError(f"the selection holds the Input {quote(inputs_in[0])}: a block's "
                           "inputs are the wires that enter it; leave the Input out", "selection")
    hosts = [nid for nid in chosen if getattr(graph.nodes[nid].layer, "host", False)]
    if hosts:
        raise ProjectError(f"{quote(hosts[0])} runs on the host, before the device model: it "
                           "cannot be inside a block", "selection")
    inside = set(chosen)
    for nid in graph.nodes:  # weights shared across the selection's border cannot be kept
        owner = graph.nodes[nid].shares
        if owner is not None and (nid in inside) != (owner in inside):
            raise ProjectError(f"{quote(nid)} uses the weights of {quote(owner)}, "
                               f"{'outside' if nid in inside else 'inside'} the selection: "
                               "select both, or share no weights", "selection")
    problem = next((p for p in graph.validate() if getattr(p, "node", None) in inside), None)
    if problem is not None:
        raise ProjectError(f"{quote(problem.node)}: {problem.message}; fix it first",
                           "selection")
    order = graph.topo_order()
    rank = {nid: k for k, nid in enumerate(order)}
    shapes = graph.analysis().shapes
    sources = []  # (src, port) entering, by first reader
    for nid in sorted(chosen, key=rank.get):
        for e in graph.in_edges(nid):
            if e.src not in inside and (e.src, e.src_port) not in sources:
                sources.append((e.src, e.src_port))
    outs, leaving = [], []
    for nid in sorted(chosen, key=rank.get):
        edges = graph.out_edges(nid)
        for e in edges:
            if e.dst not in inside:
                if (nid, e.src_port) not in outs:
                    outs.append((nid, e.src_port))
                leaving.append((outs.index((nid, e.src_port)), e.dst, e.dst_port))
        if not edges:
            outs.append((nid, 0))
    if not sources:
        raise ProjectError("nothing enters the selection: a block needs an input", "selection")
    inner = type(graph)(blocks=graph.blocks)
    input_ids = []
    for k, (src, sp) in enumerate(sources):
        iid = "x" if len(sources) == 1 else f"x{k + 1}"
        while iid in inside:
            iid = "_" + iid
        shape = shapes.get(src)
        if shape is None or sp >= len(shape):
            raise ProjectError(f"the shape {quote(src)} gives the selection is unknown",
                               "selection")
        inner.add_node("Input", {"shape": list(shape[sp])}, id=iid)
        input_ids.append(iid)
    for nid in chosen:
        n = graph.nodes[nid]
        inner.add_node(n.type, dict(n.params), id=nid, trainable=n.trainable, shares=n.shares)
    for nid in chosen:
        for e in graph.in_edges(nid):
            if e.src in inside:
                inner.connect(e.src, e.src_port, nid, e.dst_port)
            else:
                inner.connect(input_ids[sources.index((e.src, e.src_port))], 0, nid, e.dst_port)
    spec = {}
    for pname, targets in (promote or {}).items():
        texts = [t.text() if isinstance(t, Target) else t for t in targets]
        first = Target.parse(texts[0], f"params.{pname}") if texts else None
        value = graph.nodes[first.node].params.get(first.param) if first and \
            first.node in inside else None
        if first is not None and first.times != 1 and isinstance(value, (int, float)):
            value = value / first.times
            value = int(round(value)) if isinstance(graph.nodes[first.node].params.get(
                first.param), int) else value
        decl = next((q for q in graph.nodes[first.node].layer.params if q.name == first.param),
                    None) if first and first.node in inside else None
        spec[pname] = {"default": decl.to_json(value) if decl else value, "sets": texts}
    block = define(name, inner, input_ids, [[n, p] for n, p in outs], spec, help, "block")
    values = block.inner_params({p.name: p.default for p, _ in block.promoted})
    for p, targets in block.promoted:  # the block as made computes what the selection did
        for t in targets:
            now, made = graph.nodes[t.node].params[t.param], values[t.node][t.param]
            if now != made:
                raise ProjectError(f"{t.node}.{t.param} is {now}, not {made}: a block "
                                   f"parameter ({p.name} = {p.default}) sets the same value, "
                                   "times its factor, everywhere; leave it out of "
                                   f"{p.name}", f"params.{p.name}")
    instance = instance or graph.new_id(name)
    params = {p.name: p.default for p, _ in block.promoted}
    if block.chains:
        params["repeat"] = 1
    return MadeBlock(block, instance, params, chosen, sources, leaving)


class Inlined:
    """What expanding an instance in place does: the nodes it adds (id, type, params,
    trainable), their wires, and the weight keys that change."""

    def __init__(self, instance, nodes, edges, renamed, shares=None):
        self.instance, self.nodes, self.edges, self.renamed = instance, nodes, edges, renamed
        self.shares = dict(shares or {})  # {added node: the added node whose weights it uses}

    def weights_renamed(self):
        return self.renamed


def inline_plan(graph, nid):
    """Inlined for instance `nid` of `graph`: its layers (blocks used inside stay blocks) as
    nodes of the graph with their inner ids (a fresh id where one is taken), wired as the
    instance was; the graph is not changed."""
    node = graph.nodes[nid]
    block = node.layer
    if not isinstance(block, BlockType):
        raise GraphError(f"{quote(nid)} is not a block", node=nid)
    work = type(graph)(blocks=graph.blocks)
    ins = graph.in_edges(nid)
    if len(ins) != len(block.input_ids):
        raise GraphError(f"{quote(nid)}: connect its inputs first", node=nid)
    partner = node.shares or next(iter(graph.sharers(nid)), None)
    if partner is not None:  # its layers would share another instance's, which stays one node
        raise GraphError(f"{quote(nid)} shares its weights with {quote(partner)}: share no "
                         "weights first", node=nid)
    holders = []
    for k, e in enumerate(ins):
        hid = f"{COPY}in{k}"
        work.add_node("Input", {"shape": [1]}, id=hid)
        holders.append((hid, 0))
    outs = block.expand(work, "", holders, node.params, node.trainable, deep=False)
    ids, taken, counters = {}, set(), {}
    for wid, w in work.nodes.items():
        if wid.startswith(COPY + "in"):
            continue
        base = wid.rsplit(SEP, 1)[-1]
        new = base if base not in graph.nodes and base not in taken else \
            graph.new_id(w.type, taken=taken, counters=counters)
        ids[wid] = new
        taken.add(new)
    nodes = [(ids[w], work.nodes[w].type, dict(work.nodes[w].params), work.nodes[w].trainable)
             for w in work.nodes if w in ids]
    src_of = {(f"{COPY}in{k}", 0): (e.src, e.src_port) for k, e in enumerate(ins)}
    edges = []
    for e in work.edges:
        src = src_of.get((e.src, e.src_port), (ids.get(e.src), e.src_port))
        edges.append((src[0], src[1], ids[e.dst], e.dst_port))
    for e in graph.out_edges(nid):
        o = outs[e.src_port]
        src = src_of.get(o, (ids.get(o[0]), o[1]))
        edges.append((src[0], src[1], e.dst, e.dst_port))
    renamed = {f"{nid}{SEP}{w}/": f"{ids[w]}/" for w in ids}
    shares = {ids[w]: ids[work.nodes[w].shares] for w in ids
              if work.nodes[w].shares in ids}
    return Inlined(nid, nodes, edges, renamed, shares)


def rename_weights(weights, renamed):
    """`weights` ({key: array}) with each key starting with an old prefix of `renamed` ({old
    prefix: new}) starting with the new one instead."""
    if weights is None:
        return None
    out = {}
    for k, v in weights.items():
        for old, new in renamed.items():
            if k.startswith(old):
                k = new + k[len(old):]
                break
        out[k] = v
    return out


def _downstream(graph, nid):
    """The nodes `nid`'s output reaches."""
    seen, stack = set(), [nid]
    while stack:
        for e in graph.out_edges(stack.pop()):
            if e.dst not in seen:
                seen.add(e.dst)
                stack.append(e.dst)
    return seen


def redefined(block, graph):
    """Block type `block` as its graph was edited into `graph` (the editor's Open Block), and
    where its ports went: (BlockType, {old input port: new port or None}, {old output port:
    new port or None}). Each input it had that is still an Input keeps its port, a removed
    one's port going to the first new Input (others after the last); each output it had
    keeps its port (a layer added after it: its new end takes the port), new ends after the
    last. The parameters that still set something stay (a default from the value its first
    target has now). ProjectError where that is no block, with the reason (checked as a
    file's block is)."""
    new_inputs = [nid for nid, n in graph.nodes.items()
                  if n.layer.is_input and nid not in block.input_ids]
    slots = []
    for i in block.input_ids:
        alive = i in graph.nodes and graph.nodes[i].layer.is_input
        slots.append(i if alive else (new_inputs.pop(0) if new_inputs else None))
    slots += new_inputs
    inputs = [s for s in slots if s is not None]
    in_moves = {k: (inputs.index(s) if s is not None and s == block.input_ids[k] else None)
                for k, s in enumerate(slots[:len(block.input_ids)])}
    feeding = {e.src for e in graph.edges}
    fed_before = {e.src for e in block.graph.edges}
    ends = [nid for nid, n in graph.nodes.items() if nid not in feeding and not n.layer.is_input]
    slots, kept_as = [], {}
    for k, (n, p) in enumerate(block.output_refs):
        alive = n in graph.nodes and not graph.nodes[n].layer.is_input and \
            p < len(graph.nodes[n].layer.output_names(graph.nodes[n].params))
        if alive and n in feeding and n not in fed_before:  # a layer added after it: the
            below = _downstream(graph, n)                  # output moves to the new end
            ref = next(((e, 0) for e in ends if e in below and (e, 0) not in slots), None)
        else:
            ref = (n, p) if alive and (n, p) not in slots else None
        slots.append(ref)
        if ref is not None:
            kept_as[k] = ref
    slots += [(nid, 0) for nid in ends if all(r is None or r[0] != nid for r in slots)]
    refs = [r for r in slots if r is not None]
    out_moves = {k: (refs.index(kept_as[k]) if k in kept_as else None)
                 for k in range(len(block.output_refs))}
    spec = {}
    for p, targets in block.promoted:
        kept = [t for t in targets if t.node in graph.nodes
                and any(q.name == t.param for q in graph.nodes[t.node].layer.params)]
        if not kept:
            continue
        first = kept[0]
        value = graph.nodes[first.node].params.get(first.param)
        decl = next(q for q in graph.nodes[first.node].layer.params if q.name == first.param)
        if first.times != 1 and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = value / first.times
            value = int(round(value)) if isinstance(decl, Int) else value
        spec[p.name] = {"default": decl.to_json(value), "sets": [t.text() for t in kept]}
    help = "" if block.help.startswith("Block of ") else block.help
    return (define(block.type_id, graph, inputs, [[n, p] for n, p in refs], spec, help,
                   block.type_id), in_moves, out_moves)
