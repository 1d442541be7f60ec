"""Shape layers. Reshape aliases its input (row-major data needs no copy). The others declare a
numpy transform once; from it come the output shape, the float64 reference and, applied to an
index array, the gather map the kernels use (forward) with its inverse (backward)."""

import numpy as np

from layerloom.core.graph import fmt_shape
from layerloom.core.params import Choice, Dims, Int, Margins, Pair, Shape
from layerloom.core.registry import Layer, register, ShapeError
from layerloom.layers.kit import alias_backward


@register
class Reshape(Layer):
    type_id = "Reshape"
    category = "Reshaping"
    help = "Gives each sample a new shape with the same number of values; one entry may be -1."
    params = (Dims("target_shape", (-1,), help="New per-sample shape, e.g. [7, 7, 16]."),)
    alias_output = True
    examples = (({"target_shape": [5, 6]}, [(3, 10)]), ({"target_shape": [-1, 2]}, [(2, 3, 2)]))

    def output_shapes(self, p, in_shapes):
        size = int(np.prod(in_shapes[0]))
        t = list(p["target_shape"])
        known = int(np.prod([d for d in t if d != -1]))
        if -1 in t:
            if size % known:
                raise ShapeError(f"cannot reshape {fmt_shape(in_shapes[0])} ({size} values) to "
                                 f"{fmt_shape(t)}")
            t[t.index(-1)] = size // known
        elif known != size:
            raise ShapeError(f"cannot reshape {fmt_shape(in_shapes[0])} ({size} values) to "
                             f"{fmt_shape(t)} ({known} values)")
        return [tuple(t)]

    def forward(self, ops, s):
        pass

    def backward(self, ops, s):
        alias_backward(ops, s)

    def reference(self, p, xs, ws, training=False):
        return [xs[0].reshape((len(xs[0]),) + self.output_shapes(p, [xs[0].shape[1:]])[0])]


