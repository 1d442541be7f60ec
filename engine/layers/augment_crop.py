"""keras_cv's RandomCropAndResize (keras_cv/src/layers/preprocessing/random_crop_and_resize.py;
keras.io's vision/nnclr.py uses it), on preprocessing.py's geometric augmentation machinery:
while training, per image, a random box whose area fraction is uniform over crop_area_factor
and whose aspect ratio (width / height of the box's fractions of the image) is uniform over
aspect_ratio_factor, its height and width fractions sqrt(area / ratio) and sqrt(area * ratio)
clipped to 1, placed uniformly where it fits, then tf.image.crop_and_resize's sampling of it to
target_size (corner-aligned: the first and last output rows read the box's edge rows; bilinear
or nearest). The box is drawn on the device (augment.cl draw_transforms, kind "crop_resize",
Philox keyed by (training seed, layer) with the step as counter, as RandomZoom's) into a
per-sample map that warp samples through, and that the backward pass reads again.

At inference: keras_cv's own inference form while it had one (before keras_cv 0.5 dropped the
training flag, its layers augment always): smart_resize, the largest centred box of the
target's aspect ratio resized to target_size, here with the layer's interpolation (keras_cv's
resized images bilinearly whatever it was), as RandomCrop's inference in this engine.
keras_cv's bounding_box_format has no counterpart: Layerloom's augmentation layers take images
only."""
import math

from layerloom.backend.augment_ops import FILL_MODES, WarpGeometry
from layerloom.core.errors import ParamError, quote
from layerloom.core.params import Pair
from layerloom.core.registry import KerasForm, OnnxForm, TorchForm, get_layer, register
from layerloom.layers.preprocessing import (Factor, _CHOICES, _interpolation, _Plan, _resize_plan,
                                            _seed_param, _warp_onnx, _warp_torch_expr, _Warp)


class _Bounds(Factor):
    """A keras_cv factor given as (lower, upper): a pair with lower <= upper (keras_cv refuses a
    reversed one), both within [lo, hi] (lo excluded where lo_open)."""

    def __init__(self, name, default, lo, hi, lo_open=False, help=""):
        super().__init__(name, default, lo=lo, hi=hi, lo_open=lo_open, pair_only=True,
                         help=help)

    def validate(self, value, place):
        v = super().validate(value, place)
        if v[0] > v[1]:
            raise ParamError(f"expected {self.describe()}, got {quote(value)}: lower > upper",
                             place)
        return v

    def describe(self):
        upper = "" if math.isinf(self.hi) else f", {self.hi:g}]"
        bounds = f"{'(' if self.lo_open else '['}{self.lo:g}{upper or ', ...)'}"
        return f"[lower, upper], lower <= upper, within {bounds}"


def _crop_resize_torch(t, n):
    """While training keras_cv's boxes for torch.rand's uniforms, sampled as
    tf.image.crop_and_resize through F.grid_sample with align_corners=True (the box's edge
    pixels are its first and last output's, a single output row its centre); at inference
    the engine's inference form (its centred box, F.interpolate)."""
    H, W, _ = n.in_shapes[0]
    p, x, o = n.params, n.x[0], n.out
    (OH, OW), (a0, a1), (r0, r1) = p["target_size"], p["crop_area_factor"], \
        p["aspect_ratio_factor"]
    inference = _warp_torch_expr(n, get_layer(n.type)._inference(p, H, W, 0))
    like = f"dtype={x}.dtype, device={x}.device"

    def steps(size):
        return f"torch.linspace(0, 1, {size}, {like})" if size > 1 else \
            f"torch.full((1,), 0.5, {like})"
    return [], [
        "if self.training:",
        f"    {o}_u = torch.rand({x}.shape[0], 4, 1, 1, {like})",
        f"    {o}_area = {a0!r} + {o}_u[:, 0] * {a1 - a0!r}",
        f"    {o}_ratio = {r0!r} + {o}_u[:, 1] * {r1 - r0!r}",
        f"    {o}_h = ({o}_area / {o}_ratio).sqrt().clamp(max=1.0)",
        f"    {o}_w = ({o}_area * {o}_ratio).sqrt().clamp(max=1.0)",
        f"    {o}_y = 2 * ((1 - {o}_h) * {o}_u[:, 2] + {o}_h * {steps(OH)}.reshape(1, -1, 1)) - 1",
        f"    {o}_x = 2 * ((1 - {o}_w) * {o}_u[:, 3] + {o}_w * {steps(OW)}.reshape(1, 1, -1)) - 1",
        f"    {o}_g = torch.stack([{o}_x.expand(-1, {OH}, {OW}), {o}_y.expand(-1, {OH}, {OW})], "
        "-1)",
        f"    {o} = F.grid_sample({x}.permute(0, 3, 1, 2), {o}_g, mode={p['interpolation']!r}, "
        "padding_mode='border', align_corners=True).permute(0, 2, 3, 1)",
        "else:",
        f"    {o} = {inference}"], {}


