"""What a graph's structure implies: per-node output shapes, the problems each naming its node,
and parameter counts. Computed once per graph version (Graph.analysis()) and read by every view
(canvas, inspector, summary, Problems list) and by the model, so none of them recomputes it or
guesses at a half-built graph on its own."""
import dataclasses
import functools
from math import prod


@dataclasses.dataclass(frozen=True)
class ParamCount:
    total: int
    trainable: int


@dataclasses.dataclass(frozen=True)
class Analysis:
    version: int
    shapes: dict  # node id -> [per-sample output shape per port]; absent: not known
    # each problem a GraphError with its kind and fields, the facts a fix reads (core/fixes.py)
    structure: tuple  # of the wiring: "cycle", "no_input", "no_output", "unconnected_input",
    # "input_gap", "too_few_inputs"
    shape_problems: tuple  # "shape_mismatch", "missing_output_port": on the node at fault;
    # "shared_weights": a node using another's weights that its inputs need other shapes of
    params: dict  # node id -> ParamCount, for the nodes whose shapes are known (a node using
    # another's weights: 0, its owner's counted once)

    @property
    def problems(self):
        """Every problem: structure first, then shapes."""
        return list(self.structure) + list(self.shape_problems)

    def node_problems(self, node_id):
        """The messages of the problems placed on node `node_id`."""
        return list(self._by_node.get(node_id, ()))

    @functools.cached_property
    def _by_node(self):
        """{node id: messages}: views ask for every node's problems, which must not walk
        every problem for each node."""
        out = {}
        for p in self.problems:
            if getattr(p, "node", None) is not None:
                out.setdefault(p.node, []).append(p.message)
        return out

    def total_params(self):
        return ParamCount(sum(c.total for c in self.params.values()),
                          sum(c.trainable for c in self.params.values()))


def in_shapes(graph, shapes, node_id):
    """The shapes arriving at a node's inputs, in port order (None where one is unknown)."""
    out = []
    for e in graph.in_edges(node_id):
        s = shapes.get(e.src)
        out.append(s[e.src_port] if s is not None and e.src_port < len(s) else None)
    return out


def analyse(graph, version):
    shapes, shape_problems = graph.compute_shapes()
    structure = tuple(graph.problems())
    params = {}
    for nid, node in graph.nodes.items():
        if nid not in shapes:
            continue  # a node whose own shape is unknown has no weight shapes either
        if node.shares is not None:  # the owner's weights: counted once, on the owner
            params[nid] = ParamCount(0, 0)
            continue
        weights = node.weights(in_shapes(graph, shapes, nid))  # a frozen node's: none trainable
        params[nid] = ParamCount(sum(int(prod(w.shape)) for w in weights),
                                 sum(int(prod(w.shape)) for w in weights if w.trainable))
    bad = {p.node for p in structure if p.kind == "shared_weights"}
    shape_problems = list(shape_problems) + shared_weight_problems(graph, shapes, bad)
    return Analysis(version, shapes, structure, tuple(shape_problems), params)


def weight_shapes(graph, shapes, nid):
    """[(name, shape)] of node `nid`'s layer's weights for the shapes arriving (None where one
    is unknown)."""
    node = graph.nodes[nid]
    if nid not in shapes:
        return None
    ins = in_shapes(graph, shapes, nid)
    if any(s is None for s in ins):
        return None
    return [(w.name, tuple(w.shape)) for w in node.layer.weights(node.params, ins)]


def shared_weight_problems(graph, shapes, skip=()):
    """A "shared_weights" problem on each node using another's weights whose inputs would need
    weights of other shapes than its owner's (a Dense fed 8 features sharing one fed 4)."""
    out = []
    for nid, node in graph.nodes.items():
        if node.shares is None or nid in skip or node.shares not in graph.nodes:
            continue
        mine, theirs = weight_shapes(graph, shapes, nid), weight_shapes(graph, shapes,
                                                                         node.shares)
        if mine is None or theirs is None or mine == theirs:
            continue
        diff = next(((a, b) for a, b in zip(mine, theirs) if a != b), None)
        what = (f"its {diff[0][0]} would be {diff[0][1]}, {node.shares!r}'s is {diff[1][1]}"
                if diff else "its weights differ in number")
        out.append(graph.node_error(
            f"cannot use the weights of {node.shares!r} for the shapes it gets: {what}; feed "
            "it inputs of the same shapes, or share no weights", nid, "shared_weights",
            shares=node.shares))
    return out
