"""The Primitives category's ops (engine/layers/primitives.py): a batched matrix product over
samples and leading axes with either operand transposed, and its backward, on attention's
batched strided GEMM (bgemm, attention_ops.py: transposes are read in place through strides);
a reduction along one axis (clkernels/primitives.cl); a learned tensor broadcast over the
batch and its gradient (attention.cl's position_forward, elementwise.cl's column sums); a
slice along one axis (elementwise.cl's copy2d); normal samples (primitives.cl, on dropout.cl's
Philox). A mixin of Ops (engine/backend/ops.py), whose kernel lookup (_k), grid padding
(_padded), bgemm and queue it uses."""
from layerloom.backend.attention_ops import Strided

FILES = ("dropout", "primitives")  # primitives.cl uses dropout.cl's philox4x32_10
REDUCE = {"sum": 0, "mean": 1, "max": 2}  # REDUCE_* in primitives.cl


def matrices(buf, rows, cols, transposed=False):
    """The (rows, cols) matrices of a tensor of contiguous (rows, cols) matrices, one after
    another (the batch and leading axes flattened), as a bgemm operand; transposed: the
    tensor holds (cols, rows) matrices and this reads each transposed, in place."""
    if transposed:
        return Strided(buf, rows * cols, 0, 1, rows)
    return Strided(buf, rows * cols, 0, cols, 1)


class PrimitiveOps:
    # -- MatMul ---------------------------------------------------------------------------------
    def matmul(self, a, b, y, count, m, k, n, trans_a=False, trans_b=False):
        """y[i] = op(a[i]) . op(b[i]) for i < count, op the transpose where asked; a holds
        (m, k) matrices ((k, m) with trans_a), b (k, n) ((n, k) with trans_b), y (m, n)."""
        self.bgemm(m, n, k, count, 1, matrices(a, m, k, trans_a), matrices(b, k, n, trans_b),
                   matrices(y, m, n))

    def matmul_backward(self, a, b, dy, da, db, count, m, k, n, trans_a=False, trans_b=False,
                        acc_a=False, acc_b=False):
        """da (+)= dy . op(b)^T and db (+)= op(a)^T . dy, each written in its operand's own
        layout (transposed where the operand is); either may be None."""
        if da is not None:
            self.bgemm(m, k, n, count, 1, matrices(dy, m, n), matrices(b, k, n, trans_b).T,
                       matrices(da, m, k, trans_a), accumulate=acc_a)
        if db is not None:
            self.bgemm(k, n, m, count, 1, matrices(a, m, k, trans_a).T, matrices(dy, m, n),
                       matrices(db, k, n, trans_b), accumulate=acc_b)

    # -- Reduce ---------------------------------------------------------------------------------
    def reduce_axis(self, op, x, y, outer, length, inner):
        """y = op (sum, mean, max) of x viewed as (outer, length, inner) along its middle."""
        lines = outer * inner
        if lines:
            self._k(FILES, "reduce_axis_forward")(
                self.q, *self._padded(lines, self.WG_ROWS), x, y, length, inner, REDUCE[op],
                lines)

    def reduce_axis_backward(self, op, x, dy, dx, outer, length, inner, accumulate=False):
        lines = outer * inner
        if lines:
            self._k(FILES, "reduce_axis_backward")(
                self.q, *self._padded(lines, self.WG_ROWS), x, dy, dx, length, inner,
                REDUCE[op], int(accumulate), lines)

    # -- Weight ---------------------------------------------------------------------------------
    def broadcast_rows(self, w, y, count, size):
        """y[i] = w for each of count rows of `size` elements."""
        self.position_forward(w, None, y, count, size)

    def sum_rows(self, dy, dw, count, size):
        """dw = the sum of dy's count rows of `size` elements."""
        if count:
            self.bias_grad(dy, dw, count, size)
        else:
            self.fill(dw, size)

    # -- Slice ----------------------------------------------------------------------------------
    def slice_axis(self, x, y, outer, length, inner, start, width):
        """y = x[:, start:start + width, :] of x viewed as (outer, length, inner)."""
        self.copy2d(x, length * inner, start * inner, y, width * inner, 0, outer, width * inner)

    def slice_axis_backward(self, dy, dx, outer, length, inner, start, width,
                            accumulate=False):
        """dx (+)= dy in the slice, 0 outside it."""
        if not accumulate and width < length:
            self.fill(dx, outer * length * inner)
        self.copy2d(dy, width * inner, 0, dx, length * inner, start * inner, outer,
                    width * inner, accumulate=accumulate)

    # -- RandomNormal ---------------------------------------------------------------------------
    def random_normal(self, y, n, mean, stddev, seed, salt, step, lane):
        if n:
            self._k(FILES, "random_normal")(
                self.q, (n,), None, y, float(mean), float(stddev), seed & 0xFFFFFFFF,
                salt & 0xFFFFFFFF, step & 0xFFFFFFFF, lane & 0xFFFFFFFF)
