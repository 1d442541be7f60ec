"""Convolution and pooling ops (NHWC): im2col/col2im around the GEMM, max and average pooling,
global pooling, with the geometry compiled into conv.cl where it is known. A mixin of Ops
(engine/backend/ops.py), whose kernel lookup (_k), fill, grid padding (_padded) and queue it uses.
Each op takes its geometry as a record (engine/backend/geometry.py)."""
from layerloom.backend.geometry import ConvGeometry
from layerloom.backend.grid import cdiv


class ConvOps:
    @staticmethod
    def _geom_defines(g):
        """Compile-time geometry for conv.cl, from a ConvGeometry or a PoolGeometry (whose
        dilation is 1)."""
        return ("GEOM",) + tuple(f"G{k}={int(getattr(g, k))}" for k in ConvGeometry._fields)

    def _conv_k(self, name, g):
        return self._k("conv", name, self._geom_defines(g))

    def im2col(self, x, cols, n, g):
        """g: a ConvGeometry."""
        if n and g.C % 8 == 0:
            chunks, rows = g.KH * g.KW * g.C // 8, n * g.OH * g.OW
            grid, local = (chunks, rows), None
            if self.rt.kind == "cpu":
                # work-groups of 64: 4 (or 2) channel chunks x rows, which PoCL turns into
                # 128-byte copies (~1.5x faster than the work-group sizes it picks itself)
                l0 = 4 if chunks % 4 == 0 else 2 if chunks % 2 == 0 else 1
                local = (l0, 64 // l0)
                grid = (chunks, cdiv(rows, local[1]) * local[1])
            self._conv_k("im2col8", g)(self.q, grid, local, x, cols, rows)
        elif n:
            self._conv_k("im2col", g)(
                self.q, (g.KH * g.KW * g.C, n * g.OH * g.OW), None, x, cols, *g)

    def col2im(self, dcols, dx, n, g, accumulate=False):
        if n and g.C % 8 == 0:
            items = n * g.H * g.W * g.C // 8  # in work-groups of 64: ~15% faster than PoCL's pick
            self._conv_k("col2im8", g)(
                self.q, *self._padded(items, 64), dcols, dx, int(accumulate), items)
            return
        if n:
            self._conv_k("col2im", g)(
                self.q, (n * g.H * g.W * g.C,), None, dcols, dx, *g, int(accumulate))

    # -- grouped convolution: each group's GEMM on operands of its own (engine/layers/
    # convolution.py), laid out one group after another by these ---------------------------
    def im2col_groups(self, x, cols, n, g, groups):
        """cols as `groups` matrices of n*OH*OW rows by KH*KW*C/groups, one after another."""
        if n:
            self._conv_k("im2col_groups", g)(
                self.q, (g.KH * g.KW * g.C, n * g.OH * g.OW), None, x, cols, *g, groups)

    def col2im_groups(self, dcols, dx, n, g, groups, accumulate=False):
        """dx (+)= what im2col_groups read from each input element, from dcols in its layout."""
        if n:
            self._conv_k("col2im_groups", g)(
                self.q, (n * g.H * g.W * g.C,), None, dcols, dx, *g, groups, n, int(accumulate))

    def swap_outer(self, x, y, A, B, I, bias=None, accumulate=False):
        """y (B, A, I) (+)= x (A, B, I) with its two outer axes swapped (+ bias, (A, I))."""
        if A * B * I:
            self._k("conv", "swap_outer")(
                self.q, (A * B * I,), None, x, y, self._or_dummy(bias), A, B, I,
                int(bias is not None), int(accumulate))

    def grouped_kernel(self, kernel, Kg, groups, Fg):
        """A grouped convolution's kernel, Keras' (KH, KW, C/groups, filters) read as (Kg,
        groups, Fg), as one (Kg, Fg) matrix per group in a scratch buffer the ops keep (a
        layer's forward and backward each refresh it: another layer may use it between)."""
        buf = self._scratch("conv_grouped_kernel", 4 * Kg * groups * Fg)
        self.swap_outer(kernel, buf, Kg, groups, Fg)
        return buf

    def grouped_kernel_grad(self, Kg, groups, Fg):
        """Scratch for the per-group weight gradients (groups, Kg, Fg), before swap_outer
        puts them in Keras' layout."""
        return self._scratch("conv_grouped_kernel_grad", 4 * Kg * groups * Fg)

    @staticmethod
    def _tiled_windows(g, avg):
        """Max pooling whose windows tile the input: strides equal to the pool, no padding,
        every window inside the input (not a rounded-up count's last window)."""
        return (not avg and (g.SH, g.SW) == (g.KH, g.KW) and g.PT == g.PL == 0
                and g.OH * g.KH <= g.H and g.OW * g.KW <= g.W)

    def pool_forward(self, x, y, arg, n, g, avg):
        """g: a PoolGeometry."""
        outputs = n * g.OH * g.OW * g.C
        if n and arg is not None and self._tiled_windows(g, avg):
            if g.C % 8 == 0:
                self._conv_k("max_pool_forward_tiled8", g)(
                    self.q, (outputs // 8,), None, x, y, arg)
            else:
                self._conv_k("max_pool_forward_tiled", g)(
                    self.q, (outputs,), None, x, y, arg)
            return
        if n and g.C % 8 == 0:
            self._conv_k("pool_forward8", g)(
                self.q, (outputs // 8,), None, x, y, self._or_dummy(arg), g.PB, g.PR, g.INC,
                int(avg))
        elif n:
            self._conv_k("pool_forward", g)(
                self.q, (outputs,), None, x, y, self._or_dummy(arg),
                *g, int(avg))

    def pool_backward(self, dy, arg, dx, n, g, avg, accumulate=False):
        if n and self._tiled_windows(g, avg):
            if not accumulate and (g.OH * g.KH < g.H or g.OW * g.KW < g.W):
                self.fill(dx, n * g.H * g.W * g.C)  # rows/columns no window covers
            name, per = (("max_pool_backward_tiled8", 8) if g.C % 8 == 0 else
                         ("max_pool_backward_tiled", 1))
            self._conv_k(name, g)(
                self.q, (n * g.OH * g.OW * g.C // per,), None, dy, arg, dx, int(accumulate))
            return
        if n and g.C % 8 == 0:
            self._conv_k("pool_backward8", g)(
                self.q, (n * g.H * g.W * g.C // 8,), None, dy, self._or_dummy(arg), dx,
                g.PB, g.PR, g.INC, int(avg), int(accumulate))
        elif n:
            self._conv_k("pool_backward", g)(
                self.q, (n * g.H * g.W * g.C,), None, dy, self._or_dummy(arg), dx,
                *g, int(avg), int(accumulate))

    def global_pool_forward(self, x, y, arg, n, S, C, avg):
        if n:
            self._k("conv", "global_pool_forward")(
                self.q, (C, n), None, x, y, self._or_dummy(arg), S, int(avg))

    def global_pool_backward(self, dy, arg, dx, n, S, C, avg, accumulate=False):
        if n:
            self._k("conv", "global_pool_backward")(
                self.q, (n * S * C,), None, dy, self._or_dummy(arg), dx, S, C,
                int(avg), int(accumulate))
