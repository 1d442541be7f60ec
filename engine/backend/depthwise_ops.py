"""Depthwise and transposed convolution ops (clkernels/depthwise.cl): direct depthwise kernels
forward and backward, and what the transposed convolutions need beside im2col/col2im and the
GEMM (their bias and activation after col2im). A mixin of Ops (engine/backend/ops.py), whose
kernel lookup (_k), scratch buffers, part sums (_sum_parts), grid padding (_padded) and queue it
uses; the geometry is conv_ops' ConvGeometry, compiled in as conv.cl's GEOM kernels take it."""
from layerloom.backend.grid import cdiv
from layerloom.core.activations import ACT_ID


class DepthwiseOps:
    WG_DW = 64  # work-groups of the depthwise kernels on CPUs (a fixed local size: ops.py)

    def _dw_widths(self, C, M):
        """(VO, VI): output and input channels per work-item, the elementwise width where the
        channels divide by it (CPUs), else 1 (GPUs: ew is 1 there)."""
        return self._width(C * M), self._width(C)

    def _dw_k(self, name, g, M):
        vo, vi = self._dw_widths(g.C, M)
        return self._k("depthwise", name,
                       self._geom_defines(g) + (f"GM={int(M)}", f"VO={vo}", f"VI={vi}"))

    def depthwise_forward(self, x, w, bias, y, n, g, M, act="linear"):
        """y = act(depthwise(x) + bias): x NHWC (g.H, g.W, g.C), w Keras' (KH, KW, C, M), y
        (g.OH, g.OW, C*M); bias None for none; act an elementwise activation."""
        items = n * g.OH * g.OW * g.C * M // self._dw_widths(g.C, M)[0]
        if items:
            self._dw_k("dw_forward", g, M)(
                self.q, *self._padded(items, self.WG_DW), x, w, self._or_dummy(bias), y,
                int(bias is not None), ACT_ID[act], items)

    def depthwise_backward_input(self, dy, w, dx, n, g, M, accumulate=False):
        """dx (+)= the input gradient of depthwise_forward (before its activation)."""
        items = n * g.H * g.W * g.C // self._dw_widths(g.C, M)[1]
        if items:
            self._dw_k("dw_backward_input", g, M)(
                self.q, *self._padded(items, self.WG_DW), dy, w, dx, int(accumulate), items)

    def depthwise_backward_weight(self, x, dy, dw, n, g, M):
        """dw = the kernel's gradient, summed over n*OH*OW output positions in up to 64 parts
        (added by sum_parts), so that a few kernel taps still spread over the device."""
        size = g.KH * g.KW * g.C * M
        lines = n * g.OH
        P = max(1, min(64, lines, n * g.OH * g.OW // 256))
        out = dw if P == 1 else self._scratch("dw_parts", 4 * P * size)
        if lines:
            self._dw_k("dw_backward_weight", g, M)(
                self.q, (size // self._dw_widths(g.C, M)[0], P), None, x, dy, out, lines)
        else:
            self.fill(out, P * size)
        if P > 1:
            self._sum_parts(out, P, size, dw, self._dummy, 0, 0, 0)

    def bias_act(self, y, bias, rows, cols, act="linear"):
        """y = act(y + bias) in place, over rows x cols (bias None: the activation alone); a
        transposed convolution's epilogue, after col2im."""
        if rows * cols and (bias is not None or act != "linear"):
            self._sum_parts(y, 1, rows * cols, y, self._or_dummy(bias),
                            cols if bias is not None else 0, ACT_ID[act], 0)
