"""Convolution and pooling ops (NHWC): im2col/col2im around the GEMM, max and average pooling,
global pooling, with the geometry compiled into conv.cl where it is known. A mixin of Ops
(engine/backend/ops.py), whose kernel lookup (_k), fill, grid padding (_padded) and queue it uses.
Each op takes its geometry as a record (engine/backend/geometry.py)."""
import os
from typing import NamedTuple

from layerloom.core.activations import ACT_ID
from layerloom.backend.geometry import ConvGeometry, tiled_windows
from layerloom.backend.grid import cdiv

# Where the direct kernels (clkernels/conv_direct.cl) replace im2col + GEMM (+ col2im), per
# device kind: the most input channels for the forward pass and the kernel gradient (and the
# most filters for the latter, dw_filters), the most filters for the input gradient (a
# stride-1 transposed convolution over the filters); 0: never. Measured per layer (engine/backend/conv_ops.py conv_plan; the figures in the
# commit that set them; LAYERLOOM_DIRECT_CONV=0 turns them off, for a bench's before and
# after): on CPUs with few channels the column passes and a GEMM with a K of 9-288 cost
# more than the direct loops (2-core Xeon, AVX-512, PoCL 3.1, 3x3 at 28x28, batch 32, ms
# GEMM path -> direct: 16 -> 16 channels forward 3.05 -> 1.88, backward 2.30 -> 1.40; 32 ->
# 32 forward 3.96 -> 2.30, kernel gradient 14.4 -> 4.7, input gradient 13.3 -> 4.6); the
# kernel gradient of 64 filters lost (14.0 -> 27.1 for 32 -> 64). GPUs keep the GEMM (their
# tiles use local memory). Wider, measured the same way (forward + backward ms, GEMM path ->
# direct, PyTorch beside, one process, a quiet machine, December 2026): up to 32
# filters the direct forward and kernel gradient win at any number of channels tried
# (64 -> 16 at 56x56 78 -> 43, PyTorch 32; 64 -> 32 at 28x28 24.6 -> 17.3, PyTorch 12.1;
# 128 -> 32 at 28x28 50.7 -> 37.8; 256 -> 32 at 14x14 23.4 -> 15.0; 5x5 64 -> 16 49.8 -> 24.7);
# the direct input gradient wins up to 128 filters (3x3 64 -> 64 at 28x28 backward 34.9 ->
# 25.7, at 56x56 140.5 -> 104.5; 128 -> 128 at 28x28 103.7 -> 89.9; 5x5 64 -> 64 97.5 ->
# 71.1) and loses at 256 (315.7 -> 368.8). Once the direct kernel gradient ran in parts that
# fit a core's cache (DW_BLOCK), it won up to 128 filters too (3x3, batch 32, forward +
# backward ms, the GEMM forward and kernel gradient -> both direct, PyTorch beside): 64 -> 64
# at 28x28 41.4 -> 25.7 (24.9), at 56x56 166.7 -> 109.4 (100.9); 128 -> 128 at 28x28 129.9
# -> 103.8 (82.2), at 56x56 520.0 -> 557.1 (437.0, the one loss); 256 -> 128 at 14x14 93.4 ->
# 56.3 (39.2); 128 -> 64 at 28x28 78.4 -> 50.8 (44.3); 64 -> 64 stride 2 at 56x56 (the input
# gradient on the GEMM either way) 55.7 -> 43.7 (60.4); 5x5 64 -> 64 at 28x28 102.6 -> 66.8
# (52.1); 32 -> 64 at 13x13, batch 64 (the example CNN's second) 5.50 -> 5.21 (4.50). At 256
# filters the GEMM stays (256 -> 256 at 28x28 512.1 against 635.5).
DIRECT_CONV = {
    "cpu": {"forward": 256, "dw": 256, "dw_filters": 128, "dx": 128},
}
DIRECT_DEFAULT = {"forward": 0, "dw": 0, "dw_filters": 0, "dx": 0}
# the bytes of input and output-gradient rows per part of a direct kernel gradient (_dw_parts):
# half an L2 cache of 1 MiB (AMD Zen 4; 2 MiB on the Xeon measured). Measured (3x3, 28x28,
# batch 32, backward ms, one part per 128 work-items -> parts of 0.5 MiB, PyTorch beside):
# 64 -> 64 31.3 -> 17.1 (PyTorch 18.7), 128 -> 128 131.0 -> 70.0 (55.5); 1 MiB and 0.25 MiB
# within 5% of it, 2 MiB 5-10% slower
DW_BLOCK = 1 << 19


