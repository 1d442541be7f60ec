import numpy as np

from ..layerkit import weight_params
from ..params import Int
from ..registry import Layer, WeightSpec, register


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
