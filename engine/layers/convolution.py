"""Conv2D and Conv1D: im2col into a kept scratch buffer, then the tiled GEMM with bias and
activation fused in its epilogue. A 1x1 convolution with stride 1 reads its input directly.
Few channels (the device's rule, engine/backend/conv_ops.py conv_plan): the direct kernels of
clkernels/conv_direct.cl per pass, the same epilogue, no columns."""

import numpy as np

from layerloom.backend.conv_ops import ConvPlan
from layerloom.backend.geometry import ConvGeometry
from layerloom.core.activations import REFERENCE
from layerloom.core.graph import fmt_shape
from layerloom.core.params import Bool, Int, Pair
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, OnnxRead, declared, get_layer,
                                     register, ShapeError, TorchForm, WeightSpec)
from layerloom.layers.kit import (activation_param, activation_scratch, axis_pads,
                                  backward_through_activation, forward_with_activation,
                                  kernel_and_bias_params, onnx_channels_first, onnx_channels_last,
                                  keras_padding_word, onnx_padding, onnx_pads_after,
                                  padded_reference, padding_param, window_geometry)


class ColumnScratch:
    """A convolution's scratch from its _columns(p, in_shapes, run) -> (kept, shared): the
    columns, and its activation's (Conv1D/2D's and Conv3D's)."""

    def scratch(self, p, in_shapes, run=None):
        out = self.output_shapes(p, in_shapes)[0]
        return dict(activation_scratch(p["activation"], out), **self._columns(p, in_shapes, run)[0])

    def shared_scratch(self, p, in_shapes, run):
        return self._columns(p, in_shapes, run)[1]


