"""Editing with blocks (core/blocks.py declares and inlines them): what Make Block does to a
selection (MadeBlock, the parameters worth promoting), what Expand does to an instance
(Inlined), an opened block's edited graph as its new type with where its ports went
(redefined), and the trained weights' keys that follow (rename_weights). Each is a plan the
editor applies as an undoable command (app/editing/block_commands.py); the graph is not
changed here."""
import json

from layerloom.core.blocks import COPY, SEP, BlockType, Target, check_name, define
from layerloom.core.errors import GraphError, ProjectError, quote
from layerloom.core.params import Int


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
            below = graph.downstream(n)                  # output moves to the new end
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
