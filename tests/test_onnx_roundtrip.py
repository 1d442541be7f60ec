"""Layerloom's own ONNX export read back by its ONNX import (issue 26, item 6): every bundled
example (engine/gallery.py), with random weights and, where its dataset normalises, fitted
statistics made up for it (no data is read: the graph alone is exported), comes back as the same
graph (node ids, layer types, parameters, edges, shapes) whose predictions on the same raw inputs
are within 1e-6 of the original's. The normalisation comes back as the project's fitted
statistics, not as layers."""
import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from layerloom import gallery  # noqa: E402
from layerloom.api import Model  # noqa: E402
from layerloom.data.prepare import default_normalization  # noqa: E402
from layerloom.interop import onnx_export, onnx_import  # noqa: E402
from layerloom.project import loom  # noqa: E402

TOL = 1e-6
EXAMPLES = sorted(e.key for e in gallery.examples())


def _weights(graph, rng):
    """Random values for every weight (biases too, so that a lost bias shows)."""
    from layerloom.core.graph import Graph  # noqa: F401 - the graph's own weight declarations
    shapes = graph.analysis().shapes
    out = {}
    for nid, node in graph.nodes.items():
        in_shapes = [shapes[e.src][e.src_port] for e in graph.in_edges(nid)]
        for spec in node.layer.weights(node.params, in_shapes):
            a = rng.normal(scale=0.3, size=spec.shape)
            out[f"{nid}/{spec.name}"] = (np.abs(a) + 0.5 if spec.name.endswith(
                "moving_variance") else a).astype(np.float32)  # a block's: bn_1/moving_...
    return out


def _fitted(project, rng):
    """Statistics as training would have fitted them, per Input array (scale: 1/255)."""
    d = project.dataset or {}
    kind = d.get("normalize") or default_normalization(d)
    if kind == "none":
        return None
    shapes = project.graph.analysis().shapes
    names = d.get("inputs") or {project.graph.inputs()[0]: "x"}
    stats = {}
    for nid, name in names.items():
        n = shapes[nid][0][-1]
        stats[name] = ({"kind": kind, "shift": [0.0], "scale": [1 / 255]} if kind == "scale"
                       else {"kind": kind, "shift": rng.normal(size=n).tolist(),
                             "scale": (rng.random(n) + 0.5).tolist()})
    return {**(d.get("fitted") or {}), "normalization": stats}


def _raw_inputs(project, rng, rows=7):
    """Rows as the model would take them: 0..255 where it scales them, else around 0."""
    shapes = project.graph.analysis().shapes
    d = project.dataset or {}
    scaled = (d.get("normalize") or default_normalization(d)) == "scale"
    return {nid: (rng.random((rows, *shapes[nid][0])) * 255 if scaled else
                  rng.normal(size=(rows, *shapes[nid][0]))).astype(np.float32)
            for nid in project.graph.inputs()}


def _described(graph):
    shapes = graph.analysis().shapes
    nodes = [(nid, n.type, dict(n.params), shapes[nid]) for nid, n in graph.nodes.items()]
    edges = sorted((e.src, e.src_port, e.dst, e.dst_port) for e in graph.edges)
    return sorted(nodes, key=lambda n: n[0]), edges


def _layers(graph):
    """The layers with their parameters and shapes, and the number of wires, ids aside; an
    Identity (a block instance's output in the inlined graph) counts as its wire."""
    shapes = graph.analysis().shapes
    plain_relu = {"max_value": None, "negative_slope": 0.0, "threshold": 0.0}

    def kind(n):  # ONNX's Relu reads back as Activation relu, the same computation
        if n.type == "ReLU" and n.params == plain_relu:
            return "Activation", {"activation": "relu"}
        # what an inference graph does not hold: a layer's seed, attention's dropout; a
        # float32 epsilon read back as 9.999999747e-06
        params = {k: float(f"{v:.6g}") if isinstance(v, float) else v
                  for k, v in n.params.items() if k != "seed"
                  and not (n.type == "MultiHeadAttention" and k == "dropout")}
        return n.type, params
    nodes = sorted((*(lambda t, p: (t, json.dumps(p, sort_keys=True, default=str)))(*kind(n)),
                    shapes[nid]) for nid, n in graph.nodes.items() if n.type != "Identity")
    identities = sum(n.type == "Identity" for n in graph.nodes.values())
    return nodes, len(graph.edges) - identities


