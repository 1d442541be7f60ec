"""Each kernel against a float64 numpy reference, on sizes that straddle tile edges."""
import numpy as np
import pytest

from conftest import ew_widths, from_dev, numeric_grad, to_dev, use_cpu_tile
from layerloom.backend.geometry import ConvGeometry, PoolGeometry
from layerloom.core.activations import NAMES, REFERENCE, ROW_WISE

SIZES = [1, 3, 4, 5, 31, 32, 33, 63, 64, 65]


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (31, 33, 65), (64, 32, 63), (33, 65, 4),
                                   (5, 1, 32), (65, 3, 1)])
def test_gemm_exact_on_integers(rt, ops, rng, trans_a, trans_b, M, N, K):
    # small integers: every product and sum is exact in float32
    A = rng.integers(-3, 4, (K, M) if trans_a else (M, K)).astype(np.float64)
    B = rng.integers(-3, 4, (N, K) if trans_b else (K, N)).astype(np.float64)
    ref = (A.T if trans_a else A) @ (B.T if trans_b else B)
    C = rt.empty(4 * M * N)
    ops.gemm(M, N, K, to_dev(rt, A), to_dev(rt, B), C, trans_a=trans_a, trans_b=trans_b)
    np.testing.assert_array_equal(from_dev(rt, C, (M, N)), ref)


@pytest.mark.parametrize("act", [a for a in NAMES if a not in ROW_WISE])
@pytest.mark.parametrize("M,N,K", [(31, 33, 17), (1, 65, 3), (64, 1, 64)])
def test_gemm_bias_activation_epilogue(rt, ops, rng, act, M, N, K):
    A, B, b = rng.normal(size=(M, K)), rng.normal(size=(K, N)), rng.normal(size=N)
    C = rt.empty(4 * M * N)
    ops.gemm(M, N, K, to_dev(rt, A), to_dev(rt, B), C, bias=to_dev(rt, b), act=act)
    np.testing.assert_allclose(from_dev(rt, C, (M, N)), REFERENCE[act](A @ B + b),
                               rtol=1e-5, atol=1e-5)


def test_gemm_accumulate(rt, ops, rng):
    M, N, K = 33, 31, 9
    A, B, C0 = rng.normal(size=(M, K)), rng.normal(size=(K, N)), rng.normal(size=(M, N))
    C = to_dev(rt, C0)
    ops.gemm(M, N, K, to_dev(rt, A), to_dev(rt, B), C, accumulate=True)
    np.testing.assert_allclose(from_dev(rt, C, (M, N)), C0 + A @ B, rtol=1e-5, atol=1e-5)


@ew_widths
@pytest.mark.parametrize("act", NAMES)
@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 33), (65, 2)])
def test_activation_forward_backward(rt, ops, rng, act, rows, cols):
    x = rng.normal(size=(rows, cols)) * 3
    dy = rng.normal(size=(rows, cols))
    y_dev = rt.empty(4 * x.size)
    ops.act_forward(act, to_dev(rt, x), y_dev, rows, cols)
    y = from_dev(rt, y_dev, x.shape)
    np.testing.assert_allclose(y, REFERENCE[act](x), rtol=1e-5, atol=1e-6)
    # backward against central differences of the float64 reference
    num = numeric_grad(lambda: (REFERENCE[act](x) * dy).sum(), x)
    prev = rng.normal(size=x.shape)
    for accumulate in (False, True):
        dx = to_dev(rt, prev)
        ops.act_backward(act, y_dev, to_dev(rt, dy), dx, rows, cols, accumulate=accumulate,
                         x=to_dev(rt, x))
        want = num + (prev if accumulate else 0)
        np.testing.assert_allclose(from_dev(rt, dx, x.shape), want, rtol=1e-4, atol=1e-5)


