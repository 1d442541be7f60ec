"""DepthwiseConv2D/1D and SeparableConv2D/1D. The depthwise step is a direct kernel
(clkernels/depthwise.cl: forward, input and weight gradients, channels in vectors on CPUs): each
input channel c is convolved with its own depth_multiplier (M) filters, giving output channel
c*M + m (Keras' order), kernel shaped (kh, kw, in_channels, M). A separable convolution is that
depthwise step, without bias, then a pointwise 1x1 convolution (a GEMM with bias and activation
in its epilogue), with Keras' weights depthwise_kernel, pointwise_kernel (1, 1, C*M, filters)
and bias. padding takes Keras' words or, as ONNX and PyTorch give them, explicit amounts
(kit.WindowPadding; Keras export writes those as a ZeroPadding before a valid layer). A 1-D
layer is the 2-D one over a height of 1."""

import numpy as np

from layerloom.backend.geometry import ConvGeometry
from layerloom.core.activations import REFERENCE
from layerloom.core.graph import fmt_shape
from layerloom.core.params import Bool, Int, Pair
from layerloom.core.registry import (get_layer, KerasForm, Layer, OnnxForm, OnnxRead, register,
                                     ShapeError, TorchForm, WeightSpec)
from layerloom.layers.kit import (activation_param, activation_scratch, axis_pads,
                                  backward_through_activation, forward_with_activation,
                                  keras_padding_word, onnx_channels_first, onnx_channels_last,
                                  onnx_pads_after, onnx_padding, padded_reference,
                                  padding_param, weight_params, window_geometry)


def window_params(rank, filters=False):
    """Keras' parameters of a depthwise or separable layer of this rank, up to use_bias."""
    size = Pair if rank == 2 else Int
    what = "Window height and width." if rank == 2 else "Window length."
    head = (Int("filters", 32, min=1, help="Output channels of the pointwise step."),) \
        if filters else ()
    return head + (
        size("kernel_size", (3, 3) if rank == 2 else 3, min=1, help=what),
        size("strides", (1, 1) if rank == 2 else 1, min=1, help="Step between windows."),
        padding_param(("valid", "same"), rank),
        Int("depth_multiplier", 1, min=1,
            help="Filters per input channel: output channel c*M + m is channel c's m-th."),
        size("dilation_rate", (1, 1) if rank == 2 else 1, min=1,
             help="Spacing between kernel taps."),
        activation_param(),
        Bool("use_bias", True, help="Add a learned bias per output channel."),
    )


def layer_params(rank, separable):
    """Keras' parameters of DepthwiseConv (separable False) or SeparableConv, in its order."""
    return window_params(rank, filters=separable) + weight_params(
        "depthwise", "glorot_uniform") + weight_params("pointwise", "glorot_uniform") * \
        separable + weight_params("bias", "zeros")