class _IndexMap(Layer):
    """Subclasses define transform(p, a, fill) on arrays with a batch axis."""
    category = "Reshaping"

    def check(self, p, in_shape):
        pass

    def output_shapes(self, p, in_shapes):
        self.check(p, in_shapes[0])
        return [self.transform(p, np.zeros((1,) + tuple(in_shapes[0]), np.int8), 0).shape[1:]]

    def constants(self, p, in_shapes):
        in_size = int(np.prod(in_shapes[0]))
        idx = np.arange(in_size, dtype=np.int64).reshape((1,) + tuple(in_shapes[0]))
        mp = self.transform(p, idx, -1)[0].ravel().astype(np.int32)
        used = mp >= 0
        src = np.nonzero(used)[0]
        order = np.argsort(mp[used], kind="stable")
        src = src[order].astype(np.int32)
        offs = np.zeros(in_size + 1, np.int32)
        np.cumsum(np.bincount(mp[used], minlength=in_size), out=offs[1:])
        return {"map": mp, "offs": offs, "src": src}

    def forward(self, ops, s):
        ops.gather_map(s.x[0].buf, s.y[0].buf, s.const["map"], s.n, s.x[0].size, s.y[0].size)

    def backward(self, ops, s):
        if s.dx[0] is not None:
            ops.gather_map_grad(s.dy[0].buf, s.dx[0].buf, s.const["offs"], s.const["src"], s.n,
                                s.x[0].size, s.y[0].size, accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        return [self.transform(p, xs[0], 0.0)]


@register
class Permute(_IndexMap):
    type_id = "Permute"
    help = "Reorders the per-sample axes; dims counts from 1, e.g. [2, 1] swaps two axes."
    params = (Shape("dims", (2, 1), help="A permutation of 1..rank."),)
    examples = (({"dims": [2, 1]}, [(3, 5)]), ({"dims": [3, 1, 2]}, [(2, 3, 4)]))

    def check(self, p, in_shape):
        if sorted(p["dims"]) != list(range(1, len(in_shape) + 1)):
            raise ShapeError(f"dims {list(p['dims'])} is not a permutation of 1..{len(in_shape)} "
                             f"for input {fmt_shape(in_shape)}")

    def transform(self, p, a, fill):
        return np.transpose(a, (0,) + tuple(p["dims"]))


@register
class RepeatVector(_IndexMap):
    type_id = "RepeatVector"
    help = "Repeats a (features) input n times: (features) -> (n, features)."
    params = (Int("n", 2, min=1, help="Number of repetitions."),)
    examples = (({"n": 3}, [(4,)]), ({"n": 1}, [(33,)]))

    def check(self, p, in_shape):
        if len(in_shape) != 1:
            raise ShapeError(f"expects input shaped (None, features), got {fmt_shape(in_shape)}")

    def transform(self, p, a, fill):
        return np.repeat(a[:, None, :], p["n"], axis=1)


def _need_image(in_shape):
    if len(in_shape) != 3:
        raise ShapeError(f"expects input shaped (None, height, width, channels), got "
                         f"{fmt_shape(in_shape)}")


@register
class Cropping2D(_IndexMap):
    type_id = "Cropping2D"
    help = "Removes rows and columns at the image borders."
    params = (Margins("cropping", ((0, 0), (0, 0)),
                      help="[[top, bottom], [left, right]], [rows, cols] or one integer."),)
    examples = (({"cropping": [[1, 0], [2, 1]]}, [(4, 5, 2)]), ({"cropping": 1}, [(3, 3, 1)]))

    def check(self, p, in_shape):
        _need_image(in_shape)
        (t, b), (l, r) = p["cropping"]
        if t + b >= in_shape[0] or l + r >= in_shape[1]:
            raise ShapeError(f"cropping {[list(c) for c in p['cropping']]} removes the whole "
                             f"input {fmt_shape(in_shape)}")

    def transform(self, p, a, fill):
        (t, b), (l, r) = p["cropping"]
        return a[:, t:a.shape[1] - b, l:a.shape[2] - r, :]


@register
class ZeroPadding2D(_IndexMap):
    type_id = "ZeroPadding2D"
    help = "Adds rows and columns of zeros at the image borders."
    params = (Margins("padding", ((1, 1), (1, 1)),
                      help="[[top, bottom], [left, right]], [rows, cols] or one integer."),)
    examples = (({"padding": [[1, 0], [2, 1]]}, [(2, 3, 2)]), ({}, [(1, 1, 3)]))

    def check(self, p, in_shape):
        _need_image(in_shape)

    def transform(self, p, a, fill):
        return np.pad(a, ((0, 0),) + tuple(p["padding"]) + ((0, 0),), constant_values=fill)


@register
class UpSampling2D(_IndexMap):
    type_id = "UpSampling2D"
    help = "Repeats each row and column size times (nearest-neighbour upsampling)."
    params = (Pair("size", (2, 2), help="Repetitions along height and width."),
              Choice("interpolation", "nearest", ("nearest",),
                     help="Only nearest is available (Keras also has bilinear)."))
    examples = (({}, [(2, 3, 2)]), ({"size": [1, 3]}, [(3, 2, 1)]))

    def check(self, p, in_shape):
        _need_image(in_shape)

    def transform(self, p, a, fill):
        return np.repeat(np.repeat(a, p["size"][0], axis=1), p["size"][1], axis=2)


@register
class Flatten(Layer):
    type_id = "Flatten"
    category = "Reshaping"
    help = "Flattens each sample to one axis, e.g. (28, 28, 1) -> (784,). Costs no copy."
    alias_output = True  # row-major layout: the output is the input buffer
    examples = (({}, [(3, 5, 2)]), ({}, [(7,)]))

    def output_shapes(self, p, in_shapes):
        return [(int(np.prod(in_shapes[0])),)]

    def forward(self, ops, s):
        pass

    def backward(self, ops, s):
        alias_backward(ops, s)

    def reference(self, p, xs, ws, training=False):
        return [xs[0].reshape(len(xs[0]), -1)]
