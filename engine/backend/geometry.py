"""The window geometry the convolution and pooling ops take (engine/backend/conv_ops.py), as the
layers compute it (engine/layers/convolution.py, pooling.py). NHWC: input H x W x C, output
OH x OW, window KH x KW, strides SH, SW, dilation DH, DW, padding before PT (top) and PL (left).
The fields are in the order clkernels/conv.cl's kernels take them as arguments, so an op passes
`*g`; the compile-time defines (GEOM, GH .. GPL) are read by name."""
from collections import namedtuple
from typing import NamedTuple


class ConvGeometry(NamedTuple):
    """A convolution's window geometry (im2col, col2im)."""
    H: int
    W: int
    C: int
    OH: int
    OW: int
    KH: int
    KW: int
    SH: int
    SW: int
    DH: int
    DW: int
    PT: int
    PL: int


class PoolGeometry(namedtuple("PoolGeometry",
                              [f for f in ConvGeometry._fields if f not in ("DH", "DW")])):
    """A pooling window's geometry: a convolution's without the dilation, which the pooling
    kernels do not take as arguments (their compiled geometry has DH = DW = 1)."""
    __slots__ = ()
    DH = DW = 1  # class attributes, not fields