class _Depthwise(Layer):
    """DepthwiseConv2D/1D; SeparableConv2D/1D add the pointwise step (separable = True)."""
    category = "Convolution"
    activation_param = "activation"
    rank = 2
    separable = False

    def geometry(self, p, in_shape):
        if len(in_shape) != self.rank + 1:
            want = ("(None, height, width, channels)" if self.rank == 2 else
                    "(None, steps, channels)")
            raise ShapeError(f"expects input shaped {want}, got {fmt_shape(in_shape)}")
        pairs = [p[k] if self.rank == 2 else (1, p[k])
                 for k in ("kernel_size", "strides", "dilation_rate")]
        (KH, KW), (SH, SW), (DH, DW) = pairs
        if max(SH, SW) > 1 and max(DH, DW) > 1:
            raise ShapeError("strides > 1 cannot be combined with dilation_rate > 1 (as in Keras)")
        H, W, C = in_shape if self.rank == 2 else (1,) + tuple(in_shape)
        try:
            # Keras' words, or explicit amounts ((top, bottom), (left, right))
            pads = axis_pads(p["padding"], self.rank) or (p["padding"],) * 2
            (OH, PT), (OW, PL) = (window_geometry(H, KH, SH, DH, pads[0]),
                                  window_geometry(W, KW, SW, DW, pads[1]))
        except ValueError as e:
            raise ShapeError(f"{e} (input {fmt_shape(in_shape)})") from None
        return ConvGeometry(H=H, W=W, C=C, OH=OH, OW=OW, KH=KH, KW=KW, SH=SH, SW=SW, DH=DH,
                            DW=DW, PT=PT, PL=PL)

    def _mid(self, p, g):
        """Channels of the depthwise step's output."""
        return g.C * p["depth_multiplier"]

    def output_shapes(self, p, in_shapes):
        g = self.geometry(p, in_shapes[0])
        ch = p["filters"] if self.separable else self._mid(p, g)
        return [(g.OH, g.OW, ch) if self.rank == 2 else (g.OW, ch)]

    def weights(self, p, in_shapes):
        g = self.geometry(p, in_shapes[0])
        M, taps = p["depth_multiplier"], g.KH * g.KW
        window = (g.KH, g.KW) if self.rank == 2 else (g.KW,)
        # fans as Keras computes them for a (kh, kw, C, M) kernel: C or M times the window
        ws = [WeightSpec("depthwise_kernel", window + (g.C, M), p["depthwise_initializer"],
                         g.C * taps, M * taps, regularizer=p["depthwise_regularizer"])]
        out = self._mid(p, g)
        if self.separable:
            out = p["filters"]
            ws.append(WeightSpec("pointwise_kernel", (1,) * self.rank + (self._mid(p, g), out),
                                 p["pointwise_initializer"], self._mid(p, g), out,
                                 regularizer=p["pointwise_regularizer"]))
        if p["use_bias"]:
            ws.append(WeightSpec("bias", (out,), p["bias_initializer"],
                                 regularizer=p["bias_regularizer"]))
        return ws

    def scratch(self, p, in_shapes):
        g = self.geometry(p, in_shapes[0])
        sc = activation_scratch(p["activation"], self.output_shapes(p, in_shapes)[0])
        if self.separable:  # the depthwise step's output and its gradient
            sc["mid"] = sc["dmid"] = (g.OH * g.OW * self._mid(p, g),)
        return sc

    def forward(self, ops, s):
        p = s.params
        g = self.geometry(p, s.x[0].shape)
        M, rows, mid = p["depth_multiplier"], s.n * g.OH * g.OW, self._mid(p, g)
        b = s.w["bias"].buf if p["use_bias"] else None
        dk = s.w["depthwise_kernel"].buf
        if self.separable:
            ops.depthwise_forward(s.x[0].buf, dk, None, s.scratch["mid"].buf, s.n, g, M)
            F = p["filters"]
            forward_with_activation(ops, s, p["activation"], rows, F, lambda out, act: ops.gemm(
                rows, F, mid, s.scratch["mid"].buf, s.w["pointwise_kernel"].buf, out, bias=b,
                act=act))
        else:
            forward_with_activation(ops, s, p["activation"], rows, mid, lambda out, act:
                                    ops.depthwise_forward(s.x[0].buf, dk, b, out, s.n, g, M, act))

    def backward(self, ops, s):
        p = s.params
        g = self.geometry(p, s.x[0].shape)
        M, rows, mid = p["depth_multiplier"], s.n * g.OH * g.OW, self._mid(p, g)
        cols = p["filters"] if self.separable else mid
        dz = backward_through_activation(ops, s, p["activation"], rows, cols)
        if p["use_bias"]:
            ops.bias_grad(dz, s.dw["bias"].buf, rows, cols)
        if self.separable:  # through the pointwise GEMM to the depthwise step's output
            pk, F = s.w["pointwise_kernel"].buf, p["filters"]
            ops.gemm(mid, F, rows, s.scratch["mid"].buf, dz, s.dw["pointwise_kernel"].buf,
                     trans_a=True)
            ops.gemm(rows, mid, F, dz, pk, s.scratch["dmid"].buf, trans_b=True)
            dz = s.scratch["dmid"].buf
        ops.depthwise_backward_weight(s.x[0].buf, dz, s.dw["depthwise_kernel"].buf, s.n, g, M)
        if s.dx[0] is not None:
            ops.depthwise_backward_input(dz, s.w["depthwise_kernel"].buf, s.dx[0].buf, s.n, g, M,
                                         accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        x = xs[0] if self.rank == 2 else xs[0][:, None]
        k = ws["depthwise_kernel"] if self.rank == 2 else ws["depthwise_kernel"][None]
        g = self.geometry(p, xs[0].shape[1:])
        xp = padded_reference(x, [(g.PT, (g.OH - 1) * g.SH + (g.KH - 1) * g.DH + 1 - g.H - g.PT),
                                  (g.PL, (g.OW - 1) * g.SW + (g.KW - 1) * g.DW + 1 - g.W - g.PL)])
        out = np.zeros((x.shape[0], g.OH, g.OW, g.C, p["depth_multiplier"]))
        for kh in range(g.KH):
            for kw in range(g.KW):
                patch = xp[:, kh * g.DH: kh * g.DH + (g.OH - 1) * g.SH + 1: g.SH,
                           kw * g.DW: kw * g.DW + (g.OW - 1) * g.SW + 1: g.SW, :]
                out += patch[..., None] * k[kh, kw]
        out = out.reshape(out.shape[:3] + (-1,))
        if self.separable:
            out = out @ ws["pointwise_kernel"].reshape(out.shape[-1], -1)
        if p["use_bias"]:
            out = out + ws["bias"]
        out = REFERENCE[p["activation"]](out)
        return [out if self.rank == 2 else out[:, 0]]


# -- interop forms (the converters receive interop's builder or kit: see OnnxForm, TorchForm and
# KerasForm in core/registry.py) -------------------------------------------------------------
def _onnx_window(layer, g):
    """ONNX Conv attributes of the layer's window (2-D, or the width alone for 1-D)."""
    after = (onnx_pads_after(g.H, g.OH, g.KH, g.SH, g.DH, g.PT),
             onnx_pads_after(g.W, g.OW, g.KW, g.SW, g.DW, g.PL))
    if layer.rank == 2:
        return dict(kernel_shape=[g.KH, g.KW], strides=[g.SH, g.SW], dilations=[g.DH, g.DW],
                    pads=[g.PT, g.PL, after[0], after[1]])
    return dict(kernel_shape=[g.KW], strides=[g.SW], dilations=[g.DW], pads=[g.PL, after[1]])


def _depthwise_onnx(b, n):
    """Conv with group = channels, weight (C*M, 1, window...): output channel c*M + m reads
    channel c, as ONNX's groups order them; a separable layer's pointwise Conv 1x1 after it."""
    p, layer = n.params, n.layer
    g = layer.geometry(p, n.in_shapes[0])
    k = n.w["depthwise_kernel"]  # (window..., C, M)
    w = np.moveaxis(k.reshape(k.shape[:-2] + (-1,)), -1, 0)[:, None]
    bias = [b.const(n.w["bias"], f"{n.id}/bias")] if p["use_bias"] else []
    inputs = [onnx_channels_first(b, n.x[0], layer.rank),
              b.const(np.ascontiguousarray(w), f"{n.id}/depthwise_kernel")]
    y = b.op("Conv", inputs + ([] if layer.separable else bias), group=g.C,
             **_onnx_window(layer, g))
    if layer.separable:
        pk = n.w["pointwise_kernel"]  # (1.., C*M, filters) -> (filters, C*M, 1..)
        pw = np.ascontiguousarray(pk.reshape(pk.shape[-2:]).T).reshape(
            (pk.shape[-1], pk.shape[-2]) + (1,) * layer.rank)
        y = b.op("Conv", [y, b.const(pw, f"{n.id}/pointwise_kernel")] + bias,
                 kernel_shape=[1] * layer.rank)
    return [b.activation(p["activation"], onnx_channels_last(b, y, layer.rank))]


def _depthwise_onnx_in(imp, node, type_id):
    """ONNX's Conv with group = input channels > 1 (a weight (C*M, 1, window...)) of an NCHW
    image as DepthwiseConv2D, of an NCW sequence as DepthwiseConv1D; pads that are not Keras'
    valid or same become a ZeroPadding2D/1D before a valid one. Any other Conv is declined
    (Conv2D's and Conv1D's reader takes it)."""
    a, v, w = imp.attrs(node), imp.value(node, 0), imp.const(node, 1, "kernel")
    group, rank, (*sizes, C) = int(a.get("group", 1)), w.ndim - 2, imp.shape(v)
    if rank not in (1, 2) or not v.nchw or len(sizes) != rank:
        imp.decline(node, "not a 1-D or 2-D convolution of a channels-first tensor")
    if group == 1 or group != C:
        imp.decline(node, f"group {group} is not the input's {C} channels (a depthwise "
                          "convolution's)")
    if w.shape[1] != 1 or w.shape[0] % C:
        imp.fail(node, f"a depthwise kernel of {list(w.shape)} for {C} channels; expected "
                       "(channels * multiplier, 1, window...)")
    k = [int(d) for d in w.shape[2:]]
    window = {key: [int(d) for d in a.get(key, k if key == "kernel_shape" else [1] * rank)]
              for key in ("kernel_shape", "strides", "dilations")}
    if window["kernel_shape"] != k:
        imp.fail(node, f"kernel_shape {window['kernel_shape']} for a kernel of {k}")
    strides, dil, M = window["strides"], window["dilations"], w.shape[0] // C
    padding, _ = onnx_padding(imp, node, sizes, k, strides, dil)  # a word, or the amounts
    bias = imp.const(node, 2, "bias") if len(node.input) > 2 and node.input[2] else None
    one = (lambda pair: pair) if rank == 2 else (lambda pair: pair[0])  # 1-D: integers
    nid = imp.add(node, "DepthwiseConv2D" if rank == 2 else "DepthwiseConv1D", {
        "kernel_size": one(k), "strides": one(strides), "padding": padding,
        "depth_multiplier": M, "dilation_rate": one(dil), "use_bias": bias is not None}, [v])
    # (C*M, 1, window...) -> (window..., C, M)
    imp.weights[f"{nid}/depthwise_kernel"] = np.ascontiguousarray(
        np.moveaxis(w[:, 0], 0, -1).reshape(tuple(k) + (C, M)), np.float32)
    if bias is not None:
        imp.weights[f"{nid}/bias"] = bias.astype(np.float32)
    imp.set(node, imp.result(nid, nchw=True))


def _torch_window(g, n, rank):
    """(x channels first, padded by what the windows read (F.pad's amounts, the last axis
    first); F.conv's stride and dilation text)."""
    pads = (g.PL, onnx_pads_after(g.W, g.OW, g.KW, g.SW, g.DW, g.PL))
    if rank == 2:
        pads += (g.PT, onnx_pads_after(g.H, g.OH, g.KH, g.SH, g.DH, g.PT))
        x, args = f"{n.x[0]}.permute(0, 3, 1, 2)", \
            f"stride=({g.SH}, {g.SW}), dilation=({g.DH}, {g.DW})"
    else:
        x, args = f"{n.x[0]}.permute(0, 2, 1)", f"stride={g.SW}, dilation={g.DW}"
    return (f"F.pad({x}, {pads})" if any(pads) else x), args


def _keras_glorot(t, n, attr, key, fan_in, fan_out):
    """Keras' initialiser of a parameter kept in Keras' layout (torch's xavier_uniform_ would
    read other fans from it)."""
    if n.params.get(key) == "glorot_uniform":
        return f"nn.init.uniform_({attr}, -{np.sqrt(6.0 / (fan_in + fan_out))!r}, " \
               f"{np.sqrt(6.0 / (fan_in + fan_out))!r})"
    return t.init(n, attr, key, "glorot_uniform")


def _depthwise_torch(t, n):
    """F.conv2d/conv1d with groups = channels on the kernel kept in Keras' layout (kh, kw, C, M)
    as a parameter (nn.Conv2d(groups=C)'s weight is its (C*M, 1, kh, kw) view); a separable
    layer's pointwise convolution after it."""
    p, s, layer = n.params, n.self, get_layer(n.type)
    for key in ("depthwise_regularizer", "pointwise_regularizer", "bias_regularizer"):
        if p.get(key):
            raise t.unsupported(n.id, n.type, key, p[key])
    g = layer.geometry(p, n.in_shapes[0])
    M, mid, rank = p["depth_multiplier"], layer._mid(p, g), layer.rank
    window = (g.KH, g.KW) if rank == 2 else (g.KW,)
    out = p["filters"] if layer.separable else mid
    params = {"depthwise_kernel": window + (g.C, M)}
    if layer.separable:
        params["pointwise_kernel"] = (1,) * rank + (mid, out)
    if p["use_bias"]:
        params["bias"] = (out,)
    init = [f"{s} = nn.ParameterDict({{" + ", ".join(
        f"{k!r}: nn.Parameter(torch.empty{sh})" for k, sh in params.items()) + "})",
        _keras_glorot(t, n, f"{s}['depthwise_kernel']", "depthwise_initializer",
                      g.C * g.KH * g.KW, M * g.KH * g.KW)]
    if layer.separable:
        init.append(_keras_glorot(t, n, f"{s}['pointwise_kernel']", "pointwise_initializer",
                                  mid, out))
    if p["use_bias"]:
        init.append(t.init(n, f"{s}['bias']", "bias_initializer", "zeros"))
    conv = "F.conv2d" if rank == 2 else "F.conv1d"
    x, args = _torch_window(g, n, rank)
    perm = "(2, 3, 0, 1)" if rank == 2 else "(1, 2, 0)"  # (window, C, M) -> (C, M, window)
    dw = f"{s}['depthwise_kernel'].permute{perm}.reshape({mid}, 1, {', '.join(map(str, window))})"
    bias = f"{s}['bias']" if p["use_bias"] else "None"
    last = t.to_last[rank]
    if layer.separable:
        pw = f"{s}['pointwise_kernel'].reshape({mid}, {out}).t().reshape({out}, {mid}" \
             f"{', 1' * rank})"
        y = f"{conv}({conv}({x}, {dw}, None, {args}, groups={g.C}), {pw}, {bias})"
    else:
        y = f"{conv}({x}, {dw}, {bias}, {args}, groups={g.C})"
    fwd = [f"{n.out} = {t.activation(n, f'{y}.permute{last}')}  # channels first and back"]
    return init, fwd, {k: (k, "") for k in params}


def _depthwise_keras(cls, rank, separable):
    names = ("filters",) * separable + ("kernel_size", "strides", "padding", "depth_multiplier",
                                        "dilation_rate", "activation", "use_bias")
    prefixes = ("depthwise",) + ("pointwise",) * separable + ("bias",)

    def read(o, shapes):
        get = o.get if rank == 2 else o.number
        out = {k: get(k) for k in names if k not in ("activation", "use_bias") and
               o.c.get(k) is not None}
        return {**out, "activation": o.activation(), "use_bias": o.get("use_bias", True),
                **o.weight_params(*prefixes)}

    def write(k, n):
        """Explicit padding that is no Keras word: a ZeroPadding (<id>_pad) before a valid
        layer."""
        p, x, lines = n.params, n.x[0], []
        word = p["padding"] if isinstance(p["padding"], str) else keras_padding_word(
            get_layer(n.type), p, n.in_shapes[0])
        if word is None:
            lines = [f"{n.out[0]} = layers.ZeroPadding{rank}D(padding={k.fmt(p['padding'])}, "
                     f"name={n.id + '_pad'!r})({x})"]
            x, word = n.out[0], "valid"
        args = k.kw(n, [a for a in names if a != "padding"]) + [
            f"padding={word!r}"] + k.weight_args(n, prefixes)
        return lines + [f"{n.out[0]} = " + k.call(cls, args, n, [x])]

    def order(p):
        return ["depthwise_kernel"] + ["pointwise_kernel"] * separable + (
            ["bias"] if p.get("use_bias", True) else [])
    return KerasForm(cls, names, prefixes, read=read, write=write, weight_order=order,
                     doc="explicit padding that is no Keras word: ZeroPadding before a valid "
                         "layer")


def _onnx_form(separable, reads=None):
    ops = "Transpose (channels first), Conv (group = channels)" + (
        ", Conv 1x1" if separable else "") + ", Transpose back, activation"
    return OnnxForm(_depthwise_onnx, ops, reads=reads)


_Depthwise.torch_form = TorchForm(_depthwise_torch)  # the converter is defined after the class


@register
class DepthwiseConv2D(_Depthwise):
    type_id = "DepthwiseConv2D"
    help = ("Depthwise 2-D convolution: each input channel gets its own depth_multiplier "
            "filters; kernel shaped (kh, kw, in_channels, depth_multiplier) as in Keras.")
    params = layer_params(2, False)
    examples = (
        ({"kernel_size": 3}, [(5, 6, 8)]),
        ({"kernel_size": [2, 3], "strides": 2, "padding": "same", "depth_multiplier": 2,
          "activation": "relu"}, [(7, 5, 3)]),
        ({"kernel_size": 3, "dilation_rate": 2, "padding": "same", "activation": "tanh",
          "depth_multiplier": 3}, [(6, 6, 1)]),
        ({"kernel_size": 2, "strides": [1, 2], "use_bias": False, "activation": "gelu"},
         [(4, 5, 2)]),
        ({"kernel_size": 3, "padding": "same", "depth_multiplier": 2}, [(3, 4, 8)]),
        # MobileNet's stride-2 depthwise as PyTorch pads it; asymmetric amounts
        ({"kernel_size": 3, "strides": 2, "padding": 1}, [(6, 5, 8)]),
        ({"kernel_size": [2, 3], "padding": [[0, 2], [1, 0]], "depth_multiplier": 2},
         [(3, 4, 2)]),
    )
    # Conv with group = channels, 2-D or 1-D (after Conv2D's reader, which declines it)
    onnx_form = _onnx_form(False, {"Conv": OnnxRead({"kernel_shape", "strides", "pads",
                                                     "dilations", "group", "auto_pad"},
                                                    _depthwise_onnx_in)})
    keras_form = _depthwise_keras("DepthwiseConv2D", 2, False)


@register
class DepthwiseConv1D(_Depthwise):
    type_id = "DepthwiseConv1D"
    rank = 1
    help = ("Depthwise 1-D convolution over (steps, channels): each channel gets its own "
            "depth_multiplier filters; kernel shaped (k, in_channels, depth_multiplier).")
    params = layer_params(1, False)
    examples = (
        ({"kernel_size": 3}, [(9, 8)]),
        ({"kernel_size": 3, "padding": "same", "dilation_rate": 2, "depth_multiplier": 2,
          "activation": "relu"}, [(7, 3)]),
        ({"kernel_size": 2, "strides": 2, "padding": "same", "use_bias": False}, [(5, 1)]),
        ({"kernel_size": 3, "padding": [2, 0], "depth_multiplier": 2}, [(5, 3)]),
    )
    onnx_form = _onnx_form(False)
    keras_form = _depthwise_keras("DepthwiseConv1D", 1, False)


@register
class SeparableConv2D(_Depthwise):
    type_id = "SeparableConv2D"
    separable = True
    help = ("Depthwise 2-D convolution then a pointwise 1x1 convolution to `filters` channels "
            "(Keras' depthwise_kernel, pointwise_kernel, bias).")
    params = layer_params(2, True)
    examples = (
        ({"filters": 3, "kernel_size": 3}, [(5, 6, 2)]),
        ({"filters": 4, "kernel_size": [3, 2], "strides": 2, "padding": "same",
          "depth_multiplier": 2, "activation": "relu"}, [(7, 5, 3)]),
        ({"filters": 2, "kernel_size": 2, "dilation_rate": 2, "use_bias": False,
          "activation": "gelu"}, [(5, 5, 8)]),
        ({"filters": 3, "kernel_size": 3, "padding": [1, 2]}, [(3, 4, 2)]),
    )
    onnx_form = _onnx_form(True)
    keras_form = _depthwise_keras("SeparableConv2D", 2, True)


@register
class SeparableConv1D(_Depthwise):
    type_id = "SeparableConv1D"
    rank = 1
    separable = True
    help = ("Depthwise 1-D convolution then a pointwise convolution to `filters` channels "
            "(Keras' depthwise_kernel, pointwise_kernel, bias).")
    params = layer_params(1, True)
    examples = (
        ({"filters": 3, "kernel_size": 3}, [(9, 2)]),
        ({"filters": 2, "kernel_size": 3, "padding": "same", "strides": 2,
          "depth_multiplier": 3, "activation": "tanh"}, [(8, 4)]),
    )
    onnx_form = _onnx_form(True)
    keras_form = _depthwise_keras("SeparableConv1D", 1, True)
