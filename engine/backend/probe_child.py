"""The device probe's child process (engine/backend/capabilities.py starts it, one per device
and try): builds a tiny program per float vector width with -Werror and checks it against
numpy, then builds and checks Layerloom's kernel library and times a GEMM on a Runtime, saying
each stage as a JSON line on stdout before it starts, so that the parent knows which stage a
crashed compiler took down. Run as `python -m layerloom.backend.probe_child <identity> <skip>`:
the device is the one whose identity (capabilities.identity) is given.

Kept apart from capabilities.py because it needs a Runtime, and the Runtime asks
capabilities.py what its device's compiler takes: capabilities sits below runtime, this above."""
import json
import os
import sys
import time

import numpy as np

from layerloom.backend.capabilities import (
    _WIDTH_PROBE, WIDTHS, Capabilities, _probe_reference, compiler_target, first_error,
    identity, is_simulator, refusal)
from layerloom.backend.ops import Ops
from layerloom.backend.runtime import Runtime, list_devices
from layerloom.core.errors import DriverError, LayerloomError


# -- the stages ------------------------------------------------------------------------------

def _say(**record):
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def _width_ok(rt, w):
    """None if float{w} code builds without a warning and computes right, else why not."""
    try:
        prg = rt.build_source(_WIDTH_PROBE.format(w=w), ["-Werror"], f"float{w} probe")
    except DriverError as e:
        return first_error(e.log) or "refused"
    x = np.linspace(-3, 3, 4 * w, dtype=np.float32)
    y = np.zeros_like(x)
    k = prg.probe
    xb = rt.to_device(x)
    yb = rt.empty(y.nbytes)
    k(rt.queue, (4,), None, xb, yb)
    y = rt.read(yb, y.size)
    if not np.allclose(y, _probe_reference(x.astype(np.float64)), rtol=1e-4, atol=1e-5):
        return "computes wrong results"
    return None


def _library_check(rt, caps):
    """Build Layerloom's kernel library and a GEMM at the chosen tile; an exact check of
    each; the GEMM's speed on a Fashion-MNIST MLP layer (128 x 784 -> 256)."""
    ops = Ops(rt)
    rng = np.random.default_rng(0)
    M, N, K = 37, 70, 19  # whole tiles and ragged edges on every tile the engine picks
    a = rng.integers(-3, 4, (M, K)).astype(np.float32)
    b = rng.integers(-3, 4, (K, N)).astype(np.float32)
    c = rt.empty(4 * M * N)
    _say(stage="start", what="building and checking the GEMM")
    ops.gemm(M, N, K, rt.to_device(a), rt.to_device(b), c, act="relu")
    if not np.array_equal(rt.read(c, M * N, (M, N)), np.maximum(a @ b, 0)):
        return {"problem": "its GEMM computes wrong results"}
    _say(stage="start", what="building and checking the kernel library")
    x = rng.standard_normal((8, 10)).astype(np.float32)
    xb, yb = rt.to_device(x), rt.empty(x.nbytes)
    ops.fill(yb, x.size, 0.0)
    ops.act_forward("softmax", xb, yb, 8, 10)
    e = np.exp(x - x.max(1, keepdims=True))
    if not np.allclose(rt.read(yb, x.size, x.shape), e / e.sum(1, keepdims=True), atol=1e-5):
        return {"problem": "its softmax computes wrong results"}
    rt.finish()
    if is_simulator(rt.device.platform, rt.device):
        return {}
    _say(stage="start", what="timing the GEMM")
    M, N, K = 128, 256, 784
    A = rt.to_device(rng.standard_normal((M, K)))
    B = rt.to_device(rng.standard_normal((K, N)))
    C = rt.empty(4 * M * N)
    ops.gemm(M, N, K, A, B, C)
    rt.finish()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(4):
            ops.gemm(M, N, K, A, B, C)
        rt.finish()
        best = min(best, (time.perf_counter() - t) / 4)
    return {"gflops": round(2.0 * M * N * K / best / 1e9, 1)}


def child_main(argv):
    key, skip = argv[0], argv[1]
    skip = {int(w) for w in skip.split(",") if w}
    found = [(plat, dev) for _, _, plat, dev in list_devices() if identity(plat, dev) == key]
    if not found:
        _say(stage="done", problem="the device list changed while probing")
        return
    plat, dev = found[0]  # devices of one identity answer alike: the cache keeps one answer
    rt = Runtime(dev, capabilities=Capabilities())
    widths, refused = [], {}
    for w in WIDTHS:
        if w in skip:
            continue
        _say(stage="start", what=f"width {w}")
        why = _width_ok(rt, w)
        _say(stage="width", width=w, ok=why is None, why=why)
        if why is None:
            widths.append(w)
        else:
            refused[w] = why
    caps = Capabilities(widths=tuple(widths), native_width=dev.native_vector_width_float or 4)
    if rt.kind == "cpu" and not widths:
        _say(stage="done", problem=refusal(refused, compiler_target(dev)))
        return
    try:
        result = _library_check(Runtime(dev, capabilities=caps), caps)
    except LayerloomError as e:
        result = {"problem": str(e)}
    except Exception as e:  # the driver's own error while building or running
        result = {"problem": f"{type(e).__name__}: {str(e)[:300]}"}
    _say(stage="done", **result)


if __name__ == "__main__":
    child_main(sys.argv[1:])
    sys.stdout.flush()
    # PoCL 3.0 can abort while tearing down after a refused build ("still have references to
    # IRs"); everything is said by now
    os._exit(0)
