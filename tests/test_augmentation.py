"""The preprocessing and augmentation layers (engine/layers/preprocessing.py and
preprocessing_values.py, kernels in clkernels/augment.cl) beyond the harness of test_layers.py,
which checks them at inference (the random ones are the identity there; RandomCrop its centre
box resized):

- while training, each random layer's output is its float64 reference through the transform it
  drew (read back from its scratch buffer), and its input gradient is the finite differences of
  that reference; the same seed and step give the same output, another step or seed another;
- the draws follow Keras' distributions (flip probability, angle, zoom, shift, crop offsets,
  contrast factor, brightness delta, each within its range);
- Keras 3 (torch backend) computes the same: Resizing, CenterCrop and RandomCrop's inference
  on the same input, the affine maps through keras.ops.image.affine_transform for every fill
  mode and interpolation, contrast and brightness through the Keras layers' transforms, all
  within 1e-5;
- ONNX's Resize reads back as a Resizing; Keras models with these layers import as them; bad
  values are refused naming the parameter.

Tolerance 1e-5 (float32 against float64 and against Keras' float32); gradients as
test_layers.py's (rtol 1e-3, atol 1e-4)."""
import os

import numpy as np
import pytest

from conftest import from_dev, numeric_grad
from layerloom.core.errors import LayerloomError, ParamError
from layerloom.core.graph import Graph
from layerloom.core.registry import get_layer
from test_layers import run_layer

TOL = 1e-5


class _Seen:
    """The layer, keeping the NodeStep its forward pass was given (its scratch holds the draw)."""

    def __init__(self, layer):
        self._layer, self.step = layer, None

    def __getattr__(self, name):
        return getattr(self._layer, name)

    def forward(self, ops, s):
        self.step = s
        self._layer.forward(ops, s)


def _train(rt, ops, type_id, params, x, dy=None, step=5):
    """A training step of the layer: (y, dx, the draw: T (N, 6) maps or F (N,) scalars)."""
    layer = get_layer(type_id)
    p = Graph().add_node(type_id, params).params
    seen = _Seen(layer)
    dy = np.ones((x.shape[0],) + tuple(layer.output_shapes(p, [x.shape[1:]])[0])) \
        if dy is None else dy
    y, (dx,), _ = run_layer(rt, ops, seen, p, [x], {}, dy, training=True, step=step)
    name = "T" if "T" in seen.step.scratch else "F"
    draw = from_dev(rt, seen.step.scratch[name].buf, (x.shape[0], 6 if name == "T" else 1)) \
        if name in seen.step.scratch else None
    return layer, p, y, dx, draw


TRAINING = [
    ("RandomFlip", {"mode": "horizontal"}), ("RandomFlip", {"mode": "vertical"}),
    ("RandomFlip", {"mode": "horizontal_and_vertical"}),
    ("RandomRotation", {"factor": 0.3}),
    ("RandomRotation", {"factor": [-0.2, 0.4], "fill_mode": "wrap", "interpolation": "nearest"}),
    ("RandomRotation", {"factor": 0.5, "fill_mode": "constant", "fill_value": 0.7}),
    ("RandomRotation", {"factor": 0.5, "fill_mode": "nearest"}),
    ("RandomZoom", {"height_factor": 0.5}),
    ("RandomZoom", {"height_factor": [-0.5, -0.1], "width_factor": [0.2, 0.6],
                    "fill_mode": "constant"}),
    ("RandomTranslation", {"height_factor": 0.4, "width_factor": [-0.5, 0.3],
                           "fill_mode": "wrap"}),
    ("RandomTranslation", {"height_factor": 0.5, "width_factor": 0.5, "interpolation": "nearest",
                           "fill_mode": "reflect"}),
    ("RandomCrop", {"height": 3, "width": 4}),
    ("RandomCrop", {"height": 5, "width": 3}),  # not larger than 5: the inference form
    ("RandomContrast", {"factor": 0.6, "value_range": [-1.5, 1.5]}),
    ("RandomContrast", {"factor": [0.5, 0.9]}),
    ("RandomBrightness", {"factor": 0.3, "value_range": [-1, 1]}),
    ("RandomBrightness", {"factor": [-0.5, 0.2], "value_range": [0, 255]}),
]


def _id(case):
    return case[0] + "(" + ",".join(f"{k}={v}" for k, v in case[1].items()) + ")"


