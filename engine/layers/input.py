from ..params import Shape
from ..registry import Layer, register


@register
class Input(Layer):
    type_id = "Input"
    category = "Core"
    help = "Feeds one array of the dataset into the graph. Shape excludes the batch axis."
    params = (Shape("shape", (2,), help="Per-sample shape, e.g. [784] or [28, 28, 1]."),)
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
