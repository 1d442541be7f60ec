"""Depthwise and transposed convolution ops (clkernels/depthwise.cl): direct depthwise kernels forward and backward, and what the transposed convolutions need beside im2col/col2im and the GEMM. A mixin of Ops (engine/backend/ops.py), whose kernel lookup (_k), fill, grid
padding (_padded) and queue it uses."""


class DepthwiseOps:
    pass
