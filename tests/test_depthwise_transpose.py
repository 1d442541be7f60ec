"""DepthwiseConv2D/1D, SeparableConv2D/1D, Conv2DTranspose/1DTranspose against the real thing on
the same float32 inputs: models Keras 3 (torch backend) builds and saves, read back through
Keras import (weights in Keras' layouts) within 1e-5 of Keras' own predictions; Keras' output
sizes of the transposed convolutions for a grid of sizes, kernels, strides, dilations, paddings
and output paddings; torch's nn.Conv2d(groups=C) and F.conv_transpose2d on Keras' kernels
rearranged by hand; ONNX models torch writes (grouped Conv, ConvTranspose with pads and
output_padding) imported, and the engine's own export read back. The depthwise kernels' GPU
form (one channel per work-item) against their CPU form. The float64 harness of
tests/test_layers.py checks forward and gradients from the declarations' examples."""
import os

import numpy as np
import pytest

from conftest import from_dev, to_dev
from layerloom.backend.ops import Ops, Tensor
from layerloom.core.graph import Graph
from layerloom.core.registry import ShapeError, get_layer
from layerloom.train.model import Model, NodeStep

TOL = 1e-5


def _graph(layers, in_shape):
    """A chain Input -> layers ([(type, params)]), node ids n0, n1, ..."""
    g = Graph()
    g.add_node("Input", {"shape": list(in_shape)}, id="x")
    prev = "x"
    for i, (type_id, params) in enumerate(layers):
        g.add_node(type_id, params, id=f"n{i}")
        g.connect(prev, 0, f"n{i}", 0)
        prev = f"n{i}"
    assert not g.validate()
    return g


# -- Keras: import what Keras saved, and Keras' output sizes -----------------------------------
@pytest.fixture(scope="module")
def keras():
    pytest.importorskip("torch")
    pytest.importorskip("h5py")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


def _keras_round_trip(keras, tmp_path, rng, in_shape, layers, ext=".keras"):
    from layerloom.api import Model as ApiModel
    from layerloom.interop import keras_import
    x_in = keras.Input(shape=in_shape)
    y = x_in
    for layer in layers:
        y = layer(y)
    model = keras.Model(x_in, y)
    for w in model.weights:  # non-zero biases and weights at Keras' own scale
        w.assign(rng.normal(size=tuple(w.shape)).astype(np.float32) * 0.5)
    path = str(tmp_path / ("model" + ext))
    model.save(path)
    x = rng.normal(size=(3,) + in_shape).astype(np.float32)
    want = np.asarray(model.predict(x, verbose=0))
    project, weights = keras_import.read(path)
    types = [n.type for n in project.graph.nodes.values() if not n.layer.is_input]
    got = ApiModel(project, weights).predict(x)
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= TOL
    return types


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_keras_2d_models_import_and_predict_as_keras(keras, tmp_path, rng, ext):
    L = keras.layers
    types = _keras_round_trip(keras, tmp_path, rng, (9, 8, 3), [
        L.DepthwiseConv2D((3, 2), strides=2, padding="same", depth_multiplier=2,
                          activation="relu"),
        L.SeparableConv2D(5, 3, padding="same", depth_multiplier=2, dilation_rate=2),
        L.Conv2DTranspose(4, 3, strides=2, output_padding=1, activation="tanh"),
        L.DepthwiseConv2D(2, use_bias=False),
        L.Conv2DTranspose(3, (2, 3), strides=(2, 1), padding="same", use_bias=False),
    ], ext)
    assert types == ["DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose",
                     "DepthwiseConv2D", "Conv2DTranspose"]


def test_keras_1d_models_import_and_predict_as_keras(keras, tmp_path, rng):
    L = keras.layers
    types = _keras_round_trip(keras, tmp_path, rng, (11, 4), [
        L.DepthwiseConv1D(3, padding="same", depth_multiplier=3),
        L.SeparableConv1D(6, 2, strides=2, activation="relu"),
        L.Conv1DTranspose(3, 3, strides=2, padding="valid", output_padding=1),
        L.Conv1DTranspose(2, 4, strides=2, padding="same"),
    ])
    assert types == ["DepthwiseConv1D", "SeparableConv1D", "Conv1DTranspose", "Conv1DTranspose"]


