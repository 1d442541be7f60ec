"""BatchNormalization and LayerNormalization over the last axis, with Keras' defaults."""
import numpy as np

from layerloom.core.params import Bool, Float, Int
from layerloom.core.registry import Layer, WeightSpec, register


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


@register
class LayerNormalization(Layer):
    type_id = "LayerNormalization"
    category = "Normalization"
    help = "Normalises each sample over its last axis, then scales and shifts it."
    params = (_axis_param(),) + _norm_params(1e-3)
    examples = (({}, [(5,)]), ({"epsilon": 1e-5}, [(3, 33)]), ({"center": False, "scale": False},
                                                              [(2, 4)]))

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
