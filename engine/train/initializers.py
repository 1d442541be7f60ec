"""Weight initialisers with Keras' names and formulas (variance scaling: uniform limits
sqrt(3 * scale / n); normals are truncated at two standard deviations with the stddev corrected
by 0.87962566103423978, as Keras does). n is Keras' fan (compute_fans: a kernel's fan_in is its
input channels times its window, fan_out its output channels times its window; the layers give
them in WeightSpec where their layout is not Keras' (..., in, out)), at least 1."""
import zlib

import numpy as np

from layerloom.core.params import INITIALIZER_NAMES as NAMES  # what initialize() computes

_TRUNC = 0.87962566103423978


def node_rng(seed, node_id, name):
    """A generator that depends only on the seed and the weight's identity, so adding a node
    elsewhere does not change this node's initial weights."""
    return np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(f"{node_id}/{name}".encode())])


def fans(spec):
    """(fan_in, fan_out) of a weight, as Keras' compute_fans gives them for its shape."""
    if spec.fan_in is not None:
        return spec.fan_in, spec.fan_out
    shape = spec.shape
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def _truncated_normal(rng, std, shape):
    out = rng.normal(0.0, 1.0, shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.normal(0.0, 1.0, int(bad.sum()))
        bad = np.abs(out) > 2
    return out * std


def variance_scaling(spec, rng, scale, mode, distribution):
    """Keras' VarianceScaling: the variance scale / n, n the fan `mode` names (at least 1)."""
    fan_in, fan_out = fans(spec)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
    scale = scale / max(1.0, n)
    if distribution == "uniform":
        limit = np.sqrt(3.0 * scale)
        return rng.uniform(-limit, limit, spec.shape)
    if distribution == "untruncated_normal":
        return rng.normal(0.0, np.sqrt(scale), spec.shape)
    return _truncated_normal(rng, np.sqrt(scale) / _TRUNC, spec.shape)


def initialize(spec, rng):
    init = spec.init
    value = 0.0
    if isinstance(init, dict) and init["name"] == "variance_scaling":
        if init.get("seed") is not None:  # Keras' seeded initializer: the same draw each call
            rng = np.random.default_rng(init["seed"])
        return np.asarray(variance_scaling(spec, rng, init["scale"], init["mode"],
                                           init["distribution"]), np.float32)
    if isinstance(init, dict):
        init, value = init["name"], init.get("value", 0.0)
    shape = spec.shape
    if init == "zeros":
        a = np.zeros(shape)
    elif init == "ones":
        a = np.ones(shape)
    elif init == "constant":
        a = np.full(shape, value)
    elif init == "lstm_bias":  # Keras' unit_forget_bias: zeros, ones for the forget gate
        a = np.zeros(shape)
        u = shape[0] // 4
        a[u:2 * u] = 1.0
    elif init == "random_uniform":  # Keras' RandomUniform default range
        a = rng.uniform(-0.05, 0.05, shape)
    elif init == "random_normal":  # Keras' RandomNormal default stddev
        a = rng.normal(0.0, 0.05, shape)
    elif init == "orthogonal":
        rows, cols = int(np.prod(shape[:-1])) if len(shape) > 1 else 1, shape[-1]
        m = rng.normal(size=(max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(m)
        q = q * np.sign(np.diag(r))
        a = (q if rows >= cols else q.T).reshape(shape)
    else:  # glorot_*, he_*, lecun_*: Keras' VarianceScaling of fixed scale and mode
        family, dist = init.split("_")
        a = variance_scaling(spec, rng, 2.0 if family == "he" else 1.0,
                             "fan_avg" if family == "glorot" else "fan_in",
                             "uniform" if dist == "uniform" else "truncated_normal")
    return np.asarray(a, np.float32)
