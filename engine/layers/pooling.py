"""Pooling: MaxPooling2D/1D, AveragePooling2D/1D, GlobalAveragePooling2D, GlobalMaxPooling2D.
Max pooling keeps the index of each window's maximum for the backward pass; average pooling
over 'same' padding divides by the in-bounds count, as Keras (TensorFlow) does."""
import numpy as np

from layerloom.backend.geometry import PoolGeometry
from layerloom.core.graph import fmt_shape
from layerloom.layers.kit import window_geometry
from layerloom.core.params import Choice, Int, Pair
from layerloom.core.registry import Layer, ShapeError, register


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


@register
class MaxPooling2D(_Pool):
    type_id = "MaxPooling2D"
    help = "Maximum over each pool_size window of (height, width, channels) inputs."
    params = _pool2d_params()
    examples = _EX2


@register
class AveragePooling2D(_Pool):
    type_id = "AveragePooling2D"
    avg = True
    help = "Mean over each pool_size window of (height, width, channels) inputs."
    params = _pool2d_params()
    examples = _EX2


@register
class MaxPooling1D(_Pool):
    type_id = "MaxPooling1D"
    rank = 1
    help = "Maximum over each pool_size window of (steps, channels) inputs."
    params = _pool1d_params()
    examples = _EX1


@register
class AveragePooling1D(_Pool):
    type_id = "AveragePooling1D"
    rank = 1
    avg = True
    help = "Mean over each pool_size window of (steps, channels) inputs."
    params = _pool1d_params()
    examples = _EX1


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

    def forward(self, ops, s):
        H, W, C = s.x[0].shape
        arg = None if self.avg else s.scratch["argmax"].buf
        ops.global_pool_forward(s.x[0].buf, s.y[0].buf, arg, s.n, H * W, C, self.avg)

    def backward(self, ops, s):
        if s.dx[0] is None:
            return
        H, W, C = s.x[0].shape
        arg = None if self.avg else s.scratch["argmax"].buf
        ops.global_pool_backward(s.dy[0].buf, arg, s.dx[0].buf, s.n, H * W, C, self.avg,
                                 accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        return [xs[0].mean((1, 2)) if self.avg else xs[0].max((1, 2))]


@register
class GlobalAveragePooling2D(_GlobalPool):
    type_id = "GlobalAveragePooling2D"
    avg = True
    help = "Mean over height and width: (h, w, c) -> (c)."


@register
class GlobalMaxPooling2D(_GlobalPool):
    type_id = "GlobalMaxPooling2D"
    help = "Maximum over height and width: (h, w, c) -> (c)."
