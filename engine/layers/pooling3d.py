"""MaxPooling3D, AveragePooling3D, GlobalAveragePooling3D, GlobalMaxPooling3D, on the 2-D
pooling kernels of conv.cl. A box window is separable: the maximum over it is the maximum over
its depth of each slice's height-and-width maximum (padding never wins either), and Keras'
average divides by the cells inside the input, a product of the three axes' counts, so the
average is the depth's average of the slices' averages. So a 3-D pooling is two 2-D ones: each
depth slice's (the volume read as n * depth images), then the depth axis (read as n images of
depth rows by one column of OH * OW * C channels), the intermediate result and its gradient in
one scratch buffer; max pooling keeps each pass's argmax. A pass over single cells with stride
1 and no padding is skipped."""
import numpy as np

from layerloom.backend.geometry import PoolGeometry
from layerloom.core.graph import fmt_shape
from layerloom.core.params import Bool, Triple
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, ShapeError, TorchForm,
                                     get_layer, register)
from layerloom.layers.kit import (keras_padding_word, onnx_channels_first, onnx_channels_last,
                                  padding_param, window_geometry_3d)
from layerloom.layers.pooling import _PADDED_CLASS, _PADDED_POOL, _POOL_OPS, _pool_torch
from layerloom.layers.pooling_global import _GlobalPool, _global_pool_keras_in


def _passes(g):
    """(height-and-width pass, depth pass) as PoolGeometry, or None where a pass would copy."""
    hw = PoolGeometry(g.H, g.W, g.C, g.OH, g.OW, g.KH, g.KW, g.SH, g.SW, g.PT, g.PL)
    cells = g.OH * g.OW * g.C
    depth = PoolGeometry(g.D, 1, cells, g.OD, 1, g.KD, 1, g.SD, 1, g.PD, 0)
    single = lambda q: (q.KH, q.KW, q.SH, q.SW, q.OH, q.OW) == (1, 1, 1, 1, q.H, q.W)  # noqa
    return (None if single(hw) else hw), (None if single(depth) else depth)


