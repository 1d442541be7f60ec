"""ConvLSTM2D (Keras 3, channels_last): an LSTM whose input and recurrent products are 2-D
convolutions, over (steps, rows, cols, channels) inputs. Built from the convolution's and the
LSTM's kernels (no kernel of its own): the sequence is made time-major, so the input
convolution of every frame of every step is one im2col and one GEMM (bias fused) into the
gates (T * n * OH * OW rows, 4 * filters, Keras' gate order [i, f, c, o]); per step the
recurrent convolution of h_{t-1} (stride 1, 'same' over the output grid, as Keras') is an
im2col of that step's state and a GEMM accumulated into the step's gates, then `lstm_cell`
over n * OH * OW rows of `filters` units. Backward through time runs the steps in reverse
(lstm_cell_grad; per step the recurrent kernel's gradient from the state's columns and the
state's gradient through col2im), then the input kernel's gradient, the bias's and the input
gradient (col2im) over every step at once. A 1x1 window with stride 1 reads its input as the
columns. The initial state is zero."""
import numpy as np

from layerloom.core.activations import REFERENCE
from layerloom.core.graph import fmt_shape
from layerloom.core.params import Bool, Choice, Int, Pair
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, ShapeError, TorchForm,
                                     WeightSpec, get_layer, register)
from layerloom.layers.convolution import _conv_axes, onnx_conv_attrs, torch_conv_padding
from layerloom.layers.kit import weight_params
from layerloom.layers.recurrent import _SIMPLE_ACTS, _sig
from layerloom.layers.recurrent_forms import _unit_forget_bias


def _frame_conv(p, filters, padding=None, strides=None, dilation=None, use_bias=None):
    """Conv2D's params for one of the cell's convolutions: the input's (the layer's own
    window) or the recurrent one (stride 1, 'same', no dilation, no bias)."""
    return {"filters": filters, "kernel_size": p["kernel_size"],
            "strides": p["strides"] if strides is None else strides,
            "padding": p["padding"] if padding is None else padding,
            "dilation_rate": p["dilation_rate"] if dilation is None else dilation,
            "activation": "linear", "use_bias": p["use_bias"] if use_bias is None else use_bias,
            "groups": 1}


def _recurrent_conv(p):
    return _frame_conv(p, 4 * p["filters"], "same", (1, 1), (1, 1), False)


def _single(g):
    """A window that reads its input as the columns: 1x1, stride 1, no padding."""
    return (g.KH, g.KW, g.SH, g.SW, g.OH, g.OW) == (1, 1, 1, 1, g.H, g.W)


# -- interop forms (the converters receive interop's builder or kit: see OnnxForm, TorchForm and
# KerasForm in core/registry.py) -------------------------------------------------------------
def _onnx(b, n):
    """Unrolled over the (static) steps, channels first: per step the input's Conv (bias) plus
    the state's Conv, Split into the gates, Sigmoid and the activation, the cell's Mul and Add;
    the outputs Transposed back to channels last (the sequence Unsqueezed and Concatenated)."""
    p, F = n.params, n.params["filters"]
    gx, gh = get_layer(n.type).geometries(p, n.in_shapes[0])
    oihw = lambda k: b.const(np.ascontiguousarray(n.w[k].transpose(3, 2, 0, 1)),  # noqa: E731
                             f"{n.id}/{k}")
    W, R = oihw("kernel"), oihw("recurrent_kernel")
    bias = [b.const(n.w["bias"], f"{n.id}/bias")] if p["use_bias"] else []
    frames = b.op("Transpose", [n.x[0]], perm=[0, 1, 4, 2, 3])  # (N, T, C, H, W)
    split, act = b.ints([F] * 4, "split"), p["activation"]
    h = c = None
    seq = []
    for t in range(n.in_shapes[0][0]):
        xt = b.op("Gather", [frames, b.const(t, "step", np.int64)], axis=1)
        z = b.op("Conv", [xt, W] + bias, **onnx_conv_attrs(_conv_axes(gx, 2)))
        if h is not None:
            z = b.op("Add", [z, b.op("Conv", [h, R], **onnx_conv_attrs(_conv_axes(gh, 2)))])
        zi, zf, zc, zo = b.op("Split", [z, split], outputs=4, axis=1)
        ig = b.op("Mul", [b.op("Sigmoid", [zi]), b.activation(act, zc)])
        c = ig if c is None else b.op("Add", [b.op("Mul", [b.op("Sigmoid", [zf]), c]), ig])
        h = b.op("Mul", [b.op("Sigmoid", [zo]), b.activation(act, c)])
        seq.append(h)
    last = lambda v: b.op("Transpose", [v], perm=[0, 2, 3, 1])  # noqa: E731
    if p["return_sequences"]:
        steps = [b.op("Unsqueeze", [v, b.ints([1], "axes")]) for v in seq]
        y = b.op("Transpose", [b.op("Concat", steps, axis=1) if len(steps) > 1 else steps[0]],
                 perm=[0, 1, 3, 4, 2])
    else:
        y = last(h)
    return [y] + ([last(h), last(c)] if p["return_state"] else [])


