"""Regularization layers: Dropout, SpatialDropout2D and GaussianNoise.

SpatialDropout2D and GaussianNoise: active while training only; randomness from Philox keyed
by (seed, layer) with the step as counter, so a seed reproduces a run."""

import zlib

import numpy as np

from layerloom.core.graph import fmt_shape
from layerloom.core.params import Float, Int
from layerloom.core.registry import Layer, register, ShapeError


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


def _salt(s):
    return zlib.crc32(s.node_id.encode()) ^ s.params["seed"]


def _seed_param():
    return Int("seed", 0, min=0, max=2**31 - 1, help="Added to the training seed for this layer.")


@register
class SpatialDropout2D(Layer):
    type_id = "SpatialDropout2D"
    category = "Regularization"
    help = ("While training, drops whole channels of (height, width, channels) inputs with "
            "probability `rate` and scales the rest by 1/(1-rate).")
    params = (Float("rate", 0.5, min=0.0, max=1.0, max_exclusive=True, help="Fraction of channels "
                    "to drop."), _seed_param())
    stochastic = True
    examples = (({"rate": 0.5}, [(3, 4, 5)]),)

    def output_shapes(self, p, in_shapes):
        if len(in_shapes[0]) != 3:
            raise ShapeError("expects input shaped (None, height, width, channels), got "
                             f"{fmt_shape(in_shapes[0])}")
        return [in_shapes[0]]

    def _run(self, ops, s, src, dst, accumulate):
        H, W, C = s.x[0].shape
        ops.dropout_grouped(src, dst, s.n * H * W * C, s.params["rate"], s.seed, _salt(s),
                            s.step, H * W, C, accumulate)

    def forward(self, ops, s):
        if s.training and s.params["rate"] > 0:
            self._run(ops, s, s.x[0].buf, s.y[0].buf, False)
        else:
            ops.copy(s.x[0].buf, s.y[0].buf, s.n * s.x[0].size)

    def backward(self, ops, s):
        if s.dx[0] is None:
            return
        if s.params["rate"] > 0:
            self._run(ops, s, s.dy[0].buf, s.dx[0].buf, s.acc[0])
        else:
            ops.copy(s.dy[0].buf, s.dx[0].buf, s.n * s.x[0].size, accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        return [np.array(xs[0], copy=True)]


@register
class GaussianNoise(Layer):
    type_id = "GaussianNoise"
    category = "Regularization"
    help = "While training, adds zero-mean gaussian noise with standard deviation `stddev`."
    params = (Float("stddev", 0.1, min=0.0, help="Standard deviation of the noise."),
              _seed_param())
    stochastic = True
    examples = (({"stddev": 0.5}, [(7,)]),)

    def output_shapes(self, p, in_shapes):
        return [in_shapes[0]]

    def forward(self, ops, s):
        n = s.n * s.x[0].size
        if s.training and s.params["stddev"] > 0:
            ops.gaussian_noise(s.x[0].buf, s.y[0].buf, n, s.params["stddev"], s.seed, _salt(s),
                               s.step)
        else:
            ops.copy(s.x[0].buf, s.y[0].buf, n)

    def backward(self, ops, s):
        if s.dx[0] is not None:
            ops.copy(s.dy[0].buf, s.dx[0].buf, s.n * s.x[0].size, accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        return [np.array(xs[0], copy=True)]
