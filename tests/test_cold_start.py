"""A first run on a machine with empty kernel caches (issue 29, item 4): the programs nearly
every model needs are built in background threads while the data loads (Runtime.prebuild),
a program asked for while it builds is waited for and never built twice, each build is
announced (Runtime.compiling, core/events.py KernelBuild: n of m) and the CLI says it as
"Compiling kernels (n of m)", except for a program built before on this device and driver."""
import io
import os
import threading

import pytest

from layerloom.backend import runtime as rtmod
from layerloom.backend.ops import Ops
from layerloom.backend.runtime import Runtime
from layerloom.core.errors import DriverError

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "assets", "examples")


@pytest.fixture
def fresh(rt, tmp_path, monkeypatch):
    """A runtime of its own on the tests' device (empty program caches), its record of
    programs built before under tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return Runtime(rt.device, capabilities=rt.caps)


def _src(tag, body="a[0] = 1.0f;"):
    """A program of its own (the tag makes its source, and so its cache entries, new)."""
    return f"// {tag}\n__kernel void k_{tag}(__global float* a) {{ {body} }}\n"


def _counting(rt, monkeypatch, gate=None):
    """Replace rt.build_source by one that counts builds per source (and, with a gate, holds
    the build of a program tagged slow... until the gate is set)."""
    calls, real = [], rt.build_source

    def build(src, options, what):
        calls.append((src.split("\n")[0], threading.current_thread().name))
        if gate is not None and src.startswith("// slow"):
            assert gate.wait(60)
        return real(src, options, what)
    monkeypatch.setattr(rt, "build_source", build)
    return calls


def test_a_program_asked_for_while_it_prebuilds_is_built_once(fresh, monkeypatch):
    gate = threading.Event()
    calls = _counting(fresh, monkeypatch, gate)
    futures = fresh.prebuild([(("vector",), (), _src("slow_once"))])
    threading.Timer(0.3, gate.set).start()  # the caller below waits for the build under way
    prg = fresh.program(("vector",), prelude=_src("slow_once"))
    futures[0].result(60)
    assert len(calls) == 1 and calls[0][1].startswith("layerloom-build")
    assert fresh.program(("vector",), prelude=_src("slow_once")) is prg
    assert [b.background for b in fresh.builds] == [True]


def test_a_queued_prebuild_is_built_at_once_by_the_thread_that_needs_it(fresh, monkeypatch):
    """One build thread busy with a slow program: a program still queued behind it is built
    by the caller that needs it instead of waiting its turn."""
    monkeypatch.setattr(rtmod.os, "cpu_count", lambda: 1)
    gate = threading.Event()
    calls = _counting(fresh, monkeypatch, gate)
    futures = fresh.prebuild([(("vector",), (), _src("slow_first")),
                              (("vector",), (), _src("needed_now"))])
    fresh.program(("vector",), prelude=_src("needed_now"))
    assert dict(calls)["// needed_now"] == threading.current_thread().name
    gate.set()
    for f in futures:
        f.result(60)
    fresh.wait_for_builds()
    assert sorted(c[0] for c in calls) == ["// needed_now", "// slow_first"]
    by_what = {b.background for b in fresh.builds}
    assert by_what == {True, False}


def test_a_failed_prebuild_is_raised_where_the_program_is_used(fresh):
    bad = "__kernel void k(__global float* a) { a[0] = not_declared; }\n"
    for f in fresh.prebuild([(("vector",), (), bad)]):
        f.result(60)  # the background thread swallows it...
    with pytest.raises(DriverError) as e:  # ...and the program's user gets the compiler's log
        fresh.program(("vector",), prelude=bad)
    assert "not_declared" in e.value.log


def test_each_build_is_announced_n_of_m_and_known_the_second_time(fresh, rt):
    events = []
    fresh.compiling.connect(events.append)
    tags = ("announce_a", "announce_b", "announce_c")
    fresh.prebuild([(("vector",), (), _src(t)) for t in tags[:2]])
    fresh.wait_for_builds()
    fresh.program(("vector",), prelude=_src(tags[2]))  # one nobody built ahead: m grows
    starts = [e for e in events if e.started]
    ends = [e for e in events if not e.started]
    assert sorted(e.n for e in starts) == [1, 2, 3] and len(ends) == 3
    assert {e.m for e in starts if e.background} == {2} and starts[-1].m == 3
    assert all(e.seconds >= 0 and not e.cached for e in ends)
    # a second runtime on the same device and driver: built before, so not said as compiling
    again = Runtime(rt.device, capabilities=rt.caps)
    seen = []
    again.compiling.connect(seen.append)
    again.program(("vector",), prelude=_src(tags[0]))
    assert seen and all(e.cached for e in seen)
    out = io.StringIO()
    from layerloom.cli.run import compile_progress
    show = compile_progress(out)
    for e in seen + starts:
        show(e)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("Compiling kernels (")
    assert all(" of " in line and "vector.cl" in line for line in lines)


def test_the_startup_programs_are_the_ones_a_dense_model_asks_for(rt, tmp_path, monkeypatch):
    """The CLI's prebuild (the library, the GEMM tiles, the narrow GEMM per output width) is
    what training the spirals MLP then asks for: on a CPU no program is left to build while
    the model trains, and none is built twice anywhere."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(rtmod, "choose_device", lambda spec=None, probe=None: rt.device)
    monkeypatch.setattr(rtmod, "_probe_capabilities", lambda device: rt.caps)
    from layerloom.cli.run import start_runtime
    from layerloom.data.prepare import prepare_data
    from layerloom.project import loom
    from layerloom.train.session import Session
    proj = loom.load(os.path.join(EXAMPLES, "spirals.loom"))
    out = io.StringIO()
    runtime = start_runtime(proj, None, out)
    runtime.wait_for_builds()
    ahead = len(runtime.builds)
    assert ahead >= (3 if runtime.kind == "cpu" else 1)
    assert all(b.background for b in runtime.builds)
    assert out.getvalue().count("Compiling kernels (") == ahead
    session = Session(proj, runtime=runtime, batch_size=64)
    session.fit(prepare_data(proj), epochs=1)
    whats = [b.what for b in runtime.builds]
    assert len(whats) == len(set(whats))
    if runtime.kind == "cpu":
        assert whats[ahead:] == []
    library = "+".join(("vector", "activations") + Ops.LIBRARY) + ".cl"
    assert whats.count(library) == 1


