"""The attention layers' ops (clkernels/attention.cl): a batched strided matrix product over
samples and heads (bgemm: each head's slice of a projection read in place, on the dense GEMM's
register tiles on CPUs and local-memory tiles on GPUs, bgemm_tiles.cl), the
row softmax with an optional causal mask and its backward, the additive (Bahdanau / concat)
scores and their backward, and PositionEmbedding's broadcast and table gradient. A mixin of
Ops (engine/backend/ops.py), whose kernel lookup (_k), grid padding (_padded) and queue it
uses; the layers call ops.gemm for the projections and ops.dropout for the probabilities.
One forward+backward of a (32, 128, 128) self-attention with 4 heads took 0.59x the time of
torch's nn.MultiheadAttention on the same 2-core EPYC (PoCL; measured once, under load)."""
from layerloom.backend.gemm import CPU_ROWS
from layerloom.backend.grid import cdiv

BT = 4  # the portable bgemm's block of C per work-item (attention.cl)


class Strided:
    """One operand of bgemm: a buffer, the element offset of matrix (n, h) as n * sn + h * sh,
    and the strides of its rows and columns."""
    __slots__ = ("buf", "sn", "sh", "sr", "sc")

    def __init__(self, buf, sn, sh, sr, sc):
        self.buf, self.sn, self.sh, self.sr, self.sc = buf, sn, sh, sr, sc

    @property
    def T(self):
        """The same matrices transposed (rows and columns swapped), read in place."""
        return Strided(self.buf, self.sn, self.sh, self.sc, self.sr)


def heads_view(buf, steps, heads, dim):
    """The (steps, dim) matrix of each head in a (samples, steps, heads, dim) tensor (a
    projection's output: Keras' EinsumDense layout)."""
    return Strided(buf, steps * heads * dim, dim, heads * dim, 1)


def stacked_view(buf, rows, cols, heads=1):
    """(rows, cols) matrices stacked contiguously, sample-major then head (scores shaped
    (samples, heads, rows, cols))."""
    return Strided(buf, heads * rows * cols, rows * cols, cols, 1)


def bgemm_cpu_tile(N, widest, widths):
    """The register tile (VW, MR) of bgemm's CPU form for products N columns wide: of the
    vector widths the device takes up to its own tile's (`widest`), the one that leaves the
    fewest columns to the portable kernel, the widest of those; None where N is narrower than
    every tile."""
    fits = [vw for vw in CPU_ROWS if vw <= widest and vw in widths and 2 * vw <= N]
    if not fits:
        return None
    vw = min(fits, key=lambda w: (N % (2 * w), -w))
    return vw, CPU_ROWS[vw]


def _strided_args(*operands):
    """Each operand's buffer, sample and head strides, row and column strides, in order."""
    args = []
    for t in operands:
        args += [t.buf, t.sn, t.sh, t.sr, t.sc]
    return args


