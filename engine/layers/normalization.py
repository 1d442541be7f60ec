"""BatchNormalization and LayerNormalization over the last axis, with Keras' defaults."""
import numpy as np

from layerloom.core.params import Bool, Float, Int
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, OnnxRead, TorchForm, WeightSpec,
                                     register)


def _affine_weights(p, C):
    ws = []
    if p["scale"]:
        ws.append(WeightSpec("gamma", (C,), "ones"))
    if p["center"]:
        ws.append(WeightSpec("beta", (C,), "zeros"))
    return ws


def _norm_params(eps):
    return (Float("epsilon", eps, min=0.0, min_exclusive=True, help="Added to the variance."),
            Bool("center", True, help="Learn an offset beta."),
            Bool("scale", True, help="Learn a scale gamma."))


def _axis_param():
    return Int("axis", -1, min=-1, max=-1, help="Normalised axis; only the last (-1).")


# -- BatchNormalization's interop forms (the converters receive interop's builder or kit: see
# OnnxForm, TorchForm and KerasForm in core/registry.py) ---------------------------------------
def _batch_norm_onnx(b, n):
    """Inference form: (x - moving_mean) * (gamma / sqrt(moving_variance + epsilon)) + beta,
    the scale folded into one constant."""
    p, w = n.params, n.w
    scale = 1.0 / np.sqrt(w["moving_variance"].astype(np.float64) + p["epsilon"])
    if p["scale"]:
        scale = scale * w["gamma"]
    y = b.op("Sub", [n.x[0], b.const(w["moving_mean"], f"{n.id}/moving_mean")])
    y = b.op("Mul", [y, b.const(scale, f"{n.id}/scale")])
    if p["center"]:
        y = b.op("Add", [y, b.const(w["beta"], f"{n.id}/beta")])
    return [y]


def _batch_norm_onnx_in(imp, node, type_id):
    a, v = imp.attrs(node), imp.value(node, 0)
    if imp.channel_axis(v) != 1:
        imp.fail(node, f"an input of shape {['N', *imp.onnx_shape(v)]} whose channel "
                       "axis 1 is not Layerloom's last axis (read as it is, not "
                       "channels-first)")
    if a.get("spatial", 1) != 1:
        imp.fail(node, "spatial 0 (statistics per element); Layerloom's are per channel")
    if a.get("training_mode", 0) or (imp.opset < 7 and not a.get("is_test", 0)):
        imp.fail(node, "training mode (batch statistics)")
    gamma, beta, mean, var = (imp.const(node, i, w) for i, w in
                              enumerate(("scale", "bias", "mean", "variance"), 1))
    channels = imp.shape(v)[-1]
    if any(x.shape != (channels,) for x in (gamma, beta, mean, var)):
        imp.fail(node, f"statistics of shapes {[list(x.shape) for x in (gamma, beta, mean, var)]}"
                       f" for {channels} channels")
    nid = imp.add(node, type_id, {"epsilon": float(a.get("epsilon", 1e-5))}, [v])
    for name, arr in (("gamma", gamma), ("beta", beta), ("moving_mean", mean),
                      ("moving_variance", var)):
        imp.weights[f"{nid}/{name}"] = arr.astype(np.float32)
    imp.set(node, v.like(nid))


def _batch_norm_torch(t, n):
    p, s = n.params, n.self
    if p["axis"] not in (-1, len(n.in_shapes[0])):
        raise t.unsupported(n.id, n.type, "axis", p["axis"])
    c = n.in_shapes[0][-1]
    rank = len(n.in_shapes[0])
    init = [f"{s} = nn.BatchNorm1d({c}, eps={p['epsilon']!r}, momentum={1 - p['momentum']!r}, "
            f"affine=True)  # torch momentum = 1 - Keras momentum"]
    if not p["center"]:
        init.append(f"{s}.bias.requires_grad_(False)")
    if not p["scale"]:
        init.append(f"{s}.weight.requires_grad_(False)")
    if rank == 1:
        fwd = [f"{n.out} = {s}({n.x[0]})"]
    else:  # channels-last: features on axis 1 for torch, every other axis a "sample"
        fwd = [f"{n.out} = {s}({n.x[0]}.reshape(-1, {c})).reshape({n.x[0]}.shape)"]
    return init, fwd, {"gamma": ("weight", ""), "beta": ("bias", ""),
                  "moving_mean": ("running_mean", ""), "moving_variance": ("running_var", "")}


