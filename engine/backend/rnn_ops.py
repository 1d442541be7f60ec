"""The recurrent layers' ops (clkernels/rnn.cl): batch-major <-> time-major transposes, the
activation of a SimpleRNN step, and the LSTM and GRU cells with their gradients, each over one
time step (the layers run the GEMMs around them). A mixin of Ops (engine/backend/ops.py), whose
kernel lookup (_k) and queue it uses."""
from layerloom.backend.grid import cdiv
from layerloom.core.activations import ACT_ID


class RnnOps:
    def to_time_major(self, x, y, n, T, D, reverse=False):
        if n:
            self._k("rnn", "to_time_major")(
                self.q, (D, T * n), None, x, y, n, T, int(reverse))

    def from_time_major(self, y, x, n, T, D, accumulate=False, reverse=False):
        if n:
            self._k("rnn", "from_time_major")(
                self.q, (D, T * n), None, y, x, n, T, int(accumulate), int(reverse))

    def transposed_recurrent_kernel(self, U, rows, cols):
        """U (rows x cols) transposed into a scratch buffer, (cols x rows), valid until the
        next call: a recurrent layer's backward multiplies every step's gate gradients by U^T,
        which as a plain B runs on the register tiles (gemm_tile: 29 us against gemm_nt's 40
        us at 128 units, 4 gates, batch 32)."""
        out = self._scratch("recurrent_kernel_t", 4 * rows * cols)
        self._k("elementwise", "transpose")(
            self.q, (cdiv(cols, 8), cdiv(rows, 8)), None, U, out, rows, cols, 0, rows)
        return out

    # mask: None, or (M, T, ts): the token ids (n, T) and the step's index in them
    def _mask(self, mask):
        if mask is None:
            return (self._or_dummy(None), 0, 1, 0)
        M, T, ts = mask
        return (M, 1, T, ts)

    def rnn_act(self, act, z, h, off, count, u=1, first=True, mask=None):
        k, w = self._k_w("rnn", "rnn_act", u)
        k(self.q, (count // w,), None, ACT_ID[act], z, h, off, *self._mask(mask), u, int(first))

    def rnn_act_grad(self, act, h, dh, dz, off, count, u=1, first=True, mask=None):
        k, w = self._k_w("rnn", "rnn_act_grad", u)
        k(self.q, (count // w,), None, ACT_ID[act], h, dh, dz, off, *self._mask(mask), u,
          int(first))

    def zero_masked(self, y, M, rows, D):
        """y (rows = n * T, D) batch-major: zero the steps whose id in M is 0."""
        if rows:
            self._k("rnn", "zero_masked")(self.q, (D, rows), None, y, M)

    # act: the cell's activation (tanh; ConvLSTM2D's may be another differentiated through its
    # output, as rnn_act_grad's); the gates' is the sigmoid
    def lstm_cell(self, g, goff, C, cprev, cnow, H, hnow, n, u, first, mask=None, act="tanh"):
        k, w = self._k_w("rnn", "lstm_cell", u)
        k(self.q, (u // w, n), None, g, goff, C, cprev, cnow, H, hnow, int(first),
          *self._mask(mask), ACT_ID[act])

    def lstm_cell_grad(self, g, goff, C, cprev, cnow, dH, dhoff, dc, dG, n, u, first,
                       mask=None, act="tanh"):
        k, w = self._k_w("rnn", "lstm_cell_grad", u)
        k(self.q, (u // w, n), None, g, goff, C, cprev, cnow, dH, dhoff, dc, dG, int(first),
          *self._mask(mask), ACT_ID[act])

    def gru_cell(self, XW, HU, xoff, gates, H, hprev, hnow, n, u, first, mask=None):
        self._k("rnn", "gru_cell")(
            self.q, (u, n), None, XW, HU, xoff, gates, H, hprev, hnow, int(first),
            *self._mask(mask))

    def gru_cell_grad(self, HU, gates, xoff, H, hprev, dH, dhoff, dXW, dHU, n, u, first,
                      mask=None):
        self._k("rnn", "gru_cell_grad")(
            self.q, (u, n), None, HU, gates, xoff, H, hprev, dH, dhoff, dXW, dHU, int(first),
            *self._mask(mask))