def _round_trip(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    project = loom.load(gallery.folder() + f"/{name}.loom")
    fitted = _fitted(project, rng)
    if fitted:
        project.dataset = {**project.dataset, "fitted": fitted}
    weights = _weights(project.graph, rng)
    model = onnx_export.to_onnx(project, weights)
    back = onnx_import.from_model(onnx.load_from_string(model.SerializeToString()), name)
    return project, weights, back


@pytest.mark.parametrize("name", EXAMPLES)
def test_an_exported_example_imports_back_as_the_same_graph(name):
    project, _, back = _round_trip(name)
    if project.graph.blocks:  # ONNX holds the layers inlined, named by their paths
        assert _layers(back.project.graph) == _layers(project.graph.flat())
        assert back.project.graph.inputs() == project.graph.inputs()
        return
    assert _described(back.project.graph) == _described(project.graph)
    assert back.project.graph.inputs() == project.graph.inputs()
    assert back.project.graph.outputs() == project.graph.outputs()


@pytest.mark.parametrize("name", EXAMPLES)
def test_an_exported_example_imports_back_with_the_same_outputs(name):
    project, weights, back = _round_trip(name)
    x = _raw_inputs(project, np.random.default_rng(7))
    want = Model(project, weights).predict(x)
    got = Model(back.project, back.weights).predict(x)
    want = want if isinstance(want, dict) else {project.graph.outputs()[0]: want}
    got = got if isinstance(got, dict) else {back.project.graph.outputs()[0]: got}
    assert set(got) == set(want)
    for k in want:
        assert got[k].shape == want[k].shape
        assert float(np.abs(got[k] - want[k]).max()) <= TOL, k


def test_the_normalisation_comes_back_as_fitted_statistics():
    project, _, back = _round_trip("wine_csv")
    d = back.project.dataset
    assert d["normalize"] == "standardize" and d["inputs"] == {"measurements": "measurements"}
    want = project.dataset["fitted"]["normalization"]["x"]
    got = d["fitted"]["normalization"]["measurements"]
    assert np.allclose(got["shift"], want["shift"]) and np.allclose(got["scale"], want["scale"])


@pytest.mark.parametrize("kind", ["minmax", "standardize"])
def test_the_normalisation_keeps_its_kind(kind):
    """A minmax normalisation came back labelled standardize, which predict then refused (the
    statistics' kind and the dataset's differ)."""
    rng = np.random.default_rng(5)
    project = loom.load(gallery.folder() + "/spirals.loom")
    project.dataset = {**project.dataset, "normalize": kind}
    project.dataset["fitted"] = _fitted(project, rng)
    weights = _weights(project.graph, rng)
    back = onnx_import.from_model(onnx_export.to_onnx(project, weights), "spirals")
    assert back.project.dataset["normalize"] == kind
    x = _raw_inputs(project, rng)
    want = Model(project, weights).predict(x)
    assert np.abs(Model(back.project, back.weights).predict(x) - want).max() <= TOL


@pytest.mark.parametrize("name", ["wine_csv", "fashion_mnist_cnn"])
def test_the_imported_project_file_predicts_the_same(tmp_path, name):
    """What `layerloom --import` writes (the .loom with its fitted statistics, the weights)
    reads back and predicts what the original does."""
    import layerloom
    project, weights, _ = _round_trip(name)
    onnx_export.export(project, weights, str(tmp_path / "m.onnx"))
    onnx_import.convert(str(tmp_path / "m.onnx"), str(tmp_path / "back.loom"))
    back = layerloom.load(str(tmp_path / "back.loom"))
    x = _raw_inputs(project, np.random.default_rng(9))
    want = Model(project, weights).predict(x)
    assert np.abs(back.predict(x) - want).max() <= TOL


def _graph(*chain, shape):
    from layerloom.core.graph import Graph
    g = Graph()
    g.add_node("Input", {"shape": list(shape)}, id="x")
    prev = "x"
    for nid, type_id, params in chain:
        g.add_node(type_id, params, id=nid)
        g.connect(prev, 0, nid, 0)
        prev = nid
    return g


@pytest.mark.parametrize("graph", [
    _graph(("conv", "Conv2D", {"filters": 4, "kernel_size": 3}),
           ("norm", "BatchNormalization", {}), ("pool", "GlobalAveragePooling2D", {}),
           ("out", "Dense", {"units": 2}), shape=(6, 6, 3)),
    _graph(("hidden", "Dense", {"units": 5}), ("norm", "BatchNormalization", {}),
           ("act", "Activation", {"activation": "relu"}),
           ("out", "Dense", {"units": 2, "activation": "softmax"}), shape=(4,)),
], ids=["conv", "dense"])
def test_batch_normalization_comes_back_as_one_layer(graph):
    """The export writes it as Sub, Mul, Add with constants per channel: read back as one
    BatchNormalization (was three)."""
    project = loom.Project(graph)
    rng = np.random.default_rng(11)
    weights = _weights(graph, rng)
    back = onnx_import.from_model(onnx_export.to_onnx(project, weights), "m")
    assert _described(back.project.graph) == _described(graph)
    x = {"x": rng.normal(size=(5, *graph.analysis().shapes["x"][0])).astype(np.float32)}
    from layerloom.backend.runtime import Runtime
    from layerloom.train.model import Model as Compiled
    rt = Runtime()
    want = Compiled(graph, rt, 5, weights=weights).predict(x)["out"]
    got = Compiled(back.project.graph, rt, 5, weights=back.weights).predict(x)["out"]
    assert np.abs(got - want).max() <= TOL
