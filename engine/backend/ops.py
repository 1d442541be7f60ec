"""The op library: Python wrappers that enqueue clkernels on a Runtime's queue. Layers,
losses, metrics and optimizers call these; nothing here waits for the device."""
import numpy as np

from layerloom.core.activations import ACT_ID, NEEDS_INPUT, ROW_WISE, cl_prelude
from layerloom.backend.grid import cdiv
from layerloom.backend.conv_ops import ConvOps
from layerloom.backend.gemm import GemmOps
from layerloom.backend.rnn_ops import RnnOps
from layerloom.backend.attention_ops import AttentionOps
from layerloom.backend.augment_ops import AugmentOps
from layerloom.backend.depthwise_ops import DepthwiseOps
from layerloom.backend.activation_ops import ActivationOps
from layerloom.backend.norm_ops import NormOps
from layerloom.backend.primitive_ops import PrimitiveOps


class Tensor:
    """A device buffer viewed as `rows` x per-row shape. `shape` excludes the batch axis."""
    __slots__ = ("buf", "shape", "size")

    def __init__(self, buf, shape):
        self.buf = buf
        self.shape = tuple(shape)
        self.size = int(np.prod(self.shape)) if self.shape else 1

    @property
    def cols(self):
        return self.shape[-1] if self.shape else 1

    def __repr__(self):
        return f"Tensor{self.shape}"


