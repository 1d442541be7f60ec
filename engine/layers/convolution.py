"""Conv2D and Conv1D: im2col into a kept scratch buffer, then the tiled GEMM with bias and
activation fused in its epilogue. A 1x1 convolution with stride 1 reads its input directly."""

import numpy as np

from layerloom.backend.geometry import ConvGeometry
from layerloom.core.activations import REFERENCE
from layerloom.core.graph import fmt_shape
from layerloom.core.params import Bool, Choice, Int, Pair
from layerloom.core.registry import Layer, register, ShapeError, WeightSpec
from layerloom.layers.kit import (activation_param, activation_scratch,
                                  backward_through_activation, forward_with_activation,
                                  kernel_and_bias_params, padded_reference, window_geometry)


class _Conv(Layer):
    """Shared by Conv2D and Conv1D (a Conv1D is a Conv2D over a height of 1)."""
    category = "Convolution"
    activation_param = "activation"
    rank = 2

    def _hw(self, p):
        """(kernel, strides, dilation) as pairs."""
        if self.rank == 2:
            return p["kernel_size"], p["strides"], p["dilation_rate"]
        return (1, p["kernel_size"]), (1, p["strides"]), (1, p["dilation_rate"])

    def geometry(self, p, in_shape):
        if len(in_shape) != self.rank + 1:
            want = "(None, height, width, channels)" if self.rank == 2 else "(None, steps, channels)"
            raise ShapeError(f"expects input shaped {want}, got {fmt_shape(in_shape)}")
        H, W, C = (in_shape if self.rank == 2 else (1,) + tuple(in_shape))
        (KH, KW), (SH, SW), (DH, DW) = self._hw(p)
        if max(SH, SW) > 1 and max(DH, DW) > 1:
            raise ShapeError("strides > 1 cannot be combined with dilation_rate > 1 (as in Keras)")
        try:
            # causal padding applies to the time axis only (Conv1D's width)
            OH, PT = window_geometry(H, KH, SH, DH,
                                     "valid" if p["padding"] == "causal" else p["padding"])
            OW, PL = window_geometry(W, KW, SW, DW, p["padding"])
        except ValueError as e:
            raise ShapeError(f"{e} (input {fmt_shape(in_shape)})") from None
        return ConvGeometry(H, W, C, OH, OW, KH, KW, SH, SW, DH, DW, PT, PL)

    def output_shapes(self, p, in_shapes):
        g = self.geometry(p, in_shapes[0])
        return [(g.OH, g.OW, p["filters"]) if self.rank == 2 else (g.OW, p["filters"])]

    def _k(self, g):
        return g.KH * g.KW * g.C

    def weights(self, p, in_shapes):
        g = self.geometry(p, in_shapes[0])
        kh_kw = (g.KH, g.KW) if self.rank == 2 else (g.KW,)
        fan_in, fan_out = self._k(g), g.KH * g.KW * p["filters"]
        ws = [WeightSpec("kernel", kh_kw + (g.C, p["filters"]), p["kernel_initializer"],
                         fan_in, fan_out, regularizer=p["kernel_regularizer"])]
        if p["use_bias"]:
            ws.append(WeightSpec("bias", (p["filters"],), p["bias_initializer"],
                                 regularizer=p["bias_regularizer"]))
        return ws

    @staticmethod
    def _direct(g):
        return g.KH == 1 and g.KW == 1 and g.SH == 1 and g.SW == 1

    def scratch(self, p, in_shapes):
        g = self.geometry(p, in_shapes[0])
        out = self.output_shapes(p, in_shapes)[0]
        sc = activation_scratch(p["activation"], out)
        if not self._direct(g):
            sc["cols"] = (g.OH * g.OW * self._k(g),)
            sc["dcols"] = (g.OH * g.OW * self._k(g),)
        return sc

    def forward(self, ops, s):
        p = s.params
        g = self.geometry(p, s.x[0].shape)
        rows, K, F = s.n * g.OH * g.OW, self._k(g), p["filters"]
        if self._direct(g):
            cols = s.x[0].buf
        else:
            cols = s.scratch["cols"].buf
            ops.im2col(s.x[0].buf, cols, s.n, g)
        W = s.w["kernel"].buf
        b = s.w["bias"].buf if p["use_bias"] else None
        forward_with_activation(ops, s, p["activation"], rows, F,
                                lambda out, act: ops.gemm(rows, F, K, cols, W, out, bias=b,
                                                          act=act))

    def backward(self, ops, s):
        p = s.params
        g = self.geometry(p, s.x[0].shape)
        rows, K, F = s.n * g.OH * g.OW, self._k(g), p["filters"]
        dz = backward_through_activation(ops, s, p["activation"], rows, F)
        direct = self._direct(g)
        cols = s.x[0].buf if direct else s.scratch["cols"].buf
        ops.gemm(K, F, rows, cols, dz, s.dw["kernel"].buf, trans_a=True)
        if p["use_bias"]:
            ops.bias_grad(dz, s.dw["bias"].buf, rows, F)
        if s.dx[0] is not None:
            if direct:
                ops.gemm(rows, K, F, dz, s.w["kernel"].buf, s.dx[0].buf, trans_b=True,
                         accumulate=s.acc[0])
            else:
                ops.gemm(rows, K, F, dz, s.w["kernel"].buf, s.scratch["dcols"].buf, trans_b=True)
                ops.col2im(s.scratch["dcols"].buf, s.dx[0].buf, s.n, g, accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        x = xs[0] if self.rank == 2 else xs[0][:, None]
        w = ws["kernel"] if self.rank == 2 else ws["kernel"][None]
        g = self.geometry(p, xs[0].shape[1:])
        xp = padded_reference(x, [(g.PT, (g.OH - 1) * g.SH + (g.KH - 1) * g.DH + 1 - g.H - g.PT),
                                  (g.PL, (g.OW - 1) * g.SW + (g.KW - 1) * g.DW + 1 - g.W - g.PL)])
        out = np.zeros((x.shape[0], g.OH, g.OW, p["filters"]))
        for kh in range(g.KH):
            for kw in range(g.KW):
                patch = xp[:, kh * g.DH: kh * g.DH + (g.OH - 1) * g.SH + 1: g.SH,
                           kw * g.DW: kw * g.DW + (g.OW - 1) * g.SW + 1: g.SW, :]
                out += patch @ w[kh, kw]
        if p["use_bias"]:
            out = out + ws["bias"]
        out = REFERENCE[p["activation"]](out)
        return [out if self.rank == 2 else out[:, 0]]


@register
class Conv2D(_Conv):
    type_id = "Conv2D"
    help = ("2-D convolution over (height, width, channels) inputs; kernel shaped "
            "(kh, kw, in_channels, filters) as in Keras.")
    params = (
        Int("filters", 32, min=1, help="Number of output channels."),
        Pair("kernel_size", (3, 3), help="Window height and width."),
        Pair("strides", (1, 1), help="Step between windows."),
        Choice("padding", "valid", ("valid", "same"),
               help="valid: no padding; same: pad so output = ceil(input / stride)."),
        Pair("dilation_rate", (1, 1), help="Spacing between kernel taps."),
        activation_param(),
        Bool("use_bias", True, help="Add a learned bias per filter."),
    ) + kernel_and_bias_params()
    examples = (
        ({"filters": 3, "kernel_size": 3}, [(5, 6, 2)]),
        ({"filters": 2, "kernel_size": [2, 3], "strides": 2, "padding": "same",
          "activation": "relu"}, [(7, 5, 3)]),
        ({"filters": 4, "kernel_size": 3, "dilation_rate": 2, "padding": "same",
          "activation": "tanh"}, [(6, 6, 1)]),
        ({"filters": 33, "kernel_size": 1}, [(3, 2, 5)]),
        ({"filters": 2, "kernel_size": 2, "strides": [1, 2], "use_bias": False,
          "activation": "gelu"}, [(4, 5, 2)]),
    )


@register
class Conv1D(_Conv):
    type_id = "Conv1D"
    rank = 1
    help = ("1-D convolution over (steps, channels) inputs; kernel shaped (k, in_channels, "
            "filters). padding causal pads only the start (for sequence models).")
    params = (
        Int("filters", 32, min=1, help="Number of output channels."),
        Int("kernel_size", 3, min=1, help="Window length."),
        Int("strides", 1, min=1, help="Step between windows."),
        Choice("padding", "valid", ("valid", "same", "causal"),
               help="valid: none; same: output = ceil(steps / stride); causal: pad the start."),
        Int("dilation_rate", 1, min=1, help="Spacing between kernel taps."),
        activation_param(),
        Bool("use_bias", True, help="Add a learned bias per filter."),
    ) + kernel_and_bias_params()
    examples = (
        ({"filters": 3, "kernel_size": 3}, [(9, 2)]),
        ({"filters": 2, "kernel_size": 3, "padding": "causal", "dilation_rate": 2,
          "activation": "relu"}, [(7, 3)]),
        ({"filters": 4, "kernel_size": 2, "strides": 2, "padding": "same"}, [(5, 1)]),
    )
