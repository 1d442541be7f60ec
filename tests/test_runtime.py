"""The runtime builds every program as OpenCL C 1.2, the language the kernels are written in
for every vendor's compiler; under the tests any compiler warning fails a build."""
import pytest


def test_programs_build_as_opencl_c_1_2(rt):
    """An OpenCL C 2.0 built-in is not there: a kernel that needs it does not build."""
    cl = rt.cl
    assert "-cl-std=CL1.2" in rt.build_options()
    src = "__kernel void k(__global int* a) { a[0] = work_group_reduce_add(a[0]); }\n"
    with pytest.raises(cl.Error):
        rt.program(("vector",), prelude=src)


def test_compiler_warnings_fail_the_tests_builds(rt):
    """conftest.py turns warnings into errors for every program the tests build, so a kernel
    that compiles here only with a warning (which another vendor's compiler may reject) fails."""
    cl = rt.cl
    assert "-Werror" in rt.build_options()
    with pytest.raises(cl.Error):
        rt.program(("vector",), prelude='#warning "a compiler warning"\n')
    rt.program(("vector",), prelude="// no warning\n")  # the same files build without it
