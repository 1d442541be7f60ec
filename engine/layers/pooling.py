"""Pooling: MaxPooling2D/1D, AveragePooling2D/1D (the global poolings: pooling_global.py).
Max pooling keeps the index of each window's maximum for the backward pass; average pooling
over 'same' padding divides by the in-bounds count, as Keras (TensorFlow) does."""
import numpy as np

from layerloom.backend.geometry import PoolGeometry, tiled_windows
from layerloom.core.graph import fmt_shape
from layerloom.layers.kit import (axis_pads, keras_padding_word, onnx_channels_first,
                                  onnx_channels_last, onnx_padding, onnx_pads_after,
                                  padding_param, window_geometry)
from layerloom.core.params import Bool, Int, Pair
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, OnnxRead, ShapeError, TorchForm,
                                     get_layer, register)


class _Pool(Layer):
    category = "Pooling"
    rank = 2
    avg = False

    def _window(self, p):
        """((KH, KW), (SH, SW)) as pairs."""
        if self.rank == 2:
            k = tuple(p["pool_size"])
            return k, tuple(p["strides"]) if p["strides"] is not None else k
        return (1, p["pool_size"]), (1, p["strides"] or p["pool_size"])

    def geometry(self, p, in_shape):
        if len(in_shape) != self.rank + 1:
            want = "(None, height, width, channels)" if self.rank == 2 else "(None, steps, channels)"
            raise ShapeError(f"expects input shaped {want}, got {fmt_shape(in_shape)}")
        H, W, C = in_shape if self.rank == 2 else (1,) + tuple(in_shape)
        (KH, KW), (SH, SW) = self._window(p)
        pads = axis_pads(p["padding"], self.rank) or (
            ((0, 0), (0, 0)) if p["padding"] == "valid" else None)
        if pads is not None:
            for (before, after), k, axis in zip(pads, (KH, KW), ("height", "width")):
                if max(before, after) >= k:
                    raise ShapeError(f"padding {max(before, after)} on the {axis} is not "
                                     f"smaller than the pool size {k}: a window would hold "
                                     "padding alone")
        try:
            OH, PT = window_geometry(H, KH, SH, 1, pads[0] if pads else "same", p["ceil_mode"])
            OW, PL = window_geometry(W, KW, SW, 1, pads[1] if pads else "same", p["ceil_mode"])
        except ValueError as e:
            raise ShapeError(f"{e} (input {fmt_shape(in_shape)})") from None
        # the padding after: declared, or what Keras' same adds (only an average counting the
        # padding reads it)
        PB, PR = ((pads[0][1], pads[1][1]) if pads else
                  (onnx_pads_after(H, OH, KH, SH, 1, PT), onnx_pads_after(W, OW, KW, SW, 1, PL)))
        return PoolGeometry(H, W, C, OH, OW, KH, KW, SH, SW, PT, PL, PB, PR,
                            int(bool(p.get("count_include_pad"))))

    def output_shapes(self, p, in_shapes):
        g = self.geometry(p, in_shapes[0])
        return [(g.OH, g.OW, g.C) if self.rank == 2 else (g.OW, g.C)]

    def pool_axes(self, p, in_shape):
        """(per axis _pool_axes' (before, declared after, window, stride, after as the windows
        reach), whether an average counts the padding): what the PyTorch form writes."""
        g = self.geometry(p, in_shape)
        return _pool_axes(g)[2 - self.rank:], g.INC

    def scratch(self, p, in_shapes):
        return {} if self.avg else {"argmax": self.output_shapes(p, in_shapes)[0]}

    def forward(self, ops, s):
        g = self.geometry(s.params, s.x[0].shape)
        arg = None if self.avg else s.scratch["argmax"].buf
        ops.pool_forward(s.x[0].buf, s.y[0].buf, arg, s.n, g, self.avg)

    def backward(self, ops, s):
        if s.dx[0] is None:
            return
        g = self.geometry(s.params, s.x[0].shape)
        arg = None if self.avg else s.scratch["argmax"].buf
        ops.pool_backward(s.dy[0].buf, arg, s.dx[0].buf, s.n, g, self.avg, accumulate=s.acc[0],
                          y=s.y[0].buf, act=s.fold_act)

    def folds_activation(self, p, in_shapes):
        """Max pooling whose windows tile its input: each input element's gradient comes from
        at most one window, where it is the maximum (ConvOps.pool_backward)."""
        if self.avg or self.rank != 2:
            return False
        return tiled_windows(self.geometry(p, in_shapes[0]))

    def reference(self, p, xs, ws, training=False):
        x = xs[0] if self.rank == 2 else xs[0][:, None]
        g = self.geometry(p, xs[0].shape[1:])
        out = np.zeros((x.shape[0], g.OH, g.OW, g.C))
        for oh in range(g.OH):
            for ow in range(g.OW):
                h0, w0 = oh * g.SH - g.PT, ow * g.SW - g.PL
                win = x[:, max(h0, 0):min(h0 + g.KH, g.H), max(w0, 0):min(w0 + g.KW, g.W), :]
                if not self.avg:
                    out[:, oh, ow] = win.max((1, 2))
                    continue
                cells = win.shape[1] * win.shape[2]
                if g.INC:  # the window within the padded input: the padding counts
                    cells = ((min(h0 + g.KH, g.H + g.PB) - h0) *
                             (min(w0 + g.KW, g.W + g.PR) - w0))
                out[:, oh, ow] = win.sum((1, 2)) / cells
        return [out if self.rank == 2 else out[:, 0]]


