"""The preprocessing layers that move pixels: Resizing, CenterCrop and the geometric
augmentation layers (RandomFlip, RandomRotation, RandomZoom, RandomTranslation, RandomCrop),
Keras' names, parameters and defaults; the ones that change values (RandomContrast,
RandomBrightness, Rescaling) are in preprocessing_values.py, which takes Factor and the
helpers they share from here.

The augmentation layers act while training only and pass their input through at inference
(RandomCrop: its center crop and resize, so that its output keeps the declared size). Their
randomness is Philox keyed by (training seed, layer) with the step as counter, as Dropout's:
a seed reproduces a run. The geometric layers are one resampling of the input through a
per-sample affine map (backend/augment_ops.py), drawn on the device while training and kept in
a scratch buffer for the backward pass; the deterministic ones (Resizing, CenterCrop) have one
map for all, uploaded once. Their float64 reference takes the same maps."""
import zlib
from abc import abstractmethod

import numpy as np

from layerloom.backend.augment_ops import FILL_MODES, WarpGeometry
from layerloom.core.errors import ParamError, quote
from layerloom.core.graph import fmt_shape
from layerloom.core.params import Bool, Choice, Float, Int, Param
from layerloom.core.registry import (get_layer, KerasForm, Layer, OnnxForm, OnnxRead, register,
                                     ShapeError, TorchForm)


# -- parameters: Keras' factor (a number or a [lower, upper] pair) ------------------------------
def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def _numbers_text(v):
    """A value as the node's face writes it, "0.1x0.2" (or "0.1, 0.2"), as the numbers; a list
    of one as that number; anything else as it is."""
    if isinstance(v, str):
        try:
            v = [float(t) for t in v.replace("x", " ").replace(",", " ").split()]
        except ValueError:
            return v
    return v[0] if isinstance(v, (list, tuple)) and len(v) == 1 else v


class Factor(Param):
    """Keras' factor of an augmentation layer: a number or [lower, upper], each within [lo, hi]
    (lo excluded where lo_open); pair_only: a [lower, upper] pair only (value_range);
    optional: null allowed (RandomZoom's width_factor: the height's). A node's face writes a
    pair 0.1x0.2, which is read back too."""
    kind = "factor"

    def __init__(self, name, default, lo=-1.0, hi=1.0, lo_open=False, pair_only=False,
                 optional=False, help=""):
        super().__init__(name, default, help)
        self.lo, self.hi, self.lo_open = lo, hi, lo_open
        self.pair_only, self.optional = pair_only, optional

    def validate(self, value, place):
        v = _numbers_text(value)
        if v is None and self.optional:
            return None
        if _number(v) and not self.pair_only:
            out = float(v) + 0.0
            vals = [out]
        elif isinstance(v, (list, tuple)) and len(v) == 2 and all(_number(e) for e in v):
            out = vals = tuple(float(e) + 0.0 for e in v)
        else:
            raise ParamError(f"expected {self.describe()}, got {quote(value)}", place)
        if self.lo is not None and any(e > self.hi or e < self.lo or (self.lo_open and e == self.lo)
                                       for e in vals):
            raise ParamError(f"expected {self.describe()}, got {quote(value)}", place)
        return out

    def to_json(self, value):
        return list(value) if isinstance(value, tuple) else value

    def describe(self):
        if self.pair_only:
            return "[lower, upper]"
        bounds = "" if self.lo is None else \
            f" in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"
        return f"a number or [lower, upper]{bounds}" + ("; null: the height's" if self.optional
                                                         else "")


def _span(v, floor=None):
    """(lower, upper) from a factor as Keras' _set_factor makes it: a number f is (-f, f)
    (floor: the least lower bound, RandomContrast's 0), a pair sorted."""
    if isinstance(v, (list, tuple)):
        return tuple(sorted(float(e) for e in v))
    f = abs(float(v))
    return (-f if floor is None else max(-f, floor), f)


def _seed_param():
    return Int("seed", 0, min=0, max=2**31 - 1, help="Added to the training seed for this layer.")


def _salt(s):
    return zlib.crc32(s.node_id.encode()) ^ s.params["seed"]


def _image(in_shape):
    if len(in_shape) != 3:
        raise ShapeError("expects input shaped (None, height, width, channels), got "
                         f"{fmt_shape(in_shape)}")
    return tuple(in_shape)


