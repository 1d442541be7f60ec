"""Conv2D and Conv1D: im2col into a kept scratch buffer, then the tiled GEMM with bias and
activation fused in its epilogue. A 1x1 convolution with stride 1 reads its input directly."""

import numpy as np

from layerloom.backend.geometry import ConvGeometry
from layerloom.core.activations import REFERENCE
from layerloom.core.graph import fmt_shape
from layerloom.core.params import Bool, Choice, Int, Pair
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, OnnxRead, register, ShapeError,
                                     TorchForm, WeightSpec)
from layerloom.layers.kit import (activation_param, activation_scratch,
                                  backward_through_activation, forward_with_activation,
                                  kernel_and_bias_params, onnx_channels_first, onnx_channels_last,
                                  onnx_pads_after, padded_reference, window_geometry)


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


# -- interop forms (the converters receive interop's builder or kit: see OnnxForm, TorchForm and
# KerasForm in core/registry.py) -------------------------------------------------------------
def _conv_onnx(b, n):
    p, layer = n.params, n.layer
    rank = layer.rank
    g = layer.geometry(p, n.in_shapes[0])
    kernel = n.w["kernel"]  # (KH, KW, Cin, Cout) or (K, Cin, Cout), Keras' layout
    if rank == 2:
        w = kernel.transpose(3, 2, 0, 1)
        attrs = dict(kernel_shape=[g.KH, g.KW], strides=[g.SH, g.SW], dilations=[g.DH, g.DW],
                     pads=[g.PT, g.PL, onnx_pads_after(g.H, g.OH, g.KH, g.SH, g.DH, g.PT),
                           onnx_pads_after(g.W, g.OW, g.KW, g.SW, g.DW, g.PL)])
    else:
        w = kernel.transpose(2, 1, 0)
        attrs = dict(kernel_shape=[g.KW], strides=[g.SW], dilations=[g.DW],
                     pads=[g.PL, onnx_pads_after(g.W, g.OW, g.KW, g.SW, g.DW, g.PL)])
    inputs = [onnx_channels_first(b, n.x[0], rank), b.const(np.ascontiguousarray(w),
                                                            f"{n.id}/kernel")]
    if p["use_bias"]:
        inputs.append(b.const(n.w["bias"], f"{n.id}/bias"))
    y = onnx_channels_last(b, b.op("Conv", inputs, **attrs), rank)
    return [b.activation(p["activation"], y)]


def _conv2d_onnx_in(imp, node, type_id):
    """ONNX's Conv (2-D, NCHW, not grouped) as Conv2D; pads that are not Keras' same become a
    ZeroPadding2D before a valid convolution."""
    a, v = imp.attrs(node), imp.value(node, 0)
    w = imp.const(node, 1, "kernel")
    if w.ndim != 4 or not v.nchw:
        imp.fail(node, "expected a 2-D convolution of an NCHW tensor")
    if a.get("group", 1) != 1:
        imp.fail(node, f"group {a['group']}; grouped convolutions have no Layerloom layer")
    k, strides = list(w.shape[2:]), list(a.get("strides", [1, 1]))
    if list(a.get("kernel_shape", k)) != k:
        imp.fail(node, f"kernel_shape {list(a['kernel_shape'])} for a kernel of {k}")
    dil = list(a.get("dilations", [1, 1]))
    v, padding = imp.padding(node, v, a, k, strides, dil, pad_value_matters=False)
    bias = imp.const(node, 2, "bias") if len(node.input) > 2 and node.input[2] else None
    nid = imp.add(node, type_id, {"filters": int(w.shape[0]), "kernel_size": k,
                                  "strides": strides, "padding": padding,
                                  "dilation_rate": dil, "use_bias": bias is not None}, [v])
    imp.weights[f"{nid}/kernel"] = np.ascontiguousarray(w.transpose(2, 3, 1, 0), np.float32)
    if bias is not None:
        imp.weights[f"{nid}/bias"] = bias.astype(np.float32)
    imp.set(node, imp.result(nid, nchw=True))


