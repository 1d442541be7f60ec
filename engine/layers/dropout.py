import zlib

import numpy as np

from ..params import Float, Int
from ..registry import Layer, register


@register
class Dropout(Layer):
    type_id = "Dropout"
    category = "Regularization"
    help = ("While training, zeroes a fraction `rate` of the inputs at random and scales the rest "
            "by 1/(1-rate); passes inputs through unchanged at inference. Masks come from a "
            "counter-based RNG (Philox), so a seed reproduces them.")
    params = (
        Float("rate", 0.5, min=0.0, max=1.0, max_exclusive=True, help="Fraction to drop."),
        Int("seed", 0, min=0, max=2**31 - 1, help="Added to the training seed for this layer."),
    )
    stochastic = True
    examples = (({"rate": 0.5}, [(33,)]), ({"rate": 0.0}, [(3, 5)]))

    def output_shapes(self, p, in_shapes):
        return [in_shapes[0]]

    def _salt(self, s):
        return zlib.crc32(s.node_id.encode()) ^ s.params["seed"]

    def forward(self, ops, s):
        x, y, n = s.x[0], s.y[0], s.n * s.x[0].size
        if s.training and s.params["rate"] > 0:
            ops.dropout(x.buf, y.buf, n, s.params["rate"], s.seed, self._salt(s), s.step)
        else:
            ops.copy(x.buf, y.buf, n)

    def backward(self, ops, s):
        if s.dx[0] is None:
            return
        n = s.n * s.y[0].size
        if s.params["rate"] > 0:  # regenerate the same mask from (seed, salt, step)
            ops.dropout(s.dy[0].buf, s.dx[0].buf, n, s.params["rate"], s.seed, self._salt(s),
                        s.step, accumulate=s.acc[0])
        else:
            ops.copy(s.dy[0].buf, s.dx[0].buf, n, accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        return [np.array(xs[0], copy=True)]  # inference behaviour; training is tested statistically