# -- resampling through per-sample maps (backend/augment_ops.py warp) -----------------------------
class _Plan:
    """How a geometric layer resamples: the geometry, the fill value, and either one map T for
    every sample (6 floats: output pixel centre (ox + 0.5, oy + 0.5) -> input coordinates) or
    the draw of random ones (kind, params, shared: one for the whole batch)."""

    def __init__(self, g, T=None, draw=None, fill=0.0):
        self.g, self.T, self.draw, self.fill = g, T, draw, fill


def _same_size(H, W, C, nearest=1, mode="nearest"):
    return WarpGeometry(H, W, C, H, W, 0, 0, H, W, int(nearest), FILL_MODES[mode])


def _resize_plan(H, W, C, h, w, nearest=False, crop=False):
    """Keras' resize (half-pixel centres, as torch's interpolate without antialiasing), after
    its crop_to_aspect_ratio: the largest centred box of the target's aspect ratio."""
    top = left = 0
    ch, cw = H, W
    if crop:
        ch = max(min(H, int(float(W * h) / w)), 1)
        cw = max(min(W, int(float(H * w) / h)), 1)
        top, left = int(float(H - ch) / 2), int(float(W - cw) / 2)
    T = np.array([np.float32(cw / w), 0, -0.5, 0, np.float32(ch / h), -0.5], np.float32)
    return _Plan(WarpGeometry(H, W, C, h, w, top, left, ch, cw, int(nearest),
                              FILL_MODES["nearest"]), T)


def _crop_plan(H, W, C, h, w, top, left):
    T = np.array([1, 0, -0.5, 0, 1, -0.5], np.float32)  # reads (ox, oy) of the box exactly
    return _Plan(WarpGeometry(H, W, C, h, w, top, left, h, w, 1, FILL_MODES["nearest"]), T)


def _fix(i, size, mode):
    """Indices mapped into [0, size) by the fill mode, and where they read the fill value."""
    if mode == FILL_MODES["constant"]:
        return np.clip(i, 0, size - 1), (i < 0) | (i >= size)
    if mode == FILL_MODES["nearest"]:
        return np.clip(i, 0, size - 1), np.zeros(i.shape, bool)
    if mode == FILL_MODES["wrap"]:
        return np.mod(i, size), np.zeros(i.shape, bool)
    r = np.mod(i, 2 * size)
    return np.where(r < size, r, 2 * size - 1 - r), np.zeros(i.shape, bool)


def warp_reference(x, T, g, fill=0.0):
    """float64 resampling of x (N, H, W, C) through the maps T ((N, 6) or one (6,)), as
    augment.cl's warp_forward (coordinates in float32, as the device computes them)."""
    n, f32 = x.shape[0], np.float32
    T = np.broadcast_to(np.asarray(T, f32).reshape(-1, 6), (n, 6))
    cy, cx = np.meshgrid(np.arange(g.OH, dtype=f32) + f32(0.5),
                         np.arange(g.OW, dtype=f32) + f32(0.5), indexing="ij")
    out = np.zeros((n, g.OH, g.OW, g.C))
    for s in range(n):
        a0, a1, a2, b0, b1, b2 = T[s]
        sx, sy = a0 * cx + a1 * cy + a2, b0 * cx + b1 * cy + b2
        if g.nearest:
            taps = [(np.floor(sx + f32(0.5)), np.floor(sy + f32(0.5)), np.ones(sx.shape))]
        else:
            x0, y0 = np.floor(sx), np.floor(sy)
            fx, fy = (sx - x0).astype(np.float64), (sy - y0).astype(np.float64)
            taps = [(x0 + dx, y0 + dy, (fx if dx else 1 - fx) * (fy if dy else 1 - fy))
                    for dy in (0, 1) for dx in (0, 1)]
        for ix, iy, w in taps:
            jx, ox = _fix(ix.astype(np.int64), g.BW, g.mode)
            jy, oy = _fix(iy.astype(np.int64), g.BH, g.mode)
            v = x[s, g.top + jy, g.left + jx, :]
            out[s] += w[..., None] * np.where((ox | oy)[..., None], fill, v)
    return out