def test_the_warm_up_leaves_the_real_run_as_it_would_have_been(rt, tmp_path, monkeypatch):
    """The CLI's warm-up trains a throwaway copy of the model one batch on the same runtime
    while the data loads: the real model then trains to the very same weights as on a
    runtime that never warmed up, and the warm-up built the programs the fit needs."""
    import numpy as np
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from layerloom.cli.run import warm_up
    from layerloom.data.prepare import prepare_data
    from layerloom.project import loom
    from layerloom.train.session import Session
    proj = loom.load(os.path.join(EXAMPLES, "spirals.loom"))
    if rt.kind != "cpu":  # only CPUs compile work-group functions at a kernel's first launch
        assert warm_up(proj, Runtime(rt.device, capabilities=rt.caps), 64, 3) is None
        return
    data = prepare_data(proj)
    weights = []
    for warm in (True, False):
        runtime = Runtime(rt.device, capabilities=rt.caps)
        if warm:
            warm_up(proj, runtime, 64, 3).join(120)
            built = len(runtime.builds)
            assert built >= 2
        session = Session(proj, runtime=runtime, batch_size=64, seed=3)
        session.fit(data, epochs=1)
        weights.append(session.model.get_weights())
        if warm:
            assert len(runtime.builds) == built  # nothing left to build for the real fit
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        np.testing.assert_array_equal(weights[0][k], weights[1][k], err_msg=k)
