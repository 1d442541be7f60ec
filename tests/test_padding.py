"""Explicit padding, ceil_mode, count_include_pad and groups on the convolutions and poolings
(engine/layers/convolution.py, pooling.py, kit.py): the padding parameter's spellings, the
shape rule's refusals, and PyTorch's layers (torch.onnx.export, opset 17) imported from ONNX
and predicting what PyTorch does, within 1e-5: each configuration alone, torchvision's
resnet18 and squeezenet1_1 stems (their layer configurations, fewer channels) and a grouped
block; a Keras Conv2D with groups read from its .keras file. The forward and backward of each
against float64 and finite differences, and the exports, run from the layers' examples
(test_layers, test_onnx_export, test_torch_code, test_keras_export)."""
import os
import warnings

import numpy as np
import pytest

from layerloom.core.errors import ParamError
from layerloom.core.graph import Graph
from layerloom.core.registry import ShapeError, get_layer

TOL = 1e-5


# -- the parameter -----------------------------------------------------------------------------
@pytest.mark.parametrize("type_id, value, want", [
    ("Conv2D", "same", "same"),
    ("Conv2D", 2, ((2, 2), (2, 2))),
    ("Conv2D", [1, 3], ((1, 1), (3, 3))),
    ("Conv2D", [[0, 2], [1, 0]], ((0, 2), (1, 0))),
    ("Conv1D", "causal", "causal"),
    ("Conv1D", 3, (3, 3)),
    ("Conv1D", [0, 2], (0, 2)),
    ("MaxPooling2D", [[1, 0], [0, 1]], ((1, 0), (0, 1))),
    ("AveragePooling1D", [1, 0], (1, 0)),
])
def test_padding_is_a_keras_word_or_explicit_amounts(type_id, value, want):
    g = Graph()
    g.add_node(type_id, {"padding": value}, id="n")
    assert g.nodes["n"].params["padding"] == want


@pytest.mark.parametrize("type_id, value", [
    ("Conv2D", "causal"), ("Conv2D", -1), ("Conv2D", [1, 2, 3]), ("Conv2D", [[1, 2], [3]]),
    ("Conv1D", [[1, 1], [1, 1]]), ("MaxPooling2D", "full"), ("AveragePooling1D", [1.5, 1]),
    ("Conv2D", True),
])
def test_other_padding_is_refused_naming_the_parameter(type_id, value):
    with pytest.raises(ParamError) as e:
        Graph().add_node(type_id, {"padding": value}, id="n")
    assert "padding" in str(e.value)


@pytest.mark.parametrize("type_id, params, shape, words", [
    ("Conv2D", {"filters": 4, "groups": 3}, (5, 5, 6), ["groups 3", "4 filters"]),
    ("Conv2D", {"filters": 6, "groups": 4}, (5, 5, 6), ["groups 4", "6 channels"]),
    ("MaxPooling2D", {"pool_size": 2, "padding": [[0, 2], [0, 0]]}, (5, 5, 1),
     ["padding 2", "height", "pool size 2"]),
    ("AveragePooling1D", {"pool_size": 3, "padding": 5}, (9, 1), ["padding 5", "width"]),
    ("Conv1D", {"kernel_size": 9, "padding": [1, 1]}, (5, 2), ["does not fit", "[1, 1]"]),
])
def test_the_shape_rule_refuses_what_does_not_divide_or_fit(type_id, params, shape, words):
    layer = get_layer(type_id)
    p = {q.name: q.validate(params.get(q.name, q.default), q.name) for q in layer.params}
    with pytest.raises(ShapeError) as e:
        layer.output_shapes(p, [shape])
    assert all(w in str(e.value) for w in words), str(e.value)


@pytest.mark.parametrize("size, k, s, pads, ceil, want", [
    (6, 3, 2, (0, 0), True, 3),   # squeezenet: the last window overhangs
    (6, 3, 2, (0, 0), False, 2),
    (5, 2, 2, (1, 1), True, 3),   # a window starting in the padding after is dropped
    (112, 3, 2, (1, 1), False, 56),  # resnet18's max pooling
    (224, 7, 2, (3, 3), False, 112),  # resnet18's first convolution
])
def test_window_counts_are_pytorchs(size, k, s, pads, ceil, want):
    torch = pytest.importorskip("torch")
    from layerloom.layers.kit import window_geometry
    assert window_geometry(size, k, s, 1, pads, ceil)[0] == want
    if pads[0] == pads[1]:
        pool = torch.nn.MaxPool1d(k, s, padding=pads[0], ceil_mode=ceil)
        assert pool(torch.zeros(1, 1, size)).shape[-1] == want


