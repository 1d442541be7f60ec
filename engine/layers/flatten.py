import numpy as np

from ..layerkit import alias_backward
from ..registry import Layer, register


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