class _Warp(Layer):
    """A geometric layer: _inference(p, H, W, C) gives its plan at inference (None: the
    identity), _training(p, H, W, C) its random plan while training (None: the inference
    one)."""
    category = "Augmentation"
    stochastic = True

    def _out_hw(self, p, H, W):
        return H, W

    def _inference(self, p, H, W, C):
        return None

    def _training(self, p, H, W, C):
        return None

    def _plan(self, p, shape, training):
        plan = self._training(p, *shape) if training else None
        return plan or self._inference(p, *shape)

    def output_shapes(self, p, in_shapes):
        H, W, C = _image(in_shapes[0])
        return [self._out_hw(p, H, W) + (C,)]

    def constants(self, p, in_shapes):
        plan = self._inference(p, *in_shapes[0])
        return {} if plan is None else {"T": plan.T}

    def scratch(self, p, in_shapes):
        return {"T": (6,)} if self._training(p, *in_shapes[0]) else {}

    def _maps(self, ops, s, plan, draw):
        """The maps' buffer and stride; draw: draw them first (the forward pass; the backward
        reads what it drew)."""
        if plan.draw is None:
            return s.const["T"], 0
        T, (kind, params, shared) = s.scratch["T"].buf, plan.draw
        if draw:
            H, W, _ = s.x[0].shape
            ops.draw_transforms(T, 0 if shared else 6, 1 if shared else s.n, kind, params, H, W,
                                s.seed, _salt(s) if "seed" in s.params else 0, s.step)
        return T, 0 if shared else 6

    def forward(self, ops, s):
        plan = self._plan(s.params, s.x[0].shape, s.training)
        if plan is None:
            ops.copy(s.x[0].buf, s.y[0].buf, s.n * s.x[0].size)
        else:
            T, stride = self._maps(ops, s, plan, True)
            ops.warp(s.x[0].buf, s.y[0].buf, T, stride, s.n, plan.g, plan.fill)

    def backward(self, ops, s):
        if s.dx[0] is None:
            return
        plan = self._plan(s.params, s.x[0].shape, s.training)
        if plan is None:
            ops.copy(s.dy[0].buf, s.dx[0].buf, s.n * s.x[0].size, accumulate=s.acc[0])
        else:
            T, stride = self._maps(ops, s, plan, False)
            ops.warp_backward(s.dy[0].buf, s.dx[0].buf, T, stride, s.n, plan.g, s.acc[0])

    def reference(self, p, xs, ws, training=False):
        plan = self._inference(p, *xs[0].shape[1:])
        return [np.array(xs[0], copy=True) if plan is None
                else warp_reference(xs[0], plan.T, plan.g, plan.fill)]

    def apply(self, p, x, T=None):
        """The training output for the maps T a forward pass drew (tests: read from the
        scratch buffer "T")."""
        plan = self._plan(p, x.shape[1:], True)
        if plan is None:
            return np.array(x, copy=True)
        if plan.draw is not None:
            T = np.asarray(T).reshape(-1, 6)[:1 if plan.draw[2] else x.shape[0]]
        return warp_reference(x, T if plan.draw is not None else plan.T, plan.g, plan.fill)


# -- interop of the geometric layers: their inference form --------------------------------------
def _warp_onnx(b, n):
    """The inference plan: nothing (the identity), a Slice of its box, a Resize (half-pixel, as
    Keras) of it."""
    plan = get_layer(n.type)._inference(n.params, *n.in_shapes[0])
    if plan is None:
        return [n.x[0]]
    g, y = plan.g, n.x[0]
    if (g.top, g.left, g.BH, g.BW) != (0, 0, g.H, g.W):
        y = b.op("Slice", [y, b.ints([g.top, g.left], "starts"),
                           b.ints([g.top + g.BH, g.left + g.BW], "ends"), b.ints([1, 2], "axes")])
    if (g.OH, g.OW) != (g.BH, g.BW):
        scales = b.const([1.0, _onnx_scale(g.OH, g.BH), _onnx_scale(g.OW, g.BW), 1.0],
                         f"{n.id}/scales")
        how = dict(mode="nearest", nearest_mode="round_prefer_ceil") if g.nearest else \
            dict(mode="linear")
        y = b.op("Resize", [y, "", scales], coordinate_transformation_mode="half_pixel", **how)
    return [y]


def _onnx_scale(out, size):
    """out / size as the float32 ONNX's Resize takes, nudged up by an ulp where its output size
    floor(size * scale), in double, would come out one short (9 / 5: 5 * 1.8f is 8.99...)."""
    scale = np.float32(out / size)
    while int(np.floor(size * float(scale))) < out:  # ONNX: in double
        scale = np.nextafter(scale, np.float32(np.inf))
    return float(scale)