@pytest.mark.parametrize("type_id,params", TRAINING, ids=[_id(c) for c in TRAINING])
def test_training_output_and_gradient_through_the_drawn_transform(rt, ops, rng, type_id,
                                                                 params):
    x = rng.normal(size=(3, 5, 6, 2))
    layer = get_layer(type_id)
    p = Graph().add_node(type_id, params).params
    dy = rng.normal(size=(3,) + tuple(layer.output_shapes(p, [x.shape[1:]])[0]))
    layer, p, y, dx, draw = _train(rt, ops, type_id, params, x, dy)
    want = layer.apply(p, x, draw)
    np.testing.assert_allclose(y, want, rtol=TOL, atol=TOL)
    num = numeric_grad(lambda: float((layer.apply(p, x, draw) * dy).sum()), x)
    np.testing.assert_allclose(dx, num, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("type_id,params", TRAINING[::2], ids=[_id(c) for c in TRAINING[::2]])
def test_a_seed_and_step_reproduce_the_draw_another_step_or_seed_changes_it(rt, ops, rng,
                                                                           type_id, params):
    x = rng.normal(size=(6, 5, 6, 2))
    y = _train(rt, ops, type_id, params, x, step=3)[2]
    np.testing.assert_array_equal(y, _train(rt, ops, type_id, params, x, step=3)[2])
    if (type_id, params) == ("RandomCrop", {"height": 5, "width": 3}):
        return  # not random: its input is no larger than the crop
    assert not np.array_equal(y, _train(rt, ops, type_id, params, x, step=4)[2])
    assert not np.array_equal(y, _train(rt, ops, type_id, {**params, "seed": 9}, x, step=3)[2])
    # at inference: the identity
    layer = get_layer(type_id)
    p = Graph().add_node(type_id, params).params
    inf = run_layer(rt, ops, layer, p, [x], {}, None, backward=False)[0]
    np.testing.assert_allclose(inf, layer.reference(p, [x], {})[0], rtol=TOL, atol=TOL)


def _draws(rt, ops, type_id, params, n=2000, shape=(2, 2, 1)):
    return _train(rt, ops, type_id, params, np.zeros((n,) + shape))[4]


def test_flips_happen_half_the_time_and_both_axes_flip_together(rt, ops):
    T = _draws(rt, ops, "RandomFlip", {"mode": "horizontal_and_vertical"})
    flipped = T[:, 0] < 0
    assert abs(flipped.mean() - 0.5) < 0.04
    np.testing.assert_array_equal(flipped, T[:, 4] < 0)  # rows with columns, as Keras
    T = _draws(rt, ops, "RandomFlip", {"mode": "vertical"})
    assert (T[:, 0] == 1).all() and abs((T[:, 4] < 0).mean() - 0.5) < 0.04


def test_angles_zooms_and_shifts_are_uniform_over_keras_ranges(rt, ops):
    T = _draws(rt, ops, "RandomRotation", {"factor": [-0.1, 0.25]})
    turns = np.arctan2(T[:, 3], T[:, 0]) / (2 * np.pi)
    assert turns.min() >= -0.1 - 1e-6 and turns.max() <= 0.25 + 1e-6
    assert abs(turns.mean() - 0.075) < 0.01 and abs(turns.std() - 0.35 / 12 ** 0.5) < 0.01
    T = _draws(rt, ops, "RandomZoom", {"height_factor": 0.2})  # width: the height's zoom
    np.testing.assert_array_equal(T[:, 0], T[:, 4])
    assert T[:, 4].min() >= 0.8 and T[:, 4].max() <= 1.2 and abs(T[:, 4].mean() - 1) < 0.01
    T = _draws(rt, ops, "RandomZoom", {"height_factor": [0.1, 0.3], "width_factor": -0.5})
    assert T[:, 4].min() >= 1.1 and T[:, 4].max() <= 1.3
    assert T[:, 0].min() >= 0.5 and T[:, 0].max() <= 1.5
    T = _draws(rt, ops, "RandomTranslation", {"height_factor": [0.0, 0.5], "width_factor": 0.25})
    rows, cols = -(T[:, 5] + 0.5), -(T[:, 2] + 0.5)  # the shift, Keras' (pixels of 2 x 2)
    assert rows.min() >= -1e-6 and rows.max() <= 1.0 + 1e-6 and abs(rows.mean() - 0.5) < 0.03
    assert cols.min() >= -0.5 - 1e-6 and cols.max() <= 0.5 + 1e-6 and abs(cols.mean()) < 0.03


def test_random_crop_draws_one_offset_per_batch_over_every_position(rt, ops):
    offsets = set()
    for step in range(60):
        T = _train(rt, ops, "RandomCrop", {"height": 2, "width": 4}, np.zeros((3, 4, 6, 1)),
                   step=step)[4]
        offsets.add((T[0, 5] + 0.5, T[0, 2] + 0.5))
    assert offsets == {(r, c) for r in range(3) for c in range(3)}


def test_contrast_factors_and_brightness_deltas_follow_keras(rt, ops):
    F = _draws(rt, ops, "RandomContrast", {"factor": 0.4})[:, 0]
    assert F.min() >= 1.0 and F.max() <= 1.4 and abs(F.mean() - 1.2) < 0.01  # Keras 3: 1..1+f
    F = _draws(rt, ops, "RandomContrast", {"factor": [0.2, 0.5]})[:, 0]
    assert F.min() >= 0.8 and F.max() <= 1.5
    F = _draws(rt, ops, "RandomBrightness", {"factor": [-0.2, 0.1], "value_range": [0, 10]})
    assert F.min() >= -2 and F.max() <= 1 and abs(F.mean() + 0.5) < 0.05


# -- against Keras 3 ------------------------------------------------------------------------
def _keras():
    pytest.importorskip("torch")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


RESIZES = [
    ({"height": 7, "width": 3}, (5, 6, 2)), ({"height": 2, "width": 9}, (6, 4, 3)),
    ({"height": 5, "width": 5, "interpolation": "nearest"}, (9, 3, 2)),
    ({"height": 6, "width": 4, "interpolation": "nearest"}, (4, 7, 1)),
    ({"height": 3, "width": 5, "crop_to_aspect_ratio": True}, (7, 4, 2)),
    ({"height": 6, "width": 2, "crop_to_aspect_ratio": True, "interpolation": "nearest"},
     (5, 8, 1)),
]


def _inference(rt, ops, type_id, params, x):
    layer = get_layer(type_id)
    p = Graph().add_node(type_id, params).params
    return run_layer(rt, ops, layer, p, [x], {}, None, backward=False)[0]


@pytest.mark.parametrize("params,shape", RESIZES)
def test_resizing_is_keras_resizing(rt, ops, rng, params, shape):
    keras = _keras()
    x = rng.uniform(0, 255, size=(2,) + shape).astype(np.float32)
    want = np.asarray(keras.layers.Resizing(**params)(x))
    np.testing.assert_allclose(_inference(rt, ops, "Resizing", params, x.astype(np.float64)),
                               want, rtol=TOL, atol=TOL * 255)


@pytest.mark.parametrize("params,shape", [({"height": 3, "width": 2}, (6, 5, 2)),
                                          ({"height": 6, "width": 4}, (5, 7, 1)),
                                          ({"height": 2, "width": 8}, (4, 3, 2))])
def test_center_crop_and_random_crops_inference_are_keras(rt, ops, rng, params, shape):
    keras = _keras()
    x = rng.uniform(0, 1, size=(2,) + shape).astype(np.float32)
    want = np.asarray(keras.layers.CenterCrop(**params)(x))
    np.testing.assert_allclose(_inference(rt, ops, "CenterCrop", params, x.astype(np.float64)),
                               want, rtol=TOL, atol=TOL)
    # RandomCrop at inference: what Keras' transformation computes, resized (Keras 3 itself
    # returns the whole image there, unlike its declared output shape)
    want = np.asarray(keras.layers.Resizing(**params, crop_to_aspect_ratio=True)(x))
    np.testing.assert_allclose(_inference(rt, ops, "RandomCrop", params, x.astype(np.float64)),
                               want, rtol=TOL, atol=TOL)


AFFINE = [("RandomRotation", {"factor": 0.5, "fill_mode": fill, "interpolation": interp,
                              "fill_value": 0.25})
          for fill in ("reflect", "wrap", "constant", "nearest")
          for interp in ("bilinear", "nearest")] + [
    ("RandomZoom", {"height_factor": [-0.6, 0.8], "width_factor": 0.7, "fill_mode": "reflect"}),
    ("RandomTranslation", {"height_factor": 0.9, "width_factor": 0.9, "fill_mode": "wrap"})]


@pytest.mark.parametrize("type_id,params", AFFINE, ids=[_id(c) for c in AFFINE])
def test_the_drawn_maps_sample_as_keras_affine_transform(rt, ops, rng, type_id, params):
    keras = _keras()
    x = rng.uniform(0, 1, size=(4, 5, 7, 2))
    y, T = (lambda r: (r[2], r[4]))(_train(rt, ops, type_id, params, x))
    # Keras' maps read output pixel (ox, oy); ours its centre (ox + 0.5, oy + 0.5)
    M = np.zeros((len(T), 8), np.float32)
    M[:, :6] = T
    M[:, 2] += 0.5 * (T[:, 0] + T[:, 1])
    M[:, 5] += 0.5 * (T[:, 3] + T[:, 4])
    want = keras.ops.image.affine_transform(
        x.astype(np.float32), M, interpolation=params["interpolation"] if "interpolation" in
        params else "bilinear", fill_mode=params["fill_mode"],
        fill_value=params.get("fill_value", 0.0))
    np.testing.assert_allclose(y, np.asarray(want), rtol=TOL, atol=TOL)


def test_contrast_and_brightness_are_keras_transforms(rt, ops, rng):
    keras = _keras()
    x = rng.uniform(0, 255, size=(3, 4, 5, 3))
    y, F = (lambda r: (r[2], r[4]))(_train(rt, ops, "RandomContrast", {"factor": 0.9}, x))
    k = keras.layers.RandomContrast(0.9)
    t = keras.ops.convert_to_tensor
    want = k.transform_images(t(x.astype(np.float32)), {"contrast_factor": t(
        F.reshape(-1, 1, 1, 1).astype(np.float32))}, training=True)
    np.testing.assert_allclose(y, np.asarray(want), rtol=TOL, atol=TOL * 255)
    y, F = (lambda r: (r[2], r[4]))(_train(rt, ops, "RandomBrightness", {"factor": 0.4}, x))
    k = keras.layers.RandomBrightness(0.4)
    want = k.transform_images(t(x.astype(np.float32)), {"rgb_delta": t(
        F.reshape(-1, 1, 1, 1).astype(np.float32))}, training=True)
    np.testing.assert_allclose(y, np.asarray(want), rtol=TOL, atol=TOL * 255)


def test_keras_models_with_these_layers_import_as_them(tmp_path):
    keras = _keras()
    from layerloom.interop import keras_import
    x = keras.Input(shape=(9, 8, 3), name="x")
    h = keras.layers.Resizing(8, 6, crop_to_aspect_ratio=True, name="rs")(x)
    h = keras.layers.CenterCrop(6, 5, name="cc")(h)
    h = keras.layers.RandomFlip("horizontal", seed=3, name="fl")(h)
    h = keras.layers.RandomRotation((-0.1, 0.2), fill_mode="constant", fill_value=0.5,
                                    name="ro")(h)
    h = keras.layers.RandomZoom(0.2, name="zo")(h)
    h = keras.layers.RandomTranslation(0.1, (-0.2, 0.1), interpolation="nearest", name="tr")(h)
    h = keras.layers.RandomContrast(0.3, value_range=(0, 1), name="co")(h)
    h = keras.layers.RandomBrightness(0.2, name="br")(h)
    h = keras.layers.RandomCrop(4, 3, seed=7, name="rc")(h)
    model = keras.Model(x, h)
    model.save(str(tmp_path / "m.keras"))
    project = keras_import.read(str(tmp_path / "m.keras"))[0]
    nodes = project.graph.nodes
    assert nodes["rs"].type == "Resizing" and nodes["rs"].params["crop_to_aspect_ratio"]
    assert (nodes["cc"].params["height"], nodes["cc"].params["width"]) == (6, 5)
    assert nodes["fl"].params == {"mode": "horizontal", "seed": 3}
    assert nodes["ro"].params["factor"] == (-0.1, 0.2) and nodes["ro"].params["fill_value"] == 0.5
    assert nodes["zo"].params["height_factor"] == 0.2 and nodes["zo"].params["width_factor"] is None
    assert nodes["tr"].params["interpolation"] == "nearest"
    assert nodes["co"].params["factor"] == (0.0, 0.3)  # Keras' own normalisation of 0.3
    assert nodes["co"].params["value_range"] == (0.0, 1.0)
    assert nodes["br"].params["factor"] == (-0.2, 0.2)
    assert nodes["rc"].params == {"height": 4, "width": 3, "seed": 7}
    bad = keras.Model(x, keras.layers.Resizing(4, 4, interpolation="bicubic", name="rb")(x))
    bad.save(str(tmp_path / "b.keras"))
    with pytest.raises(LayerloomError, match="'rb' \\(Resizing\\): option interpolation="):
        keras_import.read(str(tmp_path / "b.keras"))


def test_onnx_resize_reads_back_as_resizing(rt, rng, tmp_path):
    pytest.importorskip("onnxruntime")
    from layerloom.interop import onnx_export, onnx_import
    from layerloom.project import loom
    from layerloom.train.model import Model
    g = Graph()
    g.add_node("Input", {"shape": [5, 7, 2]}, id="x")
    g.add_node("Resizing", {"height": 9, "width": 4}, id="up")
    g.add_node("Resizing", {"height": 3, "width": 3, "interpolation": "nearest"}, id="down")
    g.connect("x", 0, "up", 0)
    g.connect("up", 0, "down", 0)
    path = str(tmp_path / "m.onnx")
    with open(path, "wb") as f:
        f.write(onnx_export.to_onnx(loom.Project(g), {}).SerializeToString())
    project, weights = onnx_import.read(path)
    nodes = project.graph.nodes
    assert [(nodes[n].type, nodes[n].params["height"], nodes[n].params["width"],
             nodes[n].params["interpolation"]) for n in ("up", "down")] == [
        ("Resizing", 9, 4, "bilinear"), ("Resizing", 3, 3, "nearest")]
    x = rng.normal(size=(2, 5, 7, 2)).astype(np.float32)
    want = Model(g, rt, 2).predict({"x": x})["down"]
    got = Model(project.graph, rt, 2, weights=weights).predict({"x": x})["down"]
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


def test_a_resize_without_a_layerloom_form_is_refused_naming_node_and_why(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from layerloom.interop import onnx_import
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="cubic", name="rz")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 4, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([1, 2, 2, 1], np.float32), "s")])
    path = str(tmp_path / "r.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(LayerloomError, match="'rz' \\(Resize\\): mode 'cubic'"):
        onnx_import.read(path)


@pytest.mark.parametrize("type_id,params,name", [
    ("RandomZoom", {"height_factor": -1.0}, "height_factor"),
    ("RandomContrast", {"factor": 1.5}, "factor"),
    ("RandomRotation", {"factor": [0.1, 0.2, 0.3]}, "factor"),
    ("RandomBrightness", {"value_range": 255}, "value_range"),
    ("RandomFlip", {"mode": "diagonal"}, "mode"),
])
def test_bad_values_are_refused_naming_the_parameter(type_id, params, name):
    with pytest.raises(ParamError, match=name):
        Graph().add_node(type_id, params)


def test_a_layer_after_a_vector_is_refused_by_shape():
    g = Graph()
    g.add_node("Input", {"shape": [8]}, id="x")
    g.add_node("RandomFlip", {}, id="f")
    g.connect("x", 0, "f", 0)
    assert "height, width, channels" in str(g.validate()[0])


def _torch_module(tmp_path, type_id, params, shape):
    import importlib.util
    from layerloom.interop import export as interop_export
    from layerloom.project import loom
    g = Graph()
    g.add_node("Input", {"shape": list(shape)}, id="x")
    g.add_node(type_id, params, id="aug")
    g.connect("x", 0, "aug", 0)
    path = str(tmp_path / f"{type_id.lower()}_torch.py")
    interop_export(loom.Project(g), {}, path, "pytorch-code")
    spec = importlib.util.spec_from_file_location(f"{type_id.lower()}_torch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_model()


def _keras_map(type_id, p, u, H, W):
    """Keras' affine map (output pixel -> input, integer centres) for the uniforms u (N, 2)."""
    cx, cy = 0.5 * (W - 1), 0.5 * (H - 1)
    one, zero = np.ones(len(u)), np.zeros(len(u))
    if type_id == "RandomRotation":
        lo, hi = p["factor"]
        a = (lo + u[:, 0] * (hi - lo)) * 2 * np.pi
        c, s = np.cos(a), np.sin(a)
        rows = [c, -s, cx - cx * c + cy * s, s, c, cy - cx * s - cy * c]
    elif type_id == "RandomZoom":
        (hl, hu), (wl, wu) = p["height_factor"], p["width_factor"]
        zy, zx = 1 + hl + u[:, 0] * (hu - hl), 1 + wl + u[:, 1] * (wu - wl)
        rows = [zx, zero, cx * (1 - zx), zero, zy, cy * (1 - zy)]
    else:
        (hl, hu), (wl, wu) = p["height_factor"], p["width_factor"]
        rows = [one, zero, -(wl + u[:, 1] * (wu - wl)) * W, zero, one,
                -(hl + u[:, 0] * (hu - hl)) * H]
    return np.stack(rows + [zero, zero], 1).astype(np.float32)


TORCH_AFFINE = [
    ("RandomRotation", {"factor": [-0.3, 0.4], "fill_mode": fill, "fill_value": 0.5})
    for fill in ("reflect", "wrap", "constant", "nearest")] + [
    ("RandomZoom", {"height_factor": [-0.5, 0.9], "width_factor": [0.3, 1.0],
                    "fill_mode": "wrap"}),
    ("RandomTranslation", {"height_factor": [-1, 1], "width_factor": [-0.5, 1],
                           "fill_mode": "reflect"}),
    ("RandomTranslation", {"height_factor": [-0.4, 0.4], "width_factor": [0.2, 0.6],
                           "fill_mode": "constant", "interpolation": "nearest"})]


@pytest.mark.parametrize("type_id,params", TORCH_AFFINE, ids=[_id(c) for c in TORCH_AFFINE])
def test_the_pytorch_script_trains_with_keras_maps(rng, tmp_path, monkeypatch, type_id, params):
    """The written script's training form samples as Keras' affine_transform, for the uniforms
    torch.rand gives it (fixed here); at inference it is the identity."""
    keras = _keras()
    import torch
    model = _torch_module(tmp_path, type_id, params, (5, 7, 2))
    x = rng.uniform(0, 1, size=(4, 5, 7, 2)).astype(np.float32)
    u = rng.uniform(0, 1, size=(4, 2)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_array_equal(model({"x": torch.from_numpy(x)}).numpy(), x)
        model.train()
        monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.from_numpy(u))
        got = model({"x": torch.from_numpy(x)}).numpy()
    p = Graph().add_node(type_id, params).params
    p = {k: tuple(v) if isinstance(v, tuple) else v for k, v in p.items()}
    want = keras.ops.image.affine_transform(
        x, _keras_map(type_id, p, u.astype(np.float64), 5, 7),
        interpolation=p["interpolation"], fill_mode=p["fill_mode"], fill_value=p["fill_value"])
    np.testing.assert_allclose(got, np.asarray(want), rtol=TOL, atol=TOL)


def test_a_per_channel_rescaling_from_keras_predicts_as_keras(rt, rng, tmp_path):
    keras = _keras()
    from layerloom.interop import keras_import
    from layerloom.train.model import Model
    x = keras.Input(shape=(2, 3, 3), name="x")
    model = keras.Model(x, keras.layers.Rescaling([0.5, -1.0, 2.0], offset=[0.1, 0.2, -0.3],
                                                  name="rc")(x))
    model.save(str(tmp_path / "pc.keras"))
    project = keras_import.read(str(tmp_path / "pc.keras"))[0]
    assert project.graph.nodes["rc"].params["offset"] == (0.1, 0.2, -0.3)
    data = rng.normal(size=(4, 2, 3, 3)).astype(np.float32)
    got = Model(project.graph, rt, 4).predict({"x": data})["rc"]
    np.testing.assert_allclose(got, model.predict(data, verbose=0), rtol=TOL, atol=TOL)
    g = Graph()
    g.add_node("Input", {"shape": [4, 2]}, id="x")
    g.add_node("Rescaling", {"scale": [1.0, 2.0, 3.0]}, id="r")
    g.connect("x", 0, "r", 0)
    assert "scale has 3 values, one per channel, but the input (None, 4, 2) has 2 channels" in \
        str(g.validate()[0])


def test_a_model_trains_through_every_augmentation_and_predicts_without_them(rng):
    """A fit runs them all in a chain while training (finite losses); predict is deterministic
    and equals the model without them but RandomCrop's inference form, on the same weights."""
    from layerloom import api
    from layerloom.project import loom
    chain = [("RandomFlip", {}), ("RandomRotation", {"factor": 0.2}),
             ("RandomZoom", {"height_factor": 0.2}), ("RandomTranslation", {}),
             ("RandomContrast", {"value_range": [0, 1]}),
             ("RandomBrightness", {"value_range": [0, 1]}), ("RandomCrop", {"height": 4,
                                                                             "width": 4})]

    def project(layers):
        g = Graph()
        g.add_node("Input", {"shape": [6, 6, 1]}, id="x")
        prev = "x"
        for i, (type_id, params) in enumerate(layers):
            g.add_node(type_id, params, id=f"a{i}")
            g.connect(prev, 0, f"a{i}", 0)
            prev = f"a{i}"
        g.add_node("Flatten", {}, id="flat")
        g.add_node("Dense", {"units": 2}, id="out")
        g.connect(prev, 0, "flat", 0)
        g.connect("flat", 0, "out", 0)
        return loom.Project(g, training={**loom.default_training(),
                                         "loss": {"out": {"name": "mean_squared_error"}}})
    x = rng.uniform(0, 1, size=(16, 6, 6, 1)).astype(np.float32)
    y = rng.normal(size=(16, 2)).astype(np.float32)
    model = api.Model(project(chain))
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=False)
    assert all(np.isfinite(e["loss"]) for e in history["epochs"])
    got = model.predict(x)
    np.testing.assert_array_equal(got, model.predict(x))
    plain = api.Model(project(chain[-1:]), model.get_weights())
    np.testing.assert_allclose(got, plain.predict(x), rtol=TOL, atol=TOL)


def test_the_pytorch_script_flips_crops_and_changes_contrast_and_brightness_as_keras(rng,
                                                                                    tmp_path):
    """While training: each image itself or flipped (both axes together); one window of the
    input for the whole batch; contrast a factor in Keras' 1..1+f about each channel's mean;
    brightness one delta per image within factor x value_range, clipped to it. At inference
    the identity (RandomCrop: its centre box resized, as the engine)."""
    torch = pytest.importorskip("torch")
    x = rng.uniform(0, 1, size=(64, 5, 6, 2)).astype(np.float32)
    tx = torch.from_numpy(x)

    def train(type_id, params):
        model = _torch_module(tmp_path, type_id, params, x.shape[1:])
        with torch.no_grad():
            inference = model({"x": tx}).numpy()
            model.train()
            return inference, model({"x": tx}).numpy()
    inf, y = train("RandomFlip", {})
    np.testing.assert_array_equal(inf, x)
    flipped = np.array([np.array_equal(a, b[::-1, ::-1]) for a, b in zip(y, x)])
    kept = np.array([np.array_equal(a, b) for a, b in zip(y, x)])
    assert (flipped | kept).all() and 10 < flipped.sum() < 54
    inf, y = train("RandomCrop", {"height": 3, "width": 4})
    np.testing.assert_allclose(inf, get_layer("RandomCrop").reference(
        Graph().add_node("RandomCrop", {"height": 3, "width": 4}).params, [x], {})[0],
        rtol=TOL, atol=TOL)
    windows = [(i, j) for i in range(3) for j in range(3)
               if np.array_equal(y, x[:, i:i + 3, j:j + 4])]
    assert len(windows) == 1
    inf, y = train("RandomContrast", {"factor": 0.5, "value_range": [-10, 10]})
    np.testing.assert_array_equal(inf, x)
    m = x.mean(axis=(1, 2), keepdims=True)
    f = ((y - m) / (x - m)).reshape(64, -1)
    np.testing.assert_allclose(f, f[:, :1] * np.ones_like(f), rtol=1e-3)
    assert f.min() >= 1 - 1e-4 and f.max() <= 1.5 + 1e-4
    inf, y = train("RandomBrightness", {"factor": 0.2, "value_range": [0, 1]})
    np.testing.assert_array_equal(inf, x)
    assert y.min() >= 0 and y.max() <= 1
    inside = (y > 0) & (y < 1)
    d = np.where(inside, y - x, np.nan).reshape(64, -1)
    spread = np.nanmax(d, 1) - np.nanmin(d, 1)
    assert np.nanmax(spread) < 1e-5 and np.nanmin(d) >= -0.2 - 1e-6 and np.nanmax(d) <= 0.2 + 1e-6
