import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def rt():
    """The OpenCL runtime under test: $LAYERLOOM_DEVICE if set, else the default device (CI has
    only the PoCL CPU device)."""
    from engine.runtime import Runtime
    return Runtime()


@pytest.fixture(scope="session")
def ops(rt):
    from engine.ops import Ops
    return Ops(rt)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def to_dev(rt, a):
    return rt.to_device(np.asarray(a, np.float32))


def from_dev(rt, buf, shape):
    return rt.read(buf, int(np.prod(shape)), shape)


def central_diff(f, arrays, eps=1e-6):
    """Gradients of scalar f(arrays) w.r.t. each float64 array, by central differences."""
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        it = np.nditer(a, flags=["multi_index"])
        for _ in it:
            i = it.multi_index
            old = a[i]
            a[i] = old + eps
            hi = f()
            a[i] = old - eps
            lo = f()
            a[i] = old
            g[i] = (hi - lo) / (2 * eps)
        grads.append(g)
    return grads