class ConvPlan(NamedTuple):
    """A convolution's algorithm per pass: True where the direct kernel runs."""
    forward: bool
    dw: bool
    dx: bool


class ConvOps:
    @staticmethod
    def _geom_defines(g):
        """Compile-time geometry for conv.cl, from a ConvGeometry or a PoolGeometry (whose
        dilation is 1)."""
        return ("GEOM",) + tuple(f"G{k}={int(getattr(g, k))}" for k in ConvGeometry._fields)

    def _conv_k(self, name, g):
        return self._k("conv", name, self._geom_defines(g))

    # -- direct convolution (few channels): clkernels/conv_direct.cl ------------------------
    direct_conv = None  # a DIRECT_CONV entry that overrides the device's (tests)

    def conv_plan(self, g, F, groups=1):
        """The algorithm of each pass of a convolution (ConvPlan), from DIRECT_CONV: direct
        where its channels (filters for dX) are few enough and whole vectors of filters
        (channels for dX) fit; the input gradient directly only at stride 1."""
        rule = self.direct_conv or DIRECT_CONV.get(self.rt.kind, DIRECT_DEFAULT)
        if os.environ.get("LAYERLOOM_DIRECT_CONV") == "0":  # benches: the GEMM path alone
            rule = DIRECT_DEFAULT
        if groups != 1 or (g.KH == g.KW == g.SH == g.SW == 1):
            return ConvPlan(False, False, False)
        ok = self._direct_vector(F) is not None
        # the input gradient's outputs are the channels: on vectors where the form has them
        # (1 or 3 channels would run a scalar loop over every filter: 10x the GEMM's time)
        dx = self._direct_vector(g.C)
        dx_ok = dx is not None and (dx[0] > 1 or (self.direct_vw or 4) == 1)
        dw = ok and g.C <= rule["dw"] and F <= rule.get("dw_filters", F)
        # the forward pass directly only with the kernel gradient: a GEMM's kernel gradient
        # reads the columns, which the backward pass would then write (32 -> 64 channels at
        # 13x13, batch 64: 3.75 ms a step with both on the GEMM, 4.24 with a direct forward)
        return ConvPlan(dw and g.C <= rule["forward"], dw,
                        dx_ok and F <= rule["dx"] and g.SH == g.SW == 1)

    def _direct_vector(self, F):
        """(FV, NF): filters per vector and vectors per work-item for F filters, or None when
        F (4 or more) is no multiple of 4 where the kernels run on vectors."""
        vw = self.direct_vw or (self.rt.caps.vector_width if self.rt.kind == "cpu" else 4)
        fv = next(v for v in (16, 8, 4, 1) if v <= vw and F % v == 0)
        if fv == 1 and F >= 4 and vw >= 4:  # scalar filters: not where vectors are the form
            return None
        return fv, 2 if F % (2 * fv) == 0 and F > fv else 1

    direct_vw = None  # the vector width the direct kernels use (tests: 1 or 4, a GPU's form)

    def _direct_regs(self):
        """Accumulator vectors a work-item keeps: half the vector registers (32 with
        AVX-512, 16 with AVX2)."""
        return 16 if (self.direct_vw or self.rt.caps.vector_width) >= 16 else 8

    def _direct_defines(self, g, F, fv, nf, extra):
        return self._geom_defines(g) + (f"GF={F}", f"FV={fv}", f"VW={fv}", f"NF={nf}") + extra

    def _direct_forward_defines(self, g, F):
        """conv_direct's defines for F filters over geometry g: the filters' vectors, and the
        positions per work-item (OWT): from half the registers' worth to all of it, the fewest
        wasted at the row's end, then the most."""
        fv, nf = self._direct_vector(F)
        most = min(8, self._direct_regs() // nf, g.OW)
        owt = min(range(max(1, most // 2), most + 1),
                  key=lambda t: (cdiv(g.OW, t) * t - g.OW, -t))
        return self._direct_defines(g, F, fv, nf, (f"OWT={owt}",)), fv * nf, owt

    def conv_direct(self, x, w, y, n, g, F, bias=None, act="linear", accumulate=False):
        """y (n, OH, OW, F) = act(conv(x, w) + bias) (+ y), directly (conv_direct.cl)."""
        if not n:
            return
        defines, per, owt = self._direct_forward_defines(g, F)
        k = self._k("conv_direct", "conv_direct", defines)
        grid = (F // per, cdiv(g.OW, owt), n * g.OH)
        local = (1, 1, 1) if self.rt.kind == "cpu" else None
        k(self.q, grid, local, x, w, self._or_dummy(bias), y, int(bias is not None),
          ACT_ID[act], int(accumulate))

    def conv_direct_dx(self, dy, w, dx, n, g, F, accumulate=False):
        """dx (+)= the input gradient of a stride-1 convolution from its output gradient dy: a
        convolution of dy with the kernel flipped and transposed (flip_kernel), padded by
        (K-1)*D - P before."""
        taps = g.KH * g.KW
        wt = self._scratch("conv_direct_flipped", 4 * taps * g.C * F)
        self._k("conv_direct", "flip_kernel", self._flip_defines(g, F))(
            self.q, (taps * g.C * F,), None, w, wt, g.C, F)
        self.conv_direct(dy, wt, dx, n, self._dx_geometry(g, F), g.C, accumulate=accumulate)

    def _flip_defines(self, g, F):
        # flip_kernel reads no vectors: F filters with no vector form (6) take scalars (their
        # vector form had been required, and a 4-channel input to 6 filters failed here)
        return self._direct_defines(g, F, *(self._direct_vector(F) or (1, 1)), ())

    @staticmethod
    def _dx_geometry(g, F):
        """The input gradient's convolution: of the output gradient (F channels) with the
        flipped kernel, stride 1, back to the input's size."""
        return ConvGeometry(g.OH, g.OW, F, g.H, g.W, g.KH, g.KW, 1, 1, g.DH, g.DW,
                            (g.KH - 1) * g.DH - g.PT, (g.KW - 1) * g.DW - g.PL)

    def _dw_defines(self, g, F):
        """conv_direct_dw's defines and its channels per work-item (CT)."""
        fv, nf = self._direct_vector(F)
        regs = self._direct_regs() // nf
        ct = max(c for c in range(1, min(16, regs) + 1) if g.C % c == 0)
        return self._direct_defines(g, F, fv, nf, (f"CT={ct}",)), fv * nf, ct

    def conv_direct_dw(self, x, dy, dw, n, g, F, db=None):
        """dw (KH, KW, C, F) = the kernel gradient, summed over every output position
        directly, in parts (conv_direct_dw) that sum_parts adds. db: the bias gradient's
        buffer, written here where the one-channel kernel runs (conv_direct_dw1); returns
        whether it was."""
        size = g.KH * g.KW * g.C * F
        if not n:
            self.fill(dw, size)
            if db is not None:
                self.fill(db, F)
            return db is not None
        one = self._dw1_defines(g, F)
        if one is not None:
            self._conv_direct_dw1(x, dy, dw, n, g, F, db, *one)
            return db is not None
        defines, per, ct = self._dw_defines(g, F)
        items = g.KH * g.KW * (F // per) * (g.C // ct)
        rows = n * g.OH
        parts = self._dw_parts(g, F, items, rows, size)
        buf = self._scratch("conv_direct_dw", 4 * parts * size)
        k = self._k("conv_direct", "conv_direct_dw", defines)
        local = (1, 1, 1) if self.rt.kind == "cpu" else None
        k(self.q, (items // (g.C // ct), g.C // ct, parts), local, x, dy, buf, rows)
        self._sum_parts(buf, parts, size, dw, self._dummy, 0, ACT_ID["linear"], 0)
        return False

    dw1 = None  # tests: True or False forces whether the one-channel kernel gradient runs

    def _dw1_defines(self, g, F):
        """(defines, filters per work-item) of conv_direct_dw1, the kernel gradient of one input
        channel with every tap in one work-item (and the bias), or None where it does not
        run: more than one channel, filters without a vector form, or more accumulators
        (taps x vectors, and the bias's) than leave room in the vector registers."""
        v = self._direct_vector(F)
        if g.C != 1 or v is None or self.dw1 is False:
            return None
        fv, nf = v
        taps = g.KH * g.KW
        if (taps + 1) * nf > 2 * self._direct_regs() - 8 and not self.dw1:
            return None
        if taps > 16:  # conv_direct.cl's REP
            return None
        return self._direct_defines(g, F, fv, nf, (f"TAPS1={taps}",)), fv * nf

    def _conv_direct_dw1(self, x, dy, dw, n, g, F, db, defines, per):
        rows = n * g.OH
        parts = max(1, min(rows, cdiv(64 * self.rt.device.max_compute_units, F // per)))
        size = g.KH * g.KW * F
        buf = self._scratch("conv_direct_dw", 4 * parts * size)
        bias_buf = self._scratch("conv_direct_db", 4 * parts * F)
        local = (1, 1) if self.rt.kind == "cpu" else None
        self._k("conv_direct", "conv_direct_dw1", defines)(
            self.q, (F // per, parts), local, x, dy, buf, bias_buf, rows)
        self._sum_parts(buf, parts, size, dw, self._dummy, 0, ACT_ID["linear"], 0)
        if db is not None:
            self._sum_parts(bias_buf, parts, F, db, self._dummy, 0, ACT_ID["linear"], 0)

    def _dw_parts(self, g, F, items, rows, size):
        """conv_direct_dw's parts (blocks of output rows, summed after): enough work-items for
        the cores, and blocks whose input and output gradient rows fit in a core's cache
        (DW_BLOCK bytes): each work-item of a part reads them all, one tap's channels by one
        block of filters, so a block read from memory serves every work-item while it is in
        cache. The parts' partial sums are written and summed after, so there are at most as
        many as keep that traffic under half the rows' own (and 16 MiB)."""
        parallel = cdiv(64 * self.rt.device.max_compute_units, items)
        row_bytes = 4 * (g.OW * F + g.SH * g.W * g.C)  # a row of dy, the input rows it adds
        cached = cdiv(rows * row_bytes, DW_BLOCK)
        most = max(1, min(rows * row_bytes // 2, 16 << 20) // (4 * size))
        return max(1, min(rows, max(parallel, min(cached, most))))

    def conv_programs(self, g, F, groups=1, backward=True, dx=True):
        """(files, defines, prelude) of the programs a convolution of F filters over geometry
        g builds (its plan's direct kernels, conv.cl at its geometry for columns): for
        Runtime.prebuild. backward: its backward runs; dx: a gradient flows to its input."""
        plan = self.conv_plan(g, F, groups)
        defines = []
        if plan.forward:
            defines.append(self._direct_forward_defines(g, F)[0])
        if backward and plan.dw:
            one = self._dw1_defines(g, F)
            defines.append(one[0] if one is not None else self._dw_defines(g, F)[0])
        if backward and dx and plan.dx:
            defines += [self._flip_defines(g, F),
                        self._direct_forward_defines(self._dx_geometry(g, F), g.C)[0]]
        specs = [(self._files("conv_direct", d), d, self._prelude) for d in defines]
        one_by_one = g.KH == g.KW == g.SH == g.SW == 1 and groups == 1
        if not one_by_one and (not plan.forward or (backward and dx and not plan.dx)):
            d = self._geom_defines(g)  # im2col, col2im
            specs.append((self._files("conv", d), d, self._prelude))
        if groups > 1:  # swap_outer
            specs.append((self._files("conv"), (), self._prelude))
        return specs

    def column_programs(self, *geometries):
        """(files, defines, prelude) of conv.cl at each geometry (im2col, col2im, pooling):
        for Runtime.prebuild (Conv3D's stages, the 3-D poolings')."""
        return [(self._files("conv", d), d, self._prelude)
                for d in dict.fromkeys(self._geom_defines(g) for g in geometries)]

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
        return not avg and tiled_windows(g)

    # work-groups for the pooling kernels on CPUs (clkernels/conv.cl: PoCL's own pick took
    # twice as long on an input in cache, about as long inside a training step)
    POOL_GROUP = 64

    def _pool_grid(self, items):
        return (*self._padded(items, self.POOL_GROUP), items)

    def pool_forward(self, x, y, arg, n, g, avg):
        """g: a PoolGeometry."""
        outputs = n * g.OH * g.OW * g.C
        if n and arg is not None and self._tiled_windows(g, avg):
            name, per = (("max_pool_forward_tiled8", 8) if g.C % 8 == 0 else
                         ("max_pool_forward_tiled", 1))
            grid, local, items = self._pool_grid(outputs // per)
            self._conv_k(name, g)(self.q, grid, local, x, y, arg, items)
            return
        if n and g.C % 8 == 0:
            grid, local, items = self._pool_grid(outputs // 8)
            self._conv_k("pool_forward8", g)(
                self.q, grid, local, x, y, self._or_dummy(arg), g.PB, g.PR, g.INC, int(avg),
                items)
        elif n:
            self._conv_k("pool_forward", g)(
                self.q, (outputs,), None, x, y, self._or_dummy(arg),
                *g, int(avg))

    def pool_backward(self, dy, arg, dx, n, g, avg, accumulate=False, y=None, act="linear"):
        """dx (+)= the pooling's input gradient. act (max pooling with tiled windows only,
        y its output): its input is an activation's output whose derivative act_grad takes
        from it (not NEEDS_INPUT); dx is then the gradient of that activation's input
        (Layer.folds_activation)."""
        if act != "linear" and not (self._tiled_windows(g, avg) and y is not None):
            raise ValueError("an activation folds only into max pooling with tiled windows")
        if n and self._tiled_windows(g, avg):
            if not accumulate and (g.OH * g.KH < g.H or g.OW * g.KW < g.W):
                self.fill(dx, n * g.H * g.W * g.C)  # rows/columns no window covers
            name, per = (("max_pool_backward_tiled8", 8) if g.C % 8 == 0 else
                         ("max_pool_backward_tiled", 1))
            grid, local, items = self._pool_grid(n * g.OH * g.OW * g.C // per)
            self._conv_k(name, g)(
                self.q, grid, local, dy, arg, dx, int(accumulate), self._or_dummy(y),
                ACT_ID[act], items)
            return
        if n and g.C % 8 == 0:
            grid, local, items = self._pool_grid(n * g.H * g.W * g.C // 8)
            self._conv_k("pool_backward8", g)(
                self.q, grid, local, dy, self._or_dummy(arg), dx, g.PB, g.PR, g.INC, int(avg),
                int(accumulate), items)
        elif n:
            self._conv_k("pool_backward", g)(
                self.q, (n * g.H * g.W * g.C,), None, dy, self._or_dummy(arg), dx,
                *g, int(avg), int(accumulate))

    def global_pool_forward(self, x, y, arg, n, S, C, avg):
        if n and avg and C % self.ew == 0:  # EW channels a work-item
            self._k("conv", "global_avg_pool_forward_ew")(
                self.q, (C // self.ew, n), None, x, y, S, C)
        elif n:
            self._k("conv", "global_pool_forward")(
                self.q, (C, n), None, x, y, self._or_dummy(arg), S, int(avg))

    def global_pool_backward(self, dy, arg, dx, n, S, C, avg, accumulate=False):
        if n and S and avg and C % self.ew == 0:
            self._k("conv", "global_avg_pool_backward_ew")(
                self.q, (C // self.ew, S, n), None, dy, dx, S, C, int(accumulate))
        elif n:
            self._k("conv", "global_pool_backward")(
                self.q, (n * S * C,), None, dy, self._or_dummy(arg), dx, S, C,
                int(avg), int(accumulate))