def test_transposed_output_sizes_are_keras(keras):
    from keras.src.backend.common.backend_utils import compute_conv_transpose_output_shape
    layer = get_layer("Conv2DTranspose")
    checked = 0
    for size in (1, 2, 5, 6):
        for k in (1, 2, 3, 4):
            for s in (1, 2, 3):
                for d in ((1, 2) if s == 1 else (1,)):
                    for padding in ("valid", "same"):
                        for op in [None] + list(range(s)):
                            p = {**layer.defaults(), "filters": 2, "kernel_size": (k, k),
                                 "strides": (s, s), "padding": padding, "dilation_rate": (d, d),
                                 "output_padding": None if op is None else (op, op)}
                            want = compute_conv_transpose_output_shape(
                                (1, size, size, 3), (k, k), 2, (s, s), padding,
                                None if op is None else (op, op), "channels_last", (d, d))
                            if want[1] < 1:
                                with pytest.raises(ShapeError, match="empty"):
                                    layer.output_shapes(p, [(size, size, 3)])
                                continue
                            got = layer.output_shapes(p, [(size, size, 3)])[0]
                            assert (1,) + tuple(got) == tuple(want), (size, k, s, d, padding, op)
                            checked += 1
    assert checked > 200


@pytest.mark.parametrize("k,s,d,padding,op", [
    (3, 2, 1, "same", None), (3, 2, 1, "same", 1), (2, 2, 1, "same", 1), (5, 3, 1, "same", 2),
    (4, 3, 1, "same", None), (3, 1, 2, "same", 0), (2, 3, 1, "valid", None),
    (3, 2, 1, "valid", 1), (1, 2, 1, "same", 0)])
def test_transposed_values_are_keras(keras, rt, rng, k, s, d, padding, op):
    """Where the padding lands (Keras' rule, TensorFlow's and JAX's, which Keras 3.15 on torch
    follows too) for odd and even kernels, with and without output_padding."""
    layer = keras.layers.Conv2DTranspose(3, k, strides=s, padding=padding, output_padding=op,
                                         dilation_rate=d)
    x = rng.normal(size=(2, 4, 3, 2)).astype(np.float32)
    layer(x)  # builds its weights
    g = _graph([("Conv2DTranspose", {"filters": 3, "kernel_size": k, "strides": s,
                                     "padding": padding, "output_padding": op,
                                     "dilation_rate": d})], (4, 3, 2))
    ws = {f"n0/{w.name}": keras.ops.convert_to_numpy(w) for w in layer.weights}
    ws["n0/bias"] = rng.normal(size=3).astype(np.float32)
    layer.bias.assign(ws["n0/bias"])
    want = keras.ops.convert_to_numpy(layer(x))
    got = Model(g, rt, 2, weights=ws).predict({"x": x})["n0"]
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= TOL


def test_refusals_name_the_parameter():
    t = get_layer("Conv2DTranspose")
    p = {**t.defaults(), "strides": (2, 2), "output_padding": (2, 0)}
    with pytest.raises(ShapeError, match="output_padding 2 must be less than the stride 2"):
        t.output_shapes(p, [(4, 4, 2)])
    for type_id in ("DepthwiseConv2D", "Conv2DTranspose"):
        layer = get_layer(type_id)
        p = {**layer.defaults(), "strides": (2, 2), "dilation_rate": (2, 2)}
        with pytest.raises(ShapeError, match="strides > 1 cannot be combined with dilation"):
            layer.output_shapes(p, [(9, 9, 2)])
    with pytest.raises(ShapeError, match=r"expects input shaped \(None, steps, channels\)"):
        get_layer("SeparableConv1D").output_shapes(get_layer("SeparableConv1D").defaults(),
                                                    [(4, 4, 2)])