_CEIL = Bool("ceil_mode", False, help=(
    "Round the number of windows up (PyTorch's and ONNX's ceil_mode): a last window that "
    "overhangs the end is kept; one that would start in the padding after is not. With "
    "valid or explicit padding; same already rounds up."))
_COUNT_PAD = Bool("count_include_pad", False, help=(
    "Divide each window's sum by its cells inside the padded input, the padding counted "
    "(PyTorch's default True, ONNX's 0); false: by the cells inside the input alone, as "
    "Keras' same does."))


def _pool2d_params():
    return (Pair("pool_size", (2, 2), help="Window height and width."),
            Pair("strides", None, help="Step between windows; default: the pool size."),
            padding_param(rank=2, what="padding (never the maximum; an average counts it "
                                       "only with count_include_pad)"),
            _CEIL)


def _pool1d_params():
    return (Int("pool_size", 2, min=1, help="Window length."),
            Int("strides", None, min=1, help="Step between windows; default: the pool size."),
            padding_param(rank=1, what="padding (never the maximum; an average counts it "
                                       "only with count_include_pad)"),
            _CEIL)


_EX2 = (({}, [(4, 6, 3)]), ({"pool_size": 3, "strides": 2, "padding": "same"}, [(7, 5, 2)]),
        ({"pool_size": [2, 3], "strides": 1}, [(3, 4, 1)]),
        # torchvision's stem: 3x3, stride 2, padding 1; squeezenet's: ceil_mode
        ({"pool_size": 3, "strides": 2, "padding": 1}, [(7, 6, 2)]),
        ({"pool_size": 3, "strides": 2, "ceil_mode": True}, [(6, 8, 2)]),
        ({"pool_size": [3, 2], "strides": [2, 1], "padding": [[0, 2], [1, 0]],
          "ceil_mode": True}, [(6, 4, 3)]),
        # strides equal to the pool, rounded up: not the tiled max pooling's windows
        ({"pool_size": 2, "ceil_mode": True}, [(3, 5, 8)]),
        # channels in eights: pool_forward8/pool_backward8 (overlapping, padded windows)
        ({"pool_size": 3, "strides": 2, "padding": "same"}, [(7, 5, 8)]),
        ({"pool_size": 3, "strides": 2, "padding": 1, "ceil_mode": True}, [(6, 7, 16)]))
