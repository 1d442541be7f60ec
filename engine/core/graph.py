"""The graph model: nodes (id, layer type, params) and edges (output port -> input port).

Pure Python. Views subscribe to the events; every edit goes through these methods (`nodes` and
`edges` are read-only views). The graph may hold an incomplete network (the editor needs that);
`analysis()` says what its structure implies (shapes, problems each naming the node, parameter
counts), computed once per version of the graph.
"""
from collections import deque
from types import MappingProxyType

from layerloom.core import analysis, blocks, host
from layerloom.core.errors import GraphError, ParamError, quote
from layerloom.core.events import Event
from layerloom.core.params import validate_params
from layerloom.core.limits import MAX_NODES, too_many_nodes  # noqa: F401 (read from here)
from layerloom.core.registry import ShapeError, WeightSpec, get_layer
from layerloom.core.sharing import SharedWeights

MAX_VARIADIC_INPUTS = 64  # inputs of a merge layer (Add, Concatenate, ...): a bound a file meets

class Node:
    """A layer of the graph. trainable: False freezes it (fine-tuning, Keras' `layer.trainable
    = False`): its weights keep their values in training, and a BatchNormalization runs in
    inference mode (its moving statistics, not updated), as Keras does. shares: the id of
    the node whose weights it uses instead of its own (Keras' layer called twice; None: its
    own weights); Graph.set_shares checks it, problems() says where it no longer holds."""
    __slots__ = ("id", "type", "params", "trainable", "layer", "shares")

    def __init__(self, id, type, params, trainable=True, layer=None, shares=None):
        self.id, self.type, self.params = id, type, params
        self.trainable = trainable
        self.shares = shares
        # its declaration: the registry's, or the graph's block type (core/blocks.py)
        self.layer = layer if layer is not None else get_layer(type)

    def weights(self, in_shapes):
        """The layer's WeightSpecs for these input shapes; a frozen node's all non-trainable."""
        specs = self.layer.weights(self.params, in_shapes)
        if self.trainable:
            return specs
        return [WeightSpec(s.name, s.shape, s.init, s.fan_in, s.fan_out, False, s.regularizer)
                for s in specs]

    def __repr__(self):
        return f"Node({self.id!r}, {self.type!r})"


class Edge:
    __slots__ = ("src", "src_port", "dst", "dst_port")

    def __init__(self, src, src_port, dst, dst_port):
        self.src, self.src_port, self.dst, self.dst_port = src, src_port, dst, dst_port

    def key(self):
        return (self.src, self.src_port, self.dst, self.dst_port)

    def __eq__(self, other):
        return isinstance(other, Edge) and self.key() == other.key()

    def __hash__(self):
        return hash(self.key())

    def __repr__(self):
        return f"Edge({self.src}:{self.src_port} -> {self.dst}:{self.dst_port})"


