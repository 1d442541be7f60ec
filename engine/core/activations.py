"""The activation table: one entry per activation, shared by the `Activation` layer, every
layer's `activation` parameter, the OpenCL kernels (ids become ACT_* defines) and the numpy
references used by the tests. Keras 3 definitions and defaults."""
import math

import numpy as np

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
LEAKY_SLOPE = 0.2  # keras.activations.leaky_relu default negative_slope


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(x):
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


_erf = np.vectorize(math.erf)
GELU_TANH_C = math.sqrt(2.0 / math.pi)  # Keras' gelu(approximate=True): tanh(c (x + k x^3))
GELU_TANH_K = 0.044715


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _hard_sigmoid(x):
    return np.clip(x + 3.0, 0.0, 6.0) / 6.0

# name -> float64 numpy reference. Order fixes the kernel ids.
REFERENCE = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "leaky_relu": lambda x: np.where(x > 0, x, LEAKY_SLOPE * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "selu": lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0))),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0))),
    # Keras' gelu(x, approximate=True), which Keras names by that argument only
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(GELU_TANH_C * (x + GELU_TANH_K * x ** 3))),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "mish": lambda x: x * np.tanh(_softplus(x)),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "hard_sigmoid": _hard_sigmoid,
    "hard_silu": lambda x: x * _hard_sigmoid(x),
    "tanh": np.tanh,
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "softplus": _softplus,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "exponential": np.exp,
    # Keras 3's other elementwise activations (its defaults: squareplus b=4, the shrinks'
    # threshold 0.5)
    "log_sigmoid": lambda x: -_softplus(-x),
    "hard_tanh": lambda x: np.clip(x, -1.0, 1.0),
    "tanh_shrink": lambda x: x - np.tanh(x),
    "squareplus": lambda x: 0.5 * (x + np.sqrt(x * x + 4.0)),
    "sparse_plus": lambda x: np.where(x <= -1.0, 0.0, np.where(x < 1.0, 0.25 * (x + 1.0) ** 2, x)),
    "soft_shrink": lambda x: np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0.0)),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0.0),
}
# Keras 3's aliases; celu (alpha 1, Keras' default) is elu
ALIASES = {"swish": "silu", "hard_swish": "hard_silu", "celu": "elu"}
NAMES = tuple(REFERENCE)
ACT_ID = {name: i for i, name in enumerate(NAMES)}
ROW_WISE = {"softmax", "log_softmax"}  # normalise over the last axis; not elementwise
# derivative needs the pre-activation, not only the output
NEEDS_INPUT = {"gelu", "gelu_tanh", "silu", "mish", "hard_silu", "tanh_shrink"}


def cl_prelude():
    consts = (f"#define SELU_ALPHA {SELU_ALPHA!r}f\n#define SELU_SCALE {SELU_SCALE!r}f\n"
              f"#define LEAKY_SLOPE {LEAKY_SLOPE!r}f\n#define GELU_TANH_C {GELU_TANH_C!r}f\n"
              f"#define GELU_TANH_K {GELU_TANH_K!r}f\n")
    return consts + "".join(f"#define ACT_{n.upper()} {i}\n" for n, i in ACT_ID.items())
