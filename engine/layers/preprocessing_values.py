"""The preprocessing layers that change values, not positions: RandomContrast and
RandomBrightness (augmentation: while training only, Philox keyed by (training seed, layer) with
the step as counter, as the geometric ones in preprocessing.py), and Rescaling (a factor and
offset for all channels or one per channel). Keras' names, parameters and defaults."""
import numpy as np

from layerloom.core.errors import ParamError, quote
from layerloom.core.graph import fmt_shape
from layerloom.core.params import Param
from layerloom.core.registry import (get_layer, KerasForm, Layer, OnnxForm, register, ShapeError,
                                     TorchForm)
from layerloom.layers.preprocessing import (Factor, _identity_onnx, _image, _keras_reader,
                                            _number, _numbers_text, _salt, _seed_param, _span)

# -- RandomContrast, RandomBrightness --------------------------------------------------------------
def _value_range():
    return Factor("value_range", (0.0, 255.0), lo=None, pair_only=True,
                  help="[lower, upper] of the pixel values; outputs are clipped to it.")


class _Color(Layer):
    category = "Augmentation"
    stochastic = True
    onnx_form = OnnxForm(_identity_onnx, "nothing (identity at inference)")

    def _range(self, p):
        return tuple(sorted(p["value_range"]))

    def output_shapes(self, p, in_shapes):
        return [_image(in_shapes[0])]

    def reference(self, p, xs, ws, training=False):
        return [np.array(xs[0], copy=True)]

    def _draw(self, ops, s):
        ops.draw_transforms(s.scratch["F"].buf, 1, s.n, "scalar", self._bounds(s.params),
                            0, 0, s.seed, _salt(s), s.step)

    def _torch_uniform(self, n):
        lo, hi = self._bounds(n.params)
        return f"torch.empty({n.x[0]}.shape[0], 1, 1, 1, device={n.x[0]}.device)" \
               f".uniform_({lo!r}, {hi!r})"


def _contrast_torch(t, n):
    x, (v0, v1) = n.x[0], sorted(n.params["value_range"])
    m = f"{x}.mean((1, 2), keepdim=True)"
    f = get_layer(n.type)._torch_uniform(n)
    return [], [f"{n.out} = (({x} - {m}) * {f} + {m}).clamp({v0!r}, {v1!r}) "
                f"if self.training else {x}"], {}


@register
class RandomContrast(_Color):
    type_id = "RandomContrast"
    help = ("While training, scales each image's deviation from its per-channel mean by a random "
            "factor (1 - lower .. 1 + upper; a number f: 1 .. 1 + f, as Keras 3), clipped to "
            "value_range.")
    params = (Factor("factor", 0.2, lo=0.0, help="A number f, or [lower, upper] within 0..1 "
                                                 "(Keras has no default)."),
              _value_range(), _seed_param())
    headline = ("factor",)
    examples = (({"factor": 0.5}, [(3, 4, 2)]), ({"factor": [0.2, 0.4], "value_range": [-1, 1]},
                                                 [(2, 3, 1)]))

    torch_form = TorchForm(_contrast_torch)
    keras_form = KerasForm("RandomContrast", ("factor", "value_range", "seed"),
                           read=_keras_reader(("factor", "value_range", "seed")))

    def _bounds(self, p):
        lo, hi = _span(p["factor"], floor=0.0)
        return 1.0 - lo, 1.0 + hi

    def scratch(self, p, in_shapes):
        return {"F": (1,), "mean": (in_shapes[0][-1],)}

    def forward(self, ops, s):
        H, W, C = s.x[0].shape
        if not s.training:
            ops.copy(s.x[0].buf, s.y[0].buf, s.n * s.x[0].size)
            return
        self._draw(ops, s)
        ops.contrast(s.x[0].buf, s.y[0].buf, s.scratch["F"].buf, 1, s.scratch["mean"].buf, s.n,
                     H * W, C, *self._range(s.params))

    def backward(self, ops, s):
        if s.dx[0] is None:
            return
        H, W, C = s.x[0].shape
        if not s.training:
            ops.copy(s.dy[0].buf, s.dx[0].buf, s.n * s.x[0].size, accumulate=s.acc[0])
            return
        ops.contrast_backward(s.x[0].buf, s.dy[0].buf, s.dx[0].buf, s.scratch["F"].buf, 1,
                              s.scratch["mean"].buf, s.n, H * W, C, *self._range(s.params),
                              accumulate=s.acc[0])

    def apply(self, p, x, F):
        """The training output for the factors F (one per image) a forward pass drew."""
        f = np.asarray(F, np.float64).reshape(-1, 1, 1, 1)
        m = x.mean(axis=(1, 2), keepdims=True)
        return np.clip((x - m) * f + m, *self._range(p))


