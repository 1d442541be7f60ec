"""Conv3D over (depth, height, width, channels) volumes, on the 2-D convolution's kernels: the
columns are made in two im2col passes of conv.cl, then the GEMM with bias and activation in its
epilogue (as Conv2D). First each depth slice's height-and-width columns, the volume read as
n * depth images: (n, D, OH * OW, KH * KW * C); then those read as n images of D rows by
OH * OW columns of KH * KW * C channels, im2col over the rows alone (a KD x 1 window) gives
(n * OD * OH * OW, KD * KH * KW * C), the rows of the kernel (KD, KH, KW, C, filters) in Keras'
layout. The backward pass runs the same passes back (col2im twice), the input gradient's
columns written over the forward's once the kernel gradient has read them. A pass whose window
is a single cell with stride 1 and no padding is skipped (a 1x1x1 convolution reads its input
as the columns). No groups: the grouped column layout is the 2-D layer's alone."""
import numpy as np

from layerloom.backend.geometry import ConvGeometry
from layerloom.core.activations import REFERENCE
from layerloom.core.params import Bool, Int, Triple
from layerloom.core.registry import Layer, OnnxForm, ShapeError, TorchForm, WeightSpec, register
from layerloom.layers.convolution import ColumnScratch, _conv_keras, _conv_onnx, _conv_torch
from layerloom.layers.kit import (activation_param as _activation,
                                  backward_through_activation, forward_with_activation,
                                  kernel_and_bias_params, padded_reference, padding_param,
                                  window_geometry_3d)


def _stages(g):
    """(height-and-width pass, depth pass): each a ConvGeometry for im2col/col2im, or None
    where it would copy its input (a single cell, stride 1, no padding)."""
    hw = ConvGeometry(g.H, g.W, g.C, g.OH, g.OW, g.KH, g.KW, g.SH, g.SW, g.DH, g.DW, g.PT, g.PL)
    positions, k1 = g.OH * g.OW, g.KH * g.KW * g.C
    depth = ConvGeometry(g.D, positions, k1, g.OD, positions, g.KD, 1, g.SD, 1, g.DD, 1, g.PD, 0)
    single = lambda c: (c.KH, c.KW, c.SH, c.SW, c.OH, c.OW) == (1, 1, 1, 1, c.H, c.W)  # noqa
    return (None if single(hw) else hw), (None if single(depth) else depth)