def _torch_conv(x, weight, bias, g):
    """F.conv2d of x (channels first) over geometry g, its padding the module's or F.pad's."""
    axes = _conv_axes(g, 2)
    padding, pads = torch_conv_padding(axes)
    if pads is not None:
        x = f"F.pad({x}, {pads})"
    return (f"F.conv2d({x}, {weight}, {bias}, stride={(g.SH, g.SW)}, "
            f"dilation={(g.DH, g.DW)}{padding})")


def _torch(t, n):
    """The weights in torch's OIHW (their layout HWIO: Keras' (kh, kw, in, 4 * filters)); every
    frame's input convolution at once, then Keras' cell as a loop over the steps; the outputs
    (and the states h, c: ports <out>_h, <out>_c) channels last."""
    t.no_regularizers(n)
    p, s, o, x = n.params, n.self, n.out, n.x[0]
    if p.get("recurrent_regularizer"):
        raise t.unsupported(n.id, n.type, "recurrent_regularizer", p["recurrent_regularizer"])
    gx, gh = get_layer(n.type).geometries(p, n.in_shapes[0])
    F = p["filters"]
    shapes = {"kernel": (4 * F, gx.C, gx.KH, gx.KW), "recurrent_kernel": (4 * F, F, gh.KH, gh.KW)}
    if p["use_bias"]:
        shapes["bias"] = (4 * F,)
    init = [f"{s} = nn.ParameterDict({{" + ", ".join(
        f"{k!r}: nn.Parameter(torch.empty{v!r})" for k, v in shapes.items()) + "})",
        t.init(n, f"{s}.kernel", "kernel_initializer", "glorot_uniform")]
    rec = p["recurrent_initializer"]
    init.append(f"nn.init.orthogonal_({s}.recurrent_kernel)" if rec == "orthogonal" else
                t.init(n, f"{s}.recurrent_kernel", "recurrent_initializer", rec))
    if p["use_bias"]:
        init.append(t.init(n, f"{s}.bias", "bias_initializer", "zeros"))
        if p["bias_initializer"] == "zeros":
            init.append(f"nn.init.ones_({s}.bias[{F}:{2 * F}])  # Keras' unit_forget_bias")
    bias = f"{s}.bias" if p["use_bias"] else "None"
    act = lambda v: t.activation(n, v)  # noqa: E731
    fwd = [f"{o}_xw = " + _torch_conv(f"{x}.permute(0, 1, 4, 2, 3).flatten(0, 1)",
                                      f"{s}.kernel", bias, gx)
           + f".unflatten(0, ({x}.shape[0], {x}.shape[1]))  # every frame, channels first",
           f"{o}_h = {o}_xw.new_zeros({o}_xw.shape[0], {F}, {gx.OH}, {gx.OW})",
           f"{o}_c = torch.zeros_like({o}_h)",
           f"{o}_seq = []",
           f"for {o}_t in range({x}.shape[1]):",
           f"    {o}_z = {o}_xw[:, {o}_t] + " + _torch_conv(f"{o}_h", f"{s}.recurrent_kernel",
                                                           "None", gh),
           f"    {o}_c = torch.sigmoid({o}_z[:, {F}:{2 * F}]) * {o}_c + "
           f"torch.sigmoid({o}_z[:, :{F}]) * " + act(f"{o}_z[:, {2 * F}:{3 * F}]"),
           f"    {o}_h = torch.sigmoid({o}_z[:, {3 * F}:]) * " + act(f"{o}_c"),
           f"    {o}_seq.append({o}_h)",
           f"{o}_h, {o}_c = {o}_h.permute(0, 2, 3, 1), {o}_c.permute(0, 2, 3, 1)",
           f"{o} = torch.stack({o}_seq, 1).permute(0, 1, 3, 4, 2)" if p["return_sequences"]
           else f"{o} = {o}_h"]
    weights = {"kernel": ("kernel", "HWIO"), "recurrent_kernel": ("recurrent_kernel", "HWIO")}
    if p["use_bias"]:
        weights["bias"] = ("bias", "")
    return init, fwd, weights


