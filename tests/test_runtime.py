"""The runtime builds every program as OpenCL C 1.2, the language the kernels are written in
for every vendor's compiler; under the tests any compiler warning fails a build. A refused
build is an error that names the device and carries the log; a cached build that lacks a
kernel is built afresh; programs hold only the vector widths they use."""
import pytest

from layerloom.core.errors import DriverError


def test_programs_build_as_opencl_c_1_2(rt):
    """An OpenCL C 2.0 built-in is not there: a kernel that needs it does not build."""
    assert "-cl-std=CL1.2" in rt.build_options()
    src = "__kernel void k(__global int* a) { a[0] = work_group_reduce_add(a[0]); }\n"
    with pytest.raises(DriverError) as e:
        rt.program(("vector",), prelude=src)
    assert rt.name in str(e.value) and "work_group_reduce_add" in e.value.log


def test_compiler_warnings_fail_the_tests_builds(rt):
    """conftest.py turns warnings into errors for every program the tests build, so a kernel
    that compiles here only with a warning (which another vendor's compiler may reject) fails."""
    assert "-Werror" in rt.build_options()
    with pytest.raises(DriverError):
        rt.program(("vector",), prelude='#warning "a compiler warning"\n')
    rt.program(("vector",), prelude="// no warning\n")  # the same files build without it


def test_a_refused_build_names_the_device_and_quotes_the_log(rt):
    """What reaches the user: one message with the device and the compiler's first lines,
    not pyopencl's exception."""
    with pytest.raises(DriverError) as e:
        rt.program(("vector",), prelude="__kernel void k(__global float* a) { a[0] = oops; }\n")
    text = str(e.value)
    assert text.startswith(rt.describe()) and "refused vector.cl" in text
    assert "oops" in text and e.value.exit_code == 1


def test_a_cached_build_without_the_kernel_is_built_afresh(rt, monkeypatch):
    """A driver's cache can hand back a program without its kernels (PoCL 3.0 after a build
    that crashed: "'fill' was not found as a program info attribute"): the runtime builds
    the program again past the caches instead of failing."""
    from layerloom.backend.runtime import Runtime
    fresh = Runtime(rt.device, capabilities=rt.caps)
    real = fresh.build_source
    calls = []

    def stale_first(src, options, what):
        calls.append(list(options))
        if len(calls) == 1:  # what a broken cache entry gives: a program without the kernel
            return real("__kernel void other(__global float* a) { a[0] = 1.0f; }\n", [], what)
        return real(src, options, what)
    monkeypatch.setattr(fresh, "build_source", stale_first)
    src = "__kernel void wanted(__global float* a) { a[0] = 2.0f; }\n"
    k = fresh.kernel(("vector",), "wanted", prelude=src)
    assert k.function_name == "wanted" and len(calls) == 2
    assert any(o.startswith("-DLAYERLOOM_FRESH_BUILD=") for o in calls[1])


def test_a_build_that_keeps_lacking_the_kernel_is_a_driver_error(rt, monkeypatch):
    from layerloom.backend.runtime import Runtime
    fresh = Runtime(rt.device, capabilities=rt.caps)
    real = fresh.build_source
    monkeypatch.setattr(fresh, "build_source", lambda src, options, what: real(
        "__kernel void other(__global float* a) { a[0] = 1.0f; }\n", [], what))
    with pytest.raises(DriverError, match="has no kernel 'wanted'"):
        fresh.kernel(("vector",), "wanted", prelude="")


def build_with_activations(rt, ew, vw, body):
    """vector.cl and activations.cl as the engine builds them (EW, and VW for a CPU GEMM
    program), then `body`."""
    from layerloom import clkernels
    from layerloom.core.activations import cl_prelude
    src = "\n".join([cl_prelude() + f"#define EW {ew}", clkernels.source("vector"),
                     clkernels.source("activations"), body])
    return rt.build_source(src, [f"-DVW={vw}"] if vw else [], "a test program")


@pytest.mark.parametrize("ew,vw,present,absent", [
    (8, None, [8], [4, 16]), (1, None, [], [4, 8, 16]), (8, 8, [4, 8], [16]),
    (8, 16, [4, 8, 16], []), (4, 4, [4], [8, 16])], ids=[
    "elementwise-8", "gpu-form", "gemm-avx2", "gemm-avx512", "gemm-sse"])
def test_programs_hold_only_the_vector_widths_they_use(rt, ew, vw, present, absent):
    """activations.cl instantiates its vector functions for the program's elementwise width
    EW and GEMM tile width VW only (and float4 for gemm_nt): float16 functions in every
    program are what made PoCL 3.0 warn and crash on Zen 4."""
    if any(w not in rt.caps.widths for w in present + [ew, vw or ew] if w > 1):
        pytest.skip(f"{rt.describe()} does not take every width of this case")
    for w in present + absent:
        body = (f"__kernel void k(__global float* a) "
                f"{{ a[0] = act_fwd{w}(0, (float{w})(a[0])).s0; }}")
        if w in present:
            build_with_activations(rt, ew, vw, body)
        else:
            with pytest.raises(DriverError):
                build_with_activations(rt, ew, vw, body)


def test_activations_need_the_elementwise_width(rt):
    """A define the engine must give has an #error guard, not a silent default."""
    from layerloom.core.activations import cl_prelude
    with pytest.raises(DriverError) as e:
        rt.program(("vector", "activations"), (), cl_prelude())
    assert "EW (the elementwise vector width)" in e.value.log


def test_compiler_output_warnings_are_ignored_in_every_thread(rt):
    """pyopencl's CompilerWarning (any compiler output: Intel's runtime prints some on every
    build) was silenced by a catch_warnings() around each build, which is not thread-safe: a
    build in a prebuild thread sometimes printed it on stderr, where `--sweep`'s one-line error
    was checked (tests/test_sweep.py failed on Intel's runtime). The filter is process-wide."""
    import threading
    import warnings
    from layerloom.backend import runtime
    runtime._cl()
    with warnings.catch_warnings(record=True) as seen:  # the filters as _cl() left them

        def warn():
            warnings.warn("Compilation started", rt.cl.CompilerWarning)
        t = threading.Thread(target=warn)
        t.start()
        t.join()
    assert not [w for w in seen if issubclass(w.category, rt.cl.CompilerWarning)]
