"""The Activation category's ops (clkernels/activation_layers.cl): Keras' ReLU and ELU with
their parameters, PReLU with a learned alpha over shared axes, and a softmax along an axis
other than the last (the last is ops.act_forward's row-wise softmax). A mixin of Ops
(engine/backend/ops.py), whose kernel lookup (_k), elementwise launch (_ew), grid padding
(_padded) and queue it uses."""
import math

FILE = "activation_layers"
PACT = {"relu": 0, "elu": 1}  # the kinds of param_act_* (PACT_* in the .cl file)


def relu_args(max_value, negative_slope, threshold):
    """param_act_*'s p0, p1, p2 for Keras' ReLU (no max_value: +inf)."""
    return (math.inf if max_value is None else max_value), negative_slope, threshold


def four_axes(shape):
    """A per-sample shape of 1 to 4 axes as 4, ones before it."""
    if len(shape) > 4:
        raise ValueError(f"PReLU takes per-sample shapes of up to 4 axes, got {len(shape)}")
    return (1,) * (4 - len(shape)) + tuple(shape)


class ActivationOps:
    def param_act_forward(self, kind, x, y, n, p0, p1=0.0, p2=0.0):
        """y = Keras' ReLU (kind "relu": p0 max_value or +inf, p1 negative_slope, p2
        threshold) or ELU (kind "elu": p0 alpha) of x; n elements."""
        self._ew(FILE, "param_act_forward", n, PACT[kind], x, y, p0, p1, p2)

    def param_act_backward(self, kind, x, dy, dx, n, p0, p1=0.0, p2=0.0, accumulate=False):
        self._ew(FILE, "param_act_backward", n, PACT[kind], x, dy, dx, p0, p1, p2,
                 int(accumulate))

    @staticmethod
    def _prelu_geometry(shape, shared):
        """(d1, d2, d3, a0..a3, per) of prelu_*: shape the per-sample shape, shared the
        0-based axes alpha is shared over."""
        d = four_axes(shape)
        lead = 4 - len(shape)
        sh = {a + lead for a in shared}
        strides, s = [0] * 4, 1
        for a in (3, 2, 1, 0):
            if a not in sh:
                strides[a] = s
                s *= d[a]
        return (*d[1:], *strides, d[0] * d[1] * d[2] * d[3])

    def prelu_forward(self, x, alpha, y, batch, shape, shared):
        g = self._prelu_geometry(shape, shared)
        n = batch * g[-1]
        if n:
            self._k(FILE, "prelu_forward")(self.q, *self._padded(n, self.WG_EW), x, alpha, y,
                                           *g, n)

    def prelu_backward(self, x, alpha, dy, dx, batch, shape, shared, accumulate=False):
        g = self._prelu_geometry(shape, shared)
        n = batch * g[-1]
        if n:
            self._k(FILE, "prelu_backward")(self.q, *self._padded(n, self.WG_EW), x, alpha, dy,
                                            dx, *g, int(accumulate), n)

    def prelu_alpha_grad(self, x, dy, dalpha, batch, shape, shared):
        d = four_axes(shape)
        lead = 4 - len(shape)
        mask = sum(1 << (a + lead) for a in shared)
        alpha_n = math.prod(1 if mask >> a & 1 else d[a] for a in range(4))
        self._k(FILE, "prelu_alpha_grad")(self.q, *self._padded(alpha_n, self.WG_ROWS), x, dy,
                                          dalpha, *d, mask, batch, alpha_n)

    def softmax_axis_forward(self, x, y, outer, length, inner):
        lines = outer * inner
        if lines:
            self._k(FILE, "softmax_axis_forward")(self.q, *self._padded(lines, self.WG_ROWS), x,
                                                  y, length, inner, lines)

    def softmax_axis_backward(self, y, dy, dx, outer, length, inner, accumulate=False):
        lines = outer * inner
        if lines:
            self._k(FILE, "softmax_axis_backward")(
                self.q, *self._padded(lines, self.WG_ROWS), y, dy, dx, length, inner,
                int(accumulate), lines)
