from ..activations import NAMES, REFERENCE
from ..layerkit import (activation_param, activation_scratch, backward_through_activation,
                        forward_with_activation, kernel_and_bias_params)
from ..params import Bool, Int
from ..registry import Layer, WeightSpec, register


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
