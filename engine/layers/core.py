"""Core layers: Input, Dense, Activation, Embedding and Lambda (Keras' core category)."""

import numpy as np

from layerloom.core import expr
from layerloom.core.activations import NAMES, REFERENCE
from layerloom.core.errors import quote
from layerloom.core.params import Bool, Expr, Int, Shape
from layerloom.core.registry import Layer, register, ShapeError, Variadic, WeightSpec
from layerloom.layers.kit import (activation_param, activation_scratch,
                                  backward_through_activation, forward_with_activation,
                                  kernel_and_bias_params, same_shapes, weight_params)


@register
class Input(Layer):
    type_id = "Input"
    category = "Core"
    help = "Feeds one array of the dataset into the graph. Shape excludes the batch axis."
    params = (Shape("shape", (2,), help="Per-sample shape, e.g. [784] or [28, 28, 1]."),)
    headline = ("shape",)
    inputs = ()
    is_input = True

    def output_shapes(self, p, in_shapes):
        return [p["shape"]]

    def forward(self, ops, s):
        pass  # the trainer uploads the batch into this node's output buffer

    def backward(self, ops, s):
        pass

    def reference(self, p, xs, ws, training=False):
        return [xs[0]]


@register
class Dense(Layer):
    type_id = "Dense"
    category = "Core"
    help = ("Fully connected layer: activation(x @ kernel + bias), applied to the last axis "
            "(kernel shaped (inputs, units), as in Keras).")
    params = (
        Int("units", 32, min=1, help="Number of output units."),
        activation_param(),
        Bool("use_bias", True, help="Add a learned bias vector."),
    ) + kernel_and_bias_params()
    activation_param = "activation"
    examples = tuple(({"units": u, "activation": a}, [shape])
                     for a in NAMES for u, shape in ((3, (5,)), (1, (4,))))
    examples += (({"units": 33}, [(31,)]), ({"units": 4, "use_bias": False}, [(65,)]),
                 ({"units": 3, "kernel_regularizer": {"l1": 0.01, "l2": 0.1},
                   "bias_regularizer": {"l2": 0.5}, "kernel_initializer": "orthogonal"}, [(4,)]),
                 ({"units": 3, "activation": "tanh"}, [(2, 5)]))

    def output_shapes(self, p, in_shapes):
        return [in_shapes[0][:-1] + (p["units"],)]

    def weights(self, p, in_shapes):
        k = in_shapes[0][-1]
        ws = [WeightSpec("kernel", (k, p["units"]), p["kernel_initializer"], k, p["units"],
                         regularizer=p["kernel_regularizer"])]
        if p["use_bias"]:
            ws.append(WeightSpec("bias", (p["units"],), p["bias_initializer"],
                                 regularizer=p["bias_regularizer"]))
        return ws

    def scratch(self, p, in_shapes):
        return activation_scratch(p["activation"], in_shapes[0][:-1] + (p["units"],))

    def forward(self, ops, s):
        p, x = s.params, s.x[0]
        rows, K, N = s.n * (x.size // x.cols), x.cols, p["units"]
        W = s.w["kernel"].buf
        b = s.w["bias"].buf if p["use_bias"] else None
        forward_with_activation(ops, s, p["activation"], rows, N,
                                lambda out, act: ops.gemm(rows, N, K, x.buf, W, out, bias=b,
                                                          act=act))

    def backward(self, ops, s):
        p, x = s.params, s.x[0]
        rows, K, N = s.n * (x.size // x.cols), x.cols, p["units"]
        dz = backward_through_activation(ops, s, p["activation"], rows, N)
        ops.gemm(K, N, rows, x.buf, dz, s.dw["kernel"].buf, trans_a=True)
        if p["use_bias"]:
            ops.bias_grad(dz, s.dw["bias"].buf, rows, N)
        if s.dx[0] is not None:
            ops.gemm(rows, K, N, dz, s.w["kernel"].buf, s.dx[0].buf, trans_b=True,
                     accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        z = xs[0] @ ws["kernel"]
        if p["use_bias"]:
            z = z + ws["bias"]
        return [REFERENCE[p["activation"]](z)]


@register
class Activation(Layer):
    type_id = "Activation"
    category = "Core"
    help = "Applies an activation function elementwise (softmax: over the last axis)."
    params = (activation_param("relu"),)
    activation_param = "activation"
    pre_activation_is_input = True  # a fused loss reads this node's input as the logits
    examples = tuple(({"activation": a}, [shape]) for a in NAMES for shape in ((7,), (3, 33)))

    def output_shapes(self, p, in_shapes):
        return [in_shapes[0]]

    def forward(self, ops, s):
        x, y = s.x[0], s.y[0]
        ops.act_forward(s.params["activation"], x.buf, y.buf, s.n * (x.size // x.cols), x.cols)

    def backward(self, ops, s):
        if s.dx[0] is None:
            return
        y = s.y[0]
        act = "linear" if s.skip_act_grad else s.params["activation"]
        ops.act_backward(act, y.buf, s.dy[0].buf, s.dx[0].buf, s.n * (y.size // y.cols), y.cols,
                         accumulate=s.acc[0], x=s.x[0].buf)

    def reference(self, p, xs, ws, training=False):
        return [REFERENCE[p["activation"]](xs[0])]


@register
class Embedding(Layer):
    type_id = "Embedding"
    category = "Core"
    help = ("Maps integer indices (0 .. input_dim-1) to learned vectors: (steps) -> (steps, "
            "output_dim). Indices outside the range give zero vectors.")
    params = (Int("input_dim", 1000, min=1, help="Vocabulary size: largest index + 1."),
              Int("output_dim", 16, min=1, help="Length of each vector.")
              ) + weight_params("embeddings", "random_uniform")
    differentiable = False  # indices get no gradient
    examples = (({"input_dim": 7, "output_dim": 3}, [(5,)]),
                ({"input_dim": 4, "output_dim": 33}, [(2, 3)]))
    integer_inputs = True   # the test harness feeds indices

    def output_shapes(self, p, in_shapes):
        return [tuple(in_shapes[0]) + (p["output_dim"],)]

    def weights(self, p, in_shapes):
        return [WeightSpec("embeddings", (p["input_dim"], p["output_dim"]),
                           p["embeddings_initializer"], regularizer=p["embeddings_regularizer"])]

    def forward(self, ops, s):
        p = s.params
        ops.embed(s.x[0].buf, s.w["embeddings"].buf, s.y[0].buf, s.n * s.x[0].size,
                  p["input_dim"], p["output_dim"])

    def backward(self, ops, s):
        p = s.params
        ops.embed_grad(s.x[0].buf, s.dy[0].buf, s.dw["embeddings"].buf, s.n * s.x[0].size,
                       p["input_dim"], p["output_dim"])

    def reference(self, p, xs, ws, training=False):
        idx = xs[0].astype(int)
        ok = (idx >= 0) & (idx < p["input_dim"])
        return [np.where(ok[..., None], ws["embeddings"][np.clip(idx, 0, p["input_dim"] - 1)], 0.0)]


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