def _conv_torch_module(t, n, module):
    """The nn.ConvNd line and Keras' initialisers of its weight and bias."""
    t.no_regularizers(n)
    s = n.self
    init = [f"{s} = {module}, bias={bool(n.params['use_bias'])!r})",
            t.init(n, f"{s}.weight", "kernel_initializer", "glorot_uniform")]
    if n.params["use_bias"]:
        init.append(t.init(n, f"{s}.bias", "bias_initializer", "zeros"))
    return init


def _torch_padded(t, n, x, same, causal=None):
    """x (channels first) padded as Keras' padding: same() gives F.pad's amounts (the last axis
    first; nothing written when all are 0), causal those of a 1-D causal convolution."""
    padding = n.params["padding"]
    if padding == "valid":
        return x
    if padding == "same":
        pads = tuple(same())
        return f"F.pad({x}, {pads})" if any(pads) else x
    if padding == "causal" and causal is not None:
        return f"F.pad({x}, {causal})"
    raise t.unsupported(n.id, n.type, "padding", padding)


def _conv2d_torch(t, n):
    p, s = n.params, n.self
    (kh, kw), (sh, sw), (dh, dw) = t.pair(p["kernel_size"]), t.pair(p["strides"]), t.pair(
        p["dilation_rate"])
    h, w, c = n.in_shapes[0]
    init = _conv_torch_module(t, n, f"nn.Conv2d({c}, {p['filters']}, ({kh}, {kw}), "
                                    f"stride=({sh}, {sw}), dilation=({dh}, {dw})")
    x = _torch_padded(t, n, f"{n.x[0]}.permute(0, 3, 1, 2)",
                      lambda: t.same_pads(w, kw, sw, dw) + t.same_pads(h, kh, sh, dh))
    fwd = [f"{n.out} = {t.activation(n, f'{s}({x}).permute(0, 2, 3, 1)')}  # NHWC -> NCHW -> NHWC"]
    return init, fwd, {"kernel": ("weight", "HWIO"), "bias": ("bias", "")}


def _conv1d_torch(t, n):
    p, s = n.params, n.self
    k, st, d = int(p["kernel_size"]), int(p["strides"]), int(p["dilation_rate"])
    steps, c = n.in_shapes[0]
    init = _conv_torch_module(t, n, f"nn.Conv1d({c}, {p['filters']}, {k}, stride={st}, "
                                    f"dilation={d}")
    x = _torch_padded(t, n, f"{n.x[0]}.permute(0, 2, 1)", lambda: t.same_pads(steps, k, st, d),
                      causal=((k - 1) * d, 0))  # causal: only the start, (k - 1) * d steps
    fwd = [f"{n.out} = {t.activation(n, f'{s}({x}).permute(0, 2, 1)')}  # NWC -> NCW -> NWC"]
    return init, fwd, {"kernel": ("weight", "WIO"), "bias": ("bias", "")}


def _conv_keras(cls, rank):
    def read(o, shapes):
        o.must("groups", 1)
        get = o.get if rank == 2 else o.number
        return {"filters": o.get("filters"), "kernel_size": get("kernel_size"),
                "strides": get("strides", 1), "padding": o.get("padding", "valid"),
                "dilation_rate": get("dilation_rate", 1),
                "activation": o.activation(), "use_bias": o.get("use_bias", True),
                **o.weight_params("kernel", "bias")}
    return KerasForm(cls, ("filters", "kernel_size", "strides", "padding", "dilation_rate",
                           "activation", "use_bias"), ("kernel", "bias"), read=read)


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
    onnx_form = OnnxForm(_conv_onnx, "Transpose (NHWC->NCHW), Conv, Transpose back, activation",
                         reads={"Conv": OnnxRead({"kernel_shape", "strides", "pads", "dilations",
                                                  "group", "auto_pad"}, _conv2d_onnx_in)})
    torch_form = TorchForm(_conv2d_torch)
    keras_form = _conv_keras("Conv2D", 2)


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
    onnx_form = OnnxForm(_conv_onnx, "Transpose (NTC->NCT), Conv, Transpose back, activation")
    torch_form = TorchForm(_conv1d_torch)
    keras_form = _conv_keras("Conv1D", 1)
