from ..layerkit import same_shapes
from ..registry import Layer, Variadic, register


@register
class Add(Layer):
    type_id = "Add"
    category = "Merging"
    help = "Sums its inputs elementwise; all inputs must have the same shape."
    inputs = Variadic("x", min=2)
    examples = (({}, [(5,), (5,)]), ({}, [(33,), (33,), (33,)]))

    def output_shapes(self, p, in_shapes):
        return same_shapes(in_shapes)

    def forward(self, ops, s):
        n = s.n * s.y[0].size
        ops.add2(s.x[0].buf, s.x[1].buf, s.y[0].buf, n)
        for x in s.x[2:]:
            ops.copy(x.buf, s.y[0].buf, n, accumulate=True)

    def backward(self, ops, s):
        n = s.n * s.y[0].size
        for dx, acc in zip(s.dx, s.acc):
            if dx is not None:
                ops.copy(s.dy[0].buf, dx.buf, n, accumulate=acc)

    def reference(self, p, xs, ws, training=False):
        return [sum(xs)]
