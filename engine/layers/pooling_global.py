"""The global poolings: GlobalAveragePooling2D/1D and GlobalMaxPooling2D/1D (keepdims), a mean
or maximum over every position of each channel; their ONNX forms out and in (GlobalAveragePool,
GlobalMaxPool, and ReduceMean/ReduceMax over the positions), PyTorch code and Keras."""
import numpy as np

from layerloom.core.graph import fmt_shape
from layerloom.core.params import Bool
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, OnnxRead, ShapeError, TorchForm,
                                     register)


class _GlobalPool(Layer):
    category = "Pooling"
    avg = False
    params = (Bool("keepdims", False, help="Keep height and width with length 1: (1, 1, "
                   "channels), as a squeeze-and-excitation block multiplies it back."),)
    examples = (({}, [(3, 5, 4)]), ({}, [(1, 1, 33)]), ({"keepdims": True}, [(4, 3, 5)]))

    def output_shapes(self, p, in_shapes):
        if len(in_shapes[0]) != 3:
            raise ShapeError("expects input shaped (None, height, width, channels), got "
                             f"{fmt_shape(in_shapes[0])}")
        C = in_shapes[0][-1]
        return [(1, 1, C) if p["keepdims"] else (C,)]

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
        keep = bool(p["keepdims"])
        return [xs[0].mean((1, 2), keepdims=keep) if self.avg else
                xs[0].max((1, 2), keepdims=keep)]


def _global_pool_onnx(b, n):
    return [b.reduce("ReduceMean" if n.layer.avg else "ReduceMax", n.x[0], [1, 2],
                     int(bool(n.params["keepdims"])))]


def _global_pool_onnx_in(imp, node, type_id):
    """ONNX's GlobalAveragePool or GlobalMaxPool (NCHW) as the layer; of an NCW sequence or an
    NCDHW volume as the 1-D or 3-D layer, keeping the axes (ONNX keeps them)."""
    v = imp.value(node, 0)
    rank = len(imp.shape(v)) - 1
    if v.nchw and rank in (1, 3):  # (N, C, T...) -> (N, C, 1...): ours (1..., C), channels first
        nid = imp.add(node, type_id.replace("2D", f"{rank}D"), {"keepdims": True}, [v])
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
    rank = len(imp.shape(v)) - 1
    if not v.pooled and not v.nchw and rank in (1, 3) and axes == list(range(1, rank + 1)):
        # the steps of a (N, T, F) sequence or the cells of a (N, D, H, W, C) volume: our
        # export's 1-D or 3-D global pooling
        nid = imp.add(node, type_id.replace("2D", f"{rank}D"), {"keepdims": bool(keep)}, [v])
        imp.set(node, imp.result(nid))
        return
    if v.nchw and rank == 3 and axes == [2, 3, 4]:
        # ONNX's (N, C, D, H, W) volume over its cells (PyTorch's h.mean((2, 3, 4))): kept
        # axes (C, 1, 1, 1) are our (1, 1, 1, C) read channels-first
        nid = imp.add(node, type_id.replace("2D", "3D"), {"keepdims": bool(keep)}, [v])
        imp.set(node, imp.result(nid, nchw=bool(keep)))
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
        keep = ", keepdim=True" if n.params["keepdims"] else ""
        return [], [f"{n.out} = {n.x[0]}.{fn}(dim=(1, 2){keep})"], {}
    return TorchForm(convert)


def _global_pool_keras_in(o, shapes):
    return {"keepdims": bool(o.get("keepdims", False))}


@register
class GlobalAveragePooling2D(_GlobalPool):
    type_id = "GlobalAveragePooling2D"
    avg = True
    help = "Mean over height and width: (h, w, c) -> (c), or (1, 1, c) with keepdims."
    onnx_form = OnnxForm(_global_pool_onnx, "ReduceMean over H, W",
                         reads=_global_pool_reads("GlobalAveragePool", "ReduceMean"))
    torch_form = _global_pool_torch("avg")
    keras_form = KerasForm("GlobalAveragePooling2D", ("keepdims",), read=_global_pool_keras_in,
                           also={"GlobalAvgPool2D": None})


@register
class GlobalMaxPooling2D(_GlobalPool):
    type_id = "GlobalMaxPooling2D"
    help = "Maximum over height and width: (h, w, c) -> (c), or (1, 1, c) with keepdims."
    onnx_form = OnnxForm(_global_pool_onnx, "ReduceMax over H, W",
                         reads=_global_pool_reads("GlobalMaxPool", "ReduceMax"))
    torch_form = _global_pool_torch("max")
    keras_form = KerasForm("GlobalMaxPooling2D", ("keepdims",), read=_global_pool_keras_in,
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