@ew_widths
@pytest.mark.parametrize("rows,cols", [(1, 1), (33, 31), (4, 65), (5, 24), (3, 256)])
def test_bias_grad_and_copy2d(rt, ops, rng, rows, cols):
    dy = rng.normal(size=(rows, cols))
    db = rt.empty(4 * cols)
    ops.bias_grad(to_dev(rt, dy), db, rows, cols)
    np.testing.assert_allclose(from_dev(rt, db, (cols,)), dy.sum(0), rtol=1e-5, atol=1e-5)
    dst0 = rng.normal(size=(rows, cols + 5))
    dst = to_dev(rt, dst0)
    ops.copy2d(to_dev(rt, dy), cols, 0, dst, cols + 5, 3, rows, cols, accumulate=True)
    want = dst0.copy()
    want[:, 3:3 + cols] += dy
    np.testing.assert_allclose(from_dev(rt, dst, dst0.shape), want, rtol=1e-6, atol=1e-6)


def test_philox_known_answer(ops):
    # Random123's published answer for Philox-4x32-10, counter 0 and key 0
    assert [f"{v:08x}" for v in ops.philox((0, 0, 0, 0), (0, 0))] == \
        ["6627e8d5", "e169c58d", "bc57ac4c", "9b00dbd8"]
    # and for all-ones counter and key
    assert [f"{v:08x}" for v in ops.philox((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2)] == \
        ["408f276d", "41c83b0e", "a20bc7c6", "6d5451fd"]


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_statistics_and_reproducibility(rt, ops, rate):
    n = 100_003
    x = np.ones(n)
    xd, y1, y2, y3 = to_dev(rt, x), rt.empty(4 * n), rt.empty(4 * n), rt.empty(4 * n)
    ops.dropout(xd, y1, n, rate, seed=5, salt=9, step=3)
    ops.dropout(xd, y2, n, rate, seed=5, salt=9, step=3)
    ops.dropout(xd, y3, n, rate, seed=5, salt=9, step=4)
    a, b, c = (from_dev(rt, y, (n,)) for y in (y1, y2, y3))
    np.testing.assert_array_equal(a, b)  # same (seed, salt, step): same mask
    assert (a != c).any()  # another step: another mask
    kept = a != 0
    assert abs(kept.mean() - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / n)
    np.testing.assert_allclose(a[kept], 1 / (1 - rate), rtol=1e-6)
    # the backward pass regenerates the same mask
    dy = np.arange(n, dtype=np.float64) % 7
    dx = rt.empty(4 * n)
    ops.dropout(to_dev(rt, dy), dx, n, rate, seed=5, salt=9, step=3)
    np.testing.assert_allclose(from_dev(rt, dx, (n,)), dy * a, rtol=1e-6)


def assert_gemm_exact(rt, ops, rng, M, N, K, trans_a, trans_b):
    """op(A) op(B) on small integers, exact: with bias and ReLU, and accumulated into C."""
    A = rng.integers(-3, 4, (K, M) if trans_a else (M, K)).astype(np.float64)
    B = rng.integers(-3, 4, (N, K) if trans_b else (K, N)).astype(np.float64)
    b = rng.integers(-3, 4, N).astype(np.float64)
    C0 = rng.integers(-3, 4, (M, N)).astype(np.float64)
    ref = (A.T if trans_a else A) @ (B.T if trans_b else B)
    C = rt.empty(4 * M * N)
    ops.gemm(M, N, K, to_dev(rt, A), to_dev(rt, B), C, trans_a=trans_a, trans_b=trans_b,
             bias=to_dev(rt, b), act="relu")
    np.testing.assert_array_equal(from_dev(rt, C, (M, N)), np.maximum(ref + b, 0))
    C = to_dev(rt, C0)
    ops.gemm(M, N, K, to_dev(rt, A), to_dev(rt, B), C, trans_a=trans_a, trans_b=trans_b,
             accumulate=True)
    np.testing.assert_array_equal(from_dev(rt, C, (M, N)), C0 + ref)


@pytest.mark.parametrize("tile", [(16, 8), (8, 6), (4, 4)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True)])
def test_gemm_every_cpu_tile_shape(rt, ops, rng, tile, trans_a, trans_b, monkeypatch):
    """Each register-tile configuration a CPU device may get (AVX-512, AVX2, SSE), with the
    edges that straddle its tiles, bias and activation epilogue, and accumulation."""
    if rt.kind != "cpu":
        pytest.skip("CPU tile kernels")
    use_cpu_tile(rt, ops, tile, monkeypatch)
    # (20, 90, 40): B^T transposed into panels, the last one partial (2 - 26 columns)
    for M, N, K in [(33, 65, 31), (64, 64, 17), (13, 47, 9), (8, 32, 1), (20, 90, 40)]:
        assert_gemm_exact(rt, ops, rng, M, N, K, trans_a, trans_b)


