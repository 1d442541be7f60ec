"""SGEMM throughput of Layerloom's OpenCL GEMM against numpy (OpenBLAS) on the same shapes, in
one run: the Fashion-MNIST MLP's layer shapes (forward and the two backward GEMMs of each) and a
1024 cube. Prints a table with ratios and writes JSON.

Beside each shape it times the same launches (grids and work-groups of the GEMM's plan) of an
empty kernel with the GEMM's 17 arguments: what a call costs through pyopencl and the device's
runtime before any arithmetic. numpy's time over that is the best ratio any kernel launched
this way could reach ("ceiling").

    python bench/gemm.py [--device SPEC] [--repeat N] [--rounds R] [--only TEXT]
                         [--json bench/results/gemm.json]
"""
import argparse
import json
import os
import platform
import time

import numpy as np


from layerloom.backend.signatures import parse  # noqa: E402
from layerloom.backend.ops import Ops  # noqa: E402
from layerloom.backend.runtime import Runtime  # noqa: E402

# (name, M, N, K, trans_a, trans_b): batch 128, MLP 784-256-128-10
SHAPES = [
    ("fwd 128x784->256", 128, 256, 784, False, False),
    ("fwd 128x256->128", 128, 128, 256, False, False),
    ("fwd 128x128->10", 128, 10, 128, False, False),
    ("dW 784x256 (X^T dY)", 784, 256, 128, True, False),
    ("dW 256x128 (X^T dY)", 256, 128, 128, True, False),
    ("dW 128x10 (X^T dY)", 128, 10, 128, True, False),
    ("dX 128x256->784 (dY W^T)", 128, 784, 256, False, True),
    ("dX 128x128->256 (dY W^T)", 128, 256, 128, False, True),
    ("dX 128x10->128 (dY W^T)", 128, 128, 10, False, True),
    ("cube 1024", 1024, 1024, 1024, False, False),
]


# the CPU GEMM kernels' signature (gemm_cpu_base.cl's GEMM_PARAMS), no body
EMPTY = """__kernel void empty(const int M, const int N, const int K, __global const float* A,
    const int lda, __global const float* B, const int ldb, __global float* C, const int ldc,
    __global const float* bias, const int accumulate, const int aoff, const int boff,
    const int coff, const int trans_a, const int act, const int bias_at) {}"""


def empty_launches(rt, k, ops, M, N, K, A, B, C, ta, tb):
    """A function launching the empty kernel k on each grid gemm's plan for this call uses."""
    k.set_args(M, N, K, A, K, B, N, C, N, None, 0, 0, 0, 0, int(ta), 0, -1)
    grids = [(grid, local) for _, grid, local in
             ops.gemm_launches(M, N, K, A, B, C, trans_a=ta, trans_b=tb)]

    def run():
        for grid, local in grids:
            rt.enqueue(k, grid, local)
    return run


def timed(fn, repeat, finish=lambda: None):
    fn()
    finish()
    best = float("inf")
    for _ in range(3):  # best of three rounds of `repeat` calls
        t = time.perf_counter()
        for _ in range(repeat):
            fn()
        finish()
        best = min(best, (time.perf_counter() - t) / repeat)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=4, help="alternations of the two sides")
    ap.add_argument("--only", help="only the shapes whose name contains TEXT (e.g. dX)")
    ap.add_argument("--json", default=os.path.join("bench", "results", "gemm.json"))
    args = ap.parse_args(argv)
    rt = Runtime(args.device)
    ops = Ops(rt)
    rng = np.random.default_rng(0)
    empty_k = rt.cl.Program(rt.ctx, EMPTY).build().empty
    empty_k.set_scalar_arg_dtypes(parse(EMPTY)["empty"])
    rows = []
    print(f"device: {rt.describe()}   numpy: {np.__version__}   cpu: {platform.processor() or platform.machine()}")
    print(f"{'shape':28s} {'Layerloom GF/s':>15s} {'numpy GF/s':>11s} {'ratio':>7s} "
          f"{'launches only us':>16s} {'ceiling':>7s}")
    for name, M, N, K, ta, tb in SHAPES:
        if args.only and args.only not in name:
            continue
        A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
        B = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
        Ad, Bd, Cd = rt.to_device(A), rt.to_device(B), rt.empty(4 * M * N)
        # calls per timed round: at least --repeat, and for the small shapes enough for a
        # few milliseconds, so that the one wait for the device that ends a round (tens of
        # microseconds on PoCL) does not count as part of each call's time
        rep = max(1, args.repeat // 10) if M * N * K > 1e8 else \
            max(args.repeat, min(500, int(1e8 / (M * N * K))))
        An, Bn = (A.T if ta else A), (B.T if tb else B)
        empty = empty_launches(rt, empty_k, ops, M, N, K, Ad, Bd, Cd, ta, tb)
        t_cl = t_np = t_empty = float("inf")
        for _ in range(args.rounds):  # alternate, keep the best of each: load on a shared
            # machine comes and goes, and then hits both sides alike
            time.sleep(0.3)  # OpenBLAS's threads spin for a while after each call: let them
            t_cl = min(t_cl, timed(lambda: ops.gemm(M, N, K, Ad, Bd, Cd, trans_a=ta,
                                                    trans_b=tb), rep, rt.finish))
            t_np = min(t_np, timed(lambda: An @ Bn, rep))
            t_empty = min(t_empty, timed(empty, rep, rt.finish))
        got = rt.read(Cd, M * N, (M, N))
        err = float(np.abs(got - An @ Bn).max() / max(1.0, np.abs(An @ Bn).max()))
        flops = 2.0 * M * N * K
        row = {"shape": name, "M": M, "N": N, "K": K, "trans_a": ta, "trans_b": tb,
               "layerloom_gflops": flops / t_cl / 1e9, "numpy_gflops": flops / t_np / 1e9,
               "ratio": t_np / t_cl, "max_rel_error": err,
               "launches_only_us": t_empty * 1e6, "ratio_ceiling": t_np / t_empty}
        rows.append(row)
        print(f"{name:28s} {row['layerloom_gflops']:15.1f} {row['numpy_gflops']:11.1f} "
              f"{row['ratio']:7.2f} {row['launches_only_us']:16.1f} {row['ratio_ceiling']:7.2f}")
    layer = [r["ratio"] for r in rows if not r["shape"].startswith("cube")]
    cube = [r["ratio"] for r in rows if r["shape"].startswith("cube")]
    if layer:
        print(f"geometric mean ratio over layer shapes: {np.exp(np.mean(np.log(layer))):.2f} "
              "(issue 6 target: 0.9)")
    if cube:
        print(f"1024 cube: {cube[0]:.2f} (target 0.5)")
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"device": rt.describe(), "numpy": np.__version__, "rows": rows}, f, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
