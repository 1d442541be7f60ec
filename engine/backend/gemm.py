"""GEMM dispatch: which kernel computes C = act(op(A) op(B) + bias) (+ C) for a shape on a
device. CPUs get gemm_cpu.cl's register tiles, gemm_narrow.cl's narrow kernels and their
helpers, GPUs gemm_local.cl's local-memory tiles, and gemm.cl's portable kernel covers what
neither does. A mixin of Ops (engine/backend/ops.py), whose kernel lookup (_k), scratch buffers and
queue it uses."""
from typing import NamedTuple

from layerloom.core.activations import ACT_ID
from layerloom.backend.grid import cdiv

TM, TN = 4, 4  # the portable kernel's register tile
GEMM_PLANS = 2048  # planned GEMM calls kept per Ops (a recurrent layer plans one per time step)


def transpose_b_first(M, N, K):
    """Whether C = A . B^T (B N x K) on a CPU transposes B into panels for the register
    tiles, or runs gemm_nt's dot products on B as it is. The transpose costs ~0.5 ns per
    element of B and the tiles then save a share of every row's work, so it pays from ~96
    rows (measured: 128 x 784 x 256 376 us vs 422, 64 rows 235 vs 182), for many rows per
    column (a convolution's dX over every position) and for a short K, where the dot
    products' horizontal sums outweigh their K loop."""
    return M >= 96 or M >= 4 * N or K <= 128

CPU_ROWS = {16: 8, 8: 6, 4: 4}  # register tile rows (MR) per vector width


class CpuGemmArgs(NamedTuple):
    """The CPU GEMM kernels' arguments in their order (GEMM_PARAMS, gemm_cpu_base.cl): the
    block of C that is N columns wide from element c_off (ldc: C's row length), its operands
    from a_off and b_off with their row lengths, the bias from column bias_at (-1: none); an
    op passes *args. trans_a, accumulate and act (its ACT_ID) as ints."""
    M: int
    N: int
    K: int
    A: object
    lda: int
    B: object
    ldb: int
    C: object
    ldc: int
    bias: object
    accumulate: int
    a_off: int
    b_off: int
    c_off: int
    trans_a: int
    act: int
    bias_at: int


def local_gemm_tile(device):
    """(TS, WPT) for gemm_local.cl: the largest tile whose work-group (TS x TS/WPT) and local
    memory (two TS x TS tiles) the device allows."""
    for ts, wpt in ((32, 8), (16, 4), (8, 2), (4, 4)):
        if (ts * ts // wpt <= device.max_work_group_size
                and ts <= min(device.max_work_item_sizes[:2])
                and 4 * (2 * ts * ts + ts) <= device.local_mem_size):
            return ts, wpt
    return 1, 1


