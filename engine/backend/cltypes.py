"""Scalar argument types and grid arithmetic shared by the op modules (ops, gemm, conv_ops)."""
import numpy as np

i32, f32, u32 = np.int32, np.float32, np.uint32


def cdiv(a, b):
    """ceil(a / b) for non-negative integers: work-items that cover a in steps of b."""
    return (a + b - 1) // b