def _brightness_torch(t, n):
    x, (v0, v1) = n.x[0], sorted(n.params["value_range"])
    return [], [f"{n.out} = ({x} + {get_layer(n.type)._torch_uniform(n)}).clamp({v0!r}, {v1!r}) "
                f"if self.training else {x}"], {}


@register
class RandomBrightness(_Color):
    type_id = "RandomBrightness"
    help = ("While training, adds a random delta to each image: a fraction of value_range "
            "(a number f: -f..f; a pair: lower..upper), clipped to value_range.")
    params = (Factor("factor", 0.2, help="Fraction of value_range (Keras has no default)."),
              _value_range(), _seed_param())
    headline = ("factor",)
    examples = (({"factor": 0.5}, [(3, 4, 2)]), ({"factor": [-0.2, 0.1], "value_range": [-1, 1]},
                                                 [(2, 3, 1)]))

    torch_form = TorchForm(_brightness_torch)
    keras_form = KerasForm("RandomBrightness", ("factor", "value_range", "seed"),
                           read=_keras_reader(("factor", "value_range", "seed")))

    def _bounds(self, p):
        lo, hi = _span(p["factor"])
        v0, v1 = self._range(p)
        return lo * (v1 - v0), hi * (v1 - v0)

    def scratch(self, p, in_shapes):
        return {"F": (1,)}

    def _run(self, ops, s, src, dst, dy=None, accumulate=False):
        ops.brightness(src, dst, s.scratch["F"].buf, 1, s.n, s.x[0].size, *self._range(s.params),
                       dy=dy, accumulate=accumulate)

    def forward(self, ops, s):
        if not s.training:
            ops.copy(s.x[0].buf, s.y[0].buf, s.n * s.x[0].size)
            return
        self._draw(ops, s)
        self._run(ops, s, s.x[0].buf, s.y[0].buf)

    def backward(self, ops, s):
        if s.dx[0] is None:
            return
        if not s.training:
            ops.copy(s.dy[0].buf, s.dx[0].buf, s.n * s.x[0].size, accumulate=s.acc[0])
            return
        self._run(ops, s, s.x[0].buf, s.dx[0].buf, dy=s.dy[0].buf, accumulate=s.acc[0])

    def apply(self, p, x, F):
        d = np.asarray(F, np.float64).reshape(-1, 1, 1, 1)
        return np.clip(x + d, *self._range(p))


# -- Rescaling, a factor and offset for all or one per channel. ONNX import has no reader: a Mul
# then an Add by constants already read as a Lambda, a merge or a BatchNormalization
# (onnx_import), so Rescaling is not one-to-one with them ----------------------------------------
class PerChannel(Param):
    """A number, or a list of them, one per channel (the last axis), as Keras' Rescaling takes;
    a list of one is the number. A node's face writes a list 0.5x1x2, which is read back too."""
    kind = "per_channel"

    def validate(self, value, place):
        v = _numbers_text(value)
        if _number(v):
            return float(v) + 0.0
        if isinstance(v, (list, tuple)) and 1 < len(v) <= 65536 and all(_number(e) for e in v):
            return tuple(float(e) + 0.0 for e in v)
        raise ParamError(f"expected {self.describe()}, got {quote(value)}", place)

    def to_json(self, value):
        return list(value) if isinstance(value, tuple) else value

    def describe(self):
        return "a number or a list of numbers, one per channel"


def _per_channel(p):
    return any(isinstance(p[k], tuple) for k in ("scale", "offset"))