# -- torch's own convolutions on Keras' kernels --------------------------------------------------
def test_depthwise_and_transposed_match_torch_convolutions(rt, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    # DepthwiseConv2D, multiplier 2, valid: nn.Conv2d(groups=3) with weight (C*M, 1, kh, kw)
    k = rng.normal(size=(3, 2, 3, 2)).astype(np.float32)
    b = rng.normal(size=6).astype(np.float32)
    g = _graph([("DepthwiseConv2D", {"kernel_size": [3, 2], "depth_multiplier": 2,
                                     "strides": [2, 1]})], (7, 6, 3))
    got = Model(g, rt, 2, weights={"n0/depthwise_kernel": k, "n0/bias": b}).predict({"x": x})
    conv = torch.nn.Conv2d(3, 6, (3, 2), stride=(2, 1), groups=3)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(k.reshape(3, 2, 6).transpose(2, 0, 1)[:, None]))
        conv.bias.copy_(torch.from_numpy(b))
        want = conv(xt).permute(0, 2, 3, 1).numpy()
    assert float(np.abs(got["n0"] - want).max()) <= TOL
    # Conv2DTranspose valid with output_padding: torch's (output_padding is at the end there too)
    k = rng.normal(size=(3, 3, 4, 3)).astype(np.float32)  # (kh, kw, filters, in)
    g = _graph([("Conv2DTranspose", {"filters": 4, "kernel_size": 3, "strides": 2,
                                     "output_padding": [1, 0]})], (7, 6, 3))
    got = Model(g, rt, 2, weights={"n0/kernel": k, "n0/bias": b[:4]}).predict({"x": x})
    with torch.no_grad():
        want = F.conv_transpose2d(xt, torch.from_numpy(k.transpose(3, 2, 0, 1).copy()),
                                  torch.from_numpy(b[:4]), stride=2, output_padding=(1, 0))
    want = want.permute(0, 2, 3, 1).numpy()
    assert got["n0"].shape == want.shape == (2, 16, 13, 4)
    assert float(np.abs(got["n0"] - want).max()) <= TOL


# -- ONNX in ------------------------------------------------------------------------------------
def _onnx_from_torch(torch, module, shape, tmp_path):
    import onnx
    path = str(tmp_path / "m.onnx")
    torch.onnx.export(module.eval(), torch.zeros(shape), path, opset_version=17, dynamo=False)
    return onnx.load(path)


@pytest.mark.parametrize("case", ["grouped", "grouped_stride2", "transposed_same",
                                  "transposed_cropped", "grouped_1d"])
def test_torch_written_onnx_imports(rng, tmp_path, case):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from layerloom.interop import onnx_import
    torch.manual_seed(0)
    nn, shape = torch.nn, (2, 3, 5, 6)
    module, want_types = {
        # depthwise, multiplier 2, padding 1 = Keras' same, then a ReLU folded in
        "grouped": (nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, groups=3), nn.ReLU()),
                    {"DepthwiseConv2D"}),
        # MobileNet's stride-2 depthwise: pads (1, 1) are not Keras' same: explicit amounts
        "grouped_stride2": (nn.Conv2d(3, 3, 3, stride=2, padding=1, groups=3),
                            {"DepthwiseConv2D"}),
        # DCGAN's kernel 4, stride 2, padding 1: Keras' same
        "transposed_same": (nn.ConvTranspose2d(3, 4, 4, stride=2, padding=1),
                            {"Conv2DTranspose"}),
        # kernel 3, padding 1, output_padding 1 (Keras' same starts a row earlier): a valid
        # one with output_padding 1, then the padding cut
        "transposed_cropped": (nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1,
                                                  output_padding=1),
                               {"Conv2DTranspose", "Cropping2D"}),
        "grouped_1d": (nn.Conv1d(3, 9, 2, dilation=2, groups=3), {"DepthwiseConv1D"}),
    }[case]
    if case == "grouped_1d":
        shape = (2, 3, 7)
    model = _onnx_from_torch(torch, module, shape, tmp_path)
    imported = onnx_import.from_model(model)
    types = {n.type for n in imported.project.graph.nodes.values() if not n.layer.is_input}
    assert types == want_types
    x = rng.normal(size=shape).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    got = next(iter(imported.predict({model.graph.input[0].name: x}).values()))
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= TOL