# -- PyTorch's layers through ONNX ------------------------------------------------------------
def _torch_to_onnx(module, x, path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.from_numpy(x),), path, dynamo=False,
                          opset_version=17, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _imported(module, x, tmp_path):
    import onnx
    from layerloom.interop import onnx_import
    path = str(tmp_path / "m.onnx")
    want = _torch_to_onnx(module, x, path)
    imported = onnx_import.from_model(onnx.load(path))
    got = imported.predict({"x": x})["y"]
    assert got.shape == want.shape
    return imported, float(np.abs(got - want).max())


def _layers(imported):
    g = imported.project.graph
    return [(g.nodes[n].type, g.nodes[n].params) for n in g.topo_order()][1:]


def _nn():
    return pytest.importorskip("torch").nn


CONFIGS = {  # name: (module, input shape (N, C, ...), the layer and params it imports as)
    "conv 7x7 s2 p3 (resnet)": (lambda: _nn().Conv2d(3, 5, 7, 2, 3, bias=False), (2, 3, 15, 14),
                                "Conv2D", {"padding": ((3, 3), (3, 3)), "use_bias": False}),
    "conv groups 2, padding (1, 2)": (lambda: _nn().Conv2d(4, 6, 3, padding=(1, 2), groups=2),
                                      (2, 4, 6, 5), "Conv2D",
                                      {"groups": 2, "padding": ((1, 1), (2, 2))}),
    "conv groups 3, stride 2": (lambda: _nn().Conv2d(6, 3, 3, 2, 1, groups=3), (1, 6, 7, 8),
                                "Conv2D", {"groups": 3, "strides": (2, 2)}),
    "conv dilation 2, padding 2": (lambda: _nn().Conv2d(3, 4, 3, padding=2, dilation=2),
                                   (2, 3, 6, 7), "Conv2D", {"dilation_rate": (2, 2)}),
    "conv padding same": (lambda: _nn().Conv2d(2, 3, (3, 4), padding="same"), (2, 2, 5, 6),
                          "Conv2D", {}),
    "conv1d s2 p2": (lambda: _nn().Conv1d(3, 4, 5, 2, 2), (2, 3, 12), "Conv1D",
                     {"padding": (2, 2), "strides": 2}),
    "conv1d groups 2": (lambda: _nn().Conv1d(4, 6, 3, padding=1, groups=2), (2, 4, 7),
                        "Conv1D", {"groups": 2}),
    "max 3x3 s2 p1 (resnet)": (lambda: _nn().MaxPool2d(3, 2, 1), (2, 3, 9, 8), "MaxPooling2D",
                               {"padding": ((1, 1), (1, 1))}),
    "max 3x3 s2 ceil (squeezenet)": (lambda: _nn().MaxPool2d(3, 2, ceil_mode=True),
                                     (2, 2, 8, 9), "MaxPooling2D", {"ceil_mode": True}),
    "max (3, 2) s (2, 1) p (1, 0) ceil": (
        lambda: _nn().MaxPool2d((3, 2), (2, 1), (1, 0), ceil_mode=True), (1, 2, 6, 5),
        "MaxPooling2D", {"ceil_mode": True, "padding": ((1, 1), (0, 0))}),
    "avg 3x3 s2 p1 (count_include_pad)": (lambda: _nn().AvgPool2d(3, 2, 1), (2, 2, 7, 6),
                                          "AveragePooling2D", {"count_include_pad": True}),
    "avg 3x3 s2 p1 without the pads": (
        lambda: _nn().AvgPool2d(3, 2, 1, count_include_pad=False), (2, 2, 7, 6),
        "AveragePooling2D", {"count_include_pad": False}),
    "avg 3x3 s2 p1 ceil (overhang not counted)": (
        lambda: _nn().AvgPool2d(3, 2, 1, ceil_mode=True), (1, 2, 8, 6), "AveragePooling2D",
        {"count_include_pad": True, "ceil_mode": True}),
    "avg 2x2 ceil": (lambda: _nn().AvgPool2d(2, ceil_mode=True), (2, 1, 5, 7),
                     "AveragePooling2D", {"ceil_mode": True}),
    "max1d 3 s2 p1 ceil": (lambda: _nn().MaxPool1d(3, 2, 1, ceil_mode=True), (2, 3, 8),
                           "MaxPooling1D", {"ceil_mode": True, "padding": (1, 1)}),
    "avg1d 3 s2 p1": (lambda: _nn().AvgPool1d(3, 2, 1), (2, 3, 8), "AveragePooling1D",
                      {"count_include_pad": True, "padding": (1, 1)}),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_pytorch_layer_imports_from_onnx_and_predicts_what_pytorch_does(tmp_path, name):
    torch = pytest.importorskip("torch")
    make, shape, type_id, params = CONFIGS[name]
    torch.manual_seed(0)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    imported, err = _imported(make(), x, tmp_path)
    layers = _layers(imported)
    assert [t for t, _ in layers] == [type_id], layers
    assert {k: layers[0][1][k] for k in params} == params
    assert err <= TOL, err


def _fire(nn, cin, squeeze, expand):
    class Fire(nn.Module):  # squeezenet's
        def __init__(self):
            super().__init__()
            self.squeeze = nn.Conv2d(cin, squeeze, 1)
            self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
            self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)

        def forward(self, x):
            import torch
            x = torch.relu(self.squeeze(x))
            return torch.cat([torch.relu(self.expand1x1(x)), torch.relu(self.expand3x3(x))], 1)
    return Fire()


