"""The window geometry the convolution and pooling ops take (engine/backend/conv_ops.py), as the
layers compute it (engine/layers/convolution.py, pooling.py). NHWC: input H x W x C, output
OH x OW, window KH x KW, strides SH, SW, dilation DH, DW, padding before PT (top) and PL (left);
the padding after is what the last window reaches past the input (a pooling that averages over
the padding also keeps the declared amounts, PB and PR).
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
                              [f for f in ConvGeometry._fields if f not in ("DH", "DW")]
                              + ["PB", "PR", "INC"], defaults=(0, 0, 0))):
    """A pooling window's geometry: a convolution's without the dilation, which the pooling
    kernels do not take as arguments (their compiled geometry has DH = DW = 1), then the
    padding after the input, PB (bottom) and PR (right), which only an average counting the
    padding (INC = 1, PyTorch's count_include_pad) reads: its divisor is the window within
    the padded input. These three default to 0 (an average over the input's cells alone)."""
    __slots__ = ()
    DH = DW = 1  # class attributes, not fields


def tiled_windows(g):
    """Pooling windows (a PoolGeometry's) that tile the input: strides equal to the pool, no
    padding, every window inside the input (not a rounded-up count's last window). Max pooling
    over them has its own kernels (conv.cl), and each input element is in one window at most."""
    return ((g.SH, g.SW) == (g.KH, g.KW) and g.PT == g.PL == 0
            and g.OH * g.KH <= g.H and g.OW * g.KW <= g.W)


class Geometry3D(NamedTuple):
    """A 3-D window's geometry (Conv3D, the 3-D poolings: engine/layers/convolution3d.py,
    pooling3d.py): input D x H x W x C, output OD x OH x OW, window KD x KH x KW, strides,
    dilation, padding before (PD front, PT top, PL left) and after (PDA, PTA, PLA: declared,
    or what Keras' same adds). Its field names for height and width are ConvGeometry's, so the
    2-D forms' helpers read them; the ops take it as two 2-D geometries (height and width,
    then depth: the layers' stages)."""
    D: int
    H: int
    W: int
    C: int
    OD: int
    OH: int
    OW: int
    KD: int
    KH: int
    KW: int
    SD: int
    SH: int
    SW: int
    DD: int
    DH: int
    DW: int
    PD: int
    PT: int
    PL: int
    PDA: int
    PTA: int
    PLA: int

    def axes(self):
        """Per axis (depth, height, width): (size, out, window, stride, dilation, before,
        after)."""
        return [(self.D, self.OD, self.KD, self.SD, self.DD, self.PD, self.PDA),
                (self.H, self.OH, self.KH, self.SH, self.DH, self.PT, self.PTA),
                (self.W, self.OW, self.KW, self.SW, self.DW, self.PL, self.PLA)]
