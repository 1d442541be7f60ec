"""Merge layers: Subtract, Multiply, Average, Maximum, Minimum (Add and Concatenate have their
own files) and Dot. Inputs of equal shapes, as Keras requires."""
import numpy as np

from ..graph import fmt_shape
from ..layerkit import same_shapes as _same_shapes
from ..params import Int
from ..registry import Layer, ShapeError, Variadic, register


class _Merge(Layer):
    category = "Merging"
    inputs = Variadic("x", min=2)
    op = "add"
    examples = (({}, [(5,), (5,)]), ({}, [(3, 4), (3, 4), (3, 4)]))

    def output_shapes(self, p, in_shapes):
        return _same_shapes(in_shapes)

    def forward(self, ops, s):
        n = s.n * s.y[0].size
        ops.binary(self.op, s.x[0].buf, s.x[1].buf, s.y[0].buf, n)
        for x in s.x[2:]:
            ops.binary(self.op, s.y[0].buf, x.buf, s.y[0].buf, n)


@register
class Subtract(_Merge):
    type_id = "Subtract"
    help = "Input 0 minus input 1 (exactly two inputs)."
    op = "subtract"
    examples = (({}, [(5,), (5,)]), ({}, [(2, 33), (2, 33)]))

    def output_shapes(self, p, in_shapes):
        if len(in_shapes) != 2:
            raise ShapeError(f"takes exactly 2 inputs, has {len(in_shapes)}")
        return _same_shapes(in_shapes)

    def backward(self, ops, s):
        n = s.n * s.y[0].size
        for i, (dx, acc) in enumerate(zip(s.dx, s.acc)):
            if dx is not None:
                ops.scaled(s.dy[0].buf, dx.buf, n, 1.0 if i == 0 else -1.0, accumulate=acc)

    def reference(self, p, xs, ws, training=False):
        return [xs[0] - xs[1]]


@register
class Multiply(_Merge):
    type_id = "Multiply"
    help = "Product of its inputs, elementwise."
    op = "multiply"

    def scratch(self, p, in_shapes):
        return {"prod": in_shapes[0]}

    def backward(self, ops, s):
        n = s.n * s.y[0].size
        prod = s.scratch["prod"].buf
        for i, (dx, acc) in enumerate(zip(s.dx, s.acc)):
            if dx is None:
                continue
            others = [x for j, x in enumerate(s.x) if j != i]
            ops.binary("multiply", s.dy[0].buf, others[0].buf, prod, n)
            for x in others[1:]:
                ops.binary("multiply", prod, x.buf, prod, n)
            ops.copy(prod, dx.buf, n, accumulate=acc)

    def reference(self, p, xs, ws, training=False):
        return [np.prod(xs, axis=0)]


@register
class Average(_Merge):
    type_id = "Average"
    help = "Mean of its inputs, elementwise."

    def forward(self, ops, s):
        super().forward(ops, s)
        n = s.n * s.y[0].size
        ops.scaled(s.y[0].buf, s.y[0].buf, n, 1.0 / len(s.x))

    def backward(self, ops, s):
        n = s.n * s.y[0].size
        for dx, acc in zip(s.dx, s.acc):
            if dx is not None:
                ops.scaled(s.dy[0].buf, dx.buf, n, 1.0 / len(s.x), accumulate=acc)

    def reference(self, p, xs, ws, training=False):
        return [np.mean(xs, axis=0)]


class _Pick(_Merge):
    """Maximum/Minimum: the gradient flows to the first input that holds the result."""

    def scratch(self, p, in_shapes):
        # sink receives the gradient of inputs that take none, so their claims still count
        return {"claimed": in_shapes[0], "sink": in_shapes[0]}

    def backward(self, ops, s):
        n = s.n * s.y[0].size
        last = max((i for i, dx in enumerate(s.dx) if dx is not None), default=-1)
        for i, (x, dx, acc) in enumerate(zip(s.x, s.dx, s.acc)):
            if i > last:
                break
            target = dx.buf if dx is not None else s.scratch["sink"].buf
            ops.pick_grad(x.buf, s.y[0].buf, s.dy[0].buf, target, s.scratch["claimed"].buf, n,
                          first=(i == 0), accumulate=acc and dx is not None)


@register
class Maximum(_Pick):
    type_id = "Maximum"
    help = "Largest of its inputs, elementwise."
    op = "maximum"

    def reference(self, p, xs, ws, training=False):
        return [np.max(xs, axis=0)]


@register
class Minimum(_Pick):
    type_id = "Minimum"
    help = "Smallest of its inputs, elementwise."
    op = "minimum"

    def reference(self, p, xs, ws, training=False):
        return [np.min(xs, axis=0)]


@register
class Dot(Layer):
    type_id = "Dot"
    category = "Merging"
    help = ("Dot product of two (features) inputs along their last axis: (d), (d) -> (1). "
            "Only axes=-1 on vectors (Keras' most common use) is available.")
    params = (Int("axes", -1, min=-1, max=1, help="Axis to sum over: -1 or 1 (the features)."),)
    inputs = ("a", "b")
    examples = (({}, [(5,), (5,)]), ({"axes": 1}, [(33,), (33,)]))

    def output_shapes(self, p, in_shapes):
        a, b = in_shapes
        if len(a) != 1 or a != b:
            raise ShapeError(f"expects two inputs shaped (None, d) with the same d; got "
                             f"{fmt_shape(a)} and {fmt_shape(b)}")
        return [(1,)]

    def forward(self, ops, s):
        ops.row_dot(s.x[0].buf, s.x[1].buf, s.y[0].buf, s.n, s.x[0].size)

    def backward(self, ops, s):
        for i, (dx, acc) in enumerate(zip(s.dx, s.acc)):
            if dx is not None:
                ops.row_dot_grad(s.dy[0].buf, s.x[1 - i].buf, dx.buf, s.n, s.x[0].size,
                                 accumulate=acc)

    def reference(self, p, xs, ws, training=False):
        return [(xs[0] * xs[1]).sum(-1, keepdims=True)]
