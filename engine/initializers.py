"""Weight initialisers (Keras defaults: glorot_uniform kernels, zero biases)."""
import zlib

import numpy as np


def node_rng(seed, node_id, name):
    """A generator that depends only on the seed and the weight's identity, so adding a node
    elsewhere does not change this node's initial weights."""
    return np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(f"{node_id}/{name}".encode())])


def initialize(spec, rng):
    if spec.init == "zeros":
        return np.zeros(spec.shape, np.float32)
    if spec.init == "ones":
        return np.ones(spec.shape, np.float32)
    if spec.init == "glorot_uniform":
        limit = np.sqrt(6.0 / (spec.fan_in + spec.fan_out))
        return rng.uniform(-limit, limit, spec.shape).astype(np.float32)
    if spec.init == "random_uniform":  # Keras' RandomUniform default range, for Embedding
        return rng.uniform(-0.05, 0.05, spec.shape).astype(np.float32)
    raise ValueError(f"unknown initializer {spec.init!r}")