@pytest.mark.parametrize("rows,cols", [(40, 24), (37, 19), (96, 64), (8, 8), (5, 3)])
@pytest.mark.parametrize("pw", [8, 32, "rows"])
def test_transpose_into_panels(rt, ops, rng, rows, cols, pw):
    """The transpose GEMM runs before dY . W^T: x (rows x cols, from an offset) into panels of
    pw of its rows, each cols x pw, one after another (pw = rows: the plain transpose). Whole
    8 x 8 blocks store float8 columns when pw keeps them aligned, others lane by lane; the
    ragged edges and a partial last panel element by element."""
    from layerloom.backend.grid import cdiv
    pw = rows if pw == "rows" else pw
    x = rng.standard_normal((rows, cols))
    xoff = 5
    npanels = cdiv(rows, pw)
    out = to_dev(rt, np.full(npanels * cols * pw, 99.0))
    k = ops._k("elementwise", "transpose")
    k(rt.queue, (cdiv(cols, 8), cdiv(rows, 8)), None,
      to_dev(rt, np.concatenate([np.zeros(xoff), x.ravel()])), out, rows, cols, xoff, pw)
    want = np.full((npanels, cols, pw), 99.0)
    for p in range(npanels):
        block = x[p * pw:(p + 1) * pw].T  # cols x (up to pw)
        want[p, :, :block.shape[1]] = block
    np.testing.assert_array_equal(from_dev(rt, out, (npanels, cols, pw)),
                                  want.astype(np.float32))


@pytest.mark.parametrize("trans_a", [False, True])
def test_gemm_with_b_packed_into_panels(rt, ops, rng, trans_a):
    """A large B (K x N over 2^18 elements) is packed into contiguous panels before the register
    tiles run (rows-first grid); the ragged right strip still reads B in place."""
    M, N, K = 72, 520, 515
    A = rng.integers(-2, 3, (K, M) if trans_a else (M, K)).astype(np.float64)
    B = rng.integers(-2, 3, (K, N)).astype(np.float64)
    b = rng.integers(-3, 4, N).astype(np.float64)
    bo, co = 11, 3
    C = to_dev(rt, np.full(co + M * N, -1.0))
    ops.gemm(M, N, K, to_dev(rt, A), to_dev(rt, np.concatenate([np.zeros(bo), B.ravel()])), C,
             trans_a=trans_a, bias=to_dev(rt, b), act="relu", b_off=bo, c_off=co)
    got = from_dev(rt, C, (co + M * N,))
    ref = np.maximum((A.T if trans_a else A) @ B + b, 0)
    np.testing.assert_array_equal(got[co:].reshape(M, N), ref)
    assert (got[:co] == -1).all()


