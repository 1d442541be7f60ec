"""Grid arithmetic shared by the op modules (ops, gemm, conv_ops)."""


def cdiv(a, b):
    """ceil(a / b) for non-negative integers: work-items that cover a in steps of b."""
    return (a + b - 1) // b