class AttentionOps:
    def bgemm(self, M, N, K, batch, heads, A, B, C, alpha=1.0, accumulate=False):
        """C[b] = alpha * A[b] . B[b] (+ C[b]) for every sample and head, b = n * heads + h,
        on Strided operands (A: M x K, B: K x N, C: M x N). CPUs: the dense GEMM's register
        tiles with a batch dimension (bgemm_tiles.cl) on C's whole tiles of columns, B packed
        first when its columns are not contiguous, the ragged right strip on the portable
        kernel (attention.cl); GPUs: local-memory tiles, the whole product; the portable
        kernel where C's columns are not contiguous."""
        if not (M and N and batch * heads):
            return
        if K == 0:
            raise ValueError("bgemm with an empty inner dimension")
        bh = batch * heads
        j_start = 0
        if self.gemm_path == "local":
            ts, wpt = self.local_tile
            k = self._k(("gemm_operands", "bgemm_tiles"), "bgemm_local",
                        (f"TS={ts}", f"WPT={wpt}"))
            k(self.q, (cdiv(N, ts) * ts, cdiv(M, ts) * (ts // wpt), bh), (ts, ts // wpt, 1),
              M, N, K, heads, *_strided_args(A, B, C), float(alpha), int(accumulate))
            return
        tile = bgemm_cpu_tile(N, self.cpu_tile[0], self.rt.caps.widths) if C.sc == 1 else None
        if tile is not None:
            vw, mr = tile
            if B.sc != 1:  # the tiles read B's rows as vectors: pack it
                B = self._bgemm_packed(B, K, N, bh, heads)
            j_start = N - N % (2 * vw)
            self._k(("gemm_cpu_base", "bgemm_tiles"), "bgemm_tile", (f"VW={vw}", f"MR={mr}"))(
                self.q, (j_start // (2 * vw), cdiv(M, mr), bh), (1, 1, 1), M, K, heads,
                A.buf, A.sn, A.sh, A.sr, A.sc, B.buf, B.sn, B.sh, B.sr,
                C.buf, C.sn, C.sh, C.sr, float(alpha), int(accumulate))
            if j_start == N:
                return
        self._k("attention", "bgemm")(
            self.q, (cdiv(N - j_start, BT), cdiv(M, BT), bh), None, M, N, K, heads, j_start,
            *_strided_args(A, B, C), float(alpha), int(accumulate))

    def _bgemm_packed(self, B, K, N, bh, heads):
        """B's bh (K x N) matrices copied contiguously into scratch (attention.cl bgemm_pack),
        as a Strided operand."""
        packed = self._scratch("bgemm_b", 4 * bh * K * N)
        self._k("attention", "bgemm_pack")(
            self.q, (N, K, bh), None, B.buf, B.sn, B.sh, B.sr, B.sc, packed, K, N, heads)
        return Strided(packed, heads * K * N, K * N, N, 1)

    def attn_softmax(self, s, p, rows, cols, tq, causal):
        """p = softmax of each row of s (p may be s); causal: row i of each (tq, cols) matrix
        keeps columns j <= i only."""
        if rows and not causal and self._width(cols) > 1:
            self._k("attention", "attn_softmax_ew")(
                self.q, *self._padded(rows, self.WG_ROWS), s, p, cols, rows)
        elif rows:
            self._k("attention", "attn_softmax")(
                self.q, *self._padded(rows, self.WG_ROWS), s, p, cols, tq, int(causal), rows)

    def attn_softmax_grad(self, p, dp, ds, rows, cols):
        """ds = p * (dp - sum(p * dp)) per row (ds may be dp)."""
        if rows:
            self._k("attention", "attn_softmax_grad")(
                self.q, *self._padded(rows, self.WG_ROWS), p, dp, ds, cols, rows)

    def _factors(self, w, s, c):
        return (self._or_dummy(w), int(w is not None), self._or_dummy(s), int(s is not None),
                self._or_dummy(c), int(c is not None))

    def additive_scores(self, q, k, S, n, tq, tv, D, w=None, s=None, c=None):
        """S = c * sum_d w[d] tanh(s (q_i + k_j)) per sample (w: a D-vector buffer, s and c
        one-element buffers; None: 1)."""
        if n and tq and tv:
            self._k("attention", "additive_scores")(
                self.q, (tv, tq, n), None, q, k, S, tq, tv, D, *self._factors(w, s, c))

    def additive_grad(self, q, k, dS, n, tq, tv, D, dq, dk, parts, w=None, s=None, c=None,
                      acc_q=False, acc_k=False):
        """additive_scores' backward: dq and dk (+)= (None: not wanted), and parts, three
        buffers of n * tq * D: the terms of the gradients of w (summed over the rows n * tq),
        s and c (summed over all) that the caller sums."""
        if not (n and tq and tv):
            return
        f = self._factors(w, s, c)
        k_add = self._k("attention", "additive_grad")
        k_add(self.q, (D, tq, n), None, q, k, dS, tq, tv, D, tv, 1, *f, self._or_dummy(dq),
              int(dq is not None), int(acc_q), *parts, 1)
        if dk is not None:
            k_add(self.q, (D, tv, n), None, k, q, dS, tv, tq, D, 1, tv, *f, dk, 1, int(acc_k),
                  *[self._dummy] * 3, 0)

    def scale_by(self, x, y, w, count):
        """y = x * w[0], w a one-element device buffer (y may be x)."""
        if count:
            self._k("attention", "scale_by")(self.q, (count,), None, x, y, w)

    def position_forward(self, W, x, y, n, TD):
        """y[n] = W[:T] (+ x[n] when x is given), TD = T * D elements per sample."""
        if n and TD:
            self._k("attention", "position_forward")(
                self.q, (TD, n), None, W, self._or_dummy(x), y, TD, int(x is not None))

    def position_grad(self, dy, dW, n, TD, SD):
        """dW (S x D, SD elements) = the sum over samples of dy in its first TD, 0 after."""
        if SD:
            self._k("attention", "position_grad")(self.q, (SD,), None, dy, dW, TD, n)