class Graph(SharedWeights):
    def __init__(self, blocks=None):
        # the block types its nodes may use, {name: core.blocks.BlockType}; shared, not
        # copied, by a graph made from this one (a fix's trial copy)
        self.blocks = {} if blocks is None else blocks
        self._nodes = {}      # id -> Node, insertion ordered
        self._edges = {}      # Edge -> None: a set in insertion order (removal by hash)
        # ({dst: [edges sorted by port]}, {src: {edge: None}}): kept up to date by connect and
        # disconnect. A node's inputs are a short list (at most MAX_VARIADIC_INPUTS); its
        # outputs may be thousands, so they are a dict as well.
        self._index = ({}, {})
        self._places = None  # (version, {id: index in the file order}) for place()
        self.version = 0  # counts the edits; what analysis() computed is for one version
        self._analysis = None
        self.node_added = Event("node_added")
        self.node_removed = Event("node_removed")
        self.edge_added = Event("edge_added")
        self.edge_removed = Event("edge_removed")
        self.params_changed = Event("params_changed")
        self.trainable_changed = Event("trainable_changed")
        self.shares_changed = Event("shares_changed")
        self.blocks_changed = Event("blocks_changed")

    @property
    def nodes(self):
        """{id: Node} in file order, read-only: edits go through the methods."""
        return MappingProxyType(self._nodes)

    @property
    def edges(self):
        return tuple(self._edges)

    def flat(self):
        """This graph with its block instances inlined (core/blocks.py flatten): what the
        engine compiles; itself where it has none."""
        return blocks.flatten(self)

    def layer_type(self, type_id):
        """The declaration of `type_id` here: one of the graph's block types, else the
        registry's layer; None when neither knows it."""
        found = self.blocks.get(type_id) if isinstance(type_id, str) else None
        return found if found is not None else get_layer(type_id)

    def define_block(self, block, params=None):
        """Add block type `block`, or replace the one of its name (an opened block edited):
        its instances then keep the values of the parameters it still has and take the
        defaults of new ones, or take `params` ({node id: params}: an undo putting back what
        they had). Returns {node id: params before} of the instances whose params changed."""
        self.blocks[block.type_id] = block
        for n in block.graph.nodes.values():  # the blocks it uses: this graph's
            if n.type in self.blocks and n.type != block.type_id:
                n.layer = self.blocks[n.type]
        for other in self.blocks.values():  # the blocks that use it run the new one too
            if other is block:
                continue
            other._shapes.clear()
            for n in other.graph.nodes.values():
                if n.type == block.type_id:
                    n.layer = block
        before, instances = {}, []
        for n in self._nodes.values():
            if n.type != block.type_id:
                continue
            n.layer = block
            instances.append((n, n.params))
            new = dict(params[n.id]) if params and n.id in params else {
                q.name: n.params.get(q.name, q.default) for q in block.params}
            if new != n.params:
                before[n.id], n.params = n.params, new
        self._edited()
        for n, old in instances:  # its ports and face may have changed with the type
            self.params_changed.emit(n, old)
        self.blocks_changed.emit(block.type_id)
        return before

    def remove_block(self, name):
        """Remove block type `name`, which no node may use."""
        used = [n.id for n in self._nodes.values() if n.type == name] + [
            b.type_id for b in self.blocks.values() if b.type_id != name and any(
                n.type == name for n in b.graph.nodes.values())]
        if used:
            raise GraphError(f"block {quote(name)} is used by {quote(used[0])}")
        self.blocks.pop(name, None)
        self._edited()
        self.blocks_changed.emit(name)

    # -- editing -----------------------------------------------------------------
    def _edited(self):
        self.version += 1

    def new_id(self, type_id, taken=(), counters=None):
        """The first free `<type>_<n>`, also avoiding the ids in `taken` (a paste in progress).
        `counters` ({base: n}, kept by a caller that asks for many ids while nothing is
        removed) says where to start looking, so that N ids cost N steps, not N**2."""
        base = type_id.lower()
        i = counters.get(base, 1) if counters is not None else 1
        while f"{base}_{i}" in self._nodes or f"{base}_{i}" in taken:
            i += 1
        if counters is not None:
            counters[base] = i + 1
        return f"{base}_{i}"

    def add_node(self, type_id, params=None, id=None, index=None, trainable=True, shares=None):
        """A new node, last in the file order or at position `index` (an undone deletion goes
        back to its place, which messages name); trainable=False: frozen. shares: the node
        whose weights it uses (a copy of a graph's, which the other node may follow in it:
        not checked here but by problems(); an edit goes through set_shares)."""
        layer = self.layer_type(type_id)
        if layer is None:
            raise GraphError(f"unknown layer type {quote(type_id)}")
        too_many = too_many_nodes(len(self._nodes) + 1)
        if too_many:  # its file would be refused when opened: the work could not be reopened
            raise GraphError(f"cannot add a node: the graph would have {too_many}")
        id = id or self.new_id(type_id)
        if not isinstance(id, str) or not id:
            raise GraphError(f"node id must be a non-empty string, got {quote(id)}")
        if id in self.nodes:
            raise GraphError(f"duplicate node id {quote(id)}")
        values, problems = validate_params(layer.params, params or {}, f"node {quote(id)}.params")
        if problems:
            raise problems[0]
        if not isinstance(trainable, bool):
            raise GraphError(f"trainable must be true or false, got {quote(trainable)}")
        if shares is not None and not isinstance(shares, str):
            raise GraphError(f"shares must be a node id, got {quote(shares)}")
        node = Node(id, type_id, values, trainable, layer, shares)
        if index is None or index >= len(self._nodes):
            self._nodes[id] = node
        else:
            items = list(self._nodes.items())
            items.insert(max(0, index), (id, node))
            self._nodes = dict(items)
        self._edited()
        self.node_added.emit(node)
        return node

    def remove_node(self, id):
        node = self.nodes[id]
        for e in self.in_edges(id) + [e for e in self.out_edges(id) if e.dst != id]:
            self.disconnect(e)
        del self._nodes[id]
        self._index[0].pop(id, None)
        self._index[1].pop(id, None)
        self._edited()
        self.node_removed.emit(node)
        return node

    def set_params(self, id, **changes):
        node = self.nodes[id]
        layer = node.layer
        decls = {p.name: p for p in layer.params}
        new = dict(node.params)
        for k, v in changes.items():
            if k not in decls:
                raise ParamError("unknown parameter", f"node {quote(id)}.params.{k}")
            new[k] = decls[k].validate(v, f"node {quote(id)}.params.{k}")
        old = node.params
        node.params = new
        self._edited()
        self.params_changed.emit(node, old)

    def set_trainable(self, id, trainable):
        """Freeze (False) or unfreeze (True) node `id`."""
        if not isinstance(trainable, bool):
            raise GraphError(f"trainable must be true or false, got {quote(trainable)}", node=id)
        node = self.nodes[id]
        if node.trainable == trainable:
            return
        node.trainable = trainable
        self._edited()
        self.trainable_changed.emit(node)

    def frozen(self):
        """The ids of the frozen nodes, in file order."""
        return [n.id for n in self._nodes.values() if not n.trainable]

    def _reached(self, id, after):
        """The ids of the nodes reached from `id` along its edges, forward (after) or back."""
        index, seen, stack = self._index[1 if after else 0], set(), [id]
        while stack:
            for e in index.get(stack.pop(), ()):
                other = e.dst if after else e.src
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        return seen

    def upstream(self, id):
        """The ids of the nodes `id` depends on (everything before it), in file order."""
        seen = self._reached(id, False)
        return [n for n in self._nodes if n in seen]

    def downstream(self, id):
        """The ids of the nodes `id`'s output reaches (everything after it), as a set."""
        return self._reached(id, True)

    def layers_before(self, id):
        """upstream(id) less the Inputs: what "freeze everything before this node" freezes."""
        return [n for n in self.upstream(id) if not self._nodes[n].layer.is_input]

    def check_connect(self, src, src_port, dst, dst_port, allow_cycle=False):
        """Raise GraphError with the reason an edge would be refused (its `end` names the end
        at fault). The file parser allows cycles here and reports them with the graph's other
        problems."""
        for nid, end in ((src, "from"), (dst, "to")):
            if nid not in self.nodes:
                raise GraphError(f"no node {quote(nid)} (dangling edge)", end=end)
        s_layer, d_layer = self.nodes[src].layer, self.nodes[dst].layer
        if not (0 <= src_port < len(s_layer.output_names(self.nodes[src].params))):
            raise GraphError(f"{quote(src)} ({s_layer.type_id}) has no output port {src_port}",
                             end="from")
        mx = d_layer.max_inputs()
        if dst_port < 0 or (mx is not None and dst_port >= mx):
            raise GraphError(f"{quote(dst)} ({d_layer.type_id}) has no input port {dst_port}"
                             + (f" (it has {mx})" if mx else " (it takes no inputs)"), end="to")
        if mx is None and dst_port >= MAX_VARIADIC_INPUTS:
            raise GraphError(f"{quote(dst)} ({d_layer.type_id}) has no input port {dst_port} (at "
                             f"most {MAX_VARIADIC_INPUTS} inputs)", end="to")
        if not allow_cycle and (src == dst or self._reaches(dst, src)):
            raise GraphError(f"connecting {quote(src)} to {quote(dst)} would make a cycle", end="to")
        for e in self.in_edges(dst):
            if e.dst_port == dst_port:
                raise GraphError(f"input {dst_port} of {quote(dst)} is already connected to "
                                 f"{quote(e.src)}", end="to")

    def connect(self, src, src_port, dst, dst_port, allow_cycle=False):
        """A new edge, refused with the reason (check_connect). allow_cycle: the file parser's
        case, which reports a cycle with the graph's other problems."""
        self.check_connect(src, src_port, dst, dst_port, allow_cycle)
        edge = Edge(src, src_port, dst, dst_port)
        ins, outs = self._index
        self._edges[edge] = None
        lst = ins.setdefault(dst, [])
        lst.append(edge)
        lst.sort(key=lambda e: e.dst_port)
        outs.setdefault(src, {})[edge] = None
        self._edited()
        self.edge_added.emit(edge)
        return edge

    def disconnect(self, edge):
        ins, outs = self._index
        del self._edges[edge]
        ins[edge.dst].remove(edge)
        del outs[edge.src][edge]
        self._edited()
        self.edge_removed.emit(edge)

    # -- queries -------------------------------------------------------------------
    def _indexes(self):
        """(incoming edges by node sorted by port, outgoing edges by node)."""
        # NOTE: indexed, not scanned: the editor asks for every node's inputs on each edit,
        # and a paste of N nodes connects N times (a rebuild per connect made it O(N^2)).
        return self._index

    def analysis(self):
        """Shapes, problems and parameter counts of the graph as it is (core/analysis.py):
        computed on the first call after an edit, then shared."""
        if self._analysis is None or self._analysis.version != self.version:
            self._analysis = analysis.analyse(self, self.version)
        return self._analysis

    def in_edges(self, id):
        return list(self._indexes()[0].get(id, ()))

    def out_edges(self, id):
        return list(self._indexes()[1].get(id, ()))

    def _reaches(self, a, b):
        """Is b reachable from a along edges?"""
        outs = self._indexes()[1]
        stack, seen = [a], set()
        while stack:
            n = stack.pop()
            if n == b:
                return True
            if n not in seen:
                seen.add(n)
                stack.extend(e.dst for e in outs.get(n, ()))
        return False

    def inputs(self):
        return [n.id for n in self.nodes.values() if n.layer.is_input]

    def outputs(self):
        """Output nodes: non-input nodes whose output feeds nothing, in insertion order."""
        used = {e.src for e in self.edges}
        return [n.id for n in self.nodes.values() if n.id not in used and not n.layer.is_input]

    def topo_order(self):
        """Node ids in a topological order (stable: insertion order breaks ties)."""
        indeg = {n: 0 for n in self.nodes}
        succ = {n: [] for n in self.nodes}
        for e in self.edges:
            if e.src in indeg and e.dst in indeg:
                indeg[e.dst] += 1
                succ[e.src].append(e.dst)
        ready = deque(n for n in self.nodes if indeg[n] == 0)
        order = []
        while ready:
            n = ready.popleft()
            order.append(n)
            for m in succ[n]:
                indeg[m] -= 1
                if indeg[m] == 0:
                    ready.append(m)
        if len(order) != len(self.nodes):
            done = set(order)
            cyc = [n for n in self.nodes if n not in done]
            raise GraphError("the graph has a cycle through " + ", ".join(repr(c) for c in cyc),
                             kind="cycle", fields={"nodes": cyc})
        return order

    def place(self, id):
        """Where node `id` is in the file: `graph.nodes[3] 'dense_1' (Dense)`. The file order's
        index is built once per graph version (problems() places one problem per node)."""
        if self._places is None or self._places[0] != self.version:
            self._places = (self.version, {n: i for i, n in enumerate(self._nodes)})
        return f"graph.nodes[{self._places[1][id]}] {quote(id)} ({self.nodes[id].type})"

    def node_error(self, message, id, kind=None, **fields):
        """A problem of node `id`, placed as in the file and carrying the id for the canvas;
        `kind` and `fields` (with the node's id as "node") say what it is as data."""
        return GraphError(message, self.place(id), node=id, kind=kind,
                          fields={"node": id, **fields})

    def cycle_problem(self):
        """The refusal of a cycle as a project file gets it (placed on graph.edges), or None.
        A pasted sub-graph is refused with it too."""
        try:
            self.topo_order()
        except GraphError as e:
            return GraphError(e.message, "graph.edges", kind=e.kind, fields=e.fields)
        return None

    def problems(self):
        """Structural problems, each a GraphError naming the node (not shapes)."""
        out = []
        cycle = self.cycle_problem()
        if cycle is not None:
            out.append(cycle)
        if not self.inputs():
            out.append(GraphError("the graph has no Input node", "graph.nodes", kind="no_input"))
        if self.nodes and not self.outputs():
            out.append(GraphError("the graph has no output (a node whose output feeds nothing)",
                                  "graph.nodes", kind="no_output"))
        for id, node in self.nodes.items():
            layer = node.layer
            ports = sorted(e.dst_port for e in self.in_edges(id))
            need = layer.min_inputs()
            if layer.max_inputs() is None:  # variadic: ports must be 0..k-1, k >= min
                k = len(ports)
                if ports != list(range(k)):
                    used = set(ports)  # the first gap is below k (sizes come from the file)
                    missing = [next(p for p in range(k + 1) if p not in used)]
                    out.append(self.node_error(f"input port {missing[0]} is not connected "
                                               f"(inputs must use ports 0..{k - 1} without "
                                               "gaps)", id, "input_gap", port=missing[0]))
                elif k < need:
                    out.append(self.node_error(f"needs at least {need} inputs, has {k}", id,
                                               "too_few_inputs", need=need, have=k))
            else:
                for p in range(need):
                    if p not in ports:
                        name = layer.input_ports()[p]
                        out.append(self.node_error(f"input {p} ({name}) is not connected", id,
                                                   "unconnected_input", port=p, port_name=name))
        out.extend(host.problems(self))  # host layers (text) where they may stand
        out.extend(self._block_problems())
        out.extend(self.share_problems())
        return out

    def _block_problems(self):
        """Block instances the engine could not inline: one with several outputs ending the
        model (its loss would have no one node to name), and a node whose id is a path inside
        an instance (`res/conv_1`, the id an inlined layer takes)."""
        out, instances = [], set()
        for nid, node in self._nodes.items():
            if isinstance(node.layer, blocks.BlockType):
                instances.add(nid)
                if len(node.layer.output_refs) > 1 and not self._index[1].get(nid):
                    out.append(self.node_error(
                        f"block {node.type} has {len(node.layer.output_refs)} outputs and ends "
                        "the model: add a layer after each output", nid, "block_output"))
        for nid in self._nodes:
            head = nid.split(blocks.SEP, 1)[0] if blocks.SEP in nid else None
            if head in instances:
                out.append(self.node_error(
                    f"its id is a path inside the block node {quote(head)} (its layers take "
                    f"ids {quote(head + blocks.SEP + '...')} when it runs): rename it", nid,
                    "block_id_clash"))
        return out

    def infer_shapes(self):
        """Per-sample output shapes: (shapes: {id: [shape, ...]}, problems), of analysis()."""
        a = self.analysis()
        return dict(a.shapes), list(a.shape_problems)

    def compute_shapes(self):
        """infer_shapes, computed afresh (analysis() calls it once per version).

        A node whose inputs are missing or wrong gets no shape, and nothing downstream of it is
        blamed: only the node that causes a problem is reported."""
        shapes, problems = {}, []
        try:
            order = self.topo_order()
        except GraphError:
            return shapes, problems  # reported by problems()
        for id in order:
            node = self.nodes[id]
            layer = node.layer
            edges = self.in_edges(id)
            if len(edges) < layer.min_inputs() or any(e.src not in shapes for e in edges):
                continue
            ports = [e.dst_port for e in edges]
            if ports != list(range(len(ports))):
                continue
            in_shapes = []
            bad = [e for e in edges if e.src_port >= len(shapes[e.src])]
            if bad:
                problems.append(self.node_error(f"{quote(bad[0].src)} has no output port "
                                                f"{bad[0].src_port} with its current parameters",
                                                id, "missing_output_port", src=bad[0].src,
                                                src_port=bad[0].src_port))
                continue
            for e in edges:
                in_shapes.append(shapes[e.src][e.src_port])
            try:
                shapes[id] = [tuple(s) for s in layer.output_shapes(node.params, in_shapes)]
            except ShapeError as e:
                problems.append(self.node_error(e.message, id, "shape_mismatch",
                                                in_shapes=in_shapes))
        return shapes, problems

    def validate(self):
        """All problems: structure first, then shapes."""
        return self.analysis().problems


def fmt_shape(shape):
    """Keras style: (None, 28, 28, 1)."""
    return "(" + ", ".join(["None"] + [str(d) for d in shape]) + ")"


def fmt_dims(shape):
    """The short form the editor shows on node faces and wires: 28x28x1 ("scalar" for ())."""
    return "x".join(str(d) for d in shape) or "scalar"


def fmt_count(n):
    """A count in at most four characters and a unit: 320, 1.2k, 100k, 2.5M, 785G."""
    value, unit = float(n), ""
    for bigger in ("k", "M", "G", "T"):
        shown = round(value, 1 if abs(value) < 9.95 else 0)
        if abs(shown) < 1000:
            break
        value, unit = value / 1000, bigger
    text = f"{value:.1f}" if abs(value) < 9.95 and unit else f"{value:.0f}"
    return text.removesuffix(".0") + unit