def _warp_torch_expr(n, plan):
    """The inference plan as a torch expression on the NHWC tensor."""
    if plan is None:
        return n.x[0]
    g, y = plan.g, n.x[0]
    if (g.top, g.left, g.BH, g.BW) != (0, 0, g.H, g.W):
        y = f"{y}[:, {g.top}:{g.top + g.BH}, {g.left}:{g.left + g.BW}, :]"
    if (g.OH, g.OW) != (g.BH, g.BW):
        how = "mode='nearest-exact'" if g.nearest else "mode='bilinear', align_corners=False"
        y = (f"F.interpolate({y}.permute(0, 3, 1, 2), size=({g.OH}, {g.OW}), {how})"
             ".permute(0, 2, 3, 1)")
    return y


def _warp_torch(t, n):
    plan = get_layer(n.type)._inference(n.params, *n.in_shapes[0])
    return [], [f"{n.out} = {_warp_torch_expr(n, plan)}"], {}


def _resize_onnx_in(imp, node, type_id):
    """ONNX's Resize of an image's two spatial axes, half-pixel as Keras (linear, or nearest
    rounding half up), as a Resizing; sizes or scales whose output is the scale times the
    input."""
    a, v = imp.attrs(node), imp.value(node, 0)
    if len(imp.shape(v)) != 3:
        imp.fail(node, "expected the resize of an image (N, H, W, C) or (N, C, H, W)")
    mode = imp.text(a.get("mode", "nearest"))
    ctm = imp.text(a.get("coordinate_transformation_mode", "half_pixel"))
    if mode not in ("linear", "nearest"):
        imp.fail(node, f"mode {mode!r}; Layerloom's Resizing is bilinear or nearest")
    if ctm not in ("half_pixel", "pytorch_half_pixel"):
        imp.fail(node, f"coordinate_transformation_mode {ctm!r}; Keras' resize is half_pixel")
    if mode == "nearest" and imp.text(a.get("nearest_mode", "round_prefer_floor")) != \
            "round_prefer_ceil":
        imp.fail(node, "nearest_mode other than round_prefer_ceil (Keras' nearest rounds half "
                       "up)")
    if a.get("antialias", 0):
        imp.fail(node, "antialias 1; Layerloom's Resizing does not antialias")
    H, W, C = imp.shape(v)
    onnx_in = (C, H, W) if v.nchw else (H, W, C)
    axes = (1, 2) if v.nchw else (0, 1)
    if len(node.input) > 3 and node.input[3]:
        sizes = [int(d) for d in np.asarray(imp.const(node, 3, "sizes")).reshape(-1)][1:]
        scales = [sizes[i] / onnx_in[i] for i in range(3)]
    elif len(node.input) > 2 and node.input[2]:
        scales = [float(e) for e in np.asarray(imp.const(node, 2, "scales")).reshape(-1)][1:]
        sizes = [int(np.floor(onnx_in[i] * scales[i])) for i in range(3)]
    else:
        imp.fail(node, "neither scales nor sizes given")
    other = [i for i in range(3) if i not in axes]
    if len(scales) != 3 or any(sizes[i] != onnx_in[i] for i in other):
        imp.fail(node, "resizes an axis other than the image's height and width")
    h, w = sizes[axes[0]], sizes[axes[1]]
    if h < 1 or w < 1 or any(abs(scales[i] - sizes[i] / onnx_in[i]) > 1e-6 * scales[i]
                             for i in axes):
        imp.fail(node, "scales whose output size is not the scale times the input's (Keras' "
                       "resize maps the sizes)")
    if ctm == "pytorch_half_pixel" and (h == 1 or w == 1):
        imp.fail(node, "pytorch_half_pixel to a size of 1 (it samples pixel 0, not the centre)")
    nid = imp.add(node, type_id, {"height": h, "width": w,
                                  "interpolation": "bilinear" if mode == "linear" else "nearest"},
                  [v])
    imp.set(node, imp.result(nid, nchw=v.nchw))


