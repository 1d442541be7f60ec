"""keras_cv's RandomCropAndResize (engine/layers/augment_crop.py; its draw is augment.cl's
draw_transforms kind "crop_resize"), beyond test_layers.py's harness (which checks its inference
form's forward against the float64 reference):

- at inference: the backward against central differences of the reference, and the output is
  Keras' smart_resize (keras_cv's inference form while it had one);
- while training: the output is `apply` through the maps the forward drew (read back from the
  scratch buffer), its input gradient the central differences of that; the output is an
  independent float64 tf.image.crop_and_resize (TF's kernel, written out below) of the boxes
  the maps sample; the boxes' area fractions and aspect ratios are uniform over their ranges
  (keras_cv's clipping to the image where they would not fit), each image its own box, placed
  uniformly where it fits; the same seed and step give the same output, another step or seed
  another;
- the PyTorch script's training form is the same crop_and_resize for the uniforms torch.rand
  gives it, its inference form the engine's; keras_cv's saved config imports as the layer; bad
  values are refused naming the parameter.

Tolerances: 1e-5 (float32 against float64) where the same maps are used; 1e-4 against the
independent crop_and_resize of boxes recovered from float32 maps; gradients as test_layers.py's
(rtol 1e-3, atol 1e-4)."""
import json
import os
import zipfile

import numpy as np
import pytest

from conftest import numeric_grad
from layerloom.core.errors import LayerloomError, ParamError
from layerloom.core.graph import Graph
from layerloom.core.registry import get_layer
from test_augmentation import _torch_module, _train
from test_layers import run_layer

TOL = 1e-5
TYPE = "RandomCropAndResize"


def _params(params):
    return Graph().add_node(TYPE, params).params


def _boxes(T, in_hw, out_hw):
    """(N, 4) boxes (y1, x1, y2, x2), fractions of the image as keras_cv's, that the maps T
    (N, 6) sample as tf.image.crop_and_resize: output index i of an axis reads input
    coordinate (integer centres) lo (size - 1) + i (hi - lo) (size - 1) / (n - 1). The engine's
    maps take the output pixel's centre i + 0.5: shift + 0.5 scale is index 0's coordinate.
    An axis of one output pixel keeps only the box's centre (lo = hi = it)."""
    T = np.asarray(T, np.float64).reshape(-1, 6)
    out = []
    for scale, shift, size, n in ((T[:, 4], T[:, 5], in_hw[0], out_hw[0]),
                                  (T[:, 0], T[:, 2], in_hw[1], out_hw[1])):
        first = (shift + 0.5 * scale) / (size - 1)
        out.append((first, first + scale * (n - 1) / (size - 1)))
    (y1, y2), (x1, x2) = out
    return np.stack([y1, x1, y2, x2], 1)


def crop_and_resize(x, boxes, out_hw, method="bilinear"):
    """tf.image.crop_and_resize (tensorflow/core/kernels/image/crop_and_resize_op.cc), float64,
    box i of image i; extrapolation where a coordinate leaves the image, which these boxes
    (inside [0, 1]) only do by rounding: allowed 1e-6 of a pixel, clamped."""
    n, H, W, C = x.shape
    OH, OW = out_hw
    out = np.zeros((n, OH, OW, C))
    for b, (y1, x1, y2, x2) in enumerate(boxes):
        def coords(lo, hi, size, count):
            if count > 1:
                c = lo * (size - 1) + np.arange(count) * (hi - lo) * (size - 1) / (count - 1)
            else:
                c = np.array([0.5 * (lo + hi) * (size - 1)])
            assert c.min() >= -1e-6 and c.max() <= size - 1 + 1e-6, (lo, hi, c)
            return np.clip(c, 0, size - 1)
        ys, xs = coords(y1, y2, H, OH), coords(x1, x2, W, OW)
        for i, iy in enumerate(ys):
            for j, ix in enumerate(xs):
                if method == "nearest":  # std::round: half away from zero
                    out[b, i, j] = x[b, int(np.floor(iy + 0.5)), int(np.floor(ix + 0.5))]
                    continue
                t, l = int(np.floor(iy)), int(np.floor(ix))
                bt, r = int(np.ceil(iy)), int(np.ceil(ix))
                fy, fx = iy - t, ix - l
                top = x[b, t, l] + (x[b, t, r] - x[b, t, l]) * fx
                bottom = x[b, bt, l] + (x[b, bt, r] - x[b, bt, l]) * fx
                out[b, i, j] = top + (bottom - top) * fy
    return out