class _Pool3D(Layer):
    category = "Pooling"
    rank = 3
    avg = False
    params = (Triple("pool_size", (2, 2, 2), help="Window depth, height and width."),
              Triple("strides", None, help="Step between windows; default: the pool size."),
              padding_param(rank=3, what="padding (never the maximum; an average divides by "
                                         "the cells inside the input)"))
    examples = (({}, [(4, 4, 5, 2)]),
                # 'same' on odd sizes: even padding (Keras' torch backend pads uneven
                # amounts by replicating the edge, which changes an average)
                ({"pool_size": 3, "strides": 2, "padding": "same"}, [(5, 3, 5, 3)]),
                ({"pool_size": [2, 3, 1], "strides": 1}, [(3, 4, 2, 1)]),
                ({"pool_size": [3, 1, 1], "strides": [2, 1, 1]}, [(5, 2, 2, 2)]),
                ({"pool_size": [1, 2, 2]}, [(2, 4, 4, 3)]), ({"pool_size": 1}, [(2, 2, 1, 3)]),
                # channels in eights (pool_forward8), explicit padding (PyTorch's)
                ({"pool_size": 3, "strides": 2, "padding": "same"}, [(3, 5, 3, 8)]),
                ({"pool_size": 3, "strides": 2, "padding": 1}, [(5, 4, 5, 2)]))

    def geometry(self, p, in_shape):
        k = p["pool_size"]
        g = window_geometry_3d(in_shape, k, p["strides"] or k, (1, 1, 1), p["padding"])
        for before, after, kk, axis in zip((g.PD, g.PT, g.PL), (g.PDA, g.PTA, g.PLA), k,
                                           ("depth", "height", "width")):
            if not isinstance(p["padding"], str) and max(before, after) >= kk:
                raise ShapeError(f"padding {max(before, after)} on the {axis} is not smaller "
                                 f"than the pool size {kk}: a window would hold padding alone")
        return g

    def output_shapes(self, p, in_shapes):
        g = self.geometry(p, in_shapes[0])
        return [(g.OD, g.OH, g.OW, g.C)]

    def pool_axes(self, p, in_shape):
        """As _Pool.pool_axes: per axis (before, after, window, stride, after as reached)."""
        return [(before, after, k, s, after) for _, _, k, s, _, before, after
                in self.geometry(p, in_shape).axes()], 0

    def scratch(self, p, in_shapes):
        g = self.geometry(p, in_shapes[0])
        hw, depth = _passes(g)
        sc = {} if self.avg else {"argmax": (g.OD, g.OH, g.OW, g.C)}
        if hw and depth:
            sc["mid"] = (g.D, g.OH, g.OW, g.C)
            if not self.avg:
                sc["argmax_hw"] = sc["mid"]
        return sc

    def programs(self, ops, p, in_shapes, run):
        return ops.column_programs(*[q for q in _passes(self.geometry(p, in_shapes[0])) if q])

    def _arg(self, s, name):
        return None if self.avg else s.scratch[name].buf

    def forward(self, ops, s):
        g = self.geometry(s.params, s.x[0].shape)
        hw, depth = _passes(g)
        x, y = s.x[0].buf, s.y[0].buf
        if hw and depth:
            mid = s.scratch["mid"].buf
            ops.pool_forward(x, mid, self._arg(s, "argmax_hw"), s.n * g.D, hw, self.avg)
            ops.pool_forward(mid, y, self._arg(s, "argmax"), s.n, depth, self.avg)
        elif hw or depth:
            n = s.n * g.D if hw else s.n
            ops.pool_forward(x, y, self._arg(s, "argmax"), n, hw or depth, self.avg)
        else:  # a 1x1x1 window, stride 1: the input
            ops.copy(x, y, s.n * s.y[0].size)

    def backward(self, ops, s):
        if s.dx[0] is None:
            return
        g = self.geometry(s.params, s.x[0].shape)
        hw, depth = _passes(g)
        dy, dx, acc = s.dy[0].buf, s.dx[0].buf, s.acc[0]
        if hw and depth:  # the intermediate's gradient over its values
            mid = s.scratch["mid"].buf
            ops.pool_backward(dy, self._arg(s, "argmax"), mid, s.n, depth, self.avg)
            ops.pool_backward(mid, self._arg(s, "argmax_hw"), dx, s.n * g.D, hw, self.avg,
                              accumulate=acc)
        elif hw or depth:
            n = s.n * g.D if hw else s.n
            ops.pool_backward(dy, self._arg(s, "argmax"), dx, n, hw or depth, self.avg,
                              accumulate=acc)
        else:
            ops.copy(dy, dx, s.n * s.y[0].size, accumulate=acc)

    def reference(self, p, xs, ws, training=False):
        x = xs[0]
        g = self.geometry(p, x.shape[1:])
        out = np.zeros((x.shape[0], g.OD, g.OH, g.OW, g.C))
        for o in np.ndindex(g.OD, g.OH, g.OW):
            win = x
            for axis, (n, _, k, st, _, before, _) in enumerate(g.axes()):
                start = o[axis] * st - before
                win = win.take(range(max(start, 0), min(start + k, n)), axis=axis + 1)
            out[(slice(None),) + o] = win.mean((1, 2, 3)) if self.avg else win.max((1, 2, 3))
        return [out]


def _pool3d_onnx(b, n):
    """Pads before as declared, after what the last window reaches (ONNX's count rounded down
    gives ours); an average divides by the cells inside the input (count_include_pad 0)."""
    layer = get_layer(n.type)
    g = layer.geometry(n.params, n.in_shapes[0])
    attrs = dict(kernel_shape=[g.KD, g.KH, g.KW], strides=[g.SD, g.SH, g.SW],
                 pads=[g.PD, g.PT, g.PL, g.PDA, g.PTA, g.PLA])
    if layer.avg:
        attrs["count_include_pad"] = 0
    y = b.op("AveragePool" if layer.avg else "MaxPool", [onnx_channels_first(b, n.x[0], 3)],
             **attrs)
    return [onnx_channels_last(b, y, 3)]


def _pool3d_keras(cls, short):
    """Keras' class with the padding word whose windows are the layer's; else Padded<cls>, the
    Keras layer the 2-D poolings' export defines (pooling.py), read back as this layer."""
    def write(k, n):
        layer, p = get_layer(n.type), n.params
        word = keras_padding_word(layer, p, n.in_shapes[0])
        if layer.avg and word == "same" and p["padding"] != "same":
            word = None  # Keras' torch backend averages uneven same padding its own way
        if word is not None:
            return [f"{n.out[0]} = " + k.call(cls, k.kw(n, ("pool_size", "strides"))
                                              + [f"padding={word!r}"], n, n.x)]
        k.define(n, {"PaddedPooling": _PADDED_POOL, f"Padded{cls}": _PADDED_CLASS.format(
            cls=cls, average=layer.avg, avg="")})
        return [f"{n.out[0]} = " + k.call(f"Padded{cls}", k.kw(n, ("pool_size", "strides")) + [
            f"padding={[list(v) for v in p['padding']]!r}"], n, n.x, module="")]

    def read(o, shapes):
        return {"pool_size": o.get("pool_size", 2), "strides": o.get("strides"),
                "padding": o.get("padding", "valid")}

    def read_padded(o, shapes):
        o.must("ceil_mode", False)
        o.must("count_include_pad", False)
        return read(o, shapes)
    return KerasForm(cls, ("pool_size", "strides", "padding"), read=read, write=write,
                     also={short: None, f"Padded{cls}": read_padded},
                     doc=f"explicit padding that no Keras padding word gives: Padded{cls} (as "
                         "the 2-D poolings'), read back as this layer")