# -- Keras in: the options Layerloom computes as Keras does --------------------------------------
def _keras_reader(names, fixed=(), unused=()):
    """A KerasForm read: each of `names` the config sets (seed None: 0), channels-last only,
    `fixed` the options that must keep Keras' default, {option: allowed values}, `unused` those
    that do nothing with them; a choice Layerloom lacks is refused by name."""
    fixed = dict(fixed)

    def read(o, shapes):
        o.must("data_format", "channels_last", None)
        for k, allowed in fixed.items():
            o.must(k, *allowed)
        for k in unused:
            o.get(k)
        out = {}
        for k in names:
            v = o.get(k)
            if k == "seed":
                v = 0 if v is None else int(v) % 2**31
            elif k in ("interpolation", "fill_mode") and v not in _CHOICES[k]:
                o.fail(k, f"has no Layerloom form (only {', '.join(_CHOICES[k])})")
            elif isinstance(v, float) or k == "fill_value":
                v = o.f32(v if v is not None else 0.0)
            elif isinstance(v, (list, tuple)):
                v = [o.f32(e) for e in v]
            if v is not None or k == "width_factor":
                out[k] = v
        return out
    return read


_CHOICES = {"interpolation": ("bilinear", "nearest"),
            "fill_mode": ("reflect", "wrap", "constant", "nearest")}


def _size_params():
    return (Int("height", 32, min=1, help="Output height (Keras has no default)."),
            Int("width", 32, min=1, help="Output width (Keras has no default)."))


def _interpolation():
    return Choice("interpolation", "bilinear", _CHOICES["interpolation"],
                  help="How pixels between the input's are computed.")


# -- Resizing, CenterCrop ------------------------------------------------------------------------
@register
class Resizing(_Warp):
    type_id = "Resizing"
    category = "Preprocessing"
    stochastic = False
    help = ("Resizes images to height x width (bilinear or nearest, half-pixel centres as Keras), "
            "optionally after cropping the largest centred box of that aspect ratio.")
    params = _size_params() + (
        _interpolation(),
        Bool("crop_to_aspect_ratio", False, help="Crop the largest centred box of the target's "
                                                 "aspect ratio first, instead of stretching."))
    headline = ("height", "width", "interpolation")
    examples = (({"height": 4, "width": 3}, [(6, 5, 2)]),
                ({"height": 7, "width": 9, "interpolation": "nearest"}, [(4, 5, 1)]),
                ({"height": 3, "width": 5, "crop_to_aspect_ratio": True}, [(7, 4, 3)]),
                ({"height": 5, "width": 4, "interpolation": "nearest",
                  "crop_to_aspect_ratio": True}, [(9, 6, 2)]))

    onnx_form = OnnxForm(_warp_onnx, "Slice (crop_to_aspect_ratio), Resize (half_pixel)",
                         reads={"Resize": OnnxRead({"mode", "coordinate_transformation_mode",
                                                    "nearest_mode", "antialias",
                                                    "cubic_coeff_a", "exclude_outside"},
                                                   _resize_onnx_in)})
    torch_form = TorchForm(_warp_torch)
    keras_form = KerasForm("Resizing", ("height", "width", "interpolation",
                                        "crop_to_aspect_ratio"),
                           read=_keras_reader(("height", "width", "interpolation",
                                               "crop_to_aspect_ratio"),
                                              {"pad_to_aspect_ratio": (False,),
                                               "antialias": (False,)},
                                              unused=("fill_mode", "fill_value")))

    def _out_hw(self, p, H, W):
        return p["height"], p["width"]

    def _inference(self, p, H, W, C):
        return _resize_plan(H, W, C, p["height"], p["width"], p["interpolation"] == "nearest",
                            p["crop_to_aspect_ratio"])


