"""Conv2DTranspose and Conv1DTranspose: the transposed convolution is the input gradient of the
convolution that maps its output back to its input (the "equivalent forward convolution", whose
kernel is Keras' (kh, kw, filters, in_channels) as it is). Forward: a GEMM of the input with the
kernel into columns, then col2im into the output, then bias and activation; backward: im2col of
the output gradient, then two GEMMs (kernel and input gradients). Output sizes and padding are
Keras' (TensorFlow's and JAX's: with padding same and no output_padding the output is input *
stride; output_padding, below the stride, adds rows at the end). A 1-D layer is the 2-D one
over a height of 1."""

import numpy as np

from layerloom.backend.geometry import ConvGeometry
from layerloom.core.activations import REFERENCE
from layerloom.core.graph import fmt_shape
from layerloom.core.params import Bool, Choice, Int, Pair
from layerloom.core.registry import (get_layer, KerasForm, Layer, OnnxForm, OnnxRead, register,
                                     ShapeError, TorchForm, WeightSpec)
from layerloom.layers.kit import (activation_param, activation_scratch,
                                  backward_through_activation, forward_with_activation,
                                  kernel_and_bias_params, onnx_channels_first,
                                  onnx_channels_last)


def transpose_size(size, k, stride, dilation, padding, output_padding=None):
    """Keras' output length of a transposed convolution and the padding before of its
    equivalent forward convolution (output position t takes input i through tap j where
    t = i * stride + j * dilation - before)."""
    eff = (k - 1) * dilation + 1
    if padding == "valid":
        extra = max(eff, stride) - eff if output_padding is None else output_padding
        return (size - 1) * stride + eff + extra, 0
    # same: Keras pads the dilated input by pad_len in all, min(ceil(pad_len / 2), eff - 1)
    # of it before
    pad_len = stride + eff - 2 if output_padding is None else \
        eff + eff % 2 - 2 + output_padding
    before = eff - 1 - min(pad_len // 2 + pad_len % 2, eff - 1)
    return (size - 1) * stride + pad_len - eff + 2, before


class _ConvTranspose(Layer):
    category = "Convolution"
    activation_param = "activation"
    rank = 2

    def _pairs(self, p):
        """(kernel, strides, dilation, output_padding) per axis (height, width)."""
        if self.rank == 2:
            return (p["kernel_size"], p["strides"], p["dilation_rate"],
                    p["output_padding"] or (None, None))
        op = p["output_padding"]
        return (1, p["kernel_size"]), (1, p["strides"]), (1, p["dilation_rate"]), (None, op)

    def geometry(self, p, in_shape):
        """The equivalent forward convolution: from this layer's output (H x W x filters) to
        its input (OH x OW x in_channels)."""
        if len(in_shape) != self.rank + 1:
            want = ("(None, height, width, channels)" if self.rank == 2 else
                    "(None, steps, channels)")
            raise ShapeError(f"expects input shaped {want}, got {fmt_shape(in_shape)}")
        (KH, KW), (SH, SW), (DH, DW), ops = self._pairs(p)
        if max(SH, SW) > 1 and max(DH, DW) > 1:
            raise ShapeError("strides > 1 cannot be combined with dilation_rate > 1 (as in Keras)")
        for op, s in zip(ops, (SH, SW)):
            if op is not None and op >= s:
                raise ShapeError(f"output_padding {op} must be less than the stride {s} "
                                 "(as in Keras)")
        IH, IW, _ = in_shape if self.rank == 2 else (1,) + tuple(in_shape)
        (H, PT), (W, PL) = (transpose_size(IH, KH, SH, DH, p["padding"], ops[0]),
                            transpose_size(IW, KW, SW, DW, p["padding"], ops[1]))
        if min(H, W) < 1:
            raise ShapeError(f"the output would be empty (input {fmt_shape(in_shape)}); give "
                             "output_padding or padding valid")
        return ConvGeometry(H=H, W=W, C=p["filters"], OH=IH, OW=IW, KH=KH, KW=KW, SH=SH, SW=SW,
                            DH=DH, DW=DW, PT=PT, PL=PL)

    def output_shapes(self, p, in_shapes):
        g = self.geometry(p, in_shapes[0])
        return [(g.H, g.W, g.C) if self.rank == 2 else (g.W, g.C)]

    def weights(self, p, in_shapes):
        g = self.geometry(p, in_shapes[0])
        window = (g.KH, g.KW) if self.rank == 2 else (g.KW,)
        cin, taps = in_shapes[0][-1], g.KH * g.KW
        ws = [WeightSpec("kernel", window + (g.C, cin), p["kernel_initializer"], g.C * taps,
                         cin * taps, regularizer=p["kernel_regularizer"])]
        if p["use_bias"]:
            ws.append(WeightSpec("bias", (g.C,), p["bias_initializer"],
                                 regularizer=p["bias_regularizer"]))
        return ws

    def scratch(self, p, in_shapes):
        g = self.geometry(p, in_shapes[0])
        sc = activation_scratch(p["activation"], self.output_shapes(p, in_shapes)[0])
        sc["cols"] = (g.OH * g.OW * g.KH * g.KW * g.C,)  # per input pixel, a window's taps
        return sc

    def forward(self, ops, s):
        p = s.params
        g = self.geometry(p, s.x[0].shape)
        taps, cin = g.KH * g.KW * g.C, s.x[0].shape[-1]
        rows_in, rows_out = s.n * g.OH * g.OW, s.n * g.H * g.W
        cols = s.scratch["cols"].buf
        b = s.w["bias"].buf if p["use_bias"] else None

        def compute(out, act):
            ops.gemm(rows_in, taps, cin, s.x[0].buf, s.w["kernel"].buf, cols, trans_b=True)
            ops.col2im(cols, out, s.n, g)
            ops.bias_act(out, b, rows_out, g.C, act)
        forward_with_activation(ops, s, p["activation"], rows_out, g.C, compute)

    def backward(self, ops, s):
        p = s.params
        g = self.geometry(p, s.x[0].shape)
        taps, cin = g.KH * g.KW * g.C, s.x[0].shape[-1]
        rows_in, rows_out = s.n * g.OH * g.OW, s.n * g.H * g.W
        dz = backward_through_activation(ops, s, p["activation"], rows_out, g.C)
        if p["use_bias"]:
            ops.bias_grad(dz, s.dw["bias"].buf, rows_out, g.C)
        cols = s.scratch["cols"].buf
        ops.im2col(dz, cols, s.n, g)
        ops.gemm(taps, cin, rows_in, cols, s.x[0].buf, s.dw["kernel"].buf, trans_a=True)
        if s.dx[0] is not None:
            ops.gemm(rows_in, cin, taps, cols, s.w["kernel"].buf, s.dx[0].buf,
                     accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        x = xs[0] if self.rank == 2 else xs[0][:, None]
        k = ws["kernel"] if self.rank == 2 else ws["kernel"][None]
        g = self.geometry(p, xs[0].shape[1:])
        # every tap's contribution on a canvas from position -PT, then the output cut from it
        full = [(n - 1) * st + (kk - 1) * d + 1 for n, st, kk, d in
                ((g.OH, g.SH, g.KH, g.DH), (g.OW, g.SW, g.KW, g.DW))]
        canvas = np.zeros((x.shape[0], max(full[0], g.PT + g.H), max(full[1], g.PL + g.W), g.C))
        for kh in range(g.KH):
            for kw in range(g.KW):
                canvas[:, kh * g.DH: kh * g.DH + (g.OH - 1) * g.SH + 1: g.SH,
                       kw * g.DW: kw * g.DW + (g.OW - 1) * g.SW + 1: g.SW] += x @ k[kh, kw].T
        out = canvas[:, g.PT: g.PT + g.H, g.PL: g.PL + g.W]
        if p["use_bias"]:
            out = out + ws["bias"]
        out = REFERENCE[p["activation"]](out)
        return [out if self.rank == 2 else out[:, 0]]


# -- interop forms (the converters receive interop's builder or kit: see OnnxForm, TorchForm and
# KerasForm in core/registry.py) -------------------------------------------------------------
def _ends(g):
    """Per axis (height, width): (ONNX's pads at the end, its output_padding): what the full
    transposed output, (in - 1) * stride + dilated kernel, reaches past ours (a pad), or the
    rows ours has beyond it (output_padding)."""
    out = []
    for n, st, kk, d, before, size in ((g.OH, g.SH, g.KH, g.DH, g.PT, g.H),
                                       (g.OW, g.SW, g.KW, g.DW, g.PL, g.W)):
        end = (n - 1) * st + (kk - 1) * d + 1 - before - size
        out.append((max(end, 0), max(-end, 0)))
    return out


def _transpose_onnx(b, n):
    p, layer = n.params, n.layer
    g = layer.geometry(p, n.in_shapes[0])
    kernel = n.w["kernel"]  # (kh, kw, filters, in) or (k, filters, in) -> (in, filters, ...)
    w = kernel.transpose(3, 2, 0, 1) if layer.rank == 2 else kernel.transpose(2, 1, 0)
    (eh, oph), (ew, opw) = _ends(g)
    if layer.rank == 2:
        attrs = dict(kernel_shape=[g.KH, g.KW], strides=[g.SH, g.SW], dilations=[g.DH, g.DW],
                     pads=[g.PT, g.PL, eh, ew], output_padding=[oph, opw])
    else:
        attrs = dict(kernel_shape=[g.KW], strides=[g.SW], dilations=[g.DW], pads=[g.PL, ew],
                     output_padding=[opw])
    inputs = [onnx_channels_first(b, n.x[0], layer.rank),
              b.const(np.ascontiguousarray(w), f"{n.id}/kernel")]
    if p["use_bias"]:
        inputs.append(b.const(n.w["bias"], f"{n.id}/bias"))
    y = onnx_channels_last(b, b.op("ConvTranspose", inputs, **attrs), layer.rank)
    return [b.activation(p["activation"], y)]


def _transpose_onnx_in(imp, node, type_id):
    """ONNX's ConvTranspose (group 1) of an NCHW image as Conv2DTranspose, of an NCW sequence as
    Conv1DTranspose: the Keras padding and output_padding that give its pads and output size
    (valid or same, output_padding below the stride), else (PyTorch's symmetric padding, which
    Keras' same is not for odd kernels) a valid one with its output_padding, then a
    Cropping2D/1D of the pads."""
    a, v = imp.attrs(node), imp.value(node, 0)
    w = imp.const(node, 1, "kernel")  # (in, filters, window...)
    rank = w.ndim - 2
    if rank not in (1, 2) or not v.nchw or len(imp.shape(v)) != rank + 1:
        imp.fail(node, "expected a 1-D or 2-D transposed convolution of a channels-first tensor")
    if a.get("group", 1) != 1:
        imp.fail(node, f"group {a['group']}; grouped transposed convolutions have no "
                       "Layerloom layer")
    if "output_shape" in a:
        imp.fail(node, "output_shape (Layerloom reads pads and output_padding)")
    auto = imp.text(a.get("auto_pad", "NOTSET"))
    if auto not in ("NOTSET", "VALID"):
        imp.fail(node, f"auto_pad {auto}")
    k = [int(d) for d in w.shape[2:]]
    if [int(d) for d in a.get("kernel_shape", k)] != k:
        imp.fail(node, f"kernel_shape {list(a['kernel_shape'])} for a kernel of {k}")
    strides, dil = ([int(d) for d in a.get(key, [1] * rank)] for key in ("strides", "dilations"))
    pads = [int(d) for d in a.get("pads", [0] * 2 * rank)] if auto == "NOTSET" else [0] * 2 * rank
    extra = [int(d) for d in a.get("output_padding", [0] * rank)]
    sizes = imp.shape(v)[:-1]
    # per axis: ONNX's output size and padding before
    want = [((n - 1) * st + (kk - 1) * d + 1 + e - pads[i] - pads[i + rank], pads[i])
            for i, (n, st, kk, d, e) in enumerate(zip(sizes, strides, k, dil, extra))]

    def axis_ops(i, padding):
        """The output paddings (None: Keras' rule) that give axis i ONNX's size and pads."""
        return [op for op in [None] + list(range(strides[i])) if transpose_size(
            sizes[i], k[i], strides[i], dil[i], padding, op) == want[i]]
    found = None
    for padding in ("valid", "same"):
        options = [axis_ops(i, padding) for i in range(rank)]
        given = [[op for op in o if op is not None] for o in options]
        if all(None in o for o in options):
            found = padding, None
        elif all(given):  # Keras' output_padding is given for every axis or none
            found = padding, [o[0] for o in given]
        if found:
            break
    crop = None
    if found is None:  # PyTorch's padding=p, output_padding=q: a valid one, then cut p and p - q
        if any(e >= st for e, st in zip(extra, strides)):
            imp.fail(node, f"output_padding {extra} is not below the strides {strides}")
        found, crop = ("valid", extra), [[pads[i], pads[i + rank]] for i in range(rank)]
    padding, op = found
    bias = imp.const(node, 2, "bias") if len(node.input) > 2 and node.input[2] else None
    one = (lambda pair: pair) if rank == 2 else (lambda pair: pair[0])  # 1-D: integers
    nid = imp.add(node, "Conv2DTranspose" if rank == 2 else "Conv1DTranspose", {
        "filters": int(w.shape[1]), "kernel_size": one(k), "strides": one(strides),
        "padding": padding, "output_padding": None if op is None else one(op),
        "dilation_rate": one(dil), "use_bias": bias is not None}, [v])
    perm = (2, 3, 1, 0) if rank == 2 else (2, 1, 0)  # (in, filters, window) -> Keras'
    imp.weights[f"{nid}/kernel"] = np.ascontiguousarray(w.transpose(perm), np.float32)
    if bias is not None:
        imp.weights[f"{nid}/bias"] = bias.astype(np.float32)
    if crop is not None and any(map(any, crop)):
        nid = imp.add(node, "Cropping2D" if rank == 2 else "Cropping1D",
                      {"cropping": crop if rank == 2 else crop[0]},
                      [imp.result(nid, nchw=True)], name=f"{imp.scope(node)}_crop")
    imp.set(node, imp.result(nid, nchw=True))


def _transpose_torch(t, n):
    """nn.ConvTranspose{1,2}d (weight (in, filters, window): Keras' kernel transposed), called
    through F.conv_transpose without padding and the output cut (F.pad with negative amounts)
    or extended to Keras' size, then its bias: Keras' padding exactly, where torch's own
    padding is symmetric."""
    p, s, layer = n.params, n.self, get_layer(n.type)
    t.no_regularizers(n)
    g = layer.geometry(p, n.in_shapes[0])
    cin, rank = n.in_shapes[0][-1], layer.rank
    (eh, oph), (ew, opw) = _ends(g)
    if rank == 2:
        module = (f"nn.ConvTranspose2d({cin}, {g.C}, ({g.KH}, {g.KW}), stride=({g.SH}, {g.SW}), "
                  f"dilation=({g.DH}, {g.DW})")
        call = f"F.conv_transpose2d({n.x[0]}.permute(0, 3, 1, 2), {s}.weight, None, " \
               f"({g.SH}, {g.SW}), 0, 0, 1, ({g.DH}, {g.DW}))"
        cut = (-g.PL, opw - ew, -g.PT, oph - eh)
    else:
        module = f"nn.ConvTranspose1d({cin}, {g.C}, {g.KW}, stride={g.SW}, dilation={g.DW}"
        call = f"F.conv_transpose1d({n.x[0]}.permute(0, 2, 1), {s}.weight, None, {g.SW}, 0, " \
               f"0, 1, {g.DW})"
        cut = (-g.PL, opw - ew)
    init = [f"{s} = {module}, bias={bool(p['use_bias'])!r})",
            t.init(n, f"{s}.weight", "kernel_initializer", "glorot_uniform")]
    y = f"F.pad({call}, {cut})" if any(cut) else call
    if p["use_bias"]:
        init.append(t.init(n, f"{s}.bias", "bias_initializer", "zeros"))
        y = f"({y} + {s}.bias.view(-1{', 1' * rank}))"
    fwd = [f"{n.out} = {t.activation(n, f'{y}.permute{t.to_last[rank]}')}  # channels first "
           "and back"]
    return init, fwd, {"kernel": ("weight", "HWIO" if rank == 2 else "WIO"), "bias": ("bias", "")}


def _transpose_keras(cls, rank):
    def read(o, shapes):
        get = o.get if rank == 2 else o.number
        return {"filters": o.get("filters"), "kernel_size": get("kernel_size"),
                "strides": get("strides", 1), "padding": o.get("padding", "valid"),
                "output_padding": get("output_padding"), "dilation_rate": get("dilation_rate", 1),
                "activation": o.activation(), "use_bias": o.get("use_bias", True),
                **o.weight_params("kernel", "bias")}
    return KerasForm(cls, ("filters", "kernel_size", "strides", "padding", "output_padding",
                           "dilation_rate", "activation", "use_bias"), ("kernel", "bias"),
                     read=read)


def transpose_params(rank):
    """Keras' parameters of Conv2DTranspose (rank 2: pairs) or Conv1DTranspose, in its order."""
    size, unit = (Pair, "rows and columns") if rank == 2 else (Int, "steps")
    return (
        Int("filters", 32, min=1, help="Number of output channels."),
        size("kernel_size", (3, 3) if rank == 2 else 3, min=1, help="Window size."),
        size("strides", (1, 1) if rank == 2 else 1, min=1,
             help="Upsampling step between inputs."),
        Choice("padding", "valid", ("valid", "same"),
               help="valid: output = (input - 1) * stride + max(kernel, stride); same: "
                    "output = input * stride."),
        size("output_padding", None, min=0,
             help=f"The {unit} added at the end, below the stride; null: Keras' rule."),
        size("dilation_rate", (1, 1) if rank == 2 else 1, min=1,
             help="Spacing between kernel taps."),
        activation_param(),
        Bool("use_bias", True, help="Add a learned bias per filter."),
    ) + kernel_and_bias_params()


@register
class Conv2DTranspose(_ConvTranspose):
    type_id = "Conv2DTranspose"
    help = ("Transposed 2-D convolution (upsampling by strides); kernel shaped (kh, kw, "
            "filters, in_channels) and output sizes as in Keras.")
    params = transpose_params(2)
    examples = (
        ({"filters": 3, "kernel_size": 3}, [(4, 5, 2)]),
        ({"filters": 2, "kernel_size": [2, 3], "strides": 2, "padding": "same",
          "activation": "relu"}, [(3, 4, 3)]),
        ({"filters": 8, "kernel_size": 3, "strides": [2, 3], "output_padding": [1, 2],
          "activation": "tanh"}, [(3, 2, 8)]),
        ({"filters": 4, "kernel_size": 3, "dilation_rate": 2, "padding": "same",
          "use_bias": False}, [(4, 4, 1)]),
        ({"filters": 2, "kernel_size": 4, "strides": 2, "padding": "same",
          "output_padding": 1}, [(3, 3, 2)]),
        ({"filters": 3, "kernel_size": 2, "strides": 3}, [(2, 3, 2)]),
    )
    onnx_form = OnnxForm(_transpose_onnx, "Transpose (NHWC->NCHW), ConvTranspose (pads, "
                         "output_padding), Transpose back, activation",
                         reads={"ConvTranspose": OnnxRead(
                             {"kernel_shape", "strides", "pads", "dilations", "group",
                              "auto_pad", "output_padding", "output_shape"},
                             _transpose_onnx_in)})
    torch_form = TorchForm(_transpose_torch)
    keras_form = _transpose_keras("Conv2DTranspose", 2)


@register
class Conv1DTranspose(_ConvTranspose):
    type_id = "Conv1DTranspose"
    rank = 1
    help = ("Transposed 1-D convolution over (steps, channels); kernel shaped (k, filters, "
            "in_channels) and output sizes as in Keras.")
    params = transpose_params(1)
    examples = (
        ({"filters": 3, "kernel_size": 3}, [(5, 2)]),
        ({"filters": 2, "kernel_size": 4, "strides": 2, "padding": "same",
          "activation": "relu"}, [(4, 3)]),
        ({"filters": 2, "kernel_size": 3, "strides": 3, "output_padding": 2}, [(3, 1)]),
    )
    onnx_form = OnnxForm(_transpose_onnx, "Transpose (NTC->NCT), ConvTranspose (pads, "
                         "output_padding), Transpose back, activation")
    torch_form = TorchForm(_transpose_torch)
    keras_form = _transpose_keras("Conv1DTranspose", 1)
