"""Activation layers (Keras' activations category): ReLU, LeakyReLU, PReLU, ELU and Softmax with
Keras' parameters. The Activation layer (any entry of the activation table, core/activations.py)
is in core.py. Beside them, the ONNX readers of the activation operators no other reader maps:
Clip and ThresholdedRelu (ReLU), LeakyRelu, PRelu, Elu with their parameters, and HardSwish,
HardSigmoid, Mish, Shrink, Celu and Clip(-1, 1) as the activation table's entries (declared on
ReLU's form), folded into the Dense or convolution before them as the importer folds Relu (its
apply_activation)."""
import math

import numpy as np

from layerloom.core.activations import LEAKY_SLOPE, REFERENCE
from layerloom.core.errors import ParamError, quote
from layerloom.core.graph import fmt_shape
from layerloom.core.params import Float, Int, Param
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, OnnxRead, register, ShapeError,
                                     TorchForm, WeightSpec)
from layerloom.layers.kit import weight_params


class OptionalFloat(Float):
    """A number, or null for "none" (Keras' max_value=None); the editor's field takes JSON."""
    kind = "optional_float"

    def validate(self, value, place):
        return None if value is None else super().validate(value, place)

    def describe(self):
        return super().describe() + ", or null (none)"


class SharedAxes(Param):
    """Keras' shared_axes: null, an axis or a list of axes of the per-sample shape, counted
    from 1 (axis 0 is the batch). Normalised to a sorted tuple, or None."""
    kind = "axes"

    def validate(self, value, place):
        if value is None:
            return None
        v = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        if (not isinstance(v, (list, tuple)) or not v or not all(
                isinstance(a, int) and not isinstance(a, bool) and 1 <= a <= 8 for a in v)):
            raise ParamError(f"expected null, an axis from 1 to 8 or a list of them, got "
                             f"{quote(value)}", place)
        return tuple(sorted(set(v)))

    def to_json(self, value):
        return None if value is None else list(value)

    def describe(self):
        return "null, an axis (1 = the first after the batch) or a list of axes"


def _f32(v):
    """An ONNX float attribute (float32) as the number it was written as: 0.30000001 -> 0.3."""
    return float(str(np.float32(v)))


def _elementwise(in_shapes):
    return [in_shapes[0]]


# -- ONNX readers shared by the layers below (imp: interop.onnx_import's importer) -------------
def _as_activation(imp, node, v, act):
    """node's output is our activation `act` of v: the importer folds it into the Dense or
    convolution that computes v when nothing else reads v, else adds an Activation layer."""
    imp.apply_activation(node, act, v, imp.only_use(node.input[0]))


def _read_as(act):
    """A reader of an operator that is activation `act` of the table."""
    def read(imp, node, type_id):
        _as_activation(imp, node, imp.value(node, 0), act)
    return read


def _read_hard_sigmoid(imp, node, type_id):
    """HardSigmoid(alpha, beta) = max(0, min(1, alpha x + beta)): Keras 3's hard_sigmoid at
    alpha 1/6, beta 1/2; ONNX's default (0.2, 0.5, tf.keras 2's) and others as a Lambda."""
    a, v = imp.attrs(node), imp.value(node, 0)
    alpha, beta = a.get("alpha", 0.2), a.get("beta", 0.5)
    if math.isclose(alpha, 1.0 / 6.0, rel_tol=1e-6) and math.isclose(beta, 0.5, rel_tol=1e-6):
        _as_activation(imp, node, v, "hard_sigmoid")
        return
    formula = f"clip(a * {_f32(alpha)!r} + {_f32(beta)!r}, 0, 1)"
    imp.set(node, v.like(imp.add(node, "Lambda", {"expression": formula}, [v])))


