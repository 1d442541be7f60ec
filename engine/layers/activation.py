from ..activations import NAMES, REFERENCE
from ..layerkit import activation_param
from ..registry import Layer, register


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