_KERAS = ("filters", "kernel_size", "strides", "padding", "dilation_rate", "activation",
          "recurrent_activation", "use_bias", "return_sequences", "return_state")


def _keras_write(k, n):
    line = k.call("ConvLSTM2D", k.kw(n, _KERAS) + k.weight_args(
        n, ("kernel", "recurrent", "bias")), n, n.x[:1])
    return [f"{', '.join(n.out)} = {line}"]


def _keras_read(o, shapes):
    """Keras' ConvLSTM2D, channels_last, forwards, without dropout; unit_forget_bias as the
    LSTM's (the forget gate's bias starts at 1 when bias_initializer is zeros)."""
    o.must("data_format", "channels_last", None)
    for k in ("go_backwards", "stateful", "zero_output_for_mask"):
        o.must(k, False)
    for k in ("dropout", "recurrent_dropout"):
        o.must(k, 0, 0.0)
    o.must("recurrent_constraint", None)
    act = o.activation(default="tanh")
    if act not in _SIMPLE_ACTS:
        o.fail("activation", f"has no Layerloom form in a ConvLSTM2D (one of "
                             f"{', '.join(_SIMPLE_ACTS)})")
    o.must("recurrent_activation", "sigmoid")
    p = {"filters": o.get("filters"), "kernel_size": o.get("kernel_size"),
         "strides": o.get("strides", 1), "padding": o.get("padding", "valid"),
         "dilation_rate": o.get("dilation_rate", 1), "activation": act,
         "use_bias": o.get("use_bias", True),
         "return_sequences": o.get("return_sequences", False),
         "return_state": o.get("return_state", False),
         **o.weight_params("kernel", "recurrent", "bias")}
    _unit_forget_bias(o, p)
    return p


def _keras_weights(p):
    return ("kernel", "recurrent_kernel") + (("bias",) if p["use_bias"] else ())


