"""The attention layers' ops (clkernels/attention.cl): batched (strided) matrix products over heads, the row softmax with a mask, and what MultiHeadAttention, Attention and AdditiveAttention need beside the GEMM. A mixin of Ops (engine/backend/ops.py), whose kernel lookup (_k), fill, grid
padding (_padded) and queue it uses."""


class AttentionOps:
    pass
