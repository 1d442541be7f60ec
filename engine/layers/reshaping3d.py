"""The 3-D shape layers over (depth, height, width, channels): ZeroPadding3D, Cropping3D,
UpSampling3D, each a numpy transform as the 2-D ones (reshaping.py's _IndexMap: the gather map
forward, its inverse backward); the padding and the crop are the 2-D layers' with a third
axis (their transforms and ONNX and PyTorch forms take any number of axes)."""
import numpy as np

from layerloom.core.graph import fmt_shape
from layerloom.core.params import Margins3, Triple
from layerloom.core.registry import KerasForm, OnnxForm, ShapeError, TorchForm, register
from layerloom.layers.reshaping import Cropping2D, ZeroPadding2D, _IndexMap, _reshape_onnx_to


def _need_volume(in_shape):
    if len(in_shape) != 4:
        raise ShapeError("expects input shaped (None, depth, height, width, channels), got "
                         f"{fmt_shape(in_shape)}")


_AMOUNTS = "[[front, back], [top, bottom], [left, right]], [depth, rows, cols] or one integer."


@register
class Cropping3D(Cropping2D):
    """Cropping2D's transform and forms over three axes."""
    type_id = "Cropping3D"
    help = "Removes slices, rows and columns at the borders of a volume."
    params = (Margins3("cropping", ((1, 1), (1, 1), (1, 1)), help=_AMOUNTS),)
    examples = (({"cropping": [[1, 0], [2, 1], [0, 1]]}, [(3, 4, 3, 2)]), ({}, [(3, 3, 4, 1)]))
    keras_form = KerasForm("Cropping3D", ("cropping",))

    def check(self, p, in_shape):
        _need_volume(in_shape)
        if any(a + b >= n for (a, b), n in zip(p["cropping"], in_shape)):
            raise ShapeError(f"cropping {[list(c) for c in p['cropping']]} removes the whole "
                             f"input {fmt_shape(in_shape)}")


@register
class ZeroPadding3D(ZeroPadding2D):
    """ZeroPadding2D's transform and forms over three axes."""
    type_id = "ZeroPadding3D"
    help = "Adds slices, rows and columns of zeros at the borders of a volume."
    params = (Margins3("padding", ((1, 1), (1, 1), (1, 1)), help=_AMOUNTS),)
    examples = (({"padding": [[1, 0], [2, 1], [0, 1]]}, [(2, 3, 2, 2)]), ({}, [(1, 1, 2, 3)]))
    keras_form = KerasForm("ZeroPadding3D", ("padding",))

    def check(self, p, in_shape):
        _need_volume(in_shape)


def _upsampling3d_onnx(b, n):
    """(N, D, H, W, C) -> (N, D, 1, H, 1, W, 1, C), tiled, then merged (exact)."""
    D, H, W, C = n.in_shapes[0]
    sd, sh, sw = n.params["size"]
    y = _reshape_onnx_to(b, n.x[0], (D, 1, H, 1, W, 1, C))
    y = b.op("Tile", [y, b.ints([1, 1, sd, 1, sh, 1, sw, 1], "repeats")])
    return [_reshape_onnx_to(b, y, n.out_shapes[0])]


def _upsampling3d_torch(t, n):
    sd, sh, sw = n.params["size"]
    return [], [f"{n.out} = {n.x[0]}.repeat_interleave({sd}, 1).repeat_interleave({sh}, 2)"
                f".repeat_interleave({sw}, 3)"], {}


@register
class UpSampling3D(_IndexMap):
    type_id = "UpSampling3D"
    help = "Repeats each slice, row and column size times (nearest-neighbour upsampling)."
    params = (Triple("size", (2, 2, 2), help="Repetitions along depth, height and width."),)
    examples = (({}, [(2, 1, 2, 2)]), ({"size": [1, 3, 2]}, [(2, 2, 1, 3)]))

    onnx_form = OnnxForm(_upsampling3d_onnx, "Reshape, Tile, Reshape (nearest)")
    torch_form = TorchForm(_upsampling3d_torch)
    keras_form = KerasForm("UpSampling3D", ("size",))

    def check(self, p, in_shape):
        _need_volume(in_shape)

    def transform(self, p, a, fill):
        for axis, k in enumerate(p["size"], 1):
            a = np.repeat(a, k, axis=axis)
        return a