def _clip_bound(imp, node, i, key):
    """Clip's bound: input i from opset 11 (absent or "": none), attribute `key` before."""
    if imp.opset < 11:
        v = imp.attrs(node).get(key)
        return None if v is None else float(v)
    if i >= len(node.input) or not node.input[i]:
        return None
    c = np.asarray(imp.const(node, i, f"{key} bound"), np.float64)
    if c.size != 1:
        imp.fail(node, f"a {key} bound of shape {list(c.shape)}; expected one number")
    return float(c.reshape(-1)[0])


def _read_clip(imp, node, type_id):
    """Clip(0, max) is ReLU(max_value=max): relu6 and relu fold as the activation table's, as
    does Clip(-1, 1), hard_tanh."""
    v = imp.value(node, 0)
    lo, hi = _clip_bound(imp, node, 1, "min"), _clip_bound(imp, node, 2, "max")
    if (lo, hi) == (-1.0, 1.0):
        _as_activation(imp, node, v, "hard_tanh")
        return
    if lo != 0.0:
        imp.fail(node, ("no min" if lo is None else f"min {lo}") + "; only Clip(0, max) "
                       "(ReLU's max_value) and Clip(-1, 1) (hard_tanh) map")
    if hi is None or hi == 6.0:
        _as_activation(imp, node, v, "relu" if hi is None else "relu6")
        return
    if hi < 0:
        imp.fail(node, f"max {hi} below min 0")
    imp.set(node, v.like(imp.add(node, type_id, {"max_value": _f32(hi)}, [v])))


def _read_shrink(imp, node, type_id):
    """Shrink(bias, lambd): x - bias above lambd, x + bias below -lambd, else 0; Keras'
    soft_shrink and hard_shrink (threshold 0.5) are (0.5, 0.5) and (0, 0.5), others a Lambda."""
    a, v = imp.attrs(node), imp.value(node, 0)
    bias, lambd = _f32(a.get("bias", 0.0)), _f32(a.get("lambd", 0.5))
    if lambd < 0:
        imp.fail(node, f"lambd {lambd}; expected >= 0")
    known = {(0.5, 0.5): "soft_shrink", (0.0, 0.5): "hard_shrink"}.get((bias, lambd))
    if known:
        _as_activation(imp, node, v, known)
        return
    formula = f"where(a > {lambd!r}, a - {bias!r}, where(a < {-lambd!r}, a + {bias!r}, 0))"
    imp.set(node, v.like(imp.add(node, "Lambda", {"expression": formula}, [v])))


def _read_celu(imp, node, type_id):
    """Celu at alpha 1 (Keras' celu default) is elu."""
    alpha = _f32(imp.attrs(node).get("alpha", 1.0))
    if alpha != 1.0:
        imp.fail(node, f"alpha {alpha}; only 1 (elu, Keras' celu default) maps")
    _as_activation(imp, node, imp.value(node, 0), "elu")


def _read_thresholded_relu(imp, node, type_id):
    """ThresholdedRelu(alpha): x above alpha, else 0: ReLU(threshold=alpha)."""
    alpha, v = _f32(imp.attrs(node).get("alpha", 1.0)), imp.value(node, 0)
    if alpha < 0:
        imp.fail(node, f"alpha {alpha}; Keras' ReLU threshold is >= 0")
    imp.set(node, v.like(imp.add(node, type_id, {"threshold": alpha}, [v])))


# -- ReLU -----------------------------------------------------------------------------------------
def _relu_reference(x, max_value, negative_slope, threshold):
    """Keras' ReLU: x above the threshold (at most max_value), 0 else, minus negative_slope *
    (threshold - x) below the threshold."""
    top = np.inf if max_value is None else max_value
    pos = np.where(x > threshold, np.minimum(x, top), 0.0)
    return pos - negative_slope * np.maximum(threshold - x, 0.0)


def _relu_args(p):
    return (math.inf if p["max_value"] is None else p["max_value"], p["negative_slope"],
            p["threshold"])