def _channel_values(p, C):
    return {k: np.broadcast_to(np.asarray(p[k], np.float32), (C,)).copy()
            for k in ("scale", "offset")}


def _rescaling_onnx(b, n):
    scale = b.const(np.asarray(n.params["scale"], np.float32), f"{n.id}/scale")
    offset = b.const(np.asarray(n.params["offset"], np.float32), f"{n.id}/offset")
    return [b.op("Add", [b.op("Mul", [n.x[0], scale]), offset])]


def _rescaling_torch(t, n):
    x = n.x[0]
    scale, offset = ((f"{x}.new_tensor({list(v)!r})" if isinstance(v, tuple) else repr(float(v)))
                     for v in (n.params["scale"], n.params["offset"]))
    return [], [f"{n.out} = {x} * {scale} + {offset}"], {}


def _rescaling_keras_in(o, shapes):
    """Keras takes a float or one per channel, as Layerloom."""
    out = {}
    for key, default in (("scale", None), ("offset", 0.0)):
        v = o.get(key, default)
        if isinstance(v, dict) or v is None:
            o.fail(key, "is missing" if v is None else "has no Layerloom form (a number or a "
                                                      "list, one per channel)")
        out[key] = [o.f32(e) for e in v] if isinstance(v, (list, tuple)) else o.f32(v)
    return out


@register
class Rescaling(Layer):
    type_id = "Rescaling"
    category = "Preprocessing"
    help = ("Rescales inputs elementwise: x * scale + offset (e.g. scale 1/255 for pixel values), "
            "each a number or one per channel.")
    params = (PerChannel("scale", 1.0 / 255, help="Factor each input is multiplied by, or one "
                         "per channel (Keras has no default; 1/255 maps 0..255 to 0..1)."),
              PerChannel("offset", 0.0, help="Added after scaling, or one per channel."))
    headline = ("scale", "offset")
    examples = (({"scale": 0.125, "offset": -0.5}, [(7,)]),
                ({"scale": -2.5, "offset": 0.25}, [(3, 4, 5)]),
                ({"scale": 0.5, "offset": 0.0}, [(2, 33)]),
                ({"scale": [0.5, -1.5, 2.0], "offset": -0.25}, [(2, 2, 3)]),
                ({"scale": 0.25, "offset": [1.0, -2.0]}, [(3, 2)]))

    onnx_form = OnnxForm(_rescaling_onnx, "Mul by scale, then Add offset (constants)")
    torch_form = TorchForm(_rescaling_torch)
    keras_form = KerasForm("Rescaling", ("scale", "offset"), read=_rescaling_keras_in)

    def output_shapes(self, p, in_shapes):
        C = in_shapes[0][-1] if in_shapes[0] else 1
        for k in ("scale", "offset"):
            if isinstance(p[k], tuple) and len(p[k]) != C:
                raise ShapeError(f"{k} has {len(p[k])} values, one per channel, but the input "
                                 f"{fmt_shape(in_shapes[0])} has {C} channels")
        return [in_shapes[0]]

    def constants(self, p, in_shapes):
        return _channel_values(p, in_shapes[0][-1]) if _per_channel(p) else {}

    def forward(self, ops, s):
        n = s.n * s.x[0].size
        if _per_channel(s.params):
            ops.channel_affine(s.x[0].buf, s.y[0].buf, s.const["scale"], s.const["offset"], n,
                               s.x[0].cols)
            return
        ops.fill(s.y[0].buf, n, float(s.params["offset"]))
        ops.scaled(s.x[0].buf, s.y[0].buf, n, float(s.params["scale"]), accumulate=True)

    def backward(self, ops, s):
        if s.dx[0] is None:
            return
        n = s.n * s.x[0].size
        if _per_channel(s.params):
            ops.channel_affine(s.dy[0].buf, s.dx[0].buf, s.const["scale"], None, n, s.x[0].cols,
                               accumulate=s.acc[0])
        else:
            ops.scaled(s.dy[0].buf, s.dx[0].buf, n, float(s.params["scale"]),
                       accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        return [xs[0] * np.asarray(p["scale"]) + np.asarray(p["offset"])]
