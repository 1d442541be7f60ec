import numpy as np

from .. import expr
from ..errors import quote
from ..layerkit import same_shapes
from ..params import Expr
from ..registry import Layer, ShapeError, Variadic, register


@register
class Lambda(Layer):
    type_id = "Lambda"
    category = "Core"
    help = ("Applies a formula elementwise to 1 to 4 inputs of the same shape, named a, b, c, d "
            "(x is a): e.g. x * sigmoid(x), a - b, maximum(x, 0.1 * x). Functions: "
            + ", ".join(sorted(expr.FUNCTIONS)) + ". The formula is checked text, never code; "
            "its derivative is worked out symbolically.")
    params = (Expr("expression", "x", help="Formula over the inputs a, b, c, d (x is a)."),)
    inputs = Variadic("x", min=1)
    examples = (({"expression": "x * sigmoid(x)"}, [(5,)]),
                ({"expression": "a - b"}, [(3, 4), (3, 4)]),
                ({"expression": "maximum(x, 0.1 * x)"}, [(33,)]),
                ({"expression": "where(a > b, a * b, square(c)) + exp(-abs(d)) / 2"},
                 [(6,), (6,), (6,), (6,)]),
                ({"expression": "sqrt(x * x + 1) + tanh(x) ** 3 - pow(2, x) + erf(x)"}, [(7,)]),
                ({"expression": "clip(a, -0.5, 0.5) * softplus(b) + minimum(a, b) - log(1 + b*b)"},
                 [(9,), (9,)]))

    def output_shapes(self, p, in_shapes):
        if len(in_shapes) > 4:
            raise ShapeError(f"takes at most 4 inputs, has {len(in_shapes)}")
        first = same_shapes(in_shapes)[0]
        names = expr.INPUT_NAMES[:len(in_shapes)]
        unknown = sorted(expr.variables(expr.parse(p["expression"])) - set(names))
        if unknown:
            raise ShapeError(f"the expression uses {quote(unknown[0])} but this Lambda has "
                             f"{len(in_shapes)} input{'s' * (len(in_shapes) > 1)} "
                             f"({', '.join(names)})")
        return [first]

    def forward(self, ops, s):
        ops.lambda_forward(expr.parse(s.params["expression"]), [x.buf for x in s.x], s.y[0].buf,
                           s.n * s.y[0].size)

    def backward(self, ops, s):
        ops.lambda_backward(expr.parse(s.params["expression"]), [x.buf for x in s.x],
                            s.dy[0].buf, [d.buf if d is not None else None for d in s.dx],
                            s.acc, s.n * s.y[0].size)

    def reference(self, p, xs, ws, training=False):
        env = dict(zip(expr.INPUT_NAMES, xs))
        return [np.broadcast_to(expr.evaluate(expr.parse(p["expression"]), env),
                                xs[0].shape).astype(np.float64)]
