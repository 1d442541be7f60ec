"""Preprocessing layers: Rescaling (Keras' preprocessing category)."""

import numpy as np

from layerloom.core.params import Float
from layerloom.core.registry import KerasForm, Layer, OnnxForm, register, TorchForm


# -- Rescaling's interop forms. ONNX import has no reader: a Mul then an Add by constants already
# read as a Lambda, a merge or a BatchNormalization (onnx_import), so Rescaling is not one-to-one
# with them -------------------------------------------------------------------------------------
def _rescaling_onnx(b, n):
    scale = b.const(np.float32(n.params["scale"]), f"{n.id}/scale")
    offset = b.const(np.float32(n.params["offset"]), f"{n.id}/offset")
    return [b.op("Add", [b.op("Mul", [n.x[0], scale]), offset])]


def _rescaling_torch(t, n):
    return [], [f"{n.out} = {n.x[0]} * {float(n.params['scale'])!r} + "
                f"{float(n.params['offset'])!r}"], {}


def _rescaling_keras_in(o, shapes):
    """Keras takes a float or one per channel; Layerloom a float."""
    out = {}
    for key, default in (("scale", None), ("offset", 0.0)):
        v = o.get(key, default)
        if isinstance(v, (list, tuple)) and len(v) == 1:
            v = v[0]
        if isinstance(v, (list, tuple, dict)):
            o.fail(key, "has no Layerloom form (a float only, not one per channel)")
        if v is None:
            o.fail(key, "is missing")
        out[key] = o.f32(v)
    return out


@register
class Rescaling(Layer):
    type_id = "Rescaling"
    category = "Preprocessing"
    help = "Rescales inputs elementwise: x * scale + offset (e.g. scale 1/255 for pixel values)."
    params = (Float("scale", 1.0 / 255, help="Factor each input is multiplied by (Keras has "
                    "no default; 1/255 maps 0..255 to 0..1)."),
              Float("offset", 0.0, help="Added after scaling."))
    headline = ("scale", "offset")
    examples = (({"scale": 0.125, "offset": -0.5}, [(7,)]),
                ({"scale": -2.5, "offset": 0.25}, [(3, 4, 5)]),
                ({"scale": 0.5, "offset": 0.0}, [(2, 33)]))

    onnx_form = OnnxForm(_rescaling_onnx, "Mul by scale, then Add offset (constants)")
    torch_form = TorchForm(_rescaling_torch)
    keras_form = KerasForm("Rescaling", ("scale", "offset"), read=_rescaling_keras_in)

    def output_shapes(self, p, in_shapes):
        return [in_shapes[0]]

    def forward(self, ops, s):
        n = s.n * s.x[0].size
        ops.fill(s.y[0].buf, n, float(s.params["offset"]))
        ops.scaled(s.x[0].buf, s.y[0].buf, n, float(s.params["scale"]), accumulate=True)

    def backward(self, ops, s):
        if s.dx[0] is not None:
            ops.scaled(s.dy[0].buf, s.dx[0].buf, s.n * s.x[0].size, float(s.params["scale"]),
                       accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        return [xs[0] * p["scale"] + p["offset"]]
