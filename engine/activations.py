"""The activation table: one entry per activation, shared by the `Activation` layer, every
layer's `activation` parameter, the OpenCL kernels (ids become ACT_* defines) and the numpy
references used by the tests."""
import numpy as np


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# name -> float64 numpy reference. Order fixes the kernel ids.
REFERENCE = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
    "softmax": _softmax,
}
NAMES = tuple(REFERENCE)
ACT_ID = {name: i for i, name in enumerate(NAMES)}
ROW_WISE = {"softmax"}  # normalises over the last axis; not elementwise


def cl_prelude():
    return "".join(f"#define ACT_{n.upper()} {i}\n" for n, i in ACT_ID.items())