@pytest.mark.parametrize("tile", [(32, 8), (16, 4), (8, 2), (4, 4), (1, 1)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
def test_gemm_local_memory_path(rt, ops, rng, tile, trans_a, trans_b, monkeypatch):
    """The GPU kernel (gemm_local.cl) run on this device: every tile the engine may pick, edges
    that straddle tiles, K shorter and longer than a tile, bias and activation, accumulation and
    offsets."""
    monkeypatch.setattr(ops, "gemm_path", "local")
    monkeypatch.setattr(ops, "local_tile", tile)
    for M, N, K in [(33, 65, 31), (64, 32, 70), (5, 3, 1), (1, 40, 9)]:
        A = rng.integers(-3, 4, (K, M) if trans_a else (M, K)).astype(np.float64)
        B = rng.integers(-3, 4, (N, K) if trans_b else (K, N)).astype(np.float64)
        b = rng.integers(-3, 4, N).astype(np.float64)
        ref = (A.T if trans_a else A) @ (B.T if trans_b else B)
        C = rt.empty(4 * M * N)
        ops.gemm(M, N, K, to_dev(rt, A), to_dev(rt, B), C, trans_a=trans_a, trans_b=trans_b,
                 bias=to_dev(rt, b), act="relu")
        np.testing.assert_array_equal(from_dev(rt, C, (M, N)), np.maximum(ref + b, 0))
        ao, bo, co = 3, 5, 7
        C0 = rng.integers(-3, 4, co + M * N).astype(np.float64)
        C = to_dev(rt, C0)
        ops.gemm(M, N, K, to_dev(rt, np.concatenate([np.zeros(ao), A.ravel()])),
                 to_dev(rt, np.concatenate([np.zeros(bo), B.ravel()])), C, trans_a=trans_a,
                 trans_b=trans_b, accumulate=True, a_off=ao, b_off=bo, c_off=co)
        got = from_dev(rt, C, C0.shape)
        np.testing.assert_array_equal(got[co:].reshape(M, N), C0[co:].reshape(M, N) + ref)
        np.testing.assert_array_equal(got[:co], C0[:co])


@pytest.mark.parametrize("group,local_mem,tile", [
    (1024, 65536, (32, 8)), (64, 65536, (16, 4)), (1024, 4096, (16, 4)), (32, 1024, (8, 2)),
    (8, 256, (4, 4)), (1, 0, (1, 1))])
def test_local_gemm_tile_follows_the_device_limits(group, local_mem, tile):
    from types import SimpleNamespace
    from layerloom.backend.gemm import local_gemm_tile
    dev = SimpleNamespace(max_work_group_size=group, max_work_item_sizes=[group] * 3,
                          local_mem_size=local_mem)
    assert local_gemm_tile(dev) == tile


@pytest.mark.parametrize("tile", [None, (16, 8), (8, 6)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True)])
def test_gemm_with_offsets(rt, ops, rng, tile, trans_a, trans_b, monkeypatch):
    """Matrices at element offsets inside larger buffers (one time step of a sequence)."""
    if tile is not None:
        if rt.kind != "cpu":
            pytest.skip("CPU tile kernels")
        use_cpu_tile(rt, ops, tile, monkeypatch)
    M, N, K = 37, 35, 19
    A = rng.integers(-3, 4, (K, M) if trans_a else (M, K)).astype(np.float64)
    B = rng.integers(-3, 4, (N, K) if trans_b else (K, N)).astype(np.float64)
    ao, bo, co = 7, 13, 5
    Abig = np.concatenate([np.full(ao, 99.0), A.ravel(), np.full(3, 99.0)])
    Bbig = np.concatenate([np.full(bo, 99.0), B.ravel(), np.full(3, 99.0)])
    Cbig = np.full(co + M * N + 4, -1.0)
    C = to_dev(rt, Cbig)
    ops.gemm(M, N, K, to_dev(rt, Abig), to_dev(rt, Bbig), C, trans_a=trans_a,
             trans_b=trans_b, a_off=ao, b_off=bo, c_off=co)
    got = from_dev(rt, C, Cbig.shape)
    ref = (A.T if trans_a else A) @ (B.T if trans_b else B)
    np.testing.assert_array_equal(got[co:co + M * N].reshape(M, N), ref)
    assert (got[:co] == -1).all() and (got[co + M * N:] == -1).all()


@pytest.mark.parametrize("tile", [(16, 8), (8, 6), (4, 4)])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("N", [1, 3, 10, 15, 16, 31])
def test_gemm_narrow_outputs(rt, ops, rng, tile, trans_a, N, monkeypatch):
    """Outputs narrower than a register tile (a classifier's last layer, a ragged right strip)
    take the narrow kernels on CPUs: exact on integers, with bias, activation and
    accumulation."""
    use_cpu_tile(rt, ops, tile, monkeypatch)
    for M, K in [(1, 1), (37, 19), (128, 128)]:
        assert_gemm_exact(rt, ops, rng, M, N, K, trans_a, False)


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("M,N,K", [(9, 32, 5000), (3, 10, 4100), (40, 64, 9000), (13, 16, 4608),
                                   (144, 24, 6000), (7, 48, 4200)])
def test_gemm_split_k_paths(rt, ops, rng, trans_a, M, N, K):
    """Long K with few outputs (a convolution's weight gradient) is summed in parallel parts:
    exact on integers, with bias, activation and accumulation. Outputs narrower than a
    register tile (16 or 24 filters) take the narrow split-K kernel, ragged rows included."""
    if rt.kind != "cpu":
        pytest.skip("CPU path")
    A = rng.integers(-2, 3, (K, M) if trans_a else (M, K)).astype(np.float64)
    B = rng.integers(-2, 3, (K, N)).astype(np.float64)
    b = rng.integers(-3, 4, N).astype(np.float64)
    C0 = rng.integers(-3, 4, (M, N)).astype(np.float64)
    ref = (A.T if trans_a else A) @ B
    C = rt.empty(4 * M * N)
    ops.gemm(M, N, K, to_dev(rt, A), to_dev(rt, B), C, trans_a=trans_a, bias=to_dev(rt, b),
             act="relu")
    np.testing.assert_array_equal(from_dev(rt, C, (M, N)), np.maximum(ref + b, 0))
    C = to_dev(rt, C0)
    ops.gemm(M, N, K, to_dev(rt, A), to_dev(rt, B), C, trans_a=trans_a, accumulate=True)
    np.testing.assert_array_equal(from_dev(rt, C, (M, N)), C0 + ref)


@pytest.mark.parametrize("H,W", [(6, 8), (5, 7)])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("C", [3, 16])
def test_max_pool_backward_tiled_windows(rt, ops, rng, H, W, accumulate, C):
    """2x2 max pooling with stride 2 (C = 16: the 8-channels-per-work-item kernels): the
    forward takes each window's maximum, gradients go to it; rows and columns no window
    covers get zero (or keep the accumulated value)."""
    n = 2
    OH, OW = H // 2, W // 2
    g = PoolGeometry(H, W, C, OH, OW, 2, 2, 2, 2, 0, 0)
    x = rng.permutation(n * H * W * C).reshape(n, H, W, C).astype(np.float64)  # no ties
    y, arg = rt.empty(4 * n * OH * OW * C), rt.empty(4 * n * OH * OW * C)
    ops.pool_forward(to_dev(rt, x), y, arg, n, g, avg=False)
    ref_y = x[:, :2 * OH, :2 * OW].reshape(n, OH, 2, OW, 2, C).max((2, 4))
    np.testing.assert_array_equal(from_dev(rt, y, ref_y.shape), ref_y)
    dy = rng.normal(size=(n, OH, OW, C))
    base = rng.normal(size=x.shape) if accumulate else np.zeros(x.shape)
    dx = to_dev(rt, base) if accumulate else to_dev(rt, np.full(x.shape, 7.0))
    ops.pool_backward(to_dev(rt, dy), arg, dx, n, g, avg=False, accumulate=accumulate)
    ref = base.copy()
    for b in range(n):
        for oh in range(OH):
            for ow in range(OW):
                for c in range(C):
                    win = x[b, 2 * oh:2 * oh + 2, 2 * ow:2 * ow + 2, c]
                    i, j = np.unravel_index(np.argmax(win), win.shape)
                    ref[b, 2 * oh + i, 2 * ow + j, c] += dy[b, oh, ow, c]
    np.testing.assert_allclose(from_dev(rt, dx, x.shape), ref, rtol=1e-6, atol=1e-6)


@ew_widths
@pytest.mark.parametrize("rows,cols", [(43264, 32), (1000, 300), (300, 7), (600, 16)])
def test_bias_grad_in_parts(rt, ops, rng, rows, cols):
    """Column sums of many rows are split into parts summed in parallel, then added."""
    dy = rng.integers(-3, 4, (rows, cols)).astype(np.float64)
    db = rt.empty(4 * cols)
    ops.bias_grad(to_dev(rt, dy), db, rows, cols)
    np.testing.assert_array_equal(from_dev(rt, db, (cols,)), dy.sum(0))


@pytest.mark.parametrize("C", [3, 8, 16])
@pytest.mark.parametrize("stride,pad,dil", [(1, 0, 1), (2, 1, 1), (1, 2, 2)])
def test_im2col_against_numpy(rt, ops, rng, C, stride, pad, dil):
    """Each row of cols is one output position's receptive field, (kh, kw, c) order, zeros in
    the padding (C = 8, 16: the 8-channels-per-work-item kernel)."""
    n, H, W, KH, KW = 2, 7, 6, 3, 2
    OH = (H + 2 * pad - dil * (KH - 1) - 1) // stride + 1
    OW = (W + 2 * pad - dil * (KW - 1) - 1) // stride + 1
    g = ConvGeometry(H, W, C, OH, OW, KH, KW, stride, stride, dil, dil, pad, pad)
    x = rng.normal(size=(n, H, W, C))
    cols = rt.empty(4 * n * OH * OW * KH * KW * C)
    ops.im2col(to_dev(rt, x), cols, n, g)
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ref = np.array([[xp[b, oh * stride + kh * dil, ow * stride + kw * dil]
                     for kh in range(KH) for kw in range(KW)]
                    for b in range(n) for oh in range(OH) for ow in range(OW)])
    np.testing.assert_allclose(from_dev(rt, cols, (n * OH * OW, KH * KW * C)),
                               ref.reshape(n * OH * OW, -1), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("C", [3, 8])
@pytest.mark.parametrize("stride,pad", [(1, 0), (2, 1)])
@pytest.mark.parametrize("accumulate", [False, True])
def test_col2im_sums_what_im2col_read(rt, ops, rng, C, stride, pad, accumulate):
    """col2im is the adjoint of im2col: <im2col(x), d> == <x, col2im(d)> (C = 8: the
    8-channels-per-work-item kernel)."""
    n, H, W, KH, KW = 2, 7, 6, 3, 3
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (W + 2 * pad - KW) // stride + 1
    g = ConvGeometry(H, W, C, OH, OW, KH, KW, stride, stride, 1, 1, pad, pad)
    x = rng.integers(-3, 4, (n, H, W, C)).astype(np.float64)
    d = rng.integers(-3, 4, (n * OH * OW, KH * KW * C)).astype(np.float64)
    cols = rt.empty(4 * d.size)
    ops.im2col(to_dev(rt, x), cols, n, g)
    base = rng.integers(-3, 4, x.shape).astype(np.float64) if accumulate else np.zeros(x.shape)
    dx = to_dev(rt, base)
    ops.col2im(to_dev(rt, d), dx, n, g, accumulate=accumulate)
    got = from_dev(rt, dx, x.shape) - base
    lhs = float((from_dev(rt, cols, d.shape) * d).sum())
    assert lhs == float((x * got).sum())
    # and element by element against a direct scatter
    ref = np.zeros(x.shape)
    for b in range(n):
        for oh in range(OH):
            for ow in range(OW):
                r = (b * OH + oh) * OW + ow
                for kh in range(KH):
                    for kw in range(KW):
                        ih, iw = oh * stride - pad + kh, ow * stride - pad + kw
                        if 0 <= ih < H and 0 <= iw < W:
                            ref[b, ih, iw] += d[r, (kh * KW + kw) * C:(kh * KW + kw + 1) * C]
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("tile", [(16, 8), (8, 6), (4, 4)])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("M,N", [(13, 1), (9, 5), (37, 16), (8, 24), (19, 31), (7, 48), (11, 40),
                                 (5, 13)])
def test_gemm_narrow_split_k_every_cpu_tile(rt, ops, rng, tile, trans_a, M, N, monkeypatch):
    """Bug (issue 29): a long-K product narrower than a register tile (a 16-filter
    convolution's weight gradient on AVX-512), or the columns right of its whole tiles, ran on
    a scalar kernel, 60x slower than a tile. Now the narrow split-K kernel takes them, for every
    tile a CPU may get, on operands at offsets: exact."""
    use_cpu_tile(rt, ops, tile, monkeypatch)
    launches = [k for k, _, _ in ops.gemm_launches(M, N, 4608, rt.empty(4), rt.empty(4),
                                                   rt.empty(4), trans_a=trans_a)]
    assert ("gemm_narrow_split_k" in launches) == (N % (2 * tile[0]) != 0)
    assert ("gemm_tile_split_k" in launches) == (N >= 2 * tile[0])
    K, ao, bo, co = 4608, 3, 5, 2
    A = rng.integers(-2, 3, (K, M) if trans_a else (M, K)).astype(np.float64)
    B = rng.integers(-2, 3, (K, N)).astype(np.float64)
    b = rng.integers(-3, 4, N).astype(np.float64)
    C0 = rng.integers(-3, 4, co + M * N).astype(np.float64)
    C = to_dev(rt, C0)
    ops.gemm(M, N, K, to_dev(rt, np.concatenate([np.zeros(ao), A.ravel()])),
             to_dev(rt, np.concatenate([np.zeros(bo), B.ravel()])), C, trans_a=trans_a,
             bias=to_dev(rt, b), act="relu", accumulate=True, a_off=ao, b_off=bo, c_off=co)
    want = C0.copy()
    want[co:] += np.maximum((A.T if trans_a else A) @ B + b, 0).ravel()
    np.testing.assert_array_equal(from_dev(rt, C, C0.shape), want)


def test_gemm_split_k_honours_the_output_offset(rt, ops, rng):
    """Bug: the split-K path summed its parts into C without the element offset c_off (the
    recurrent layers address one time step of C that way)."""
    M, N, K, off = 4, 32, 4608, 5
    A = rng.integers(-2, 3, (K, M)).astype(np.float64)
    B = rng.integers(-2, 3, (K, N)).astype(np.float64)
    C0 = rng.integers(-3, 4, off + M * N).astype(np.float64)
    C = to_dev(rt, C0)
    ops.gemm(M, N, K, to_dev(rt, A), to_dev(rt, B), C, trans_a=True, accumulate=True,
             c_off=off)
    want = C0.copy()
    want[off:] += (A.T @ B).reshape(-1)
    np.testing.assert_array_equal(from_dev(rt, C, (off + M * N,)), want)


def test_gemm_launches_plan_without_running(rt, rng):
    """gemm_launches names a call's launches (bench/gemm.py times empty kernels on the same
    grids) without touching C; the gemm call that follows runs that same plan."""
    from layerloom.backend.ops import Ops
    ops = Ops(rt)
    M, N, K = 128, 10, 128
    A = rng.integers(-3, 4, (M, K)).astype(np.float64)
    B = rng.integers(-3, 4, (K, N)).astype(np.float64)
    A_dev, B_dev = to_dev(rt, A), to_dev(rt, B)
    C_dev = to_dev(rt, np.full((M, N), 7.0))
    launches = ops.gemm_launches(M, N, K, A_dev, B_dev, C_dev)
    assert launches and all(name.startswith("gemm") and len(grid) == len(local or grid)
                            for name, grid, local in launches)
    rt.finish()
    np.testing.assert_array_equal(from_dev(rt, C_dev, (M, N)), np.full((M, N), 7.0))
    ops.gemm(M, N, K, A_dev, B_dev, C_dev)
    assert len(ops._gemm_plans) == 1
    np.testing.assert_array_equal(from_dev(rt, C_dev, (M, N)), A @ B)


@pytest.mark.parametrize("tile", [(16, 8), (8, 6), (4, 4)])
@pytest.mark.parametrize("M,trans_a,trans_b", [
    (128, False, False), (37, False, False), (128, True, False), (37, True, False),
    (128, False, True)])  # (dY . W^T with 128 rows: W^T goes into panels for the tiles)
def test_register_tiles_cover_a_ragged_bottom_edge(rt, ops, rng, tile, trans_a, trans_b, M,
                                                    monkeypatch):
    """Rows past the last whole register tile (128 rows under 6-row AVX2 tiles leave 2) run in
    the tile kernels, guarded, not on the portable kernel: on it those two rows had taken as
    long as the other 126 (an AVX2 machine's MLP layer 41 GFLOP/s instead of 90+). gemm_nt's
    4 x 4 dot products (few rows, B^T as it is) still leave M % 4 rows to it."""
    if rt.kind != "cpu":
        pytest.skip("CPU tile kernels")
    use_cpu_tile(rt, ops, tile, monkeypatch)
    N, K = 256, 200
    A, B, C = rt.empty(4 * M * K), rt.empty(4 * N * K), rt.empty(4 * M * N)
    names = [n for n, _, _ in ops.gemm_launches(M, N, K, A, B, C, trans_a=trans_a,
                                                trans_b=trans_b)]
    assert "gemm" not in names, names
    assert_gemm_exact(rt, ops, rng, M, N, K, trans_a, trans_b)


def test_gemm_plans_reuse_buffers_with_new_contents(rt, ops, rng, monkeypatch):
    """A repeated GEMM call runs its kept plan (kernels with bound arguments): it must read
    what the buffers hold now, keep working after a larger call grows the scratch it used
    (here the transposed B), and plans past the limit are dropped, oldest first."""
    import gc

    from layerloom.backend import gemm as gemm_mod
    from layerloom.backend.ops import Ops
    ops = Ops(rt)  # its own plans, counted below
    if ops.gemm_path != "cpu":
        pytest.skip("the transposed B in scratch is the CPU path's (GPUs: one gemm_local)")
    monkeypatch.setattr(gemm_mod, "GEMM_PLANS", 3)

    def run(M, N, K, A_dev, B_dev, C_dev, A, B):
        ops.gemm(M, N, K, A_dev, B_dev, C_dev, trans_b=True)
        np.testing.assert_array_equal(from_dev(rt, C_dev, (M, N)), A @ B.T)

    small = (64, 32, 64)
    A = rng.integers(-3, 4, (64, 64)).astype(np.float64)
    B = rng.integers(-3, 4, (32, 64)).astype(np.float64)
    A_dev, B_dev, C_dev = to_dev(rt, A), to_dev(rt, B), rt.empty(4 * 64 * 32)
    run(*small, A_dev, B_dev, C_dev, A, B)
    scratch = ops._scratch_bufs["gemm_bt"]
    A2 = rng.integers(-3, 4, (128, 128)).astype(np.float64)
    B2 = rng.integers(-3, 4, (256, 128)).astype(np.float64)
    run(128, 256, 128, to_dev(rt, A2), to_dev(rt, B2), rt.empty(4 * 128 * 256), A2, B2)
    assert ops._scratch_bufs["gemm_bt"] is not scratch  # grew: the first plan's copy went
    del scratch
    gc.collect()
    A, B = A + 1, B - 1  # new contents, same buffers
    rt.write(A_dev, A, blocking=True)
    rt.write(B_dev, B, blocking=True)
    run(*small, A_dev, B_dev, C_dev, A, B)
    assert len(ops._gemm_plans) == 2
    for M in (8, 16, 24):  # three more calls: the limit keeps the newest three
        run(M, 32, 64, A_dev, B_dev, C_dev, A[:M], B)
    assert len(ops._gemm_plans) == 3
    assert all(key[0] in (8, 16, 24) for key in ops._gemm_plans)
