"""Pooling: MaxPooling2D/1D, AveragePooling2D/1D, GlobalAveragePooling2D/1D, GlobalMaxPooling2D/1D.
Max pooling keeps the index of each window's maximum for the backward pass; average pooling
over 'same' padding divides by the in-bounds count, as Keras (TensorFlow) does."""
import numpy as np

from layerloom.backend.geometry import PoolGeometry
from layerloom.core.graph import fmt_shape
from layerloom.layers.kit import (onnx_channels_first, onnx_channels_last, onnx_pads_after,
                                  window_geometry)
from layerloom.core.params import Bool, Choice, Int, Pair
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, OnnxRead, ShapeError, TorchForm,
                                     register)


class _Pool(Layer):
    category = "Pooling"
    rank = 2
    avg = False

    def geometry(self, p, in_shape):
        if len(in_shape) != self.rank + 1:
            want = "(None, height, width, channels)" if self.rank == 2 else "(None, steps, channels)"
            raise ShapeError(f"expects input shaped {want}, got {fmt_shape(in_shape)}")
        H, W, C = in_shape if self.rank == 2 else (1,) + tuple(in_shape)
        if self.rank == 2:
            (KH, KW) = p["pool_size"]
            (SH, SW) = p["strides"] if p["strides"] is not None else (KH, KW)
        else:
            KH, SH, KW = 1, 1, p["pool_size"]
            SW = p["strides"] or KW
        try:
            OH, PT = window_geometry(H, KH, SH, 1, p["padding"])
            OW, PL = window_geometry(W, KW, SW, 1, p["padding"])
        except ValueError as e:
            raise ShapeError(f"{e} (input {fmt_shape(in_shape)})") from None
        return PoolGeometry(H, W, C, OH, OW, KH, KW, SH, SW, PT, PL)

    def output_shapes(self, p, in_shapes):
        g = self.geometry(p, in_shapes[0])
        return [(g.OH, g.OW, g.C) if self.rank == 2 else (g.OW, g.C)]

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
        ops.pool_backward(s.dy[0].buf, arg, s.dx[0].buf, s.n, g, self.avg, accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        x = xs[0] if self.rank == 2 else xs[0][:, None]
        g = self.geometry(p, xs[0].shape[1:])
        out = np.zeros((x.shape[0], g.OH, g.OW, g.C))
        for oh in range(g.OH):
            for ow in range(g.OW):
                h0, w0 = oh * g.SH - g.PT, ow * g.SW - g.PL
                win = x[:, max(h0, 0):min(h0 + g.KH, g.H), max(w0, 0):min(w0 + g.KW, g.W), :]
                out[:, oh, ow] = win.mean((1, 2)) if self.avg else win.max((1, 2))
        return [out if self.rank == 2 else out[:, 0]]


def _pool2d_params():
    return (Pair("pool_size", (2, 2), help="Window height and width."),
            Pair("strides", None, help="Step between windows; default: the pool size."),
            Choice("padding", "valid", ("valid", "same"), help="valid: no padding; same: pad."))


def _pool1d_params():
    return (Int("pool_size", 2, min=1, help="Window length."),
            Int("strides", None, min=1, help="Step between windows; default: the pool size."),
            Choice("padding", "valid", ("valid", "same"), help="valid: no padding; same: pad."))


_EX2 = (({}, [(4, 6, 3)]), ({"pool_size": 3, "strides": 2, "padding": "same"}, [(7, 5, 2)]),
        ({"pool_size": [2, 3], "strides": 1}, [(3, 4, 1)]))
_EX1 = (({}, [(8, 3)]), ({"pool_size": 3, "strides": 2, "padding": "same"}, [(7, 2)]))


# -- interop forms: ONNX export, PyTorch code, Keras out and in -------------------------------
def _pool_onnx(b, n):
    layer, rank = n.layer, n.layer.rank
    g = layer.geometry(n.params, n.in_shapes[0])
    if rank == 2:
        attrs = dict(kernel_shape=[g.KH, g.KW], strides=[g.SH, g.SW],
                     pads=[g.PT, g.PL, onnx_pads_after(g.H, g.OH, g.KH, g.SH, 1, g.PT),
                           onnx_pads_after(g.W, g.OW, g.KW, g.SW, 1, g.PL)])
    else:
        attrs = dict(kernel_shape=[g.KW], strides=[g.SW],
                     pads=[g.PL, onnx_pads_after(g.W, g.OW, g.KW, g.SW, 1, g.PL)])
    if layer.avg:  # 'same' windows divide by their in-bounds count, as Keras (TensorFlow)
        attrs["count_include_pad"] = 0
    y = b.op("AveragePool" if layer.avg else "MaxPool", [onnx_channels_first(b, n.x[0], rank)],
             **attrs)
    return [onnx_channels_last(b, y, rank)]


def _pool_onnx_in(imp, node, type_id):
    """ONNX's MaxPool or AveragePool (2-D, NCHW) as the layer; pads that are not Keras' same
    are refused (a ZeroPadding2D's zeros would change the max or the average)."""
    a, v = imp.attrs(node), imp.value(node, 0)
    if not v.nchw or len(imp.shape(v)) != 3:
        imp.fail(node, "expected 2-D pooling of an NCHW tensor")
    if a.get("ceil_mode", 0):
        imp.fail(node, "ceil_mode 1; Layerloom's pooling rounds down")
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        imp.fail(node, "dilated pooling")
    if type_id == "AveragePooling2D" and a.get("count_include_pad", 0) and (
            any(a.get("pads", [0])) or imp.text(a.get("auto_pad", "NOTSET")) == "SAME_UPPER"):
        imp.fail(node, "count_include_pad with pads; Layerloom averages the input only")
    k = list(a["kernel_shape"])
    strides = list(a.get("strides", [1, 1]))
    v, padding = imp.padding(node, v, a, k, strides, [1, 1], pad_value_matters=True)
    nid = imp.add(node, type_id, {"pool_size": k, "padding": padding,  # None: Keras'
                                  "strides": None if strides == k else strides}, [v])
    imp.set(node, imp.result(nid, nchw=True))


_POOL_READ = {"kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "dilations"}


def _pool_torch(kind, rank):
    """Max/AveragePooling1D and 2D: F.max_poolNd / F.avg_poolNd between permutes; Keras'
    same padding: the padding never wins the max, the average counts only cells inside."""
    def convert(t, n):
        p = n.params
        ks = t.pair(p["pool_size"]) if rank == 2 else (int(p["pool_size"]),)
        sts = (t.pair(p["strides"]) if rank == 2 else (int(p["strides"]),)) \
            if p.get("strides") else ks
        k, st = (ks, sts) if rank == 2 else (ks[0], sts[0])  # torch: a tuple or an int
        fn = f"F.{'max' if kind == 'max' else 'avg'}_pool{rank}d"
        x, back = f"{n.x[0]}.permute{t.to_first[rank]}", f".permute{t.to_last[rank]}"
        if p["padding"] == "valid":
            return [], [f"{n.out} = {fn}({x}, {k}, {st}){back}"], {}
        if p["padding"] != "same":
            raise t.unsupported(n.id, n.type, "padding", p["padding"])
        sizes = n.in_shapes[0][:rank]
        pads = tuple(v for d in reversed(range(rank))  # F.pad: the last axis first
                     for v in t.same_pads(sizes[d], ks[d], sts[d], 1))
        if kind == "max":
            return [], [f"{n.out} = {fn}(F.pad({x}, {pads}, value=-float('inf')), "
                        f"{k}, {st}){back}"], {}
        return [], [f"{n.out} = ({fn}(F.pad({x}, {pads}), {k}, {st}) / {fn}("
                    f"F.pad(torch.ones_like({x}[:1, :1]), {pads}), {k}, {st})){back}"], {}
    return TorchForm(convert)


def _pool_keras_in(rank):
    def read(o, shapes):
        get = o.get if rank == 2 else o.number
        return {"pool_size": get("pool_size", 2), "strides": get("strides"),
                "padding": o.get("padding", "valid")}
    return read


def _pool_keras(cls, short):
    """Keras' class, and its short alias (MaxPool2D) read as the same layer."""
    rank = 2 if cls.endswith("2D") else 1
    return KerasForm(cls, ("pool_size", "strides", "padding"), read=_pool_keras_in(rank),
                     also={short: None})


_POOL_OPS = "Transpose, {}, Transpose"


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
    params = _pool2d_params()
    examples = _EX2
    onnx_form = OnnxForm(_pool_onnx, _POOL_OPS.format("AveragePool (count_include_pad=0)"),
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
    params = _pool1d_params()
    examples = _EX1
    onnx_form = OnnxForm(_pool_onnx, _POOL_OPS.format("AveragePool (count_include_pad=0)"))
    torch_form = _pool_torch("avg", 1)
    keras_form = _pool_keras("AveragePooling1D", "AvgPool1D")


class _GlobalPool(Layer):
    category = "Pooling"
    avg = False
    examples = (({}, [(3, 5, 4)]), ({}, [(1, 1, 33)]))

    def output_shapes(self, p, in_shapes):
        if len(in_shapes[0]) != 3:
            raise ShapeError("expects input shaped (None, height, width, channels), got "
                             f"{fmt_shape(in_shapes[0])}")
        return [(in_shapes[0][-1],)]

    def scratch(self, p, in_shapes):
        return {} if self.avg else {"argmax": (in_shapes[0][-1],)}

    def forward(self, ops, s):  # (N, H, W, C), or (N, T, C) as (N, 1, T, C): H * W cells
        *cells, C = s.x[0].shape
        arg = None if self.avg else s.scratch["argmax"].buf
        ops.global_pool_forward(s.x[0].buf, s.y[0].buf, arg, s.n, int(np.prod(cells)), C,
                                self.avg)

    def backward(self, ops, s):
        if s.dx[0] is None:
            return
        *cells, C = s.x[0].shape
        arg = None if self.avg else s.scratch["argmax"].buf
        ops.global_pool_backward(s.dy[0].buf, arg, s.dx[0].buf, s.n, int(np.prod(cells)), C,
                                 self.avg, accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        return [xs[0].mean((1, 2)) if self.avg else xs[0].max((1, 2))]


def _global_pool_onnx(b, n):
    return [b.reduce("ReduceMean" if n.layer.avg else "ReduceMax", n.x[0], [1, 2], 0)]


def _global_pool_onnx_in(imp, node, type_id):
    """ONNX's GlobalAveragePool or GlobalMaxPool (NCHW) as the layer."""
    v = imp.value(node, 0)
    if v.nchw and len(imp.shape(v)) == 2:  # (N, C, T) -> (N, C, 1): our (1, C), channels first
        nid = imp.add(node, type_id.replace("2D", "1D"), {"keepdims": True}, [v])
        imp.set(node, imp.result(nid, nchw=True))
        return
    if not v.nchw or len(imp.shape(v)) != 3:
        imp.fail(node, "expected an NCHW or NCW tensor")
    imp.set(node, imp.result(imp.add(node, type_id, {}, [v]), pooled=True))


def _reduce_onnx_in(imp, node, type_id):
    """A mean or max over the spatial axes alone (our export's global pooling, channels
    last, keepdims 0; or ONNX's (N, C, H, W) with keepdims 1 like GlobalAveragePool)."""
    a, v = imp.attrs(node), imp.value(node, 0)
    axes = imp.reduce_axes(node, len(imp.onnx_shape(v)) + 1)
    keep = a.get("keepdims", 1)
    if len(node.input) > 1 and node.input[1] and axes is None:
        imp.const(node, 1, "axes")  # refused: not a constant
    if not v.pooled and not v.nchw and len(imp.shape(v)) == 2 and axes == [1]:
        # the steps of a (N, T, F) sequence: our export's 1-D global pooling
        nid = imp.add(node, type_id.replace("2D", "1D"), {"keepdims": bool(keep)}, [v])
        imp.set(node, imp.result(nid))
        return
    if v.pooled or len(imp.shape(v)) != 3 or axes != ([2, 3] if v.nchw else [1, 2]):
        imp.fail(node, f"axes {axes}; only the spatial axes of an image or the steps of a "
                       "sequence (a global pooling) map")
    if keep and not v.nchw:
        imp.fail(node, "keepdims 1 of a channels-last image; only keepdims 0 maps")
    imp.set(node, imp.result(imp.add(node, type_id, {}, [v]), pooled=bool(keep)))


def _global_pool_reads(global_op, reduce_op):
    return {global_op: OnnxRead((), _global_pool_onnx_in),
            reduce_op: OnnxRead({"axes", "keepdims", "noop_with_empty_axes"}, _reduce_onnx_in)}


def _global_pool_torch(kind):
    def convert(t, n):
        fn = "amax" if kind == "max" else "mean"
        return [], [f"{n.out} = {n.x[0]}.{fn}(dim=(1, 2))"], {}
    return TorchForm(convert)


def _global_pool_keras_in(o, shapes):
    o.must("keepdims", False)
    return {}


@register
class GlobalAveragePooling2D(_GlobalPool):
    type_id = "GlobalAveragePooling2D"
    avg = True
    help = "Mean over height and width: (h, w, c) -> (c)."
    onnx_form = OnnxForm(_global_pool_onnx, "ReduceMean over H, W",
                         reads=_global_pool_reads("GlobalAveragePool", "ReduceMean"))
    torch_form = _global_pool_torch("avg")
    keras_form = KerasForm("GlobalAveragePooling2D", read=_global_pool_keras_in,
                           also={"GlobalAvgPool2D": None})


@register
class GlobalMaxPooling2D(_GlobalPool):
    type_id = "GlobalMaxPooling2D"
    help = "Maximum over height and width: (h, w, c) -> (c)."
    onnx_form = OnnxForm(_global_pool_onnx, "ReduceMax over H, W",
                         reads=_global_pool_reads("GlobalMaxPool", "ReduceMax"))
    torch_form = _global_pool_torch("max")
    keras_form = KerasForm("GlobalMaxPooling2D", read=_global_pool_keras_in,
                           also={"GlobalMaxPool2D": None})


class _GlobalPool1D(_GlobalPool):
    """A (steps, features) sequence pooled over its steps: the 2-D global pooling's forward,
    backward and kernels, (N, T, F) read as (N, 1, T, F). keepdims: (1, features), as Keras."""
    params = (Bool("keepdims", False, help="Keep the steps axis with length 1: (1, features)."),)
    examples = (({}, [(5, 4)]), ({"keepdims": True}, [(7, 3)]), ({}, [(1, 33)]))

    def output_shapes(self, p, in_shapes):
        if len(in_shapes[0]) != 2:
            raise ShapeError("expects input shaped (None, steps, features), got "
                             f"{fmt_shape(in_shapes[0])}")
        F = in_shapes[0][-1]
        return [(1, F) if p["keepdims"] else (F,)]

    def reference(self, p, xs, ws, training=False):
        keep = bool(p["keepdims"])
        return [xs[0].mean(1, keepdims=keep) if self.avg else xs[0].max(1, keepdims=keep)]


def _global_pool1d_onnx(b, n):
    return [b.reduce("ReduceMean" if n.layer.avg else "ReduceMax", n.x[0], [1],
                     int(bool(n.params["keepdims"])))]


def _global_pool1d_torch(kind):
    def convert(t, n):
        fn = "amax" if kind == "max" else "mean"
        keep = ", keepdim=True" if n.params["keepdims"] else ""
        return [], [f"{n.out} = {n.x[0]}.{fn}(dim=1{keep})"], {}
    return TorchForm(convert)


def _global_pool1d_keras_in(o, shapes):
    return {"keepdims": bool(o.get("keepdims", False))}


@register
class GlobalAveragePooling1D(_GlobalPool1D):
    type_id = "GlobalAveragePooling1D"
    avg = True
    help = "Mean over the steps: (steps, features) -> (features)."
    onnx_form = OnnxForm(_global_pool1d_onnx, "ReduceMean over the steps")
    torch_form = _global_pool1d_torch("avg")
    keras_form = KerasForm("GlobalAveragePooling1D", ("keepdims",),
                           read=_global_pool1d_keras_in, also={"GlobalAvgPool1D": None})


@register
class GlobalMaxPooling1D(_GlobalPool1D):
    type_id = "GlobalMaxPooling1D"
    help = "Maximum over the steps: (steps, features) -> (features)."
    onnx_form = OnnxForm(_global_pool1d_onnx, "ReduceMax over the steps")
    torch_form = _global_pool1d_torch("max")
    keras_form = KerasForm("GlobalMaxPooling1D", ("keepdims",),
                           read=_global_pool1d_keras_in, also={"GlobalMaxPool1D": None})
