import numpy as np

from ..activations import NAMES, REFERENCE, ROW_WISE
from ..params import Bool, Choice, Int
from ..registry import Layer, ShapeError, WeightSpec, register


@register
class Dense(Layer):
    type_id = "Dense"
    category = "Core"
    help = ("Fully connected layer: activation(x @ kernel + bias), applied to the last axis "
            "(kernel shaped (inputs, units), as in Keras).")
    params = (
        Int("units", 32, min=1, help="Number of output units."),
        Choice("activation", "linear", NAMES, help="Activation applied to the output."),
        Bool("use_bias", True, help="Add a learned bias vector."),
    )
    activation_param = "activation"
    examples = tuple(({"units": u, "activation": a}, [shape])
                     for a in NAMES for u, shape in ((3, (5,)), (1, (4,))))
    examples += (({"units": 33}, [(31,)]), ({"units": 4, "use_bias": False}, [(65,)]),
                 ({"units": 3, "activation": "tanh"}, [(2, 5)]))

    def output_shapes(self, p, in_shapes):
        return [in_shapes[0][:-1] + (p["units"],)]

    def weights(self, p, in_shapes):
        k = in_shapes[0][-1]
        ws = [WeightSpec("kernel", (k, p["units"]), "glorot_uniform", k, p["units"])]
        if p["use_bias"]:
            ws.append(WeightSpec("bias", (p["units"],), "zeros"))
        return ws

    def scratch(self, p, in_shapes):
        if p["activation"] == "linear":
            return {}
        return {"dz": in_shapes[0][:-1] + (p["units"],)}

    def forward(self, ops, s):
        p, x, y = s.params, s.x[0], s.y[0]
        rows, K, N = s.n * (x.size // x.cols), x.cols, p["units"]
        W = s.w["kernel"].buf
        b = s.w["bias"].buf if p["use_bias"] else None
        act = p["activation"]
        if s.logits is not None:  # a fused loss wants the pre-activation too
            ops.gemm(rows, N, K, x.buf, W, s.logits.buf, bias=b)
            ops.act_forward(act, s.logits.buf, y.buf, rows, N)
        elif act in ROW_WISE:
            ops.gemm(rows, N, K, x.buf, W, y.buf, bias=b)
            ops.act_forward(act, y.buf, y.buf, rows, N)
        else:  # bias and activation fused into the GEMM epilogue
            ops.gemm(rows, N, K, x.buf, W, y.buf, bias=b, act=act)

    def backward(self, ops, s):
        p, x, y = s.params, s.x[0], s.y[0]
        rows, K, N = s.n * (x.size // x.cols), x.cols, p["units"]
        dz = s.dy[0].buf
        if p["activation"] != "linear" and not s.skip_act_grad:
            ops.act_backward(p["activation"], y.buf, dz, s.scratch["dz"].buf, rows, N)
            dz = s.scratch["dz"].buf
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