@register
class Conv3D(ColumnScratch, Layer):
    type_id = "Conv3D"
    category = "Convolution"
    activation_param = "activation"
    rank = 3
    help = ("3-D convolution over (depth, height, width, channels) inputs; kernel shaped "
            "(kd, kh, kw, in_channels, filters) as in Keras.")
    params = (
        Int("filters", 32, min=1, help="Number of output channels."),
        Triple("kernel_size", (3, 3, 3), help="Window depth, height and width."),
        Triple("strides", (1, 1, 1), help="Step between windows."),
        padding_param(rank=3),
        Triple("dilation_rate", (1, 1, 1), help="Spacing between kernel taps."),
        _activation(),
        Bool("use_bias", True, help="Add a learned bias per filter."),
    ) + kernel_and_bias_params()
    examples = (
        ({"filters": 3, "kernel_size": 3}, [(4, 5, 6, 2)]),
        ({"filters": 2, "kernel_size": [2, 3, 1], "strides": [2, 1, 2], "padding": "same",
          "activation": "relu"}, [(5, 4, 5, 3)]),
        ({"filters": 4, "kernel_size": 2, "dilation_rate": [2, 1, 2], "padding": "same",
          "activation": "tanh"}, [(5, 3, 5, 1)]),
        ({"filters": 5, "kernel_size": 1, "use_bias": False}, [(2, 3, 2, 4)]),
        # one pass alone: a depth window over single cells, a height-and-width window
        ({"filters": 3, "kernel_size": [3, 1, 1], "strides": [2, 1, 1]}, [(5, 2, 3, 2)]),
        ({"filters": 2, "kernel_size": [1, 2, 2], "activation": "gelu"}, [(2, 3, 4, 3)]),
        # channels in eights (im2col8/col2im8), explicit padding (PyTorch's)
        ({"filters": 4, "kernel_size": 3, "padding": 1, "activation": "relu"}, [(3, 4, 3, 8)]),
        ({"filters": 2, "kernel_size": 2, "strides": 2, "padding": [[0, 1], [1, 0], [1, 1]]},
         [(3, 4, 3, 2)]),
    )
    onnx_form = OnnxForm(_conv_onnx, "Transpose (NDHWC->NCDHW), Conv, Transpose back, "
                                     "activation")
    torch_form = TorchForm(_conv_torch)
    keras_form = _conv_keras("Conv3D", 3, groups=False)

    def geometry(self, p, in_shape):
        if max(p["strides"]) > 1 and max(p["dilation_rate"]) > 1:
            raise ShapeError("strides > 1 cannot be combined with dilation_rate > 1 (as in Keras)")
        return window_geometry_3d(in_shape, p["kernel_size"], p["strides"], p["dilation_rate"],
                                  p["padding"])

    def output_shapes(self, p, in_shapes):
        g = self.geometry(p, in_shapes[0])
        return [(g.OD, g.OH, g.OW, p["filters"])]

    @staticmethod
    def _k(g):
        return g.KD * g.KH * g.KW * g.C

    def weights(self, p, in_shapes):
        g = self.geometry(p, in_shapes[0])
        ws = [WeightSpec("kernel", (g.KD, g.KH, g.KW, g.C, p["filters"]),
                         p["kernel_initializer"], self._k(g),
                         g.KD * g.KH * g.KW * p["filters"], regularizer=p["kernel_regularizer"])]
        if p["use_bias"]:
            ws.append(WeightSpec("bias", (p["filters"],), p["bias_initializer"],
                                 regularizer=p["bias_regularizer"]))
        return ws

    def _columns(self, p, in_shapes, run):
        """(kept, shared) column scratch, as Conv2D's: "cols" the GEMM's columns (kept where
        the backward pass reads them, else in the pool the model's convolutions share), "cols1"
        the height-and-width pass's where the depth pass follows it (only within a pass: its
        own pool). The backward pass writes its column gradients over both."""
        g = self.geometry(p, in_shapes[0])
        hw, depth = _stages(g)
        kept, shared = {}, {}
        if hw or depth:
            cols = ("conv_columns", (g.OD * g.OH * g.OW * self._k(g),))
            (kept if run is None or run.backward else shared)["cols"] = cols
        if hw and depth:
            cols1 = ("conv3d_columns", (g.D * g.OH * g.OW * g.KH * g.KW * g.C,))
            (kept if run is None else shared)["cols1"] = cols1
        return {k: sh for k, (_, sh) in kept.items()}, shared

    def programs(self, ops, p, in_shapes, run):
        """conv.cl at each pass's geometry, for the start-up prebuild."""
        return ops.column_programs(*[c for c in _stages(self.geometry(p, in_shapes[0])) if c])

    def forward(self, ops, s):
        p = s.params
        g = self.geometry(p, s.x[0].shape)
        hw, depth = _stages(g)
        cols = s.x[0].buf
        if hw:
            out = s.scratch["cols1" if depth else "cols"].buf
            ops.im2col(cols, out, s.n * g.D, hw)
            cols = out
        if depth:
            ops.im2col(cols, s.scratch["cols"].buf, s.n, depth)
            cols = s.scratch["cols"].buf
        rows, K, F = s.n * g.OD * g.OH * g.OW, self._k(g), p["filters"]
        b = s.w["bias"].buf if p["use_bias"] else None
        forward_with_activation(ops, s, p["activation"], rows, F,
                                lambda out, act: ops.gemm(rows, F, K, cols, s.w["kernel"].buf,
                                                          out, bias=b, act=act))

    def backward(self, ops, s):
        p = s.params
        g = self.geometry(p, s.x[0].shape)
        hw, depth = _stages(g)
        rows, K, F = s.n * g.OD * g.OH * g.OW, self._k(g), p["filters"]
        dz = backward_through_activation(ops, s, p["activation"], rows, F)
        if p["use_bias"]:
            ops.bias_grad(dz, s.dw["bias"].buf, rows, F)
        cols = s.scratch["cols"].buf if hw or depth else s.x[0].buf
        ops.gemm(K, F, rows, cols, dz, s.dw["kernel"].buf, trans_a=True)
        if s.dx[0] is None:
            return
        if not (hw or depth):
            ops.gemm(rows, K, F, dz, s.w["kernel"].buf, s.dx[0].buf, trans_b=True,
                     accumulate=s.acc[0])
            return
        ops.gemm(rows, K, F, dz, s.w["kernel"].buf, cols, trans_b=True)  # read: overwritten
        if depth and hw:
            ops.col2im(cols, s.scratch["cols1"].buf, s.n, depth)
            cols = s.scratch["cols1"].buf
        if depth and not hw:
            ops.col2im(cols, s.dx[0].buf, s.n, depth, accumulate=s.acc[0])
        else:
            ops.col2im(cols, s.dx[0].buf, s.n * g.D, hw, accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        x, w = xs[0], ws["kernel"]
        g = self.geometry(p, x.shape[1:])
        xp = padded_reference(x, [(before, (o - 1) * st + (k - 1) * d + 1 - n - before)
                                  for n, o, k, st, d, before, _ in g.axes()])
        out = np.zeros((x.shape[0], g.OD, g.OH, g.OW, p["filters"]))
        for kd in range(g.KD):
            for kh in range(g.KH):
                for kw in range(g.KW):
                    patch = xp[:, kd * g.DD: kd * g.DD + (g.OD - 1) * g.SD + 1: g.SD,
                               kh * g.DH: kh * g.DH + (g.OH - 1) * g.SH + 1: g.SH,
                               kw * g.DW: kw * g.DW + (g.OW - 1) * g.SW + 1: g.SW]
                    out += patch @ w[kd, kh, kw]
        if p["use_bias"]:
            out = out + ws["bias"]
        return [REFERENCE[p["activation"]](out)]