_EX2_AVG = _EX2 + (
    ({"pool_size": 3, "strides": 2, "padding": [1, 1], "count_include_pad": True},
     [(5, 6, 2)]),
    ({"pool_size": 3, "strides": 2, "padding": [[1, 2], [0, 1]], "ceil_mode": True,
      "count_include_pad": True}, [(6, 5, 2)]),
    ({"pool_size": 2, "padding": "same", "count_include_pad": True}, [(5, 3, 1)]),
    ({"pool_size": 3, "strides": 2, "padding": [[1, 2], [0, 1]], "ceil_mode": True,
      "count_include_pad": True}, [(6, 5, 8)]))
_EX1 = (({}, [(8, 3)]), ({"pool_size": 3, "strides": 2, "padding": "same"}, [(7, 2)]),
        ({"pool_size": 3, "strides": 2, "padding": [2, 1], "ceil_mode": True}, [(8, 2)]),
        ({"pool_size": 3, "strides": 2, "padding": "same"}, [(7, 8)]))
_EX1_AVG = _EX1 + (({"pool_size": 3, "strides": 2, "padding": 1, "ceil_mode": True,
                     "count_include_pad": True}, [(8, 2)]),
                   ({"pool_size": 3, "strides": 2, "padding": 1, "ceil_mode": True,
                     "count_include_pad": True}, [(8, 16)]))


# -- interop forms: ONNX export, PyTorch code, Keras out and in -------------------------------
def _pool_onnx(b, n):
    """Pads as the windows use them: before as declared, after what the last window reaches
    past the input (the rounded-up count's overhang included), so ONNX's count rounded down
    gives ours; an average counting the padding whose last window overhangs the padded input
    keeps the declared pads and ceil_mode instead (the overhang must not count)."""
    layer, rank = n.layer, n.layer.rank
    g = layer.geometry(n.params, n.in_shapes[0])
    after = [onnx_pads_after(g.H, g.OH, g.KH, g.SH, 1, g.PT),
             onnx_pads_after(g.W, g.OW, g.KW, g.SW, 1, g.PL)]
    ceil = 0
    if layer.avg and g.INC and (after[0] > g.PB or after[1] > g.PR):
        after, ceil = [g.PB, g.PR], 1
    if rank == 2:
        attrs = dict(kernel_shape=[g.KH, g.KW], strides=[g.SH, g.SW],
                     pads=[g.PT, g.PL] + after)
    else:
        attrs = dict(kernel_shape=[g.KW], strides=[g.SW], pads=[g.PL, after[1]])
    if ceil:
        attrs["ceil_mode"] = 1
    if layer.avg:  # Keras' same divides by the in-bounds count (TensorFlow's)
        attrs["count_include_pad"] = g.INC
    y = b.op("AveragePool" if layer.avg else "MaxPool", [onnx_channels_first(b, n.x[0], rank)],
             **attrs)
    return [onnx_channels_last(b, y, rank)]


def _pool_onnx_in(imp, node, type_id):
    """ONNX's MaxPool or AveragePool of an NCHW image (or an NCW sequence: the 1-D layer; an
    NCDHW volume: the 3-D one): pads, auto_pad, ceil_mode and count_include_pad as our
    padding, ceil_mode and count_include_pad (the 3-D layers have neither: refused)."""
    a, v = imp.attrs(node), imp.value(node, 0)
    k = [int(d) for d in a["kernel_shape"]]
    rank = len(k)
    if rank not in (1, 2, 3) or not v.nchw or len(imp.shape(v)) != rank + 1:
        imp.fail(node, "expected 1-D, 2-D or 3-D pooling of a channels-first tensor")
    if any(d != 1 for d in a.get("dilations", [1] * rank)):
        imp.fail(node, "dilated pooling")
    strides = [int(d) for d in a.get("strides", [1] * rank)]
    padding, ceil = onnx_padding(imp, node, imp.shape(v)[:-1], k, strides, [1] * rank,
                                 bool(a.get("ceil_mode", 0)))
    one = (lambda pair: pair) if rank > 1 else (lambda pair: pair[0])  # 1-D: integers
    params = {"pool_size": one(k), "padding": padding,
              "strides": None if strides == k else one(strides)}  # None: Keras' default
    count_pad = (type_id == "AveragePooling2D" and a.get("count_include_pad", 0)
                 and padding != "valid")
    if rank == 3 and (ceil or count_pad):
        imp.fail(node, "ceil_mode" if ceil else "count_include_pad 1 with padding (a 3-D "
                 "average divides by the cells inside the input, as Keras')")
    if ceil:
        params["ceil_mode"] = True
    if count_pad:
        params["count_include_pad"] = True
    nid = imp.add(node, type_id.replace("2D", f"{rank}D"), params, [v])
    imp.set(node, imp.result(nid, nchw=True))