def _center_crop_plan(p, H, W, C):
    """Keras' CenterCrop: the centred height x width box, or where the input is smaller its
    smart_resize (the largest box of that aspect ratio, resized bilinearly)."""
    h, w = p["height"], p["width"]
    if H >= h and W >= w:
        return _crop_plan(H, W, C, h, w, (H - h) // 2, (W - w) // 2)
    return _resize_plan(H, W, C, h, w, crop=True)


@register
class CenterCrop(_Warp):
    type_id = "CenterCrop"
    category = "Preprocessing"
    stochastic = False
    help = ("Crops the centred height x width box of images; a smaller image is resized to it "
            "(its largest box of that aspect ratio, bilinear), as Keras.")
    params = _size_params()
    headline = ("height", "width")
    examples = (({"height": 3, "width": 2}, [(6, 5, 2)]), ({"height": 4, "width": 4}, [(4, 4, 1)]),
                ({"height": 5, "width": 3}, [(3, 4, 2)]))

    onnx_form = OnnxForm(_warp_onnx, "Slice (Resize where the input is smaller)")
    torch_form = TorchForm(_warp_torch)
    keras_form = KerasForm("CenterCrop", ("height", "width"),
                           read=_keras_reader(("height", "width")))

    def _out_hw(self, p, H, W):
        return p["height"], p["width"]

    def _inference(self, p, H, W, C):
        return _center_crop_plan(p, H, W, C)


# -- RandomFlip, RandomRotation, RandomZoom, RandomTranslation, RandomCrop -------------------------
def _identity_onnx(b, n):
    return [n.x[0]]


_FLIP_AXES = {"horizontal": 1, "vertical": 2, "horizontal_and_vertical": 3}


def _flip_torch(t, n):
    dims = {"horizontal": "(2,)", "vertical": "(1,)", "horizontal_and_vertical": "(1, 2)"}[
        n.params["mode"]]
    x = n.x[0]
    return [], [f"{n.out} = torch.where(torch.rand({x}.shape[0], 1, 1, 1, device={x}.device) "
                f"<= 0.5, {x}.flip({dims}), {x}) if self.training else {x}"], {}


@register
class RandomFlip(_Warp):
    type_id = "RandomFlip"
    help = ("While training, flips each image with probability 1/2 (horizontal_and_vertical: "
            "both axes at once, as Keras); the identity at inference.")
    params = (Choice("mode", "horizontal_and_vertical", tuple(_FLIP_AXES),
                     help="Which axes a flip reverses."), _seed_param())
    headline = ("mode",)
    examples = (({"mode": "horizontal"}, [(3, 4, 2)]), ({}, [(5, 3, 1)]))

    onnx_form = OnnxForm(_identity_onnx, "nothing (identity at inference)")
    torch_form = TorchForm(_flip_torch)
    keras_form = KerasForm("RandomFlip", ("mode", "seed"), read=_keras_reader(("mode", "seed")))

    def _training(self, p, H, W, C):
        return _Plan(_same_size(H, W, C), draw=("flip", (_FLIP_AXES[p["mode"]],), False))


def _fill_params():
    return (Choice("fill_mode", "reflect", _CHOICES["fill_mode"],
                   help="What points outside the image read: reflect (d c b a | a b c d), wrap, "
                        "constant (fill_value) or nearest (the edge)."),
            _interpolation(), _seed_param(),
            Float("fill_value", 0.0, help="The value outside the image with fill_mode constant."))


class _Affine(_Warp):
    """Rotation, zoom, translation: a random affine map per image while training."""

    @abstractmethod
    def _draw(self, p):
        """(kind, params) of draw_transforms (augment.cl) for the layer's parameters."""

    def _training(self, p, H, W, C):
        g = _same_size(H, W, C, p["interpolation"] == "nearest", p["fill_mode"])
        return _Plan(g, draw=self._draw(p) + (False,), fill=p["fill_value"])


_GRID_PADDING = {"reflect": "reflection", "nearest": "border", "constant": "zeros",
                 "wrap": "border"}


def _affine_torch(t, n):
    """While training, the layer's random maps (Keras' distributions, torch's generator) through
    F.grid_sample at half-pixel coordinates (align_corners=False): its reflection about the
    image's edges is Keras' reflect, border its nearest; constant samples x - fill_value with
    zeros outside, then adds it back; wrap samples the image tiled 3 x 3 (the maps these
    factors allow stay within one image's size of it). At inference the identity."""
    H, W, _ = n.in_shapes[0]
    p, x, o = n.params, n.x[0], n.out
    kind, params = get_layer(n.type)._draw(p)
    cx, cy = 0.5 * (W - 1), 0.5 * (H - 1)

    def uniform(i, lo, hi):
        return f"({lo!r} + {o}_u[:, {i}] * {hi - lo!r})"
    lines = ["if self.training:", f"    {o}_u = torch.rand({x}.shape[0], 2, device={x}.device)"]
    if kind == "rotate":
        lines += [f"    {o}_a = {uniform(0, *params)} * {2 * np.pi!r}",
                  f"    {o}_c, {o}_s = torch.cos({o}_a), torch.sin({o}_a)",
                  f"    {o}_m = [{o}_c, -{o}_s, {cx!r} - {cx!r} * {o}_c + {cy!r} * {o}_s, {o}_s, "
                  f"{o}_c, {cy!r} - {cx!r} * {o}_s - {cy!r} * {o}_c]"]
    elif kind == "zoom":
        hl, hu, wl, wu, same = params
        lines += [f"    {o}_zy = 1 + {uniform(0, hl, hu)}",
                  f"    {o}_zx = " + (f"{o}_zy" if same else f"1 + {uniform(1, wl, wu)}"),
                  f"    {o}_m = [{o}_zx, 0, {cx!r} * (1 - {o}_zx), 0, {o}_zy, "
                  f"{cy!r} * (1 - {o}_zy)]"]
    else:
        hl, hu, wl, wu = params
        lines += [f"    {o}_m = [1, 0, -{uniform(1, wl, wu)} * {W}, 0, 1, "
                  f"-{uniform(0, hl, hu)} * {H}]"]
    fill = float(p["fill_value"]) if p["fill_mode"] == "constant" else 0.0
    tiles = 3 if p["fill_mode"] == "wrap" else 1
    lines += [
        f"    {o}_m = [torch.as_tensor(e, dtype={x}.dtype, device={x}.device).reshape(-1, 1, 1) "
        f"for e in {o}_m]",
        f"    {o}_gy, {o}_gx = torch.meshgrid(torch.arange({H}, dtype={x}.dtype, "
        f"device={x}.device), torch.arange({W}, dtype={x}.dtype, device={x}.device), "
        "indexing='ij')",
        f"    {o}_sx = {o}_m[0] * {o}_gx + {o}_m[1] * {o}_gy + {o}_m[2] + {(tiles // 2) * W}",
        f"    {o}_sy = {o}_m[3] * {o}_gx + {o}_m[4] * {o}_gy + {o}_m[5] + {(tiles // 2) * H}",
        f"    {o}_g = torch.stack([(2 * {o}_sx + 1) / {tiles * W} - 1, (2 * {o}_sy + 1) / "
        f"{tiles * H} - 1], -1).expand({x}.shape[0], {H}, {W}, 2)",
        f"    {o} = F.grid_sample(({x}.permute(0, 3, 1, 2) - {fill!r}).repeat(1, 1, {tiles}, "
        f"{tiles}), {o}_g, mode={p['interpolation']!r}, "
        f"padding_mode={_GRID_PADDING[p['fill_mode']]!r}, align_corners=False)"
        f".permute(0, 2, 3, 1) + {fill!r}",
        "else:", f"    {o} = {x}"]
    return [], lines, {}


def _affine_keras(cls, names):
    names = names + ("fill_mode", "interpolation", "seed", "fill_value")
    return KerasForm(cls, names, read=_keras_reader(names))


@register
class RandomRotation(_Affine):
    type_id = "RandomRotation"
    help = ("While training, rotates each image by a random angle, factor x 360 degrees "
            "(a number f: -f..f; a pair: lower..upper), about its centre.")
    params = (Factor("factor", 0.1, help="Fraction of a full turn (Keras has no default)."),
              ) + _fill_params()
    headline = ("factor",)
    examples = (({"factor": 0.2}, [(4, 5, 2)]), ({"factor": [-0.1, 0.3], "fill_mode": "constant",
                                                  "fill_value": 0.5}, [(3, 3, 1)]))

    onnx_form = OnnxForm(_identity_onnx, "nothing (identity at inference)")
    torch_form = TorchForm(_affine_torch)
    keras_form = _affine_keras("RandomRotation", ("factor",))

    def _draw(self, p):
        return "rotate", _span(p["factor"])


@register
class RandomZoom(_Affine):
    type_id = "RandomZoom"
    help = ("While training, zooms each image about its centre by 1 + a random factor per axis "
            "(positive: out, negative: in); width_factor null keeps the aspect ratio.")
    params = (Factor("height_factor", 0.1, lo=-1.0, lo_open=True,
                     help="A number f: -f..f; a pair: lower..upper (Keras has no default)."),
              Factor("width_factor", None, lo=-1.0, lo_open=True, optional=True,
                     help="As height_factor; null: the height's zoom for both axes."),
              ) + _fill_params()
    headline = ("height_factor",)
    examples = (({"height_factor": 0.3}, [(4, 5, 2)]),
                ({"height_factor": [-0.2, 0.1], "width_factor": 0.4, "fill_mode": "wrap",
                  "interpolation": "nearest"}, [(3, 4, 1)]))

    onnx_form = OnnxForm(_identity_onnx, "nothing (identity at inference)")
    torch_form = TorchForm(_affine_torch)
    keras_form = _affine_keras("RandomZoom", ("height_factor", "width_factor"))

    def _draw(self, p):
        same = p["width_factor"] is None
        hl, hu = _span(p["height_factor"])
        wl, wu = (hl, hu) if same else _span(p["width_factor"])
        return "zoom", (hl, hu, wl, wu, float(same))


@register
class RandomTranslation(_Affine):
    type_id = "RandomTranslation"
    help = ("While training, shifts each image by random fractions of its height and width "
            "(a number f: -f..f; a pair: lower..upper).")
    params = (Factor("height_factor", 0.1, help="Fraction of the height (Keras has no default)."),
              Factor("width_factor", 0.1, help="Fraction of the width (Keras has no default)."),
              ) + _fill_params()
    headline = ("height_factor", "width_factor")
    examples = (({"height_factor": 0.3, "width_factor": [-0.2, 0.4]}, [(4, 5, 2)]),
                ({"height_factor": 0.5, "width_factor": 0.0, "fill_mode": "nearest"},
                 [(3, 2, 1)]))

    onnx_form = OnnxForm(_identity_onnx, "nothing (identity at inference)")
    torch_form = TorchForm(_affine_torch)
    keras_form = _affine_keras("RandomTranslation", ("height_factor", "width_factor"))

    def _draw(self, p):
        return "translate", _span(p["height_factor"]) + _span(p["width_factor"])


def _random_crop_keras(k, n):
    """Keras 3's RandomCrop returns the uncropped image at inference (not its declared output
    shape); a Resizing with crop_to_aspect_ratio after it gives Layerloom's inference (the
    centred box, resized) and leaves its training crops as they are (resizing a height x width
    image to height x width is the identity)."""
    h, w, y = n.params["height"], n.params["width"], n.out[0]
    return [f"{y} = " + k.call("RandomCrop", k.kw(n, ["height", "width", "seed"]), n, n.x),
            f"{y} = layers.Resizing({h}, {w}, crop_to_aspect_ratio=True, "
            f"name={n.id + '_inference'!r})({y})"]


def _random_crop_torch(t, n):
    H, W, _ = n.in_shapes[0]
    h, w, x = n.params["height"], n.params["width"], n.x[0]
    inference = _warp_torch_expr(n, get_layer(n.type)._inference(n.params, H, W, 0))
    if not (H > h and W > w):
        return [], [f"{n.out} = {inference}"], {}
    return [], [f"{n.out} = (lambda i, j: {x}[:, i:i + {h}, j:j + {w}, :])("
                f"int(torch.randint(0, {H - h + 1}, ())), int(torch.randint(0, {W - w + 1}, ())))"
                f" if self.training else {inference}"], {}


@register
class RandomCrop(_Warp):
    type_id = "RandomCrop"
    help = ("While training, crops a random height x width box (one for the whole batch, as "
            "Keras); at inference the largest centred box of that aspect ratio, resized to it.")
    params = _size_params() + (_seed_param(),)
    headline = ("height", "width")
    examples = (({"height": 3, "width": 2}, [(5, 4, 2)]), ({"height": 4, "width": 4}, [(3, 5, 1)]))

    onnx_form = OnnxForm(_warp_onnx, "its inference form: Slice, Resize (half_pixel)")
    torch_form = TorchForm(_random_crop_torch)
    keras_form = KerasForm("RandomCrop", ("height", "width", "seed"), write=_random_crop_keras,
                           read=_keras_reader(("height", "width", "seed")),
                           doc="layers.RandomCrop, then layers.Resizing(height, width, "
                               "crop_to_aspect_ratio=True) for its inference")

    def _out_hw(self, p, H, W):
        return p["height"], p["width"]

    def _inference(self, p, H, W, C):
        return _resize_plan(H, W, C, p["height"], p["width"], crop=True)

    def _training(self, p, H, W, C):
        h, w = p["height"], p["width"]
        if not (H > h and W > w):
            return None
        return _Plan(WarpGeometry(H, W, C, h, w, 0, 0, H, W, 1, FILL_MODES["nearest"]),
                     draw=("crop", (h, w), True))