class Ops(GemmOps, ConvOps, RnnOps, AttentionOps, DepthwiseOps, AugmentOps, NormOps,
          ActivationOps, PrimitiveOps):
    """Every op, on one runtime. GEMM dispatch lives in engine/backend/gemm.py, convolution and
    pooling in engine/backend/conv_ops.py, the recurrent layers' ops in engine/backend/rnn_ops.py,
    attention in attention_ops.py, depthwise and transposed convolution in depthwise_ops.py,
    preprocessing and augmentation in augment_ops.py, the grouped normalisations and
    Normalization's statistics in norm_ops.py, the activation layers in activation_ops.py, the
    Primitives category's in primitive_ops.py;
    BatchNormalization, LayerNormalization and the rest here."""

    def __init__(self, runtime, ew=None):
        self.rt = runtime
        self.q = runtime.queue
        self._dummy = runtime.empty(4)
        self._scratch_bufs = {}
        self._recording = None  # a list while gemm records a plan (_enq)
        self._gemm_plans = {}
        # elementwise kernels take EW elements per work-item on CPUs (see vector.cl), 8 or
        # the widest the compiler takes if narrower; tests pass ew=1 to run the GPU form here
        self.ew = ew or (min(8, runtime.caps.vector_width) if runtime.kind == "cpu" else 1)
        self._prelude = cl_prelude() + f"#define EW {self.ew}\n"
        self._init_gemm(runtime)

    def _or_dummy(self, buf):
        return buf if buf is not None else self._dummy

    # Kernel files that need no -D defines and that every fit uses (the optimizer update, the
    # losses and metrics, fills and copies), built together as one program: PoCL spends ~30 ms
    # loading each program even from its cache, so five small programs would cost every first
    # epoch ~0.1 s more than one. The layers' own kernel files (conv, norm, rnn...) are each a
    # program of their own, built only for a model that uses them: all of them in the one
    # program had cost every model's first run on a new machine ~1.2 s of compiling (PoCL 3.1:
    # 1.9 s for the eleven files against 0.6 s for these five).
    LIBRARY = ("dropout", "elementwise", "losses", "metrics", "optimizers")

    def _files(self, file, defines=()):
        """The files of the program that holds kernel file `file`'s kernels (or a tuple's, in
        order) built with `defines`: every program starts with the vector macros and the
        activations."""
        body = self.LIBRARY if not defines and file in self.LIBRARY else \
            file if isinstance(file, tuple) else (file,)
        return ("vector", "activations") + body

    def _k(self, file, name, defines=()):
        """Kernel `name` from clkernels/<file>.cl (or from the files of a tuple, in order)."""
        return self.rt.kernel(self._files(file, defines), name, defines, prelude=self._prelude)

    def startup_programs(self, widths=()):
        """(files, defines, prelude) of the programs a model's first step will build whatever
        its layers are: the library, and on CPUs the GEMM register tiles and the narrow GEMM
        for each width in `widths` (the layers' output widths) that leaves columns narrower than
        a tile. For Runtime.prebuild, so they compile while the data loads."""
        specs = [(self._files(self.LIBRARY[0]), (), self._prelude)]
        if self.gemm_path == "cpu":
            vw, mr = self.cpu_tile
            tile = (f"VW={vw}", f"MR={mr}")
            specs.append((self._files(("gemm_cpu_base", "gemm_cpu"), tile), tile, self._prelude))
            for nn in sorted({int(w) % (2 * vw) for w in widths} - {0}):
                specs.append((self._files(("gemm_cpu_base", "gemm_narrow"), tile), tile
                              + (f"NN={nn}",), self._prelude))
        return specs

    # Fixed work-group sizes on CPUs. PoCL compiles a work-group function per kernel and
    # local size at its first launch (~0.1 s each); left to choose, it picks a local size per
    # grid, and the MLP's first epoch compiled 29 functions for 15 kernels (six for Adam's six
    # parameter sizes, three for each per-row kernel: batches of 128, 96 and 16 rows).
    WG_ROWS = 16  # per-row kernels, when it divides the rows (batch sizes mostly do)
    WG_EW = 64  # EW_BODY kernels: the grid is padded to a multiple (EW_BODY skips the rest)

    def _wg(self, n):
        """The local size for a 1-D grid of n work-items that each handle a row."""
        return (self.WG_ROWS,) if self.rt.kind == "cpu" and n % self.WG_ROWS == 0 else None

    def _padded(self, items, size):
        """(global, local) for a 1-D grid of `items` work-items: on CPUs work-groups of `size`
        with the grid padded to whole groups (the kernel skips the padding), elsewhere the
        runtime's choice."""
        if self.rt.kind != "cpu":
            return (items,), None
        return (cdiv(items, size) * size,), (size,)

    def _row_blocks(self, rows):
        """(global, local) for a kernel on blocks of EW rows (vector.cl RB_START)."""
        return self._padded(cdiv(rows, self.ew), self.WG_ROWS)

    def _ew(self, file, name, n, *args):
        """An EW_BODY kernel (vector.cl) over n elements: EW per work-item, n its last
        argument."""
        if n:
            self._k(file, name)(self.q, *self._padded(cdiv(n, self.ew), self.WG_EW), *args, n)

    def _scratch(self, name, nbytes):
        """A device buffer reused by every call (the queue is in order, so a kernel is done
        with it before the next one overwrites it); grows when needed."""
        buf = self._scratch_bufs.get(name)
        if buf is None or buf.size < nbytes:
            buf = self.rt.empty(nbytes)
            self._scratch_bufs[name] = buf
        return buf

    def _sum_parts(self, parts, P, n, out, bias, bias_n, act_id, acc, ooff=0):
        self._enq(self._k("elementwise", "sum_parts"),
                  (n,), None, parts, P, n, out, bias, bias_n, act_id, acc, ooff)

    def _enq(self, k, grid, local, *args):
        """Launch kernel k, or record the launch while gemm plans one."""
        if self._recording is not None:
            self._recording.append((k, grid, local, args))
        else:
            k(self.q, grid, local, *args)

    # -- elementwise -------------------------------------------------------------------------
    def fill(self, buf, n, value=0.0):
        if n:
            self._k("elementwise", "fill")(self.q, (n,), None, buf, value)

    def copy(self, src, dst, n, accumulate=False):
        self.copy2d(src, 0, 0, dst, 0, 0, rows=1, cols=n, accumulate=accumulate)

    def copy2d(self, src, sld, soff, dst, dld, doff, rows, cols, accumulate=False):
        if rows and cols:
            self._k("elementwise", "copy2d")(
                self.q, (cols, rows), None, src, sld, soff, dst, dld, doff, int(accumulate))

    def add2(self, a, b, y, n):
        if n:
            self._k("elementwise", "add2")(self.q, (n,), None, a, b, y)

    def act_forward(self, act, x, y, rows, cols):
        if act == "linear":
            if x is not y:
                self.copy(x, y, rows * cols)
        elif act in ROW_WISE:
            if rows:
                self._k("elementwise", "softmax_forward")(
                    self.q, *self._row_blocks(rows), x, y, cols, int(act == "log_softmax"),
                    rows)
        elif rows * cols:
            self._ew("elementwise", "act_forward", rows * cols,
                     ACT_ID[act], x, y)

    def act_backward(self, act, y, dy, dx, rows, cols, accumulate=False, x=None):
        """dx (+)= dy * act'(.). x (the pre-activation) is needed only for NEEDS_INPUT."""
        if act == "linear":
            self.copy(dy, dx, rows * cols, accumulate)
        elif act in ROW_WISE:
            if rows:
                self._k("elementwise", "softmax_backward")(
                    self.q, (rows,), self._wg(rows), y, dy, dx, cols, int(act == "log_softmax"),
                    int(accumulate))
        elif rows * cols:
            if x is None and act in NEEDS_INPUT:
                raise ValueError(f"{act} backward needs the pre-activation")
            self._ew("elementwise", "act_backward", rows * cols, ACT_ID[act],
                     x if x is not None else y, y, dy, dx, int(accumulate))

    def _width(self, n):
        """EW where n (columns, channels) is a multiple of it, else 1: how many a work-item of
        a kernel with an `_ew` form takes."""
        return self.ew if n % self.ew == 0 else 1

    def _k_w(self, file, name, n):
        """(kernel, width): `name`_ew of clkernels/<file>.cl on EW of n at a time where n is a
        multiple of EW, else `name` on one."""
        w = self._width(n)
        return self._k(file, f"{name}_ew" if w > 1 else name), w

    def bias_grad(self, dy, db, rows, cols):
        """db = column sums of dy; in parts summed afterwards when there are many rows."""
        P = max(1, min(64, rows // 256))  # parts; 1 (the sums themselves) for few rows
        out = db if P == 1 else self._scratch("bias_parts", 4 * P * cols)
        k, w = self._k_w("elementwise", "col_sums", cols)
        local = (cols // w, 1) if P > 1 and cols // w <= 256 else None
        k(self.q, (cols // w, P), local, dy, out, rows, cols)
        if P > 1:
            self._sum_parts(out, P, cols, db, self._dummy, 0, 0, 0)

    # -- normalisation ------------------------------------------------------------------------
    def _norm_parts(self, name, rows, C):
        """(kernel, grid, P) of norm.cl's per-channel sums in parts (`name`, or `name`_ew on
        EW channels at a time): P blocks of rows, at least 32 rows each."""
        P = max(1, min(64, rows // 32))
        k, w = self._k_w("norm", name, C)
        return k, (C // w, P), P

    def bn_stats(self, x, rows, C, mean, var, mmean, mvar, momentum, update):
        k, grid, P = self._norm_parts("bn_stats_parts", rows, C)
        pm, pq = self._scratch("norm_parts_a", 4 * P * C), self._scratch("norm_parts_b", 4 * P * C)
        k(self.q, grid, None, x, rows, C, pm, pq)
        self._k("norm", "bn_stats_combine")(
            self.q, (C,), None, pm, pq, P, rows, mean, var, mmean, mvar, momentum, int(update))

    def bn_apply(self, x, y, rows, C, mean, var, gamma, beta, eps):
        if rows:
            self._k("norm", "bn_apply")(
                self.q, (C, rows), None, x, y, mean, var, self._or_dummy(gamma),
                self._or_dummy(beta), eps, int(gamma is not None), int(beta is not None))

    def bn_grad_sums(self, x, dy, mean, var, eps, rows, C, sdy, sdx):
        k, grid, P = self._norm_parts("bn_grad_parts", rows, C)
        pa, pb = self._scratch("norm_parts_a", 4 * P * C), self._scratch("norm_parts_b", 4 * P * C)
        k(self.q, grid, None, x, dy, mean, var, eps, rows, C, pa, pb)
        self._sum_parts(pa, P, C, sdy, self._dummy, 0, 0, 0)
        self._sum_parts(pb, P, C, sdx, self._dummy, 0, 0, 0)

    def bn_grad_input(self, x, dy, mean, var, gamma, eps, sdy, sdx, rows, C, dx, accumulate):
        if rows:
            self._k("norm", "bn_grad_input")(
                self.q, (C, rows), None, x, dy, mean, var, self._or_dummy(gamma), eps, sdy, sdx,
                rows, int(gamma is not None), dx, int(accumulate))

    def ln_forward(self, x, y, gamma, beta, mean, rstd, rows, cols, eps):
        if rows:
            self._k_w("norm", "ln_forward", cols)[0](
                self.q, (rows,), self._wg(rows), x, y, self._or_dummy(gamma),
                self._or_dummy(beta), mean, rstd, cols, eps, int(gamma is not None),
                int(beta is not None))

    def ln_backward(self, x, dy, gamma, mean, rstd, rows, cols, dx, accumulate):
        if rows:
            self._k_w("norm", "ln_backward", cols)[0](
                self.q, (rows,), self._wg(rows), x, dy, self._or_dummy(gamma), mean, rstd, cols,
                int(gamma is not None), dx, int(accumulate))

    def ln_param_grad(self, x, dy, mean, rstd, rows, cols, dgamma, dbeta):
        """dgamma and dbeta (either may be None) as column sums in parts, like bias_grad."""
        k, grid, P = self._norm_parts("ln_param_parts", rows, cols)
        pg = self._scratch("norm_parts_a", 4 * P * cols)
        pb = self._scratch("norm_parts_b", 4 * P * cols)
        k(self.q, grid, None, x, dy, mean, rstd, rows, cols, pg, pb)
        for parts, out in ((pg, dgamma), (pb, dbeta)):
            if out is not None:
                self._sum_parts(parts, P, cols, out, self._dummy, 0, 0, 0)

    # -- embedding ---------------------------------------------------------------------------
    def embed(self, idx, W, y, rows, V, D):
        if rows:
            self._k("embedding", "embed")(
                self.q, (D, rows), None, idx, W, y, V, D)

    def embed_grad(self, idx, dy, dW, rows, V, D):
        self.fill(dW, V * D)
        self._k("embedding", "embed_grad")(
            self.q, (D,), None, idx, dy, dW, rows, V, D)

    # -- merges -------------------------------------------------------------------------------
    BINARY = {"add": 0, "subtract": 1, "multiply": 2, "maximum": 3, "minimum": 4}

    def binary(self, op, a, b, y, n):
        if n:
            self._k("merge", "binary")(
                self.q, (n,), None, self.BINARY[op], a, b, y)

    def scaled(self, g, dx, n, alpha, accumulate=False):
        if n:
            self._k("merge", "scaled")(
                self.q, (n,), None, g, dx, alpha, int(accumulate))

    def pick_grad(self, x, y, dy, dx, claimed, n, first, accumulate=False):
        if n:
            self._k("merge", "pick_grad")(
                self.q, (n,), None, x, y, dy, dx, claimed, int(first), int(accumulate))

    def row_dot(self, a, b, y, rows, cols):
        if rows:
            self._k("merge", "row_dot")(
                self.q, (rows,), self._wg(rows), a, b, y, cols)

    def row_dot_grad(self, dy, other, dx, rows, cols, accumulate=False):
        if rows:
            self._k("merge", "row_dot_grad")(
                self.q, (cols, rows), None, dy, other, dx, cols, int(accumulate))

    # -- lambda -----------------------------------------------------------------------------------
    def _lambda_kernel(self, tree, name):
        from layerloom.core.expr import INPUT_NAMES, derivative, to_c
        args = ", ".join(INPUT_NAMES)
        macros = [f"#define LAMBDA_Y({args}) {to_c(tree)}"]
        for v in INPUT_NAMES:
            macros.append(f"#define LAMBDA_D{v.upper()}({args}) {to_c(derivative(tree, v))}")
        prelude = self._prelude + "\n".join(macros) + "\n"
        return self.rt.kernel(("vector", "activations", "lambda"), name, prelude=prelude)

    def lambda_forward(self, tree, xs, y, n):
        if n:
            k = self._lambda_kernel(tree, "lambda_forward")
            bufs = [x for x in xs] + [self._dummy] * (4 - len(xs))
            k(self.q, (n,), None, len(xs), *bufs, y)

    def lambda_backward(self, tree, xs, dy, dxs, accs, n):
        if not n:
            return
        k = self._lambda_kernel(tree, "lambda_backward")
        bufs = [x for x in xs] + [self._dummy] * (4 - len(xs))
        outs = [d if d is not None else self._dummy for d in dxs] + [self._dummy] * (4 - len(dxs))
        mask = sum(1 << j for j, d in enumerate(dxs) if d is not None)
        acc = sum(1 << j for j, a in enumerate(accs) if a)
        k(self.q, (n,), None, len(xs), *bufs, dy, *outs, mask, acc)

    # -- index maps -----------------------------------------------------------------------------
    def gather_map(self, x, y, mp, n, in_size, out_size):
        if n and out_size:
            self._k("shape", "gather_map")(
                self.q, (out_size, n), None, x, y, mp, in_size, out_size)

    def gather_map_grad(self, dy, dx, offs, src, n, in_size, out_size, accumulate=False):
        if n and in_size:
            self._k("shape", "gather_map_grad")(
                self.q, (in_size, n), None, dy, dx, offs, src, in_size, out_size, int(accumulate))

    # -- dropout ---------------------------------------------------------------------------------
    def dropout(self, x, y, n, rate, seed, salt, step, accumulate=False):
        if n:
            self._k("dropout", "dropout")(
                self.q, (cdiv(n, 4),), None, x, y, n, rate, seed & 0xFFFFFFFF,
                salt & 0xFFFFFFFF, step & 0xFFFFFFFF, int(accumulate))

    def dropout_grouped(self, x, y, n, rate, seed, salt, step, S, C, accumulate=False):
        if n:
            self._k("dropout", "dropout_grouped")(
                self.q, (n,), None, x, y, rate, seed & 0xFFFFFFFF, salt & 0xFFFFFFFF,
                step & 0xFFFFFFFF, S, C, int(accumulate))

    def gaussian_noise(self, x, y, n, stddev, seed, salt, step):
        if n:
            self._k("dropout", "gaussian_noise")(
                self.q, (n,), None, x, y, stddev, seed & 0xFFFFFFFF, salt & 0xFFFFFFFF,
                step & 0xFFFFFFFF)

    def philox(self, counter, key):
        out = self.rt.empty(16)
        self._k("dropout", "philox_kat")(
            self.q, (1,), None, *counter, *key, out)
        res = np.empty(4, dtype=np.uint32)
        self.rt.cl.enqueue_copy(self.q, res, out)
        return res

    # -- losses, metrics, reductions -------------------------------------------------------
    def loss(self, kernel, pred, target, rows, cols, scale, loss_out, grad_out, sparse=None):
        """A loss kernel (losses.cl, on blocks of rows); sparse: None for the losses without
        the argument."""
        if not rows:
            return
        flag = () if sparse is None else (int(sparse),)
        self._k("losses", kernel)(
            self.q, *self._row_blocks(rows), pred, target, cols, *flag, scale, loss_out,
            grad_out, rows)

    def regression_loss(self, kind, delta, pred, target, rows, cols, scale, loss_out, grad_out):
        if rows:
            self._k("losses", "regression")(
                self.q, *self._row_blocks(rows), pred, target, cols, scale, loss_out, grad_out,
                kind, delta, rows)

    def metric(self, kernel, pred, target, rows, cols, out, threshold=None, target_cols=None):
        """A per-row metric kernel; abs_err and sq_err take targets `target_cols` wide (cols,
        or 1: a class index against every column)."""
        if not rows:
            return
        if kernel in ("abs_err", "sq_err"):
            self._k("metrics", kernel)(
                self.q, (rows,), self._wg(rows), pred, target, cols,
                cols if target_cols is None else target_cols, out)
        elif threshold is None:
            self._k("metrics", kernel)(
                self.q, (rows,), self._wg(rows), pred, target, cols, out)
        else:
            self._k("metrics", kernel)(
                self.q, (rows,), self._wg(rows), pred, target, cols, threshold, out)

    def top_k(self, pred, target, rows, cols, k, sparse, out):
        if rows:
            self._k("metrics", "top_k")(
                self.q, (rows,), self._wg(rows), pred, target, cols, k, int(sparse), out)

    def binary_counts(self, pred, target, rows, cols, threshold, which, out):
        if rows:
            self._k("metrics", "binary_counts")(
                self.q, (rows,), self._wg(rows), pred, target, cols, threshold, which, out)

    def auc_counts(self, pred, target, n, T, acc, slot):
        if n:
            self._k("metrics", "auc_counts")(
                self.q, (T,), None, pred, target, n, T, acc, slot)

    def reduce_sum(self, v, n, acc, slot):
        self._k("metrics", "reduce_sum")(
            self.q, (1,), None, v, n, acc, slot)

    # -- optimizers --------------------------------------------------------------------------
    def sgd(self, w, g, v, n, lr, momentum, nesterov):
        self._ew("optimizers", "sgd", n,
                 w, g, v, lr, momentum, int(nesterov))

    def rmsprop(self, w, g, v, a, m, n, lr, rho, momentum, eps, centered):
        self._ew("optimizers", "rmsprop", n,
                 w, g, v, a, m, lr, rho, momentum, eps, int(centered))

    def adagrad(self, w, g, acc, n, lr, eps):
        self._ew("optimizers", "adagrad", n, w, g, acc, lr, eps)

    def nadam(self, w, g, m, v, n, lr, b1, b2, c1, c2, c3, eps):
        self._ew("optimizers", "nadam", n,
                 w, g, m, v, lr, b1, b2, c1, c2, c3, eps)

    def decay(self, w, n, factor):
        self._k("optimizers", "decay")(self.q, (n,), None, w, factor)

    def clip_value(self, g, n, limit):
        self._k("optimizers", "clip_value")(self.q, (n,), None, g, limit)

    def sum_squares(self, g, n, acc, slot):
        self._k("optimizers", "sum_squares")(
            self.q, (1,), None, g, n, acc, slot)

    def clip_norm(self, g, n, acc, slot, limit):
        self._k("optimizers", "clip_norm")(
            self.q, (n,), None, g, acc, slot, limit)

    def reg_grad(self, w, dw, n, l1, l2):
        self._k("optimizers", "reg_grad")(self.q, (n,), None, w, dw, l1, l2)

    def reg_penalty(self, w, n, l1, l2, weight, acc, slot):
        self._k("optimizers", "reg_penalty")(
            self.q, (1,), None, w, n, l1, l2, weight, acc, slot)

    def adam(self, w, g, m, v, n, alpha, b1, b2, eps):
        self._ew("optimizers", "adam", n,
                 w, g, m, v, alpha, b1, b2, eps)
