import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_make_parametrize_id(config, val, argname):
    """Ids that name the case: test_gemm[M=1-N=3-trans_a-not_trans_b-tile=16x8], not
    [1-3-True-False-tile0]."""
    if isinstance(val, bool):
        return argname if val else f"not_{argname}"
    if val is None:
        return f"no_{argname}"
    if isinstance(val, (int, float)):
        return f"{argname}={val:g}" if isinstance(val, float) else f"{argname}={val}"
    if isinstance(val, tuple) and val and all(isinstance(v, int) for v in val):
        return f"{argname}={'x'.join(map(str, val))}"
    if isinstance(val, dict):
        import json
        text = json.dumps(val, separators=(",", ":"))
        return text if len(text) <= 60 else text[:57] + "..."
    return None


def pytest_configure(config):
    # every program the tests build (kernels, GEMM variants, Lambda expressions): a compiler
    # warning is an error, since another vendor's compiler may refuse what PoCL only warns about
    from layerloom.backend.runtime import Runtime
    Runtime.extra_build_options = ("-Werror",)


@pytest.fixture
def data_env(tmp_path, monkeypatch):
    """Keras' datasets looked for under tmp_path/data only (files a test writes), the caches
    under tmp_path/cache, and no download."""
    from layerloom.data import keras_sets
    monkeypatch.setenv("LAYERLOOM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(url, timeout=None):
        raise OSError("network unreachable (test)")
    monkeypatch.setattr(keras_sets.urllib.request, "urlopen", offline)
    return tmp_path


@pytest.fixture(scope="session")
def rt():
    """The OpenCL runtime under test: $LAYERLOOM_DEVICE if set, else the default device (CI has
    only the PoCL CPU device)."""
    from layerloom.backend.runtime import Runtime
    return Runtime()


def use_cpu_tile(rt, ops, tile, monkeypatch):
    """Run ops' CPU GEMM with register tile (VW, MR), or skip where the device's compiler does
    not take float VW (PoCL 3.0 on AMD Zen 4 refuses float16: engine/backend/capabilities.py) or the
    engine would not use it there, being wider than the device's own tile (Mesa's llvmpipe,
    native width 1, gets 4-wide tiles; its compiler spent minutes and gigabytes on 16-wide
    ones)."""
    if tile[0] not in rt.caps.widths:
        pytest.skip(f"{rt.describe()} does not take float{tile[0]}: "
                    f"{rt.caps.refused.get(tile[0], 'not probed')}")
    if tile[0] > rt.caps.vector_width:
        pytest.skip(f"{rt.describe()} runs {rt.caps.vector_width}-wide tiles")
    monkeypatch.setattr(ops, "cpu_tile", tile)


# for tests of elementwise kernels: the device's elementwise width and the GPU form (one element
# per work-item)
ew_widths = pytest.mark.parametrize("ops", [None, 1], indirect=True, ids=["ew_device", "ew1"])


@pytest.fixture(scope="session")
def ops(rt, request):
    """Ops on rt. Tests of elementwise kernels parametrize it (indirect=True) with the elementwise
    width: None (the device's own), 1 (the GPU form, one element per work-item)."""
    from layerloom.backend.ops import Ops
    return Ops(rt, ew=getattr(request, "param", None))


_KEPT_BUFFERS = []


def pytest_sessionstart(session):
    """Under Oclgrind's uninitialised-value check (the portability matrix) no buffer is ever
    released: Oclgrind reports reads of memory that the host or a kernel did write, once a
    buffer was released and its address given to a new one (a (3, 33) layer test after a (7,)
    one: elements 7 onwards of the new buffer read as uninitialised), and the tests drop
    temporaries while kernels that use them are queued, which OpenCL allows but Oclgrind
    does not follow either."""
    if not os.environ.get("OCLGRIND_UNINITIALIZED"):
        return
    from layerloom.backend.runtime import Runtime
    real = Runtime.empty

    def empty(self, nbytes):
        buf = real(self, nbytes)
        _KEPT_BUFFERS.append(buf)
        return buf
    Runtime.empty = empty


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def to_dev(rt, a):
    return rt.to_device(np.asarray(a, np.float32))


def from_dev(rt, buf, shape):
    return rt.read(buf, int(np.prod(shape)), shape)


from layerloom.testing import numeric_grad  # noqa: E402,F401  (the public harness's)


# -- editor windows (tests/test_gui_*.py; qapp is pytest-qt's) ------------------------------

def _dispose(w, qapp):
    """Destroy a window and everything it owns while Qt is still alive, so nothing Qt-backed is
    left for the interpreter's final garbage collection."""
    import gc
    from PySide6.QtCore import QCoreApplication, QEvent
    if w.training.worker is not None:
        w.training.stop_training()
        w.training.worker.wait(30000)
    w.training.device_survey.wait()
    w.doc.undo.clear()
    w.close()
    w.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    qapp.processEvents()
    gc.collect()


@pytest.fixture
def make_window(qapp):
    made = []

    def make():
        from layerloom.app.window.main_window import MainWindow
        w = MainWindow(confirm=False)
        w.resize(1200, 800)
        w.show()
        made.append(w)
        return w
    yield make
    for w in made:
        _dispose(w, qapp)


@pytest.fixture
def win(make_window):
    return make_window()
