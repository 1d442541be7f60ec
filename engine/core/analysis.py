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
    shape_problems: tuple  # "shape_mismatch", "missing_output_port": on the node at fault
    params: dict  # node id -> ParamCount, for the nodes whose shapes are known

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
    params = {}
    for nid, node in graph.nodes.items():
        if nid not in shapes:
            continue  # a node whose own shape is unknown has no weight shapes either
        weights = node.weights(in_shapes(graph, shapes, nid))  # a frozen node's: none trainable
        params[nid] = ParamCount(sum(int(prod(w.shape)) for w in weights),
                                 sum(int(prod(w.shape)) for w in weights if w.trainable))
    return Analysis(version, shapes, tuple(graph.problems()), tuple(shape_problems), params)