class _Conv(ColumnScratch, Layer):
    """Shared by Conv2D and Conv1D (a Conv1D is a Conv2D over a height of 1). groups > 1: the
    channels and filters split into that many groups, each convolved with its own filters (the
    kernel (kh, kw, in_channels / groups, filters), Keras' layout): im2col lays each group's
    columns out as a matrix of its own and each group is one GEMM."""
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
        groups = p.get("groups", 1)
        if C % groups or p["filters"] % groups:
            raise ShapeError(f"groups {groups} must divide the input's {C} channels and the "
                             f"{p['filters']} filters")
        pads = axis_pads(p["padding"], self.rank)
        try:
            # causal padding applies to the time axis only (Conv1D's width)
            OH, PT = window_geometry(H, KH, SH, DH, pads[0] if pads else
                                     "valid" if p["padding"] == "causal" else p["padding"])
            OW, PL = window_geometry(W, KW, SW, DW, pads[1] if pads else p["padding"])
        except ValueError as e:
            raise ShapeError(f"{e} (input {fmt_shape(in_shape)})") from None
        return ConvGeometry(H, W, C, OH, OW, KH, KW, SH, SW, DH, DW, PT, PL)

    def output_shapes(self, p, in_shapes):
        g = self.geometry(p, in_shapes[0])
        return [(g.OH, g.OW, p["filters"]) if self.rank == 2 else (g.OW, p["filters"])]

    @staticmethod
    def _k(g, groups=1):
        """A group's columns: KH * KW * C / groups."""
        return g.KH * g.KW * g.C // groups

    def weights(self, p, in_shapes):
        g = self.geometry(p, in_shapes[0])
        groups = p.get("groups", 1)
        kh_kw = (g.KH, g.KW) if self.rank == 2 else (g.KW,)
        fan_in, fan_out = self._k(g, groups), g.KH * g.KW * p["filters"]
        ws = [WeightSpec("kernel", kh_kw + (g.C // groups, p["filters"]),
                         p["kernel_initializer"], fan_in, fan_out,
                         regularizer=p["kernel_regularizer"])]
        if p["use_bias"]:
            ws.append(WeightSpec("bias", (p["filters"],), p["bias_initializer"],
                                 regularizer=p["bias_regularizer"]))
        return ws

    @staticmethod
    def _direct(g, groups=1):
        return g.KH == 1 and g.KW == 1 and g.SH == 1 and g.SW == 1 and groups == 1

    def _columns(self, p, in_shapes, run):
        """(kept, shared) column scratch: kept {name: shape} this node holds alone, shared
        {name: (pool, shape)} that the model's convolutions share (one buffer per pool, the
        largest size: they run one at a time). run: the node's NodeRun (core/memory.py; None:
        unknown, every buffer kept). The forward's columns are kept only where the backward's
        GEMM reads them (kernel gradient not direct); the columns of the input gradient live
        within the backward: shared, and only where a gradient flows to the input and its
        pass is no direct kernel. Neither exists where the plan (the device's, conv_plan) runs
        the pass directly."""
        g = self.geometry(p, in_shapes[0])
        groups = p.get("groups", 1)
        kept, shared = {}, {}
        if groups > 1:  # the outputs (and their gradient) one group after another
            (kept if run is None else shared)["grouped"] = (
                "conv_grouped", (g.OH * g.OW * p["filters"],))
        if self._direct(g, groups):
            return {k: sh for k, (_, sh) in kept.items()}, shared
        cols = ("conv_columns", (g.OH * g.OW * self._k(g),))
        if run is None:
            kept.update(cols=cols, dcols=cols)
        else:
            plan = run.ops.conv_plan(g, p["filters"], groups) if run.ops is not None \
                else ConvPlan(False, False, False)  # no device known: the GEMM's, the most
            if not plan.forward:
                (kept if run.backward and not plan.dw else shared)["cols"] = cols
            if run.backward and run.dx and not plan.dx:
                shared["dcols"] = cols
        return {k: sh for k, (_, sh) in kept.items()}, shared

    def programs(self, ops, p, in_shapes, run):
        """The programs this convolution's passes build on ops' device (conv_ops.conv_programs),
        for the start-up prebuild."""
        return ops.conv_programs(self.geometry(p, in_shapes[0]), p["filters"],
                                 p.get("groups", 1), run.backward, run.dx)

    def forward(self, ops, s):
        p = s.params
        g = self.geometry(s.params, s.x[0].shape)
        groups = p.get("groups", 1)
        rows, K, F = s.n * g.OH * g.OW, self._k(g, groups), p["filters"]
        W = s.w["kernel"].buf
        b = s.w["bias"].buf if p["use_bias"] else None
        if groups > 1:
            forward_with_activation(ops, s, p["activation"], rows, F,
                                    lambda out, act: self._grouped_forward(ops, s, g, out, act))
            return
        if ops.conv_plan(g, F).forward:  # few channels: no columns (conv_direct.cl)
            forward_with_activation(ops, s, p["activation"], rows, F,
                                    lambda out, act: ops.conv_direct(s.x[0].buf, W, out, s.n,
                                                                     g, F, bias=b, act=act))
            return
        if self._direct(g):
            cols = s.x[0].buf
        else:
            cols = s.scratch["cols"].buf
            ops.im2col(s.x[0].buf, cols, s.n, g)
        forward_with_activation(ops, s, p["activation"], rows, F,
                                lambda out, act: ops.gemm(rows, F, K, cols, W, out, bias=b,
                                                          act=act))

    def _grouped_forward(self, ops, s, g, out, act):
        """out = act(conv + bias): each group's GEMM into scratch["grouped"] (groups, rows,
        F / groups), then moved into out's (rows, F) with the bias added."""
        p, G = s.params, s.params["groups"]
        rows, Kg, Fg = s.n * g.OH * g.OW, self._k(g, G), p["filters"] // G
        cols, ys = s.scratch["cols"].buf, s.scratch["grouped"].buf
        ops.im2col_groups(s.x[0].buf, cols, s.n, g, G)
        wg = ops.grouped_kernel(s.w["kernel"].buf, Kg, G, Fg)
        for j in range(G):
            ops.gemm(rows, Fg, Kg, cols, wg, ys, a_off=j * rows * Kg, b_off=j * Kg * Fg,
                     c_off=j * rows * Fg)
        ops.swap_outer(ys, out, G, rows, Fg, bias=s.w["bias"].buf if p["use_bias"] else None)
        if act != "linear":
            ops.act_forward(act, out, out, rows, p["filters"])

    def backward(self, ops, s):
        p = s.params
        g = self.geometry(p, s.x[0].shape)
        groups = p.get("groups", 1)
        rows, K, F = s.n * g.OH * g.OW, self._k(g, groups), p["filters"]
        dz = backward_through_activation(ops, s, p["activation"], rows, F)
        db = s.dw["bias"].buf if p["use_bias"] else None
        plan = ops.conv_plan(g, F, groups)  # grouped: no direct pass
        # the one-channel direct kernel gradient sums the bias's gradient beside it
        bias_done = plan.dw and ops.conv_direct_dw(s.x[0].buf, dz, s.dw["kernel"].buf, s.n,
                                                   g, F, db=db)
        if db is not None and not bias_done:
            ops.bias_grad(dz, db, rows, F)
        if groups > 1:
            self._grouped_backward(ops, s, g, dz)
            return
        direct = self._direct(g)
        if not plan.dw:  # the columns of the forward pass (conv_plan: direct only with a direct dW)
            cols = s.x[0].buf if direct else s.scratch["cols"].buf
            ops.gemm(K, F, rows, cols, dz, s.dw["kernel"].buf, trans_a=True)
        if s.dx[0] is not None:
            if plan.dx:
                ops.conv_direct_dx(dz, s.w["kernel"].buf, s.dx[0].buf, s.n, g, F,
                                   accumulate=s.acc[0])
            elif direct:
                ops.gemm(rows, K, F, dz, s.w["kernel"].buf, s.dx[0].buf, trans_b=True,
                         accumulate=s.acc[0])
            else:
                ops.gemm(rows, K, F, dz, s.w["kernel"].buf, s.scratch["dcols"].buf, trans_b=True)
                ops.col2im(s.scratch["dcols"].buf, s.dx[0].buf, s.n, g, accumulate=s.acc[0])

    def _grouped_backward(self, ops, s, g, dz):
        """Each group's kernel and column gradients by its own GEMMs, from dz moved into one
        (rows, F / groups) matrix per group; the kernel gradient moved back to Keras' layout."""
        p, G = s.params, s.params["groups"]
        rows, Kg, Fg = s.n * g.OH * g.OW, self._k(g, G), p["filters"] // G
        cols, dzg = s.scratch["cols"].buf, s.scratch["grouped"].buf
        ops.swap_outer(dz, dzg, rows, G, Fg)
        dwg = ops.grouped_kernel_grad(Kg, G, Fg)
        for j in range(G):
            ops.gemm(Kg, Fg, rows, cols, dzg, dwg, trans_a=True, a_off=j * rows * Kg,
                     b_off=j * rows * Fg, c_off=j * Kg * Fg)
        ops.swap_outer(dwg, s.dw["kernel"].buf, G, Kg, Fg)
        if s.dx[0] is None:
            return
        wg, dcols = ops.grouped_kernel(s.w["kernel"].buf, Kg, G, Fg), s.scratch["dcols"].buf
        for j in range(G):
            ops.gemm(rows, Kg, Fg, dzg, wg, dcols, trans_b=True, a_off=j * rows * Fg,
                     b_off=j * Kg * Fg, c_off=j * rows * Kg)
        ops.col2im_groups(dcols, s.dx[0].buf, s.n, g, G, accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        x = xs[0] if self.rank == 2 else xs[0][:, None]
        w = ws["kernel"] if self.rank == 2 else ws["kernel"][None]
        g = self.geometry(p, xs[0].shape[1:])
        G = p.get("groups", 1)
        Cg, Fg = g.C // G, p["filters"] // G
        xp = padded_reference(x, [(g.PT, (g.OH - 1) * g.SH + (g.KH - 1) * g.DH + 1 - g.H - g.PT),
                                  (g.PL, (g.OW - 1) * g.SW + (g.KW - 1) * g.DW + 1 - g.W - g.PL)])
        out = np.zeros((x.shape[0], g.OH, g.OW, p["filters"]))
        for j in range(G):
            for kh in range(g.KH):
                for kw in range(g.KW):
                    patch = xp[:, kh * g.DH: kh * g.DH + (g.OH - 1) * g.SH + 1: g.SH,
                               kw * g.DW: kw * g.DW + (g.OW - 1) * g.SW + 1: g.SW,
                               j * Cg:(j + 1) * Cg]
                    out[..., j * Fg:(j + 1) * Fg] += patch @ w[kh, kw][:, j * Fg:(j + 1) * Fg]
        if p["use_bias"]:
            out = out + ws["bias"]
        out = REFERENCE[p["activation"]](out)
        return [out if self.rank == 2 else out[:, 0]]


# -- interop forms (the converters receive interop's builder or kit: see OnnxForm, TorchForm and
# KerasForm in core/registry.py) -------------------------------------------------------------
_GROUPS = Int("groups", 1, min=1, help=(
    "Split channels and filters into this many groups, each convolved with its own filters "
    "(both divisible by it); the kernel is (kh, kw, in_channels / groups, filters)."))


def _conv_axes(g, rank):
    """Per spatial axis: (padding before, padding after as the windows reach, window, stride,
    dilation); a Geometry3D's three, a ConvGeometry's height and width (1-D: the width)."""
    if rank == 3:
        return [(before, after, k, s, d) for _, _, k, s, d, before, after in g.axes()]
    return [(g.PT, onnx_pads_after(g.H, g.OH, g.KH, g.SH, g.DH, g.PT), g.KH, g.SH, g.DH),
            (g.PL, onnx_pads_after(g.W, g.OW, g.KW, g.SW, g.DW, g.PL), g.KW, g.SW, g.DW)][2 - rank:]


# a kernel in Keras' layout (k..., Cin, Cout) as ONNX's and PyTorch's (Cout, Cin, k...), by rank
_TO_OIK = {1: (2, 1, 0), 2: (3, 2, 0, 1), 3: (4, 3, 0, 1, 2)}


def onnx_conv_attrs(axes):
    """ONNX Conv's attributes from _conv_axes' per-axis (before, after, window, stride,
    dilation)."""
    return dict(kernel_shape=[a[2] for a in axes], strides=[a[3] for a in axes],
                dilations=[a[4] for a in axes], pads=[a[0] for a in axes] + [a[1] for a in axes])


def torch_conv_padding(axes):
    """(the nn.ConvNd/F.convNd padding argument or "", F.pad's amounts or None) from
    _conv_axes' per-axis amounts: the module's padding where each axis pads both sides alike,
    else F.pad's (the last axis first) before an unpadded convolution."""
    rank = len(axes)
    if all(before == after for before, after, *_ in axes):
        if not any(before for before, *_ in axes):
            return "", None
        amounts = tuple(a[0] for a in axes) if rank > 1 else axes[0][0]
        return f", padding={amounts}", None
    return "", tuple(v for before, after, *_ in reversed(axes) for v in (before, after))


def _conv_onnx(b, n):
    p, layer = n.params, n.layer
    rank = layer.rank
    axes = _conv_axes(layer.geometry(p, n.in_shapes[0]), rank)
    w = n.w["kernel"].transpose(_TO_OIK[rank])
    attrs = onnx_conv_attrs(axes)
    inputs = [onnx_channels_first(b, n.x[0], rank), b.const(np.ascontiguousarray(w),
                                                            f"{n.id}/kernel")]
    if p["use_bias"]:
        inputs.append(b.const(n.w["bias"], f"{n.id}/bias"))
    if p.get("groups", 1) > 1:
        attrs["group"] = p["groups"]
    y = onnx_channels_last(b, b.op("Conv", inputs, **attrs), rank)
    return [b.activation(p["activation"], y)]


def _conv_onnx_in(imp, node, type_id):
    """ONNX's Conv of an NCHW image as Conv2D, of an NCW sequence as Conv1D, of an NCDHW
    volume as Conv3D: its pads (or auto_pad) as our padding, group as groups. A depthwise
    convolution (group = channels) is left to a depthwise layer's reader where one reads
    Conv."""
    a, v = imp.attrs(node), imp.value(node, 0)
    w = imp.const(node, 1, "kernel")
    rank = w.ndim - 2
    if rank not in (1, 2, 3) or not v.nchw or len(imp.shape(v)) != rank + 1:
        imp.fail(node, "expected a 1-D, 2-D or 3-D convolution of a channels-first tensor")
    *sizes, C = imp.shape(v)
    G = int(a.get("group", 1))
    if G < 1 or C % G or w.shape[0] % G or w.shape[1] * G != C:
        imp.fail(node, f"group {G} with {C} input channels and a kernel of {list(w.shape)}")
    if G > 1 and rank == 3:
        imp.fail(node, f"group {G} (Conv3D has no groups)")
    if G > 1 and G == C and any("Conv" in f.reads for t, f in declared("onnx").items()
                                if t not in ("Conv2D", "Conv1D")):
        imp.decline(node, "a depthwise convolution (group = channels)")
    k = [int(d) for d in w.shape[2:]]
    if [int(d) for d in a.get("kernel_shape", k)] != k:
        imp.fail(node, f"kernel_shape {list(a['kernel_shape'])} for a kernel of {k}")
    strides = [int(d) for d in a.get("strides", [1] * rank)]
    dil = [int(d) for d in a.get("dilations", [1] * rank)]
    padding, _ = onnx_padding(imp, node, sizes, k, strides, dil)
    bias = imp.const(node, 2, "bias") if len(node.input) > 2 and node.input[2] else None
    one = (lambda pair: pair) if rank > 1 else (lambda pair: pair[0])  # Conv1D: integers
    params = {"filters": int(w.shape[0]), "kernel_size": one(k), "strides": one(strides),
              "padding": padding, "dilation_rate": one(dil), "use_bias": bias is not None}
    if G > 1:
        params["groups"] = G
    nid = imp.add(node, f"Conv{rank}D", params, [v])
    perm = tuple(range(2, rank + 2)) + (1, 0)  # (F, C/G, k...) -> (k..., C/G, F)
    imp.weights[f"{nid}/kernel"] = np.ascontiguousarray(w.transpose(perm), np.float32)
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


def _conv_torch(t, n):
    """nn.Conv1d/2d (groups, dilation) between permutes; the padding the windows use as the
    module's padding where it is the same on both sides, else F.pad's amounts first."""
    p, s = n.params, n.self
    layer = get_layer(n.type)
    rank, g = layer.rank, layer.geometry(p, n.in_shapes[0])
    axes = _conv_axes(g, rank)
    both = lambda i: tuple(a[i] for a in axes) if rank > 1 else axes[0][i]  # noqa: E731
    padding, pads = torch_conv_padding(axes)
    args = f"{both(2)}, stride={both(3)}, dilation={both(4)}{padding}"
    if p.get("groups", 1) > 1:
        args += f", groups={p['groups']}"
    init = _conv_torch_module(t, n, f"nn.Conv{rank}d({g.C}, {p['filters']}, {args}")
    x = f"{n.x[0]}.permute{t.to_first[rank]}"
    if pads is not None:
        x = f"F.pad({x}, {pads})"
    fwd = [f"{n.out} = {t.activation(n, f'{s}({x}).permute{t.to_last[rank]}')}"
           "  # channels first and back"]
    return init, fwd, {"kernel": ("weight", {1: "WIO", 2: "HWIO", 3: "DHWIO"}[rank]),
                       "bias": ("bias", "")}


_CONV_KERAS = ("filters", "kernel_size", "strides", "padding", "dilation_rate", "groups",
               "activation", "use_bias")


def _conv_keras(cls, rank, groups=True):
    """Keras' class; explicit padding that is no Keras word is written as a ZeroPadding1D/2D/3D
    (named <id>_pad) before a valid convolution. groups False: the layer has none (Conv3D:
    a Keras config with groups other than 1 is refused by name)."""
    names = tuple(a for a in _CONV_KERAS if groups or a != "groups")

    def write(k, n):
        p = n.params
        word = p["padding"] if isinstance(p["padding"], str) else keras_padding_word(
            get_layer(n.type), p, n.in_shapes[0])
        x, lines = n.x[0], []
        if word is None:
            lines.append(f"{n.out[0]} = layers.ZeroPadding{rank}D(padding="
                         f"{k.fmt(p['padding'])}, name={n.id + '_pad'!r})({x})")
            x, word = n.out[0], "valid"
        args = (k.kw(n, [a for a in names if a != "padding"]) + [f"padding={word!r}"]
                + k.weight_args(n, ("kernel", "bias")))
        return lines + [f"{n.out[0]} = " + k.call(cls, args, n, [x])]

    def read(o, shapes):
        get = o.get if rank > 1 else o.number
        p = {"filters": o.get("filters"), "kernel_size": get("kernel_size"),
             "strides": get("strides", 1), "padding": o.get("padding", "valid"),
             "dilation_rate": get("dilation_rate", 1), "activation": o.activation(),
             "use_bias": o.get("use_bias", True), **o.weight_params("kernel", "bias")}
        if groups:
            p["groups"] = o.get("groups", 1)
        else:
            o.must("groups", 1)
        return p
    return KerasForm(cls, names, ("kernel", "bias"), write=write, read=read,
                     doc="explicit padding that is no Keras word: ZeroPadding before a valid "
                         "convolution")


@register
class Conv2D(_Conv):
    type_id = "Conv2D"
    help = ("2-D convolution over (height, width, channels) inputs; kernel shaped "
            "(kh, kw, in_channels, filters) as in Keras.")
    params = (
        Int("filters", 32, min=1, help="Number of output channels."),
        Pair("kernel_size", (3, 3), help="Window height and width."),
        Pair("strides", (1, 1), help="Step between windows."),
        padding_param(rank=2),
        Pair("dilation_rate", (1, 1), help="Spacing between kernel taps."),
        _GROUPS,
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
        # torchvision's stem (7x7, stride 2, padding 3), smaller; asymmetric pads; groups
        ({"filters": 3, "kernel_size": 5, "strides": 2, "padding": 2, "activation": "relu"},
         [(7, 6, 3)]),
        ({"filters": 2, "kernel_size": [3, 2], "padding": [[0, 2], [1, 0]],
          "dilation_rate": [1, 2]}, [(4, 5, 2)]),
        ({"filters": 6, "kernel_size": 3, "strides": 2, "padding": [1, 1], "groups": 3,
          "activation": "tanh"}, [(5, 6, 6)]),
        ({"filters": 4, "kernel_size": 1, "groups": 2, "use_bias": False}, [(3, 2, 4)]),
    )
    onnx_form = OnnxForm(_conv_onnx, "Transpose (NHWC->NCHW), Conv (group), Transpose back, "
                                     "activation",
                         reads={"Conv": OnnxRead({"kernel_shape", "strides", "pads", "dilations",
                                                  "group", "auto_pad"}, _conv_onnx_in)})
    torch_form = TorchForm(_conv_torch)
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
        padding_param(("valid", "same", "causal"), rank=1),
        Int("dilation_rate", 1, min=1, help="Spacing between kernel taps."),
        _GROUPS,
        activation_param(),
        Bool("use_bias", True, help="Add a learned bias per filter."),
    ) + kernel_and_bias_params()
    examples = (
        ({"filters": 3, "kernel_size": 3}, [(9, 2)]),
        ({"filters": 2, "kernel_size": 3, "padding": "causal", "dilation_rate": 2,
          "activation": "relu"}, [(7, 3)]),
        ({"filters": 4, "kernel_size": 2, "strides": 2, "padding": "same"}, [(5, 1)]),
        ({"filters": 4, "kernel_size": 3, "strides": 2, "padding": [2, 1], "groups": 2,
          "activation": "relu"}, [(7, 4)]),
        ({"filters": 3, "kernel_size": 3, "padding": 1, "dilation_rate": 2}, [(6, 3)]),
    )
    onnx_form = OnnxForm(_conv_onnx, "Transpose (NTC->NCT), Conv (group), Transpose back, "
                                     "activation")
    torch_form = TorchForm(_conv_torch)
    keras_form = _conv_keras("Conv1D", 1)