_POOL_READ = {"kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "dilations"}


def _pool_torch(kind, rank):
    """Max/AveragePooling1D and 2D: F.max_poolNd / F.avg_poolNd between permutes, with
    PyTorch's own padding, ceil_mode and count_include_pad where its rules are ours (the same
    padding on both sides, at most half the window); else the input padded first to where
    the windows reach (the padding never wins the max) and an average divided by the pooled
    count of the cells it counts."""
    def convert(t, n):
        layer = get_layer(n.type)
        axes, inc = layer.pool_axes(n.params, n.in_shapes[0])
        k = tuple(a[2] for a in axes) if rank > 1 else axes[0][2]
        st = tuple(a[3] for a in axes) if rank > 1 else axes[0][3]
        fn = f"F.{'max' if kind == 'max' else 'avg'}_pool{rank}d"
        x, back = f"{n.x[0]}.permute{t.to_first[rank]}", f".permute{t.to_last[rank]}"
        declared_ = [a[0] for a in axes], [a[1] for a in axes]
        if declared_[0] == declared_[1] and all(2 * b <= a[2] for b, a in zip(declared_[0], axes)):
            args = f"{k}, {st}"
            if any(declared_[0]):
                args += f", padding={tuple(declared_[0]) if rank > 1 else declared_[0][0]}"
            if n.params.get("ceil_mode"):
                args += ", ceil_mode=True"
            if kind == "avg" and any(declared_[0]):
                args += f", count_include_pad={bool(inc)}"
            return [], [f"{n.out} = {fn}({x}, {args}){back}"], {}
        pads = tuple(v for a in reversed(axes) for v in (a[0], a[4]))  # F.pad: last axis first
        if kind == "max":
            return [], [f"{n.out} = {fn}(F.pad({x}, {pads}, value=-float('inf')), "
                        f"{k}, {st}){back}"], {}
        ones = f"torch.ones_like({x}[:1, :1])"
        if inc:  # ones over the padded input, zeros over the overhang past it
            inside = tuple(v for a in reversed(axes) for v in (a[0], min(a[1], a[4])))
            past = tuple(v for a in reversed(axes) for v in (0, a[4] - min(a[1], a[4])))
            ones = f"F.pad(F.pad({ones}, {inside}, value=1.0), {past})"
        else:
            ones = f"F.pad({ones}, {pads})"
        return [], [f"{n.out} = ({fn}(F.pad({x}, {pads}), {k}, {st}) / {fn}("
                    f"{ones}, {k}, {st})){back}"], {}
    return TorchForm(convert)


def _pool_axes(g):
    """Per axis (height, width): (padding before, declared after, window, stride, padding
    after as the windows reach: what the last one passes the input's end, overhang and all)."""
    return [(g.PT, g.PB, g.KH, g.SH, onnx_pads_after(g.H, g.OH, g.KH, g.SH, 1, g.PT)),
            (g.PL, g.PR, g.KW, g.SW, onnx_pads_after(g.W, g.OW, g.KW, g.SW, 1, g.PL))]


def _pool_keras_in(rank):
    def read(o, shapes):
        get = o.get if rank == 2 else o.number
        return {"pool_size": get("pool_size", 2), "strides": get("strides"),
                "padding": o.get("padding", "valid")}
    return read


# the Keras classes an export defines for a pooling that no Keras padding word gives
_PADDED_POOL = '''
@keras.saving.register_keras_serializable(package="layerloom")
class PaddedPooling(layers.Layer):
    """Layerloom's pooling with explicit padding ((before, after) per axis: PyTorch's and
    ONNX's pads), ceil_mode and an average's count_include_pad: the input padded to where the
    windows reach (with the lowest float32 for a maximum), a valid pooling, an average divided
    by the same pooling of ones over the cells it counts."""

    average = False

    def __init__(self, pool_size, strides=None, padding=(0, 0), ceil_mode=False,
                 count_include_pad=False, **kwargs):
        super().__init__(**kwargs)
        self.pool_size, self.strides, self.padding = pool_size, strides, padding
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)

    def get_config(self):
        extra = {"count_include_pad": self.count_include_pad} if self.average else {}
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding, "ceil_mode": self.ceil_mode, **extra}

    def call(self, x):
        sizes = tuple(x.shape[1:-1])
        one = lambda v: tuple(v) if isinstance(v, (list, tuple)) else (v,) * len(sizes)  # noqa
        k, s = one(self.pool_size), one(self.strides or self.pool_size)
        pads = [self.padding] * len(sizes) if self.padding in ("same", "valid") else (
            [self.padding] if len(sizes) == 1 else self.padding)
        reach, inside, past = [[0, 0]], [[0, 0]], [[0, 0]]
        for n, kk, ss, pad in zip(sizes, k, s, pads):
            if pad == "same":  # Keras': ceil(n / stride) windows, the padding halved
                total = max((-(-n // ss) - 1) * ss + kk - n, 0)
                pad = (total // 2, total - total // 2)
            before, after = (0, 0) if pad == "valid" else pad
            span = n + before + after - kk
            out = (-(-span // ss) if self.ceil_mode else span // ss) + 1
            if self.ceil_mode and (out - 1) * ss >= n + before:
                out -= 1  # a last window would start in the padding after: dropped
            end = max((out - 1) * ss + kk - n - before, 0)  # where the last window reaches
            reach.append([before, end])
            inside.append([before, min(after, end)])
            past.append([0, end - min(after, end)])
        reach, inside, past = reach + [[0, 0]], inside + [[0, 0]], past + [[0, 0]]
        if not self.average:
            x = ops.pad(x, reach, constant_values=float(np.finfo("float32").min))
            return ops.max_pool(x, k, s, padding="valid")
        total = ops.average_pool(ops.pad(x, reach), k, s, padding="valid")
        ones = ops.ones_like(x)
        if self.count_include_pad:  # ones over the padded input, zeros past it
            mask = ops.pad(ops.pad(ones, inside, constant_values=1.0), past)
        else:
            mask = ops.pad(ones, reach)
        return ops.divide(total, ops.average_pool(mask, k, s, padding="valid"))
'''
_PADDED_CLASS = '''
@keras.saving.register_keras_serializable(package="layerloom")
class Padded{cls}(PaddedPooling):
    """Layerloom's {cls} with explicit padding, ceil_mode{avg}."""

    average = {average}
'''


def _pool_keras_write(cls, rank):
    """Keras' class where a padding word gives the same windows (and the average the same
    divisors); else Padded<cls>, a Keras layer the script defines and registers (one layer in
    the .keras file, with Layerloom's pool_size, strides, padding, ceil_mode and
    count_include_pad as its config, which --import reads back as this layer)."""
    def write(k, n):
        layer, p = get_layer(n.type), n.params
        g = layer.geometry(p, n.in_shapes[0])
        axes = _pool_axes(g)[2 - rank:]
        word = keras_padding_word(layer, p, n.in_shapes[0])
        if word is not None and layer.avg and g.INC and any(a[0] or a[4] for a in axes):
            word = None  # Keras' average never counts padding
        if layer.avg and word == "same" and p["padding"] != "same":
            word = None  # Keras' torch backend averages uneven same padding its own way
        if word is not None:
            return [f"{n.out[0]} = " + k.call(cls, k.kw(n, ("pool_size", "strides"))
                                              + [f"padding={word!r}"], n, n.x)]
        k.define(n, {"PaddedPooling": _PADDED_POOL, f"Padded{cls}": _PADDED_CLASS.format(
            cls=cls, average=layer.avg, avg=" and count_include_pad" if layer.avg else "")})
        keys = ("pool_size", "strides", "ceil_mode") + (("count_include_pad",) if layer.avg
                                                        else ())
        pads = axis_pads(p["padding"], rank)
        padding = p["padding"] if pads is None else (
            [list(v) for v in pads] if rank == 2 else list(pads[1]))
        return [f"{n.out[0]} = " + k.call(f"Padded{cls}", k.kw(n, keys) + [
            f"padding={padding!r}"], n, n.x, module="")]
    return write


def _padded_pool_keras_in(avg):
    """Padded<cls>'s config (the export's own class) as the layer's params."""
    def read(o, shapes):
        p = {"pool_size": o.get("pool_size"), "strides": o.get("strides"),
             "padding": o.get("padding"), "ceil_mode": bool(o.get("ceil_mode", False))}
        if avg:
            p["count_include_pad"] = bool(o.get("count_include_pad", False))
        return p
    return read


def _pool_keras(cls, short):
    """Keras' class, and its short alias (MaxPool2D) read as the same layer."""
    rank = 2 if cls.endswith("2D") else 1
    return KerasForm(cls, ("pool_size", "strides", "padding"), read=_pool_keras_in(rank),
                     write=_pool_keras_write(cls, rank),
                     also={short: None,
                           f"Padded{cls}": _padded_pool_keras_in(cls.startswith("Average"))},
                     doc=f"explicit padding, ceil_mode or count_include_pad that no Keras "
                         f"padding gives: Padded{cls}, a Keras layer the export defines and "
                         "registers (keras.ops.pad, a valid pooling, an average divided by the "
                         "pooled count), read back as this layer")


_POOL_OPS = "Transpose, {}, Transpose"
_AVG_OPS = _POOL_OPS.format("AveragePool (count_include_pad as the layer's)")


@register
class MaxPooling2D(_Pool):
    type_id = "MaxPooling2D"
    help = "Maximum over each pool_size window of (height, width, channels) inputs."
    params = _pool2d_params()
    examples = _EX2
    onnx_form = OnnxForm(_pool_onnx, _POOL_OPS.format("MaxPool"), reads={
        "MaxPool": OnnxRead(_POOL_READ | {"storage_order"}, _pool_onnx_in)})
    torch_form = _pool_torch("max", 2)
    keras_form = _pool_keras("MaxPooling2D", "MaxPool2D")


@register
class AveragePooling2D(_Pool):
    type_id = "AveragePooling2D"
    avg = True
    help = "Mean over each pool_size window of (height, width, channels) inputs."
    params = _pool2d_params() + (_COUNT_PAD,)
    examples = _EX2_AVG
    onnx_form = OnnxForm(_pool_onnx, _AVG_OPS,
                         reads={"AveragePool": OnnxRead(_POOL_READ | {"count_include_pad"},
                                                        _pool_onnx_in)})
    torch_form = _pool_torch("avg", 2)
    keras_form = _pool_keras("AveragePooling2D", "AvgPool2D")


@register
class MaxPooling1D(_Pool):
    type_id = "MaxPooling1D"
    rank = 1
    help = "Maximum over each pool_size window of (steps, channels) inputs."
    params = _pool1d_params()
    examples = _EX1
    onnx_form = OnnxForm(_pool_onnx, _POOL_OPS.format("MaxPool"))
    torch_form = _pool_torch("max", 1)
    keras_form = _pool_keras("MaxPooling1D", "MaxPool1D")


@register
class AveragePooling1D(_Pool):
    type_id = "AveragePooling1D"
    rank = 1
    avg = True
    help = "Mean over each pool_size window of (steps, channels) inputs."
    params = _pool1d_params() + (_COUNT_PAD,)
    examples = _EX1_AVG
    onnx_form = OnnxForm(_pool_onnx, _AVG_OPS)
    torch_form = _pool_torch("avg", 1)
    keras_form = _pool_keras("AveragePooling1D", "AvgPool1D")