def _batch_norm_keras_in(o, shapes):
    o.axis_last(shapes)
    for k in ("renorm", "synchronized"):
        o.must(k, False)
    for k, want in (("beta", "Zeros"), ("gamma", "Ones"), ("moving_mean", "Zeros"),
                    ("moving_variance", "Ones")):
        o.initializer_is(f"{k}_initializer", want)
        o.must(f"{k}_regularizer", None)
        o.must(f"{k}_constraint", None)
    o.must("virtual_batch_size", None)
    o.must("adjustment", None)
    return {"momentum": o.floats("momentum", 0.99), "epsilon": o.floats("epsilon", 1e-3),
            "center": o.get("center", True), "scale": o.get("scale", True)}


def _affine_order(p):
    """gamma, beta as scale and center have them: the Keras layer's order of its weights."""
    return (["gamma"] if p["scale"] else []) + (["beta"] if p["center"] else [])


@register
class BatchNormalization(Layer):
    type_id = "BatchNormalization"
    category = "Normalization"
    help = ("Normalises each channel (last axis) with the batch's mean and variance while "
            "training, and with moving averages of them at inference.")
    params = (_axis_param(),
              Float("momentum", 0.99, min=0.0, max=1.0, help="Decay of the moving statistics."),
              ) + _norm_params(1e-3)
    test_in_training = True
    examples = (({}, [(5,)]), ({"momentum": 0.9, "epsilon": 0.01}, [(3, 4, 2)]),
                ({"center": False}, [(33,)]), ({"scale": False}, [(2, 3)]))

    onnx_form = OnnxForm(_batch_norm_onnx, "Sub (moving mean), Mul (gamma / sqrt(moving var + "
                         "eps)), Add (beta)", reads={"BatchNormalization": OnnxRead(
                             {"epsilon", "momentum", "spatial", "is_test", "training_mode"},
                             _batch_norm_onnx_in)})
    torch_form = TorchForm(_batch_norm_torch)
    keras_form = KerasForm("BatchNormalization", ("axis", "momentum", "epsilon", "center", "scale"),
                           read=_batch_norm_keras_in,
                           weight_order=lambda p: _affine_order(p) + ["moving_mean",
                                                                      "moving_variance"])

    def output_shapes(self, p, in_shapes):
        return [in_shapes[0]]

    def weights(self, p, in_shapes):
        C = in_shapes[0][-1]
        return _affine_weights(p, C) + [
            WeightSpec("moving_mean", (C,), "zeros", trainable=False),
            WeightSpec("moving_variance", (C,), "ones", trainable=False)]

    def scratch(self, p, in_shapes):
        C = in_shapes[0][-1]
        return {"mean": (C,), "var": (C,), "sdy": (C,), "sdx": (C,)}

    def _rows(self, s):
        return s.n * (s.x[0].size // s.x[0].cols), s.x[0].cols

    def _wbuf(self, s, name):
        return s.w[name].buf if name in s.w else None

    def forward(self, ops, s):
        p = s.params
        rows, C = self._rows(s)
        if s.training:
            mean, var = s.scratch["mean"].buf, s.scratch["var"].buf
            ops.bn_stats(s.x[0].buf, rows, C, mean, var, s.w["moving_mean"].buf,
                         s.w["moving_variance"].buf, p["momentum"], update=True)
        else:
            mean, var = s.w["moving_mean"].buf, s.w["moving_variance"].buf
        ops.bn_apply(s.x[0].buf, s.y[0].buf, rows, C, mean, var, self._wbuf(s, "gamma"),
                     self._wbuf(s, "beta"), p["epsilon"])

    def backward(self, ops, s):
        p = s.params
        rows, C = self._rows(s)
        mean, var = s.scratch["mean"].buf, s.scratch["var"].buf
        sdy = s.dw["beta"].buf if "beta" in s.dw else s.scratch["sdy"].buf
        sdx = s.dw["gamma"].buf if "gamma" in s.dw else s.scratch["sdx"].buf
        ops.bn_grad_sums(s.x[0].buf, s.dy[0].buf, mean, var, p["epsilon"], rows, C, sdy, sdx)
        if s.dx[0] is not None:
            ops.bn_grad_input(s.x[0].buf, s.dy[0].buf, mean, var, self._wbuf(s, "gamma"),
                              p["epsilon"], sdy, sdx, rows, C, s.dx[0].buf, s.acc[0])

    def reference(self, p, xs, ws, training=False):
        x = xs[0]
        if training:
            axes = tuple(range(x.ndim - 1))
            mean, var = x.mean(axes), x.var(axes)
        else:
            mean, var = ws["moving_mean"], ws["moving_variance"]
        y = (x - mean) / np.sqrt(var + p["epsilon"])
        if p["scale"]:
            y = y * ws["gamma"]
        if p["center"]:
            y = y + ws["beta"]
        return [y]


# -- LayerNormalization's interop forms --------------------------------------------------------
def _layer_norm_onnx(b, n):
    p, C = n.params, n.in_shapes[0][-1]
    gamma = n.w["gamma"] if p["scale"] else np.ones(C, np.float32)
    inputs = [n.x[0], b.const(gamma, f"{n.id}/gamma")]
    if p["center"]:
        inputs.append(b.const(n.w["beta"], f"{n.id}/beta"))
    return [b.op("LayerNormalization", inputs, axis=-1, epsilon=p["epsilon"])]


def _layer_norm_torch(t, n):
    p, s = n.params, n.self
    if p["axis"] not in (-1, len(n.in_shapes[0])):
        raise t.unsupported(n.id, n.type, "axis", p["axis"])
    c = n.in_shapes[0][-1]
    affine = bool(p["center"] or p["scale"])
    init = [f"{s} = nn.LayerNorm({c}, eps={p['epsilon']!r}, elementwise_affine={affine!r})"]
    if affine and not p["center"]:
        init += [f"{s}.bias.requires_grad_(False)"]
    if affine and not p["scale"]:
        init += [f"{s}.weight.requires_grad_(False)"]
    return init, [f"{n.out} = {s}({n.x[0]})"], {"gamma": ("weight", ""), "beta": ("bias", "")}


def _layer_norm_keras_in(o, shapes):
    o.axis_last(shapes)
    o.must("rms_scaling", False)
    for k, want in (("beta", "Zeros"), ("gamma", "Ones")):
        o.initializer_is(f"{k}_initializer", want)
        o.must(f"{k}_regularizer", None)
        o.must(f"{k}_constraint", None)
    return {"epsilon": o.floats("epsilon", 1e-3), "center": o.get("center", True),
            "scale": o.get("scale", True)}


@register
class LayerNormalization(Layer):
    type_id = "LayerNormalization"
    category = "Normalization"
    help = "Normalises each sample over its last axis, then scales and shifts it."
    params = (_axis_param(),) + _norm_params(1e-3)
    examples = (({}, [(5,)]), ({"epsilon": 1e-5}, [(3, 33)]), ({"center": False, "scale": False},
                                                              [(2, 4)]))

    onnx_form = OnnxForm(_layer_norm_onnx, "LayerNormalization (axis -1)")
    torch_form = TorchForm(_layer_norm_torch)
    keras_form = KerasForm("LayerNormalization", ("axis", "epsilon", "center", "scale"),
                           read=_layer_norm_keras_in, weight_order=_affine_order)

    def output_shapes(self, p, in_shapes):
        return [in_shapes[0]]

    def weights(self, p, in_shapes):
        return _affine_weights(p, in_shapes[0][-1])

    def scratch(self, p, in_shapes):
        rows = int(np.prod(in_shapes[0][:-1]))
        return {"mean": (rows,), "rstd": (rows,)}

    def forward(self, ops, s):
        rows, cols = s.n * (s.x[0].size // s.x[0].cols), s.x[0].cols
        ops.ln_forward(s.x[0].buf, s.y[0].buf, s.w["gamma"].buf if "gamma" in s.w else None,
                       s.w["beta"].buf if "beta" in s.w else None, s.scratch["mean"].buf,
                       s.scratch["rstd"].buf, rows, cols, s.params["epsilon"])

    def backward(self, ops, s):
        rows, cols = s.n * (s.x[0].size // s.x[0].cols), s.x[0].cols
        gamma = s.w["gamma"].buf if "gamma" in s.w else None
        if s.dw:
            ops.ln_param_grad(s.x[0].buf, s.dy[0].buf, s.scratch["mean"].buf,
                              s.scratch["rstd"].buf, rows, cols,
                              s.dw["gamma"].buf if "gamma" in s.dw else None,
                              s.dw["beta"].buf if "beta" in s.dw else None)
        if s.dx[0] is not None:
            ops.ln_backward(s.x[0].buf, s.dy[0].buf, gamma, s.scratch["mean"].buf,
                            s.scratch["rstd"].buf, rows, cols, s.dx[0].buf, s.acc[0])

    def reference(self, p, xs, ws, training=False):
        x = xs[0]
        y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + p["epsilon"])
        if p["scale"]:
            y = y * ws["gamma"]
        if p["center"]:
            y = y + ws["beta"]
        return [y]