@register
class MaxPooling3D(_Pool3D):
    type_id = "MaxPooling3D"
    help = "Maximum over each pool_size window of (depth, height, width, channels) inputs."
    examples = _Pool3D.examples + (  # uneven same padding (the edge replicated: the same max)
        ({"pool_size": 2, "strides": [1, 2, 3], "padding": "same"}, [(4, 5, 4, 2)]),)
    onnx_form = OnnxForm(_pool3d_onnx, _POOL_OPS.format("MaxPool"))
    torch_form = _pool_torch("max", 3)
    keras_form = _pool3d_keras("MaxPooling3D", "MaxPool3D")


@register
class AveragePooling3D(MaxPooling3D):
    """MaxPooling3D's passes and ONNX form as an average (avg: the kernels' and forms' switch)."""
    type_id = "AveragePooling3D"
    avg = True
    help = "Mean over each pool_size window of (depth, height, width, channels) inputs."
    examples = _Pool3D.examples
    onnx_form = OnnxForm(_pool3d_onnx, _POOL_OPS.format("AveragePool (count_include_pad 0)"))
    torch_form = _pool_torch("avg", 3)
    keras_form = _pool3d_keras("AveragePooling3D", "AvgPool3D")


class _GlobalPool3D(_GlobalPool):
    """The 2-D global pooling's forward, backward and kernels over depth * height * width
    cells. keepdims: (1, 1, 1, channels), as Keras."""
    params = (Bool("keepdims", False, help="Keep depth, height and width with length 1: "
                                           "(1, 1, 1, channels)."),)
    examples = (({}, [(3, 2, 4, 5)]), ({"keepdims": True}, [(2, 3, 2, 3)]), ({}, [(1, 1, 1, 33)]))

    def output_shapes(self, p, in_shapes):
        if len(in_shapes[0]) != 4:
            raise ShapeError("expects input shaped (None, depth, height, width, channels), got "
                             f"{fmt_shape(in_shapes[0])}")
        C = in_shapes[0][-1]
        return [(1, 1, 1, C) if p["keepdims"] else (C,)]

    def reference(self, p, xs, ws, training=False):
        keep = bool(p["keepdims"])
        return [xs[0].mean((1, 2, 3), keepdims=keep) if self.avg else
                xs[0].max((1, 2, 3), keepdims=keep)]


def _global_pool3d_onnx(b, n):
    return [b.reduce("ReduceMean" if get_layer(n.type).avg else "ReduceMax", n.x[0], [1, 2, 3],
                     int(bool(n.params["keepdims"])))]


def _global_pool3d_torch(t, n):
    fn = "mean" if get_layer(n.type).avg else "amax"
    keep = ", keepdim=True" if n.params["keepdims"] else ""
    return [], [f"{n.out} = {n.x[0]}.{fn}(dim=(1, 2, 3){keep})"], {}


@register
class GlobalAveragePooling3D(_GlobalPool3D):
    type_id = "GlobalAveragePooling3D"
    avg = True
    help = "Mean over depth, height and width: (d, h, w, c) -> (c), or (1, 1, 1, c) with keepdims."
    onnx_form = OnnxForm(_global_pool3d_onnx, "ReduceMean over D, H, W")
    torch_form = TorchForm(_global_pool3d_torch)
    keras_form = KerasForm("GlobalAveragePooling3D", ("keepdims",), read=_global_pool_keras_in,
                           also={"GlobalAvgPool3D": None})


@register
class GlobalMaxPooling3D(_GlobalPool3D):
    type_id = "GlobalMaxPooling3D"
    help = ("Maximum over depth, height and width: (d, h, w, c) -> (c), or (1, 1, 1, c) with "
            "keepdims.")
    onnx_form = OnnxForm(_global_pool3d_onnx, "ReduceMax over D, H, W")
    torch_form = TorchForm(_global_pool3d_torch)
    keras_form = KerasForm("GlobalMaxPooling3D", ("keepdims",), read=_global_pool_keras_in,
                           also={"GlobalMaxPool3D": None})
