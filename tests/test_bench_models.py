"""bench/models.py's models: each Layerloom graph is valid, and its output shape and trainable
parameter count are those of the PyTorch model it is timed against (so both sides train the
same architecture). No timing."""
import importlib.util
import math
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import models  # noqa: E402 (bench/ is not installed)

torch = pytest.importorskip("torch")


def trainable_count(graph):
    shapes, problems = graph.infer_shapes()
    assert not problems
    total = 0
    for nid in graph.topo_order():
        node = graph.nodes[nid]
        if node.layer.is_input:
            continue
        ins = [shapes[e.src][e.src_port]
               for e in sorted(graph.in_edges(nid), key=lambda e: e.dst_port)]
        total += sum(math.prod(w.shape) for w in node.layer.weights(node.params, ins)
                     if w.trainable)
    return total


def check_same_model(name, graph, module):
    assert graph.validate() == []
    (out,) = graph.outputs()
    shapes, _ = graph.infer_shapes()
    per_sample, axes = models.MODELS[name]
    (inp,) = graph.inputs()
    assert tuple(shapes[inp][0]) == per_sample
    module.eval()
    with torch.no_grad():
        y = module(torch.zeros((2,) + tuple(per_sample[a] for a in axes)))
    assert tuple(y.shape[1:]) == tuple(shapes[out][0]) == (models.CLASSES,)
    assert graph.nodes[out].params["activation"] == "softmax"
    assert trainable_count(graph) == sum(p.numel() for p in module.parameters())


def test_transformer_graph_is_the_torch_encoder():
    g = models.transformer_graph()
    types = [g.nodes[n].type for n in g.topo_order()]
    assert types.count("MultiHeadAttention") == 2 and types.count("LayerNormalization") == 4
    check_same_model("transformer", g, models.torch_transformer(torch))


def test_resnet_graph_is_the_torch_resnet():
    g = models.resnet_graph()
    types = [g.nodes[n].type for n in g.topo_order()]
    assert types.count("Add") == 6 and types.count("BatchNormalization") == 15
    check_same_model("resnet", g, models.torch_resnet(torch))


def test_mobilenet_from_keras_is_torchvisions(tmp_path):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("keras")
    if importlib.util.find_spec("torchvision") is None:  # its import may fail: no importorskip
        pytest.skip("torchvision is not installed")
    path = models.keras_mobilenet_file(str(tmp_path / "mobilenet_v2.keras"))
    g, weights = models.mobilenet_graph(path)
    assert weights
    check_same_model("mobilenet_v2", g, models.torch_mobilenet(torch))