def _relu_onnx(b, n):
    p, x = n.params, n.x[0]
    top, slope, thr = p["max_value"], p["negative_slope"], p["threshold"]
    if thr == 0.0 and slope == 0.0:
        return [b.op("Relu", [x]) if top is None else
                b.op("Clip", [x, b.const(0.0), b.const(top)])]
    if thr == 0.0 and top is None:
        return [b.op("LeakyRelu", [x], alpha=slope)]
    if slope == 0.0 and top is None:
        return [b.op("ThresholdedRelu", [x], alpha=thr)]
    t = b.const(thr)
    y = b.op("Where", [b.op("Greater", [x, t]), x, b.const(0.0)])
    if top is not None:
        y = b.op("Clip", [y, b.const(0.0), b.const(top)])
    if slope:
        below = b.op("Relu", [b.op("Sub", [t, x])])
        y = b.op("Sub", [y, b.op("Mul", [below, b.const(slope)])])
    return [y]


def _relu_torch(t, n):
    p, x = n.params, n.x[0]
    top, slope, thr = p["max_value"], p["negative_slope"], p["threshold"]
    if thr == 0.0 and slope == 0.0:
        expr = (f"F.relu({x})" if top is None else f"F.relu6({x})" if top == 6.0
                else f"{x}.clamp(0.0, {top!r})")
    elif thr == 0.0 and top is None:
        expr = f"F.leaky_relu({x}, {slope!r})"
    else:
        pos = x if top is None else f"{x}.clamp(max={top!r})"
        expr = f"torch.where({x} > {thr!r}, {pos}, 0.0)"
        if slope:
            expr += f" - {slope!r} * F.relu({thr!r} - {x})"
    return [], [f"{n.out} = {expr}"], {}


def _relu_keras_in(o, shapes):
    top = o.get("max_value")
    return {"max_value": None if top is None else o.f32(top),
            "negative_slope": o.floats("negative_slope", 0.0),
            "threshold": o.floats("threshold", 0.0)}