def _crop_resize_keras(k, n):
    """Keras 3 has no RandomCropAndResize: its inference form, a Resizing of the centred box."""
    (h, w), y = n.params["target_size"], n.out[0]
    return ["# keras_cv's RandomCropAndResize: Keras 3 has no such layer; its inference form "
            "(the largest centred box of the target's aspect ratio, resized), without the "
            "training crops",
            f"{y} = " + k.call("Resizing", [repr(h), repr(w),
                                            f"interpolation={n.params['interpolation']!r}",
                                            "crop_to_aspect_ratio=True"], n, n.x)]


def _sampler(o, key):
    """keras_cv's factor as its get_config stores it: a UniformFactorSampler (lower, upper),
    a ConstantFactorSampler (value, value), or a pair."""
    v = o.get(key)
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return [o.f32(e) for e in v]
    if isinstance(v, dict):
        cls, cfg = v.get("class_name"), v.get("config") or {}
        if cls == "UniformFactorSampler" and {"lower", "upper"} <= set(cfg):
            return [o.f32(cfg["lower"]), o.f32(cfg["upper"])]
        if cls == "ConstantFactorSampler" and "value" in cfg:
            return [o.f32(cfg["value"])] * 2
    o.fail(key, "has no Layerloom form (a pair, a UniformFactorSampler or a "
                "ConstantFactorSampler)")


def _crop_resize_keras_in(o, shapes):
    """keras_cv's config (a model saved with keras_cv's layer); bounding boxes refused."""
    o.must("bounding_box_format", None)
    size = o.get("target_size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2):
        o.fail("target_size", "is not a pair of integers")
    interpolation = o.get("interpolation", "bilinear")
    if interpolation not in _CHOICES["interpolation"]:
        o.fail("interpolation", f"has no Layerloom form (only "
                                f"{', '.join(_CHOICES['interpolation'])})")
    seed = o.get("seed")
    o.get("force_generator")
    return {"target_size": list(size), "crop_area_factor": _sampler(o, "crop_area_factor"),
            "aspect_ratio_factor": _sampler(o, "aspect_ratio_factor"),
            "interpolation": interpolation, "seed": 0 if seed is None else int(seed) % 2**31}


@register
class RandomCropAndResize(_Warp):
    type_id = "RandomCropAndResize"
    help = ("While training, crops each image to a random box (area fraction and aspect ratio "
            "drawn from their ranges) resized to target_size, as keras_cv; at inference the "
            "largest centred box of that aspect ratio, resized.")
    params = (Pair("target_size", (32, 32), help="Output height and width (keras_cv has no "
                                                  "default)."),
              _Bounds("crop_area_factor", (0.08, 1.0), 0.0, 1.0,
                      help="[lower, upper] of the box's area as a fraction of the image's "
                           "(keras_cv has no default; 0.08..1 for self-supervised pretraining, "
                           "0.8..1 for fine tuning)."),
              _Bounds("aspect_ratio_factor", (0.75, 4.0 / 3.0), 0.0, math.inf, lo_open=True,
                      help="[lower, upper] of the box's width / height, as fractions of the "
                           "image's (keras_cv has no default; 3/4..4/3 for most tasks, 1..1 "
                           "keeps the image's)."),
              _interpolation(), _seed_param())
    headline = ("target_size",)
    examples = (({"target_size": [4, 3]}, [(6, 5, 2)]),
                ({"target_size": [5, 7], "crop_area_factor": [0.5, 1.0],
                  "aspect_ratio_factor": [0.5, 2.0], "interpolation": "nearest"}, [(4, 6, 1)]),
                ({"target_size": [1, 3], "crop_area_factor": [0.2, 0.2],
                  "aspect_ratio_factor": [1.0, 1.0]}, [(3, 4, 2)]))

    onnx_form = OnnxForm(_warp_onnx, "its inference form: Slice, Resize (half_pixel)")
    torch_form = TorchForm(_crop_resize_torch)
    keras_form = KerasForm("RandomCropAndResize", ("target_size", "crop_area_factor",
                                                   "aspect_ratio_factor", "interpolation",
                                                   "seed"),
                           write=_crop_resize_keras, read=_crop_resize_keras_in,
                           doc="its inference form: layers.Resizing(height, width, "
                               "crop_to_aspect_ratio=True) (Keras 3 has no such layer; read "
                               "from keras_cv's)")

    def _out_hw(self, p, H, W):
        return tuple(p["target_size"])

    def _inference(self, p, H, W, C):
        h, w = p["target_size"]
        return _resize_plan(H, W, C, h, w, p["interpolation"] == "nearest", crop=True)

    def _training(self, p, H, W, C):
        h, w = p["target_size"]
        g = WarpGeometry(H, W, C, h, w, 0, 0, H, W, int(p["interpolation"] == "nearest"),
                         FILL_MODES["nearest"])
        return _Plan(g, draw=("crop_resize", tuple(p["crop_area_factor"]) +
                              tuple(p["aspect_ratio_factor"]) + (h, w), False))
