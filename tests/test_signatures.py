"""Kernel argument types come from one place, the kernels' signatures in clkernels/*.cl
(backend/signatures.py): the parser reads every kernel the drivers build with as many arguments
as the driver counts, through the macros the signatures use; a type it cannot pass is an error
naming the kernel; a program built without the defines it needs stops at its #error."""
import numpy as np
import pytest

from layerloom import clkernels
from layerloom.backend.ops import Ops
from layerloom.backend.signatures import SignatureError, parse
from layerloom.core.errors import DriverError

i32, f32, u32 = np.int32, np.float32, np.uint32


def test_every_kernel_parses_and_each_name_is_declared_in_one_file():
    """Each file after the ones whose macros others use: every signature parses, and no
    kernel name is declared in two files (a program's lookup by name would be ambiguous)."""
    first = "\n".join(clkernels.source(n) for n in
                      ("vector", "activations", "gemm_cpu_base", "gemm_operands"))
    seen = dict.fromkeys(parse(first), "the shared files")
    for name in clkernels.names():
        for kernel in set(parse(first + clkernels.source(name))) - set(parse(first)):
            assert kernel not in seen, f"{kernel} in {seen.get(kernel)} and {name}.cl"
            seen[kernel] = name
    assert len(seen) > 80


@pytest.mark.parametrize("files,defines", [
    (("vector", "activations") + Ops.LIBRARY, ()),
    (("vector", "activations", "gemm_cpu_base", "gemm_cpu"), ("VW=8", "MR=6")),
    (("vector", "activations", "gemm_cpu_base", "gemm_narrow"), ("VW=8", "MR=6", "NN=10")),
    (("vector", "activations", "gemm_operands", "gemm"), ("TM=4", "TN=4")),
    (("vector", "activations", "gemm_operands", "gemm_local"), ("TS=16", "WPT=4")),
    (("vector", "activations", "conv"), ("GEOM", "GH=5", "GW=6", "GC=8", "GOH=5", "GOW=6",
                                         "GKH=3", "GKW=3", "GSH=1", "GSW=1", "GDH=1", "GDW=1",
                                         "GPT=1", "GPL=1")),
], ids=["library", "gemm_cpu", "gemm_narrow", "gemm", "gemm_local", "conv-geometry"])
def test_parsed_signatures_match_what_the_driver_built(rt, ops, files, defines):
    """Every kernel of the built program is in the parse, with the driver's argument count."""
    prg = rt.program(files, defines, prelude=ops._prelude)
    built = [n for n in prg.kernel_names.split(";") if n]
    assert built
    for name in built:
        types = rt.arg_types(files, name, prelude=ops._prelude)
        k = rt.cl.Kernel(prg, name)
        assert len(types) == k.num_args, name


def test_macro_parameter_lists_and_macro_defined_kernels():
    src = """
    #define SHARED const int M, __global const float* restrict A, \\
                   const uint seed
    #define SUMS(NAME, T) __kernel void NAME(__global T* x, const float s) { }
    // __kernel void commented_out(const double d) {}
    /* __kernel void also_commented(const double d) {} */
    __kernel __attribute__((reqd_work_group_size(8, 1, 1)))
    void tiled(SHARED, const int extra) { }
    SUMS(sums, float)
    SUMS(sums4, float4)
    """
    assert parse(src) == {"tiled": [i32, None, u32, i32], "sums": [None, f32],
                          "sums4": [None, f32]}


def test_the_engines_cpu_gemm_signature_through_its_macro():
    src = clkernels.source("gemm_cpu_base") + clkernels.source("gemm_cpu")
    types = parse(src)["gemm_tile"]
    assert types[:4] == [i32, i32, i32, None] and types[-1] == i32 and len(types) == 18


def test_a_type_the_engine_cannot_pass_names_the_kernel():
    with pytest.raises(SignatureError, match="kernel halves.*'const half h'"):
        parse("__kernel void halves(__global float* y, const half h) { }")


def test_a_kernel_the_source_does_not_declare_is_a_driver_error(rt):
    with pytest.raises(DriverError, match="declares no kernel 'nowhere'"):
        rt.arg_types(("vector",), "nowhere")


@pytest.mark.parametrize("files,defines,needs", [
    (("gemm_cpu_base", "gemm_cpu"), ("MR=6",), "VW"),
    (("gemm_cpu_base", "gemm_cpu"), ("VW=8", "MR=5"), "MR"),
    (("gemm_cpu_base", "gemm_narrow"), ("VW=8", "MR=6"), "NN"),
    (("gemm_operands", "gemm"), (), "TM and TN"),
    (("gemm_operands", "gemm_local"), ("TS=16", "WPT=5"), "WPT must divide TS"),
    (("conv",), ("GEOM", "GH=5"), "GEOM needs"),
], ids=["no-VW", "bad-MR", "no-NN", "no-tile", "bad-WPT", "partial-geometry"])
def test_a_program_without_its_defines_stops_at_its_error(rt, ops, files, defines, needs):
    with pytest.raises(DriverError) as e:
        rt.program(("vector", "activations") + files, defines, prelude=ops._prelude)
    assert needs in e.value.log
