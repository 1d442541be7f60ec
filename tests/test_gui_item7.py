"""Issue 31, item 7's leftovers and a newcomer trial's findings: one shape format on node faces
and wires, node text within the node, confusion-matrix numbers within their cells, the Training
panel while a run goes, the residual skip offered first. Screenshots under $L7_SHOTS (if set)."""
import os

import pytest

from layerloom.core import fixes
from layerloom.core.graph import Graph

SHOTS = os.environ.get("L7_SHOTS")


def shot(widget, name):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        widget.grab().save(os.path.join(SHOTS, name))


def chain(*layers):
    g = Graph()
    prev = None
    for nid, typ, params in layers:
        g.add_node(typ, params, id=nid)
        if prev is not None:
            g.connect(prev, 0, nid, 0)
        prev = nid
    return g


# -- j: the residual skip first --------------------------------------------------------------
def test_an_add_missing_its_skip_is_offered_the_node_the_block_spans_first():
    # Input -> conv2d_1 -> BN -> conv2d_2 -> Add(conv2d_2, ?): BN is nearer the Add and of
    # the same shape, but it is conv2d_2's own input; the skip spans the block from conv2d_1
    g = chain(("x", "Input", {"shape": [28, 28, 1]}),
              ("conv2d_1", "Conv2D", {"filters": 8, "kernel_size": 3, "padding": "same"}),
              ("batchnormalization_1", "BatchNormalization", {}),
              ("conv2d_2", "Conv2D", {"filters": 8, "kernel_size": 3, "padding": "same"}),
              ("add", "Add", {}), ("flat", "Flatten", {}), ("out", "Dense", {"units": 10}))
    pos = {n: (0, 100 * k) for k, n in enumerate(
        ["x", "conv2d_1", "batchnormalization_1", "conv2d_2", "add", "flat", "out"])}
    (problem,) = [p for p in g.validate() if p.node == "add"]
    fs = fixes.fixes_for(g, problem, pos)
    labels = [f.label for f in fs]
    assert labels[0] == "Connect 'conv2d_1' to 'add'", labels
    assert "Connect 'batchnormalization_1' to 'add'" in labels  # still offered, second
    h = fixes.copy_graph(g)
    fixes.apply(h, fs[0].steps)
    assert h.validate() == []