@pytest.mark.parametrize("type_id,params,shape", [
    ("DepthwiseConv2D", {"kernel_size": 3, "padding": "same", "depth_multiplier": 2,
                         "strides": 2}, (7, 6, 3)),
    ("Conv2DTranspose", {"filters": 3, "kernel_size": [3, 2], "strides": [2, 3],
                         "output_padding": [1, 2], "activation": "relu"}, (4, 3, 2)),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": 4, "strides": 2, "padding": "same"},
     (3, 5, 2)),
])
def test_our_onnx_export_reads_back_as_the_same_layer(rt, rng, type_id, params, shape):
    pytest.importorskip("onnx")
    from layerloom.interop import onnx_export, onnx_import
    from layerloom.project import loom
    g = _graph([(type_id, params)], shape)
    node = g.nodes["n0"]
    ws = {f"n0/{s.name}": rng.normal(size=s.shape).astype(np.float32)
          for s in node.layer.weights(node.params, [shape])}
    x = rng.normal(size=(2,) + shape).astype(np.float32)
    want = Model(g, rt, 2, weights=ws).predict({"x": x})["n0"]
    imported = onnx_import.from_model(onnx_export.to_onnx(loom.Project(g), ws))
    back = imported.project.graph
    assert [n.type for n in back.nodes.values() if not n.layer.is_input] == [type_id]
    again = next(n for n in back.nodes.values() if n.type == type_id)
    assert {k: again.params[k] for k in params} == {k: node.params[k] for k in params}
    got = next(iter(imported.predict({"x": x}).values()))
    assert float(np.abs(got - want).max()) <= TOL


# -- the kernels' GPU form (one channel per work-item) against the CPU form; accumulation -------
@pytest.mark.parametrize("type_id,params,shape", [
    ("DepthwiseConv2D", {"kernel_size": 3, "padding": "same", "depth_multiplier": 2,
                         "strides": 2}, (7, 6, 8)),
    ("DepthwiseConv2D", {"kernel_size": [2, 3], "dilation_rate": 2}, (6, 7, 16)),
    ("SeparableConv1D", {"filters": 5, "kernel_size": 3, "depth_multiplier": 4}, (9, 2)),
    ("Conv2DTranspose", {"filters": 8, "kernel_size": 3, "strides": 2, "padding": "same"},
     (3, 4, 5)),
])
def test_the_gpu_form_computes_what_the_cpu_form_does(rt, rng, type_id, params, shape):
    """Forward, input and weight gradients with ops' CPU form (channels in vectors) and its GPU
    form (ew 1); a second backward with accumulate adds the input gradient to what is there
    (an input that feeds several layers)."""
    layer = get_layer(type_id)
    p = {**layer.defaults(), **params}
    p = {q.name: q.validate(p[q.name], q.name) for q in layer.params}
    out = tuple(layer.output_shapes(p, [shape])[0])
    x = rng.normal(size=(3,) + shape).astype(np.float32)
    ws = {s.name: rng.normal(size=s.shape).astype(np.float32)
          for s in layer.weights(p, [shape])}
    dy = rng.normal(size=(3,) + out).astype(np.float32)
    results = []
    for ew in (None, 1):
        ops = Ops(rt, ew=ew)
        s = NodeStep("n", p, n=3, training=True, seed=0, step=0,
                     x=[Tensor(to_dev(rt, x), shape)],
                     y=[Tensor(rt.empty(4 * dy.size), out)],
                     w={k: Tensor(to_dev(rt, v), v.shape) for k, v in ws.items()},
                     dw={k: Tensor(rt.empty(4 * v.size), v.shape) for k, v in ws.items()},
                     scratch={k: Tensor(rt.empty(4 * 3 * int(np.prod(sh))), sh)
                              for k, sh in layer.scratch(p, [shape]).items()})
        layer.forward(ops, s)
        s.dy, s.acc = [Tensor(to_dev(rt, dy), out)], [False]
        s.dx = [Tensor(rt.empty(4 * x.size), shape)]
        layer.backward(ops, s)
        got = [from_dev(rt, s.y[0].buf, dy.shape).copy(), from_dev(rt, s.dx[0].buf, x.shape).copy()]
        got += [from_dev(rt, s.dw[k].buf, v.shape).copy() for k, v in sorted(ws.items())]
        s.acc = [True]
        layer.backward(ops, s)
        np.testing.assert_allclose(from_dev(rt, s.dx[0].buf, x.shape), 2 * got[1], rtol=1e-5,
                                   atol=1e-5)
        results.append(got)
    assert results[0][0].shape == (3,) + out
    want = layer.reference(p, [x.astype(np.float64)], {k: v.astype(np.float64)
                                                       for k, v in ws.items()})[0]
    np.testing.assert_allclose(results[0][0], want, rtol=1e-4, atol=1e-4)
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