def _stem(name):
    nn = _nn()
    if name == "resnet18":  # conv1, bn1 (folded by the exporter), relu, maxpool
        bn = nn.BatchNorm2d(8)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        return nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3, bias=False), bn, nn.ReLU(),
                             nn.MaxPool2d(3, 2, 1)), (2, 3, 32, 29)
    if name == "squeezenet1_1":  # features[:6]
        return nn.Sequential(nn.Conv2d(3, 8, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
                             _fire(nn, 8, 4, 6), _fire(nn, 12, 4, 6),
                             nn.MaxPool2d(3, 2, ceil_mode=True)), (2, 3, 35, 30)
    # a ResNeXt-style block: 1x1, 3x3 with groups 4, 1x1, and an average pooling
    return nn.Sequential(nn.Conv2d(4, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 1, 1, groups=4),
                         nn.ReLU(), nn.Conv2d(8, 6, 1), nn.AvgPool2d(3, 2, 1, ceil_mode=True)), \
        (2, 4, 9, 10)


@pytest.mark.parametrize("name", ["resnet18", "squeezenet1_1", "grouped block"])
def test_a_torchvision_stem_imports_and_predicts_what_pytorch_does(tmp_path, name):
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    module, shape = _stem(name)
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    imported, err = _imported(module, x, tmp_path)
    types = [t for t, _ in _layers(imported)]
    assert {"resnet18": "MaxPooling2D", "squeezenet1_1": "Concatenate",
            "grouped block": "AveragePooling2D"}[name] in types, types
    assert err <= TOL, err


def test_an_imported_stem_exports_back_to_onnx_as_onnxruntime_computes_it(tmp_path):
    """The imported squeezenet stem (ceil_mode) and grouped block (groups, count_include_pad
    with ceil_mode) written by our ONNX export: onnxruntime gives PyTorch's outputs."""
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    from layerloom.interop import onnx_export
    for name in ("squeezenet1_1", "grouped block"):
        torch.manual_seed(4)
        module, shape = _stem(name)
        x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
        imported, _ = _imported(module, x, tmp_path)
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy()
        model = onnx_export.to_onnx(imported.project, imported.weights)
        sess = ort.InferenceSession(model.SerializeToString())
        feed = {sess.get_inputs()[0].name: np.moveaxis(x, 1, -1)}  # ours: channels last
        got = np.moveaxis(sess.run(None, feed)[0], -1, 1)
        assert np.abs(got - want).max() <= TOL, name


def test_a_keras_conv2d_with_groups_is_read_and_predicts_what_keras_does(tmp_path):
    pytest.importorskip("torch")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    from layerloom.api import Model
    from layerloom.interop import keras_import
    inp = keras.Input((6, 5, 4))
    out = keras.layers.Conv2D(6, 3, padding="same", groups=2, activation="relu",
                              name="grouped")(inp)
    model = keras.Model(inp, out)
    path = str(tmp_path / "g.keras")
    model.save(path)
    project, weights = keras_import.read(path)
    assert project.graph.nodes["grouped"].params["groups"] == 2
    x = np.random.default_rng(6).standard_normal((3, 6, 5, 4)).astype(np.float32)
    got = Model(project, weights).predict(x)
    got = next(iter(got.values())) if isinstance(got, dict) else got
    assert np.abs(got - model.predict(x, verbose=0)).max() <= TOL


def test_explicit_padding_exported_to_a_keras_file_predicts_what_the_engine_does(rt, tmp_path):
    """A grouped Conv2D with uneven pads (ZeroPadding2D + valid), a MaxPooling2D with pads and
    ceil_mode and an AveragePooling2D counting its pads with ceil_mode (keras.ops.pad + valid
    pooling): the .keras file keras.saving.load_model reads gives the engine's outputs."""
    pytest.importorskip("torch")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    from layerloom.interop import keras_export
    from layerloom.project import loom
    from layerloom.train.model import Model
    g = Graph()
    g.add_node("Input", {"shape": [9, 8, 4]}, id="x")
    g.add_node("Conv2D", {"filters": 6, "kernel_size": 3, "strides": 2, "groups": 2,
                          "padding": [[0, 2], [1, 0]]}, id="c")
    g.add_node("MaxPooling2D", {"pool_size": 3, "strides": 2, "padding": 1, "ceil_mode": True},
               id="m")
    g.add_node("AveragePooling2D", {"pool_size": 2, "padding": [[1, 0], [0, 1]],
                                    "ceil_mode": True, "count_include_pad": True}, id="a")
    for src, dst in (("x", "c"), ("c", "m"), ("m", "a")):
        g.connect(src, 0, dst, 0)
    rng = np.random.default_rng(7)
    ws = {"c/kernel": rng.normal(size=(3, 3, 2, 6)).astype(np.float32),
          "c/bias": rng.normal(size=6).astype(np.float32)}
    x = rng.standard_normal((2, 9, 8, 4)).astype(np.float32)
    want = Model(g, rt, 2, weights=ws).predict({"x": x})["a"]
    path = str(tmp_path / "m.keras")
    keras_export.to_keras(loom.Project(g), ws, compile=False).save(path)
    loaded = keras.saving.load_model(path)
    assert [layer.name for layer in loaded.layers if "pad" in layer.name] == ["c_pad"]
    assert np.abs(loaded.predict(x, verbose=0) - want).max() <= TOL


@pytest.mark.parametrize("op, attrs, kernel", [
    ("Conv", {"auto_pad": "SAME_LOWER", "strides": [2, 2], "group": 2}, (6, 2, 4, 3)),
    ("Conv", {"pads": [0, 2, 1, 0], "dilations": [2, 1]}, (3, 4, 2, 3)),
    ("MaxPool", {"kernel_shape": [3, 2], "auto_pad": "SAME_LOWER", "strides": [2, 2]}, None),
    ("MaxPool", {"kernel_shape": [3, 3], "pads": [2, 0, 1, 2], "strides": [2, 2],
                 "ceil_mode": 1}, None),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 2, 2, 0], "strides": [2, 3],
                     "count_include_pad": 1}, None),
    ("AveragePool", {"kernel_shape": [2, 3], "pads": [1, 0, 0, 1], "strides": [2, 2],
                     "ceil_mode": 1}, None),
])
def test_onnx_pads_and_auto_pad_import_as_onnxruntime_computes_them(op, attrs, kernel):
    """Uneven pads, auto_pad SAME_LOWER (the extra cell before), ceil_mode and
    count_include_pad written by hand, as onnxruntime computes them."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    from layerloom.interop import onnx_import
    rng = np.random.default_rng(8)
    inits, inputs = [], ["x"]
    if kernel is not None:
        inits = [numpy_helper.from_array(rng.normal(size=kernel).astype(np.float32), "w"),
                 numpy_helper.from_array(rng.normal(size=kernel[0]).astype(np.float32), "b")]
        inputs += ["w", "b"]
    node = helper.make_node(op, inputs, ["y"], name="op", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", 4, 9, 7])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((2, 4, 9, 7)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    got = onnx_import.from_model(model).predict({"x": x})["y"]
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= TOL
