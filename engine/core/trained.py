"""Which trained weights still fit a graph after it was edited, layer by layer, as Keras'
`load_weights(skip_mismatch=True)` decides: a layer whose weights have the shapes the graph now
declares keeps them; one whose shapes changed, or that is gone, loses them, with the reason; a
layer that is new has none yet. One stray node no longer makes every weight unusable."""
from dataclasses import dataclass, field

import numpy as np


@dataclass
class WeightsFit:
    kept: dict = field(default_factory=dict)      # {"node/name": array} that fit the graph
    dropped: dict = field(default_factory=dict)   # {"node/name": why it no longer fits}
    missing: list = field(default_factory=list)   # "node/name" the graph declares, untrained
    unknown: list = field(default_factory=list)   # nodes whose shapes are unknown (kept as is)

    @property
    def problem(self):
        """None when the weights fit the graph exactly (a compiled model takes them), else the
        first reason: a node whose shapes are unknown, a weight missing, changed or gone."""
        if self.unknown:
            return f"the shapes at {self.unknown[0]!r} are unknown"
        if self.missing:
            return f"{self.missing[0]!r} was not trained"
        if self.dropped:
            return next(iter(self.dropped.values()))
        return None

    def dropped_layers(self):
        """The node ids that lose their weights, in the order met."""
        return list(dict.fromkeys(k.split("/", 1)[0] for k in self.dropped))

    def dropped_names(self):
        """What is dropped, for a message: a node that loses every weight it had by its id,
        else each weight it loses ("dense/kernel": its bias still fits and is kept)."""
        keeping = {k.split("/", 1)[0] for k in self.kept}
        lost = {}
        for k in self.dropped:
            lost.setdefault(k.split("/", 1)[0], []).append(k)
        return [name for nid, keys in lost.items()
                for name in (keys if nid in keeping else [nid])]

    def missing_layers(self):
        return list(dict.fromkeys(k.split("/", 1)[0] for k in self.missing))


def fit_weights(graph, weights):
    """A WeightsFit of trained `weights` ({"node/name": array}) on `graph` as it is now. The
    weights of a node whose shapes are unknown (a wire being redrawn) are kept unchecked: they
    may fit again when it is connected."""
    from layerloom.core.analysis import in_shapes
    a = graph.analysis()
    out = WeightsFit()
    declared = set()
    by_node = {}  # one pass over the weights, not one per node of unknown shape
    for k in weights:
        by_node.setdefault(k.split("/", 1)[0], []).append(k)
    for nid, node in graph.nodes.items():
        if node.shares is not None:  # uses another node's weights: none of its own
            continue
        if nid not in a.shapes:  # cannot run; what it had is kept for when it can
            out.unknown.append(nid)
            mine = by_node.get(nid, [])
            out.kept.update((k, weights[k]) for k in mine)
            declared.update(mine)
            continue
        for spec in node.layer.weights(node.params, in_shapes(graph, a.shapes, nid)):
            key = f"{nid}/{spec.name}"
            declared.add(key)
            if key not in weights:
                out.missing.append(key)
            elif tuple(np.shape(weights[key])) != tuple(spec.shape):
                out.dropped[key] = (f"{key!r} is {tuple(spec.shape)} now, trained as "
                                    f"{tuple(np.shape(weights[key]))}")
            else:
                out.kept[key] = weights[key]
    for key in sorted(set(weights) - declared):
        out.dropped[key] = f"{key!r} was trained but the graph has no such weight now"
    return out
