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


# for tests of elementwise kernels: the device's elementwise width and the GPU form (one element
# per work-item)
ew_widths = pytest.mark.parametrize("ops", [None, 1], indirect=True, ids=["ew_device", "ew1"])


@pytest.fixture(scope="session")
def ops(rt, request):
    """Ops on rt. Tests of elementwise kernels parametrize it (indirect=True) with the elementwise
    width: None (the device's own), 1 (the GPU form, one element per work-item)."""
    from engine.ops import Ops
    return Ops(rt, ew=getattr(request, "param", None))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def to_dev(rt, a):
    return rt.to_device(np.asarray(a, np.float32))


def from_dev(rt, buf, shape):
    return rt.read(buf, int(np.prod(shape)), shape)


def numeric_grad(f, arr, eps=1e-6):
    """d f() / d arr by central differences; f reads arr (float64), which is perturbed in place."""
    g = np.zeros_like(arr)
    for i in np.ndindex(arr.shape):
        old = arr[i]
        arr[i] = old + eps
        hi = f()
        arr[i] = old - eps
        lo = f()
        arr[i] = old
        g[i] = (hi - lo) / (2 * eps)
    return g