class GemmOps:
    def _init_gemm(self, runtime):
        # CPU register tile: the vector width the device's compiler really takes (probed:
        # engine/backend/capabilities.py), rows so that 2*MR accumulators plus operands fit the
        # vector registers (16 on AVX2, 32 on AVX-512)
        vw = runtime.caps.vector_width
        self.cpu_tile = (vw, CPU_ROWS[vw])
        # other devices (GPUs): local-memory tiles, the largest the device's limits allow
        self.gemm_path = "cpu" if runtime.kind == "cpu" else "local"
        self.local_tile = local_gemm_tile(runtime.device)

    def gemm(self, M, N, K, A, B, C, trans_a=False, trans_b=False, bias=None, act="linear",
             accumulate=False, a_off=0, b_off=0, c_off=0):
        """C[M,N] = act(op(A) op(B) + bias) (+ C). Buffers are row-major and contiguous;
        a_off, b_off, c_off are element offsets of the matrices within their buffers.
        On CPUs (gemm_cpu.cl): split-K for few outputs over a long K, narrow kernels for
        outputs narrower than a register tile, otherwise whole register tiles with the ragged
        right edge on the narrow kernels and the bottom one on the portable kernel; elsewhere
        gemm_local.cl does all.
        Each distinct call (a layer's GEMM, the same every step) is planned once: its
        launches are kept as kernels with their arguments bound, so a repeat only enqueues
        them (choosing the kernels and setting 17 arguments had cost 3-10 us per call, as
        long as a 10-wide GEMM's kernel runs)."""
        for k, grid, local, _ in self._gemm_plan((M, N, K, A, B, C, trans_a, trans_b, bias, act,
                                                  accumulate, a_off, b_off, c_off)):
            self.rt.enqueue(k, grid, local)

    def gemm_launches(self, M, N, K, A, B, C, trans_a=False, trans_b=False, bias=None,
                      act="linear", accumulate=False, a_off=0, b_off=0, c_off=0):
        """The launches gemm makes for this call, as (kernel name, global size, local size),
        without running them (bench/gemm.py times launches of an empty kernel on the same
        grids: what a call costs before any arithmetic)."""
        return [(k.function_name, grid, local) for k, grid, local, _ in self._gemm_plan(
            (M, N, K, A, B, C, trans_a, trans_b, bias, act, accumulate, a_off, b_off, c_off))]

    def _gemm_plan(self, call):
        """The recorded launches of one gemm call: planned on first use, then kept."""
        # the kernel choice also depends on these (tests set them to run other devices' forms)
        key = call + (self.gemm_path, self.cpu_tile, self.local_tile)
        plan = self._gemm_plans.get(key)
        if plan is None:
            if len(self._gemm_plans) >= GEMM_PLANS:  # drop the oldest
                del self._gemm_plans[next(iter(self._gemm_plans))]
            self._recording = []
            try:
                self._gemm_dispatch(*call)
                # each launch keeps its arguments: bound kernels do not hold the buffers
                # alive, and a scratch buffer that grows is replaced
                plan = [(self.rt.bind(k, args), grid, local, args)
                        for k, grid, local, args in self._recording]
            finally:
                self._recording = None
            self._gemm_plans[key] = plan
        return plan

    def _gemm_dispatch(self, M, N, K, A, B, C, trans_a, trans_b, bias, act, accumulate,
                       a_off, b_off, c_off):
        """gemm's kernel choice: launches through _enq, recorded into a plan."""
        if M == 0 or N == 0:
            return
        if self.gemm_path == "local":
            self._gemm_local(M, N, K, A, B, C, trans_a, trans_b, bias, act, accumulate,
                             (a_off, b_off, c_off))
            return
        vw, mr = self.cpu_tile
        short_k = K < 2 * vw  # gemm_tile_bt gathers B^T itself, no transpose launch
        split_k = K >= 4096 and K >= 8 * max(M, N)  # few outputs, long K
        has_bias = bias is not None
        args = CpuGemmArgs(M, N, K, A, M if trans_a else K, B, K if trans_b else N, C, N,
                           self._or_dummy(bias), int(accumulate), a_off, b_off, c_off,
                           int(trans_a), ACT_ID[act], 0 if has_bias else -1)

        def portable(i0, j0, m, n, given=args, trans_b=trans_b):
            """The portable kernel (ragged bottom edge) on a block of C, reading B as given."""
            self._gemm_portable(given, i0, j0, m, n, trans_b, act, has_bias)

        if K == 0 or (trans_a and trans_b):  # act(bias) alone; both transposed: portable
            portable(0, 0, M, N)
            return
        panels = False  # B transposed into K x 2VW panels (gemm_tile's packed layout)
        if trans_b and not trans_a and not short_k and transpose_b_first(M, N, K):
            # transpose B (N x K) into scratch and run the register tiles: straight into
            # panels unless the product goes to the split-K or narrow kernels, which read a
            # plain K x N matrix
            pw = 2 * vw if N >= 2 * vw and not split_k else N
            panels = pw != N
            args = args._replace(B=self._transposed_b(B, N, K, b_off, pw),
                                 ldb=2 * vw if panels else N, b_off=0)
            trans_b = False
        if not trans_b:
            if split_k:
                self._gemm_split_k(args)
                return
            if N < 2 * vw:  # narrower than a register tile
                self._gemm_narrow(args, N)
                return
        self._gemm_tiles(args, trans_b, short_k, panels, portable)

    def _transposed_b(self, B, N, K, b_off, pw):
        """B (N x K, from b_off) transposed into scratch as K x pw panels (pw = N: one plain
        K x N matrix)."""
        bt = self._scratch("gemm_bt", 4 * K * cdiv(N, pw) * pw)
        self._enq(self._k("elementwise", "transpose"),
                  (cdiv(K, 8), cdiv(N, 8)), None, B, bt, N, K, b_off, pw)
        return bt

    def _gemm_tiles(self, args, trans_b, short_k, panels, portable):
        """The CPU register tiles on C's whole tiles (gemm_tile_bt for B^T with a short K,
        gemm_nt for B^T, else gemm_tile), then the ragged edges: the right strip on the narrow
        kernels (the portable one for B^T), the bottom strip that gemm_nt leaves on the portable
        kernel. portable(i0, j0, m, n) runs that kernel on a block."""
        vw, mr = self.cpu_tile
        M, N, K = args.M, args.N, args.K
        tm, tn = (4, 4) if trans_b and not short_k else (mr, 2 * vw)
        m_full, n_full = M - M % tm, N - N % tn
        # the register tiles (gemm_tile, gemm_tile_bt) guard a last, partial row tile: they
        # cover every row; gemm_nt leaves a bottom strip to the portable kernel
        m_tiles = m_full if trans_b and not short_k else M
        if not (m_tiles and n_full):
            portable(0, 0, M, N)
            return
        grid = (n_full // tn, cdiv(m_tiles, tm))
        if trans_b and short_k:
            # row tiles per work-item: enough work-items for the cores, each gathering its
            # columns of B^T once for as many tiles as it can
            rows = max(1, grid[0] * grid[1] // (4 * self.rt.device.max_compute_units))
            self._enq(self._cpu_k("gemm_tile_bt"),
                      (grid[0], cdiv(grid[1], rows)), (1, 1), *args, rows)
        elif trans_b:
            self._enq(self._cpu_k("gemm_nt"), grid, (1, 1), *args)
        else:
            self._gemm_tile(args, grid, n_full, tn, panels)
        if n_full < N and not trans_b:  # right strip, all rows: the narrow kernels (B's last,
            # partial panel when B^T went into panels)
            strip = args._replace(N=N - n_full,
                                  b_off=n_full * K if panels else args.b_off + n_full,
                                  c_off=args.c_off + n_full,
                                  bias_at=n_full if args.bias_at >= 0 else -1)
            self._gemm_narrow(strip, N - n_full)
        elif n_full < N:
            portable(0, n_full, M, N - n_full)
        if m_tiles < M:  # bottom strip under gemm_nt, whole-tile columns
            portable(m_full, 0, M - m_full, n_full)

    def _gemm_tile(self, args, grid, n_full, tn, panels):
        """gemm_tile on the first n_full columns. A large B is packed into panels first (unless
        transposed into them already) and run with a rows-first grid: the work-items that run
        one after another share a B panel."""
        packed = panels or (args.K * n_full >= 1 << 18 and args.M >= 64)
        if packed and not panels:
            b = self._scratch("gemm_panels", 4 * args.K * n_full)
            self._enq(self._cpu_k("pack_panels"),
                      (n_full // tn, args.K), None, args.B, b, args.K, args.ldb, args.b_off)
            args = args._replace(B=b, ldb=tn, b_off=0)
        self._enq(self._cpu_k("gemm_tile"),
                  grid[::-1] if packed else grid, (1, 1), *args, int(packed))

    def _cpu_k(self, name, defines=()):
        """A CPU GEMM kernel: the narrow ones (defines NN=) from gemm_narrow.cl, a small
        program per width, the others from gemm_cpu.cl, one program."""
        vw, mr = self.cpu_tile
        file = "gemm_narrow" if name.startswith("gemm_narrow") else "gemm_cpu"
        return self._k(("gemm_cpu_base", file), name, (f"VW={vw}", f"MR={mr}") + defines)

    def _compiled(self, name, trans_a, trans_b, act, has_bias, tile):
        """Kernel `name` of the GEMMs with transposes, activation and bias compiled in (gemm.cl,
        gemm_local.cl; their operand addressing in gemm_operands.cl)."""
        return self._k(("gemm_operands", name), name,
                       (f"TRANS_A={int(trans_a)}", f"TRANS_B={int(trans_b)}",
                        f"ACT={ACT_ID[act]}", f"HAS_BIAS={int(has_bias)}") + tile)

    def _gemm_local(self, M, N, K, A, B, C, trans_a, trans_b, bias, act, accumulate, offs):
        """gemm_local.cl (GPUs): the whole product, ragged edges included, in one launch."""
        ts, wpt = self.local_tile
        k = self._compiled("gemm_local", trans_a, trans_b, act,
                           bias is not None, (f"TS={ts}", f"WPT={wpt}"))
        self._enq(k, (cdiv(N, ts) * ts, cdiv(M, ts) * (ts // wpt)), (ts, ts // wpt), M, N, K,
                  A, M if trans_a else K, B, K if trans_b else N, C, N, self._or_dummy(bias),
                  int(accumulate), *offs)

    def _gemm_narrow(self, args, n):
        """The narrow kernels on n (< 2 VW) columns: VW rows as one vector per column when A
        is transposed and n < VW, else MR rows x one or two masked vectors per work-item.
        args as for the CPU kernels."""
        vw, mr = self.cpu_tile
        if n < vw and args.trans_a and args.M % vw == 0:
            name, grid = "gemm_narrow_ta", (args.M // vw,)
        else:
            name, grid = "gemm_narrow_tile", (cdiv(args.M, mr),)
        self._enq(self._cpu_k(name, (f"NN={n}",)), grid, (1,), *args)

    def _gemm_split_k(self, args):
        """Parts of K summed in parallel into scratch, then one sum with the epilogue (bias,
        activation, accumulation, output offset). args: a CpuGemmArgs."""
        M, N, K = args.M, args.N, args.K
        P = min(64, K // 512)
        KC = cdiv(K, P)
        parts = self._scratch("gemm_parts", 4 * P * M * N)
        vw, mr = self.cpu_tile
        # the parts: no accumulation, offset or bias
        part = args._replace(accumulate=0, c_off=0, bias_at=-1)
        n_full = N - N % (2 * vw)
        if n_full:  # C's whole register tiles across N
            self._enq(self._cpu_k("gemm_tile_split_k"),
                      (n_full // (2 * vw), cdiv(M, mr), P), (1, 1, 1), *part, parts, KC, N)
        if n_full < N:  # the columns right of them, on the narrow tile (a scalar kernel had
            # taken 60x as long for 16 filters on AVX-512)
            strip = part._replace(N=N - n_full, b_off=args.b_off + n_full)
            self._enq(self._cpu_k("gemm_narrow_split_k", (f"NN={N - n_full}",)),
                      (cdiv(M, mr), P), (1, 1), *strip, parts, KC, N, n_full)
        self._sum_parts(parts, P, M * N, args.C, args.bias, N if args.bias_at >= 0 else 0,
                        args.act, args.accumulate, args.c_off)

    def _gemm_portable(self, a, i0, j0, m, n, trans_b, act, has_bias):
        """The portable kernel (gemm.cl) on the m x n block of C from row i0, column j0, its
        operands those of the CpuGemmArgs a; the transposes, activation and bias flag are
        compiled in."""
        k = self._compiled("gemm", a.trans_a, trans_b, act, has_bias, (f"TM={TM}", f"TN={TN}"))
        self._enq(k, (cdiv(n, TN), cdiv(m, TM)), None, m, n, a.K, i0, j0, a.A, a.lda, a.B, a.ldb,
                  a.C, a.ldc, a.bias, a.accumulate, a.a_off, a.b_off, a.c_off)