@register
class ReLU(Layer):
    type_id = "ReLU"
    category = "Activation"
    help = ("Rectified linear unit with Keras' options: x above threshold (capped at max_value), "
            "else negative_slope * (x - threshold); ReLU6 is max_value 6.")
    params = (OptionalFloat("max_value", None, min=0.0,
                            help="Largest output; null: no cap (6: ReLU6)."),
              Float("negative_slope", 0.0, min=0.0, help="Slope below the threshold."),
              Float("threshold", 0.0, min=0.0, help="Inputs at or below it are not passed."))
    headline = ("max_value",)
    examples = (({}, [(7,)]),
                ({"max_value": 6.0}, [(3, 33)]),
                ({"max_value": 1.5, "negative_slope": 0.1}, [(4, 5)]),
                ({"negative_slope": 0.25}, [(9,)]),
                ({"threshold": 0.5, "negative_slope": 0.2}, [(2, 3, 5)]),
                ({"threshold": 0.3, "max_value": 1.0}, [(11,)]))
    onnx_form = OnnxForm(
        _relu_onnx, "Relu; Clip(0, max_value); LeakyRelu; ThresholdedRelu; else Greater, Where, "
                    "Clip, Relu, Sub, Mul", reads={
                        "Clip": OnnxRead({"min", "max"}, _read_clip),
                        "HardSwish": OnnxRead((), _read_as("hard_silu")),
                        "Mish": OnnxRead((), _read_as("mish")),
                        "HardSigmoid": OnnxRead({"alpha", "beta"}, _read_hard_sigmoid),
                        "Shrink": OnnxRead({"bias", "lambd"}, _read_shrink),
                        "Celu": OnnxRead({"alpha"}, _read_celu),
                        "ThresholdedRelu": OnnxRead({"alpha"}, _read_thresholded_relu)})
    torch_form = TorchForm(_relu_torch)
    keras_form = KerasForm("ReLU", ("max_value", "negative_slope", "threshold"),
                           read=_relu_keras_in)

    def output_shapes(self, p, in_shapes):
        return _elementwise(in_shapes)

    def forward(self, ops, s):
        ops.param_act_forward("relu", s.x[0].buf, s.y[0].buf, s.n * s.x[0].size,
                              *_relu_args(s.params))

    def backward(self, ops, s):
        if s.dx[0] is not None:
            ops.param_act_backward("relu", s.x[0].buf, s.dy[0].buf, s.dx[0].buf,
                                   s.n * s.x[0].size, *_relu_args(s.params),
                                   accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        return [_relu_reference(xs[0], p["max_value"], p["negative_slope"], p["threshold"])]


# -- LeakyReLU ------------------------------------------------------------------------------------
def _read_leaky_relu(imp, node, type_id):
    alpha = _f32(imp.attrs(node).get("alpha", 0.01))
    if alpha == LEAKY_SLOPE:
        imp.decline(node, f"alpha {LEAKY_SLOPE} is the activation table's leaky_relu")
    if alpha < 0:
        imp.fail(node, f"alpha {alpha}; Keras' negative_slope is >= 0")
    v = imp.value(node, 0)
    imp.set(node, v.like(imp.add(node, type_id, {"negative_slope": alpha}, [v])))


def _leaky_relu_keras_in(o, shapes):
    """Keras 3's negative_slope; tf.keras 2 and Keras 3 files from old code wrote alpha."""
    key = "alpha" if "alpha" in o.c else "negative_slope"
    return {"negative_slope": o.floats(key, 0.3)}


@register
class LeakyReLU(Layer):
    type_id = "LeakyReLU"
    category = "Activation"
    help = "Leaky ReLU: x for x >= 0, negative_slope * x below (Keras' default slope 0.3)."
    params = (Float("negative_slope", 0.3, min=0.0, help="Slope for negative inputs."),)
    headline = ("negative_slope",)
    examples = (({}, [(7,)]), ({"negative_slope": 0.01}, [(3, 33)]),
                ({"negative_slope": 1.5}, [(2, 3, 4)]))
    onnx_form = OnnxForm(lambda b, n: [b.op("LeakyRelu", [n.x[0]],
                                            alpha=n.params["negative_slope"])],
                         "LeakyRelu(alpha=negative_slope)",
                         reads={"LeakyRelu": OnnxRead({"alpha"}, _read_leaky_relu)})
    torch_form = TorchForm(lambda t, n: (
        [], [f"{n.out} = F.leaky_relu({n.x[0]}, {n.params['negative_slope']!r})"], {}))
    keras_form = KerasForm("LeakyReLU", ("negative_slope",), read=_leaky_relu_keras_in)

    def output_shapes(self, p, in_shapes):
        return _elementwise(in_shapes)

    def forward(self, ops, s):
        ops.param_act_forward("relu", s.x[0].buf, s.y[0].buf, s.n * s.x[0].size, math.inf,
                              s.params["negative_slope"])

    def backward(self, ops, s):
        if s.dx[0] is not None:
            ops.param_act_backward("relu", s.x[0].buf, s.dy[0].buf, s.dx[0].buf,
                                   s.n * s.x[0].size, math.inf, s.params["negative_slope"],
                                   accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        x = xs[0]
        return [np.where(x >= 0, x, p["negative_slope"] * x)]


# -- ELU ------------------------------------------------------------------------------------------
def _read_elu(imp, node, type_id):
    alpha = _f32(imp.attrs(node).get("alpha", 1.0))
    if alpha == 1.0:
        imp.decline(node, "alpha 1 is the activation table's elu")
    v = imp.value(node, 0)
    imp.set(node, v.like(imp.add(node, type_id, {"alpha": alpha}, [v])))


@register
class ELU(Layer):
    type_id = "ELU"
    category = "Activation"
    help = "Exponential linear unit: x for x > 0, alpha * (exp(x) - 1) at and below 0."
    params = (Float("alpha", 1.0, help="Scale of the negative part."),)
    headline = ("alpha",)
    examples = (({}, [(7,)]), ({"alpha": 0.5}, [(3, 33)]), ({"alpha": 2.0}, [(2, 3, 4)]))
    onnx_form = OnnxForm(lambda b, n: [b.op("Elu", [n.x[0]], alpha=n.params["alpha"])],
                         "Elu(alpha)", reads={"Elu": OnnxRead({"alpha"}, _read_elu)})
    torch_form = TorchForm(lambda t, n: (
        [], [f"{n.out} = F.elu({n.x[0]}, {n.params['alpha']!r})"], {}))
    keras_form = KerasForm("ELU", ("alpha",),
                           read=lambda o, shapes: {"alpha": o.floats("alpha", 1.0)})

    def output_shapes(self, p, in_shapes):
        return _elementwise(in_shapes)

    def forward(self, ops, s):
        ops.param_act_forward("elu", s.x[0].buf, s.y[0].buf, s.n * s.x[0].size,
                              s.params["alpha"])

    def backward(self, ops, s):
        if s.dx[0] is not None:
            ops.param_act_backward("elu", s.x[0].buf, s.dy[0].buf, s.dx[0].buf,
                                   s.n * s.x[0].size, s.params["alpha"], accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        x = xs[0]
        return [np.where(x > 0, x, p["alpha"] * np.expm1(np.minimum(x, 0.0)))]


# -- PReLU ----------------------------------------------------------------------------------------
def _shared(p):
    """The 0-based per-sample axes alpha is shared over (Keras counts from 1)."""
    return tuple(a - 1 for a in (p["shared_axes"] or ()))


def _alpha_shape(p, shape):
    shared = _shared(p)
    return tuple(1 if a in shared else d for a, d in enumerate(shape))


def _prelu_onnx(b, n):
    return [b.op("PRelu", [n.x[0], b.const(n.w["alpha"], f"{n.id}/alpha")])]


def _prelu_torch(t, n):
    if n.params.get("alpha_regularizer"):
        raise t.unsupported(n.id, n.type, "alpha_regularizer", n.params["alpha_regularizer"])
    s, x = n.self, n.x[0]
    shape = _alpha_shape(n.params, n.in_shapes[0])
    init = [f"{s} = nn.ParameterDict({{'alpha': nn.Parameter(torch.empty({shape!r}))}})",
            t.init(n, f"{s}.alpha", "alpha_initializer", "zeros")]
    return init, [f"{n.out} = torch.where({x} > 0, {x}, {s}.alpha * {x})"], {
        "alpha": ("alpha", "")}


def _prelu_keras_in(o, shapes):
    axes = o.get("shared_axes")
    out = {"shared_axes": axes, **o.weight_params("alpha")}
    return out


def _read_prelu(imp, node, type_id):
    """PRelu(x, slope): slope broadcasts against ONNX's (per-sample) shape; its axes of 1 where
    the input's are longer are Keras' shared_axes, the rest alpha (in our layout)."""
    v = imp.value(node, 0)
    slope = np.asarray(imp.const(node, 1, "slope"), np.float32)
    onnx_shape = tuple(imp.onnx_shape(v))
    if slope.ndim > len(onnx_shape) + 1 or (slope.ndim == len(onnx_shape) + 1
                                            and slope.shape[0] != 1):
        imp.fail(node, f"a slope of shape {list(slope.shape)} for inputs {['N', *onnx_shape]}: "
                       "one per sample")
    if slope.ndim == len(onnx_shape) + 1:
        slope = slope[0]
    lead = (1,) * (len(onnx_shape) - slope.ndim)
    marks = np.arange(slope.size).reshape(lead + slope.shape)  # which slope entry each reads
    try:
        values = np.broadcast_to(slope.reshape(lead + slope.shape), onnx_shape)
        marks = np.broadcast_to(marks, onnx_shape)
    except ValueError:
        imp.fail(node, f"a slope of shape {list(slope.shape)} that does not broadcast to "
                       f"{['N', *onnx_shape]}")
    if v.pooled:  # ONNX's (C, 1, 1) is our (C,)
        values, marks = values[:, 0, 0], marks[:, 0, 0]
    elif v.nchw:
        values, marks = np.moveaxis(values, 0, -1), np.moveaxis(marks, 0, -1)
    ours = imp.shape(v)
    shared = [a for a in range(len(ours)) if ours[a] > 1 and
              np.all(marks == np.take(marks, [0], axis=a))]
    alpha = values[tuple(slice(0, 1) if a in shared else slice(None) for a in range(len(ours)))]
    nid = imp.add(node, type_id, {"shared_axes": [a + 1 for a in shared] or None}, [v])
    imp.weights[f"{nid}/alpha"] = np.ascontiguousarray(alpha, np.float32)
    imp.set(node, v.like(nid))


@register
class PReLU(Layer):
    type_id = "PReLU"
    category = "Activation"
    help = ("Parametric ReLU: x for x > 0, alpha * x else, alpha learned per element (shared "
            "along shared_axes, e.g. [1, 2] for one per channel of an image).")
    params = weight_params("alpha", "zeros") + (
        SharedAxes("shared_axes", None, help="Axes (1 = first after the batch) that share one "
                                             "alpha; null: one alpha per element."),)
    examples = (({}, [(7,)]),
                ({"shared_axes": [1, 2]}, [(3, 4, 5)]),
                ({"shared_axes": [2]}, [(3, 4, 2)]),
                ({"shared_axes": [1], "alpha_initializer": "ones"}, [(6, 3)]),
                ({"shared_axes": [1, 3]}, [(2, 3, 2, 4)]))
    onnx_form = OnnxForm(_prelu_onnx, "PRelu (alpha as the slope, broadcast)",
                         reads={"PRelu": OnnxRead((), _read_prelu)})
    torch_form = TorchForm(_prelu_torch)
    keras_form = KerasForm("PReLU", ("shared_axes",), ("alpha",), read=_prelu_keras_in,
                           weight_order=("alpha",))

    def output_shapes(self, p, in_shapes):
        shape = in_shapes[0]
        if len(shape) > 4:
            raise ShapeError(f"takes inputs of up to 4 axes per sample, got {fmt_shape(shape)}")
        bad = [a for a in (p["shared_axes"] or ()) if a > len(shape)]
        if bad:
            raise ShapeError(f"shared_axes names axis {bad[0]}, but the input {fmt_shape(shape)}"
                             f" has axes 1 to {len(shape)}")
        return [shape]

    def weights(self, p, in_shapes):
        return [WeightSpec("alpha", _alpha_shape(p, in_shapes[0]), p["alpha_initializer"],
                           regularizer=p["alpha_regularizer"])]

    def forward(self, ops, s):
        x = s.x[0]
        ops.prelu_forward(x.buf, s.w["alpha"].buf, s.y[0].buf, s.n, x.shape,
                          _shared(s.params))

    def backward(self, ops, s):
        x, shared = s.x[0], _shared(s.params)
        if "alpha" in s.dw:
            ops.prelu_alpha_grad(x.buf, s.dy[0].buf, s.dw["alpha"].buf, s.n, x.shape, shared)
        if s.dx[0] is not None:
            ops.prelu_backward(x.buf, s.w["alpha"].buf, s.dy[0].buf, s.dx[0].buf, s.n, x.shape,
                               shared, accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        x = xs[0]
        return [np.where(x > 0, x, ws["alpha"] * x)]


# -- Softmax --------------------------------------------------------------------------------------
def _axis(p, shape):
    """Softmax's axis as a 0-based per-sample axis (Keras counts the batch as 0)."""
    a = p["axis"]
    return a + len(shape) if a < 0 else a - 1


def _softmax_onnx(b, n):
    return [b.op("Softmax", [n.x[0]], axis=_axis(n.params, n.in_shapes[0]) + 1)]


def _softmax_torch(t, n):
    return [], [f"{n.out} = torch.softmax({n.x[0]}, {_axis(n.params, n.in_shapes[0]) + 1})"], {}


def _read_softmax(imp, node, type_id):
    """Softmax along another axis than the channels (those are the importer's softmax
    activation, folded into a Dense): from opset 13 along `axis`, before along it and the
    axes after it taken as one, which is the same where those are all 1."""
    v = imp.value(node, 0)
    shape = imp.onnx_shape(v)
    rank = len(shape) + 1
    axis = imp.attrs(node).get("axis", -1 if imp.opset >= 13 else 1)
    ax = axis % rank if -rank <= axis < rank else None
    if ax is None or ax == 0 or ax == imp.channel_axis(v) or v.pooled:
        imp.decline(node, f"axis {axis} is not one of the Softmax layer's")
    if imp.opset < 13 and any(d != 1 for d in shape[ax:]):
        imp.decline(node, f"opset {imp.opset}'s softmax along axis {axis} and the axes after "
                          "it taken as one")
    ours = ax - 1 if v.nchw else ax  # ONNX's (C, d1, d2) is our (d1, d2, C)
    imp.set(node, v.like(imp.add(node, type_id, {"axis": ours}, [v])))


def _softmax_keras_in(o, shapes):
    axis = o.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            o.fail("axis", "has no Layerloom form (several axes; Layerloom's Softmax takes one)")
        axis = axis[0]
    return {"axis": axis}


@register
class Softmax(Layer):
    type_id = "Softmax"
    category = "Activation"
    help = ("Softmax along one axis (Keras' axis: -1 the last, 1 the first after the batch); "
            "Keras' mask argument is not taken.")
    params = (Int("axis", -1, help="The axis normalised over; counts the batch as 0."),)
    headline = ("axis",)
    examples = (({}, [(7,)]), ({"axis": 1}, [(3, 5)]), ({"axis": -2}, [(2, 4, 3)]),
                ({"axis": 2}, [(2, 4, 3)]), ({"axis": 3}, [(2, 4, 3)]))
    onnx_form = OnnxForm(_softmax_onnx, "Softmax(axis)",
                         reads={"Softmax": OnnxRead({"axis"}, _read_softmax)})
    torch_form = TorchForm(_softmax_torch)
    keras_form = KerasForm("Softmax", ("axis",), read=_softmax_keras_in)

    def output_shapes(self, p, in_shapes):
        shape, a = in_shapes[0], p["axis"]
        if a == 0 or not -len(shape) <= a <= len(shape):
            raise ShapeError(f"axis {a} is not an axis of the input {fmt_shape(shape)} "
                             f"(1 to {len(shape)}, or -{len(shape)} to -1; 0 is the batch)")
        return [shape]

    def _geometry(self, s):
        shape = s.x[0].shape
        a = _axis(s.params, shape)
        return (s.n * math.prod(shape[:a]), shape[a], math.prod(shape[a + 1:]))

    def forward(self, ops, s):
        outer, length, inner = self._geometry(s)
        if inner == 1:  # the last axis: the activation's row-wise kernel
            ops.act_forward("softmax", s.x[0].buf, s.y[0].buf, outer, length)
        else:
            ops.softmax_axis_forward(s.x[0].buf, s.y[0].buf, outer, length, inner)

    def backward(self, ops, s):
        if s.dx[0] is None:
            return
        outer, length, inner = self._geometry(s)
        if inner == 1:
            ops.act_backward("softmax", s.y[0].buf, s.dy[0].buf, s.dx[0].buf, outer, length,
                             accumulate=s.acc[0])
        else:
            ops.softmax_axis_backward(s.y[0].buf, s.dy[0].buf, s.dx[0].buf, outer, length,
                                      inner, accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        a = _axis(p, xs[0].shape[1:]) + 1
        z = np.moveaxis(xs[0], a, -1)
        return [np.moveaxis(REFERENCE["softmax"](z), -1, a)]