def _keras_cv_boxes(p, u):
    """keras_cv's get_random_transformation for the uniforms u (N, 4): area, aspect ratio, top,
    left."""
    (a0, a1), (r0, r1) = p["crop_area_factor"], p["aspect_ratio_factor"]
    area, ratio = a0 + u[:, 0] * (a1 - a0), r0 + u[:, 1] * (r1 - r0)
    h, w = np.clip(np.sqrt(area / ratio), 0, 1), np.clip(np.sqrt(area * ratio), 0, 1)
    y1, x1 = u[:, 2] * (1 - h), u[:, 3] * (1 - w)
    return np.stack([y1, x1, y1 + h, x1 + w], 1)


# -- at inference ------------------------------------------------------------------------------
@pytest.mark.parametrize("case", range(len(get_layer(TYPE).examples)))
def test_inference_backward_is_the_references_gradient(rt, ops, rng, case):
    layer = get_layer(TYPE)
    params, (shape,) = layer.examples[case]
    p = _params(params)
    x = rng.normal(size=(3,) + tuple(shape))
    dy = rng.normal(size=(3,) + tuple(layer.output_shapes(p, [shape])[0]))
    y, (dx,), _ = run_layer(rt, ops, layer, p, [x], {}, dy, training=False)
    np.testing.assert_allclose(y, layer.reference(p, [x], {})[0], rtol=TOL, atol=TOL)
    num = numeric_grad(lambda: float((layer.reference(p, [x], {})[0] * dy).sum()), x)
    np.testing.assert_allclose(dx, num, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("params,shape", [
    ({"target_size": [4, 6]}, (7, 5, 2)), ({"target_size": [5, 3]}, (4, 9, 1)),
    ({"target_size": [6, 6], "interpolation": "nearest"}, (9, 4, 3)),
    ({"target_size": [3, 8], "interpolation": "nearest"}, (6, 6, 1))])
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras' own, numpy 2's __array__
def test_inference_is_keras_smart_resize(rt, ops, rng, params, shape):
    """keras_cv's inference form while it had one: keras.preprocessing.image.smart_resize."""
    pytest.importorskip("torch")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    x = rng.uniform(0, 1, size=(2,) + shape).astype(np.float32)
    p = _params(params)
    got = run_layer(rt, ops, get_layer(TYPE), p, [x.astype(np.float64)], {}, None,
                    backward=False)[0]
    want = keras.preprocessing.image.smart_resize(x, tuple(p["target_size"]),
                                                  interpolation=p["interpolation"])
    np.testing.assert_allclose(got, np.asarray(want), rtol=TOL, atol=TOL)


# -- while training ----------------------------------------------------------------------------
TRAINING = [
    ({"target_size": [4, 3]}, (6, 5, 2)),
    ({"target_size": [5, 7], "crop_area_factor": [0.5, 1.0], "aspect_ratio_factor": [0.5, 2.0],
      "interpolation": "nearest"}, (4, 6, 1)),
    ({"target_size": [6, 6], "crop_area_factor": [0.05, 0.3]}, (5, 8, 2)),
    ({"target_size": [2, 5], "crop_area_factor": [0.9, 1.0], "aspect_ratio_factor": [1.0, 1.0],
      "seed": 4}, (7, 3, 1)),
]


def _id(case):
    return ",".join(f"{k}={v}" for k, v in case[0].items()) + "<-" + "x".join(map(str, case[1]))


@pytest.mark.parametrize("params,shape", TRAINING, ids=[_id(c) for c in TRAINING])
def test_training_output_and_gradient_through_the_drawn_boxes(rt, ops, rng, params, shape):
    """The device's output is `apply` with the maps it drew, and is TF's crop_and_resize of the
    boxes they sample; its gradient is the central differences of `apply`."""
    x = rng.normal(size=(3,) + shape)
    p = _params(params)
    out_hw = tuple(p["target_size"])
    dy = rng.normal(size=(3,) + out_hw + shape[-1:])
    layer, p, y, dx, T = _train(rt, ops, TYPE, params, x, dy)
    np.testing.assert_allclose(y, layer.apply(p, x, T), rtol=TOL, atol=TOL)
    boxes = _boxes(T, shape[:2], out_hw)
    assert (boxes >= -1e-6).all() and (boxes <= 1 + 1e-6).all()
    np.testing.assert_allclose(y, crop_and_resize(x, boxes, out_hw, p["interpolation"]),
                               rtol=1e-4, atol=1e-4)
    num = numeric_grad(lambda: float((layer.apply(p, x, T) * dy).sum()), x)
    np.testing.assert_allclose(dx, num, rtol=1e-3, atol=1e-4)


def _drawn_boxes(rt, ops, params, n=3000, shape=(9, 7, 1), step=5):
    p = _params(params)
    T = _train(rt, ops, TYPE, params, np.zeros((n,) + shape), step=step)[4]
    return _boxes(T, shape[:2], p["target_size"])


def test_areas_and_aspect_ratios_are_uniform_over_their_ranges(rt, ops):
    """Ranges where no box needs clipping (area <= ratio and area x ratio <= 1): each box's area
    and aspect ratio are the drawn ones, uniform; the box lies inside the image, its top and
    left uniform over where it fits."""
    b = _drawn_boxes(rt, ops, {"target_size": [4, 5], "crop_area_factor": [0.1, 0.5],
                               "aspect_ratio_factor": [0.6, 1.8]})
    h, w = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    area, ratio = h * w, w / h
    assert area.min() >= 0.1 - 1e-5 and area.max() <= 0.5 + 1e-5
    assert ratio.min() >= 0.6 - 1e-5 and ratio.max() <= 1.8 + 1e-5
    for v, lo, hi in ((area, 0.1, 0.5), (ratio, 0.6, 1.8)):  # uniform: mean, spread, quartiles
        assert abs(v.mean() - (lo + hi) / 2) < 0.02 * (hi - lo) * 2
        assert abs(v.std() - (hi - lo) / 12 ** 0.5) < 0.02 * (hi - lo)
        assert abs(np.mean(v < lo + (hi - lo) / 4) - 0.25) < 0.03
    assert (b[:, :2] >= -1e-6).all() and (b[:, 2:] <= 1 + 1e-6).all()
    for t, size in ((b[:, 0], h), (b[:, 1], w)):
        where = t / (1 - size)  # uniform [0, 1)
        assert abs(where.mean() - 0.5) < 0.02 and abs(where.std() - 12 ** -0.5) < 0.02
    # per image: no two boxes alike
    assert len(np.unique(np.round(b, 6), axis=0)) == len(b)


def test_boxes_that_would_not_fit_are_clipped_to_the_image_as_keras_cv(rt, ops):
    """sqrt(area / ratio) and sqrt(area x ratio) clipped to 1: the whole height (or width)
    where it would be more, the area then at most the drawn one."""
    b = _drawn_boxes(rt, ops, {"target_size": [3, 4], "crop_area_factor": [0.6, 1.0],
                               "aspect_ratio_factor": [0.25, 4.0]})
    h, w = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    assert h.max() <= 1 + 1e-6 and w.max() <= 1 + 1e-6
    assert (b[:, :2] >= -1e-6).all() and (b[:, 2:] <= 1 + 1e-6).all()
    # as keras_cv's boxes for numpy's uniforms: how often clipped (exactly: P(ratio <= area)
    # 0.147, P(area x ratio >= 1) 0.726), and the sizes' quantiles
    want = _keras_cv_boxes(_params({"crop_area_factor": [0.6, 1.0], "aspect_ratio_factor":
                                    [0.25, 4.0]}), np.random.default_rng(5).uniform(
                                        size=(100000, 4)))
    wh, ww = want[:, 2] - want[:, 0], want[:, 3] - want[:, 1]
    assert abs((h > 1 - 1e-6).mean() - 0.147) < 0.02 and abs((wh == 1).mean() - 0.147) < 0.005
    assert abs((w > 1 - 1e-6).mean() - 0.726) < 0.02 and abs((ww == 1).mean() - 0.726) < 0.005
    q = np.linspace(0.05, 0.95, 19)
    np.testing.assert_allclose(np.quantile(h, q), np.quantile(wh, q), atol=0.03)
    np.testing.assert_allclose(np.quantile(w, q), np.quantile(ww, q), atol=0.03)
    np.testing.assert_allclose(np.quantile(h * w, q), np.quantile(wh * ww, q), atol=0.03)
    # a clipped box keeps the other side: its area sqrt(area / ratio) (or x ratio), at least
    # sqrt(0.6 / 4)
    assert (h * w).max() <= 1 + 1e-6 and (h * w).min() >= 0.15 ** 0.5 - 1e-5
    # the aspect ratio 1 keeps the image's, the area a constant: every box the same size
    b = _drawn_boxes(rt, ops, {"target_size": [3, 4], "crop_area_factor": [0.25, 0.25],
                               "aspect_ratio_factor": [1.0, 1.0]})
    np.testing.assert_allclose(b[:, 2] - b[:, 0], 0.5, atol=1e-5)
    np.testing.assert_allclose(b[:, 3] - b[:, 1], 0.5, atol=1e-5)


@pytest.mark.parametrize("params,shape", TRAINING[::2], ids=[_id(c) for c in TRAINING[::2]])
def test_a_seed_and_step_reproduce_the_boxes_another_step_or_seed_changes_them(rt, ops, rng,
                                                                              params, shape):
    x = rng.normal(size=(6,) + shape)
    _, _, y, _, T = _train(rt, ops, TYPE, params, x, step=3)
    _, _, y2, _, T2 = _train(rt, ops, TYPE, params, x, step=3)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(T, T2)
    _, _, y4, _, T4 = _train(rt, ops, TYPE, params, x, step=4)
    assert not np.array_equal(y, y4) and not (T == T4).all(axis=1).any()
    _, _, y9, _, T9 = _train(rt, ops, TYPE, {**params, "seed": 9}, x, step=3)
    assert not np.array_equal(y, y9) and not (T == T9).all(axis=1).any()


def test_a_box_of_one_output_pixel_reads_its_centre(rt, ops, rng):
    """crop_and_resize to a size of 1 on an axis samples the box's centre there; the maps keep
    only it, the drawn size checked through the other axis."""
    params = {"target_size": [1, 4], "crop_area_factor": [0.16, 0.16],
              "aspect_ratio_factor": [1.0, 1.0]}
    x = rng.normal(size=(40, 6, 6, 1))
    layer, p, y, _, T = _train(rt, ops, TYPE, params, x)
    b = _boxes(T, (6, 6), (1, 4))
    np.testing.assert_allclose(b[:, 3] - b[:, 1], 0.4, atol=1e-5)  # the width: sqrt(0.16)
    centre = b[:, 0]
    assert centre.min() >= 0.2 - 1e-5 and centre.max() <= 0.8 + 1e-5  # a 0.4-high box's
    boxes = np.stack([centre - 0.2, b[:, 1], centre + 0.2, b[:, 3]], 1)
    np.testing.assert_allclose(y, crop_and_resize(x, boxes, (1, 4)), rtol=1e-4, atol=1e-4)


# -- PyTorch, Keras, parameters ------------------------------------------------------------------
@pytest.mark.parametrize("params,shape", [
    ({"target_size": [5, 4], "crop_area_factor": [0.2, 1.0], "aspect_ratio_factor": [0.5, 2.0]},
     (7, 6, 2)),
    ({"target_size": [1, 6], "crop_area_factor": [0.3, 0.9], "interpolation": "nearest"},
     (5, 8, 1))])
def test_the_pytorch_script_crops_as_keras_cv(rng, tmp_path, monkeypatch, params, shape):
    """While training: crop_and_resize of keras_cv's boxes for the uniforms torch.rand gives
    it (fixed here); at inference the engine's inference form (the reference)."""
    torch = pytest.importorskip("torch")
    model = _torch_module(tmp_path, TYPE, params, shape)
    p = _params(params)
    x = rng.uniform(0, 1, size=(16,) + shape).astype(np.float32)
    u = rng.uniform(0, 1, size=(16, 4)).astype(np.float32)
    with torch.no_grad():
        got = model({"x": torch.from_numpy(x)}).numpy()
        np.testing.assert_allclose(got, get_layer(TYPE).reference(p, [x], {})[0], rtol=TOL,
                                   atol=TOL)
        model.train()
        monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.from_numpy(u).reshape(a))
        got = model({"x": torch.from_numpy(x)}).numpy()
    want = crop_and_resize(x.astype(np.float64), _keras_cv_boxes(p, u.astype(np.float64)),
                           p["target_size"], p["interpolation"])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _keras_cv_file(tmp_path, config):
    """A .keras file whose layer 'rcr' is keras_cv's RandomCropAndResize with this config (made
    from a Keras 3 model's, the layer's entry as keras.saving writes a registered class's)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    x = keras.Input(shape=(9, 8, 3), name="x")
    model = keras.Model(x, keras.layers.Resizing(4, 4, name="rcr")(x))
    source = str(tmp_path / "source.keras")
    model.save(source)
    with zipfile.ZipFile(source) as z:
        files = {n: z.read(n) for n in z.namelist()}
    top = json.loads(files["config.json"])
    for lay in top["config"]["layers"]:
        if lay["class_name"] == "Resizing":
            lay.update(module="keras_cv.layers", class_name="RandomCropAndResize",
                       registered_name="keras_cv>RandomCropAndResize",
                       config={"name": "rcr", "trainable": True, "dtype": "float32", **config})
    files["config.json"] = json.dumps(top).encode()
    path = str(tmp_path / "rcr.keras")
    with zipfile.ZipFile(path, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    return path


def _sampler(cls, **config):
    return {"module": "keras_cv.core", "class_name": cls, "config": config,
            "registered_name": f"keras_cv>{cls}"}


def test_keras_cvs_saved_layer_imports_as_the_layer(tmp_path):
    from layerloom.interop import keras_import
    config = {"target_size": [6, 5], "seed": 7, "bounding_box_format": None,
              "crop_area_factor": _sampler("UniformFactorSampler", lower=0.2, upper=1.0,
                                           seed=7),
              "aspect_ratio_factor": _sampler("ConstantFactorSampler", value=1.5),
              "interpolation": "nearest"}
    project = keras_import.read(_keras_cv_file(tmp_path, config))[0]
    node = project.graph.nodes["rcr"]
    assert node.type == TYPE and node.params == {
        "target_size": (6, 5), "crop_area_factor": (0.2, 1.0), "aspect_ratio_factor": (1.5, 1.5),
        "interpolation": "nearest", "seed": 7}
    with pytest.raises(LayerloomError, match="'rcr' \\(RandomCropAndResize\\): option "
                                             "bounding_box_format="):
        keras_import.read(_keras_cv_file(tmp_path, {**config, "bounding_box_format": "xyxy"}))
    with pytest.raises(LayerloomError, match="option aspect_ratio_factor="):
        keras_import.read(_keras_cv_file(tmp_path, {**config, "aspect_ratio_factor": _sampler(
            "NormalFactorSampler", mean=1.0, stddev=0.1, min_value=0.5, max_value=2.0)}))


@pytest.mark.parametrize("params,name", [
    ({"crop_area_factor": [0.5, 1.5]}, "crop_area_factor"),
    ({"crop_area_factor": [0.9, 0.1]}, "crop_area_factor"),
    ({"crop_area_factor": 0.5}, "crop_area_factor"),
    ({"aspect_ratio_factor": [0.0, 1.0]}, "aspect_ratio_factor"),
    ({"aspect_ratio_factor": [2.0, 0.5]}, "aspect_ratio_factor"),
    ({"target_size": [0, 4]}, "target_size"),
    ({"interpolation": "bicubic"}, "interpolation"),
])
def test_bad_values_are_refused_naming_the_parameter(params, name):
    with pytest.raises(ParamError, match=name):
        Graph().add_node(TYPE, params)