@register
class ConvLSTM2D(Layer):
    type_id = "ConvLSTM2D"
    category = "Recurrent"
    help = ("LSTM over a sequence of images (steps, rows, cols, channels) whose input and "
            "recurrent products are 2-D convolutions (the recurrent one stride 1, same); gates "
            "i, f, c, o, the forget-gate bias starting at 1 (Keras' unit_forget_bias).")
    params = (
        Int("filters", 32, min=1, help="Channels of the hidden state (units per cell)."),
        Pair("kernel_size", (3, 3), help="Window height and width (input and recurrent)."),
        Pair("strides", (1, 1), help="Step between the input convolution's windows (the "
                                     "recurrent one's is 1)."),
        Choice("padding", "valid", ("valid", "same"),
               help="The input convolution's padding (the recurrent one's is same)."),
        Pair("dilation_rate", (1, 1), help="Spacing between the input convolution's taps."),
        Choice("activation", "tanh", _SIMPLE_ACTS,
               help="Activation of the candidate cell and of the cell state's output."),
        Choice("recurrent_activation", "sigmoid", ("sigmoid",),
               help="Activation of the i, f and o gates."),
        Bool("use_bias", True, help="Add a learned bias per gate and filter."),
        Bool("return_sequences", False, help="Output every step (steps, rows, cols, filters), "
                                             "not the last."),
        Bool("return_state", False, help="Also output the final states h and c."),
    ) + weight_params("kernel", "glorot_uniform") + weight_params(
        "recurrent", "orthogonal") + weight_params("bias", "zeros")
    headline = ("filters", "kernel_size")
    examples = (
        ({"filters": 3, "kernel_size": 3, "padding": "same", "return_sequences": True},
         [(3, 5, 4, 2)]),
        ({"filters": 3, "kernel_size": [3, 2]}, [(3, 5, 4, 2)]),
        ({"filters": 2, "kernel_size": 1, "activation": "relu", "return_sequences": True,
          "return_state": True}, [(3, 5, 4, 2)]),
        ({"filters": 2, "kernel_size": 2, "strides": 2, "padding": "same", "use_bias": False,
          "return_state": True}, [(2, 5, 4, 3)]),
        ({"filters": 2, "kernel_size": 2, "dilation_rate": 2, "padding": "same",
          "activation": "elu", "return_sequences": True}, [(3, 4, 5, 2)]),
    )

    onnx_form = OnnxForm(_onnx, "unrolled over the steps: Transpose to channels first, per step "
                                "Gather, Conv (input, bias) + Conv (state, 'same'), Split, "
                                "Sigmoid, the activation, Mul, Add; Unsqueeze, Concat, "
                                "Transpose back (no ONNX import: no operator of its own)")
    torch_form = TorchForm(_torch, state_ports=True)
    keras_form = KerasForm("ConvLSTM2D", write=_keras_write, read=_keras_read,
                           weight_order=_keras_weights)

    def output_names(self, p):
        return ["y"] + (["h", "c"] if p["return_state"] else [])

    # -- geometry ------------------------------------------------------------------------------
    def geometries(self, p, in_shape):
        """(input convolution's, recurrent convolution's) ConvGeometry."""
        if len(in_shape) != 4:
            raise ShapeError(f"expects input shaped (None, steps, rows, cols, channels), got "
                             f"{fmt_shape(in_shape)}")
        conv = get_layer("Conv2D")
        gx = conv.geometry(_frame_conv(p, 4 * p["filters"]), tuple(in_shape[1:]))
        gh = conv.geometry(_recurrent_conv(p), (gx.OH, gx.OW, p["filters"]))
        return gx, gh

    def output_shapes(self, p, in_shapes):
        gx, _ = self.geometries(p, in_shapes[0])
        T, F = in_shapes[0][0], p["filters"]
        frame = (gx.OH, gx.OW, F)
        return [(T,) + frame if p["return_sequences"] else frame] + \
            ([frame] * 2 if p["return_state"] else [])

    def weights(self, p, in_shapes):
        gx, gh = self.geometries(p, in_shapes[0])
        F, G = p["filters"], 4 * p["filters"]
        taps = gx.KH * gx.KW
        ws = [WeightSpec("kernel", (gx.KH, gx.KW, gx.C, G), p["kernel_initializer"],
                         taps * gx.C, taps * G, regularizer=p["kernel_regularizer"]),
              WeightSpec("recurrent_kernel", (gh.KH, gh.KW, F, G), p["recurrent_initializer"],
                         taps * F, taps * G, regularizer=p["recurrent_regularizer"])]
        if p["use_bias"]:
            init = "lstm_bias" if p["bias_initializer"] == "zeros" else p["bias_initializer"]
            ws.append(WeightSpec("bias", (G,), init, regularizer=p["bias_regularizer"]))
        return ws

    def scratch(self, p, in_shapes):
        gx, gh = self.geometries(p, in_shapes[0])
        T, F = in_shapes[0][0], p["filters"]
        P = gx.OH * gx.OW
        sc = {"x_tm": (T * gx.H * gx.W * gx.C,), "xw": (T * P * 4 * F,), "h": (T * P * F,),
              "c": (T * P * F,), "dh": (T * P * F,), "dg": (T * P * 4 * F,), "dc": (P * F,)}
        if not _single(gx):  # the input's columns (their gradient written over them)
            sc["cols"] = (T * P * gx.KH * gx.KW * gx.C,)
        if not _single(gh):  # one step's state, and its columns
            sc.update(hprev=(P * F,), hcols=(P * gh.KH * gh.KW * F,))
        return sc

    # -- forward and backward through time ----------------------------------------------------
    def _state_columns(self, ops, s, gh, t):
        """(buffer, offset) of h_{t-1}'s columns for the recurrent convolution's GEMM."""
        n, sc = s.n, s.scratch
        size = gh.OH * gh.OW * gh.C
        if _single(gh):
            return sc["h"].buf, (t - 1) * n * size
        ops.copy2d(sc["h"].buf, 0, (t - 1) * n * size, sc["hprev"].buf, 0, 0, 1, n * size)
        ops.im2col(sc["hprev"].buf, sc["hcols"].buf, n, gh)
        return sc["hcols"].buf, 0

    def forward(self, ops, s):
        p, n, sc = s.params, s.n, s.scratch
        T = s.x[0].shape[0]
        gx, gh = self.geometries(p, s.x[0].shape)
        F, act = p["filters"], p["activation"]
        rows = n * gx.OH * gx.OW  # one step's
        ops.to_time_major(s.x[0].buf, sc["x_tm"].buf, n, T, gx.H * gx.W * gx.C)
        cols = sc["x_tm"].buf
        if not _single(gx):
            cols = sc["cols"].buf
            ops.im2col(sc["x_tm"].buf, cols, T * n, gx)
        ops.gemm(T * rows, 4 * F, gx.KH * gx.KW * gx.C, cols, s.w["kernel"].buf, sc["xw"].buf,
                 bias=s.w["bias"].buf if p["use_bias"] else None)
        for t in range(T):
            if t > 0:
                a, a_off = self._state_columns(ops, s, gh, t)
                ops.gemm(rows, 4 * F, gh.KH * gh.KW * F, a, s.w["recurrent_kernel"].buf,
                         sc["xw"].buf, accumulate=True, a_off=a_off, c_off=t * rows * 4 * F)
            ops.lstm_cell(sc["xw"].buf, t * rows * 4 * F, sc["c"].buf, (t - 1) * rows * F,
                          t * rows * F, sc["h"].buf, t * rows * F, rows, F, first=(t == 0),
                          act=act)
        size = gx.OH * gx.OW * F  # a frame's
        last = (T - 1) * n * size
        if p["return_sequences"]:
            ops.from_time_major(sc["h"].buf, s.y[0].buf, n, T, size)
        else:
            ops.copy2d(sc["h"].buf, 0, last, s.y[0].buf, 0, 0, 1, n * size)
        if p["return_state"]:
            ops.copy2d(sc["h"].buf, 0, last, s.y[1].buf, 0, 0, 1, n * size)
            ops.copy2d(sc["c"].buf, 0, last, s.y[2].buf, 0, 0, 1, n * size)

    def backward(self, ops, s):
        p, n, sc = s.params, s.n, s.scratch
        T = s.x[0].shape[0]
        gx, gh = self.geometries(p, s.x[0].shape)
        F, act = p["filters"], p["activation"]
        rows, size = n * gx.OH * gx.OW, gx.OH * gx.OW * F
        last = (T - 1) * n * size
        dH = sc["dh"].buf
        if p["return_sequences"]:
            ops.to_time_major(s.dy[0].buf, dH, n, T, size)
        else:
            ops.fill(dH, T * n * size)
            ops.copy2d(s.dy[0].buf, 0, 0, dH, 0, last, 1, n * size)
        if p["return_state"]:
            ops.copy2d(s.dy[1].buf, 0, 0, dH, 0, last, 1, n * size, accumulate=True)
            ops.copy(s.dy[2].buf, sc["dc"].buf, n * size)
        else:
            ops.fill(sc["dc"].buf, n * size)
        Kh = gh.KH * gh.KW * F
        dU = s.dw["recurrent_kernel"].buf
        ops.fill(dU, Kh * 4 * F)
        for t in reversed(range(T)):
            goff = t * rows * 4 * F
            ops.lstm_cell_grad(sc["xw"].buf, goff, sc["c"].buf, (t - 1) * rows * F,
                               t * rows * F, dH, t * rows * F, sc["dc"].buf, sc["dg"].buf, rows,
                               F, first=(t == 0), act=act)
            if t == 0:
                continue
            a, a_off = self._state_columns(ops, s, gh, t)
            ops.gemm(Kh, 4 * F, rows, a, sc["dg"].buf, dU, trans_a=True, accumulate=True,
                     a_off=a_off, b_off=goff)
            if _single(gh):  # dh_{t-1} += dG_t U^T
                ops.gemm(rows, F, 4 * F, sc["dg"].buf, s.w["recurrent_kernel"].buf, dH,
                         trans_b=True, accumulate=True, a_off=goff, c_off=(t - 1) * rows * F)
            else:  # through the state's columns (read above: overwritten)
                ops.gemm(rows, Kh, 4 * F, sc["dg"].buf, s.w["recurrent_kernel"].buf,
                         sc["hcols"].buf, trans_b=True, a_off=goff)
                ops.col2im(sc["hcols"].buf, sc["hprev"].buf, n, gh)
                ops.copy2d(sc["hprev"].buf, 0, 0, dH, 0, (t - 1) * rows * F, 1, rows * F,
                           accumulate=True)
        Kx, dg = gx.KH * gx.KW * gx.C, sc["dg"].buf
        cols = sc["x_tm"].buf if _single(gx) else sc["cols"].buf
        ops.gemm(Kx, 4 * F, T * rows, cols, dg, s.dw["kernel"].buf, trans_a=True)
        if p["use_bias"]:
            ops.bias_grad(dg, s.dw["bias"].buf, T * rows, 4 * F)
        if s.dx[0] is None:
            return
        dx_tm = sc["x_tm"].buf  # the forward's time-major input, read above
        ops.gemm(T * rows, Kx, 4 * F, dg, s.w["kernel"].buf, cols, trans_b=True)
        if not _single(gx):
            ops.col2im(cols, dx_tm, T * n, gx)
        ops.from_time_major(dx_tm, s.dx[0].buf, n, T, gx.H * gx.W * gx.C, accumulate=s.acc[0])

    # -- float64 reference ----------------------------------------------------------------------
    def reference(self, p, xs, ws, training=False):
        x = xs[0]
        N, T = x.shape[:2]
        F, act = p["filters"], REFERENCE[p["activation"]]
        conv = get_layer("Conv2D")
        w_in = {"kernel": ws["kernel"]}
        if p["use_bias"]:
            w_in["bias"] = ws["bias"]
        xw = conv.reference(_frame_conv(p, 4 * F), [x.reshape((N * T,) + x.shape[2:])],
                            w_in)[0]
        xw = xw.reshape((N, T) + xw.shape[1:])
        h = np.zeros(xw.shape[:1] + xw.shape[2:4] + (F,))
        c = np.zeros_like(h)
        seq = []
        for t in range(T):
            z = xw[:, t] + conv.reference(_recurrent_conv(p), [h],
                                          {"kernel": ws["recurrent_kernel"]})[0]
            i, f, o = _sig(z[..., :F]), _sig(z[..., F:2 * F]), _sig(z[..., 3 * F:])
            c = f * c + i * act(z[..., 2 * F:3 * F])
            h = o * act(c)
            seq.append(h)
        y = np.stack(seq, 1) if p["return_sequences"] else h
        return [y] + ([h, c] if p["return_state"] else [])
