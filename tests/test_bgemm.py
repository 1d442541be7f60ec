"""The attention layers' batched GEMM (engine/backend/attention_ops.py bgemm) on each of its forms
against a float64 numpy reference: every product MultiHeadAttention and Attention make (QK^T,
softmax . V and their backward forms, on each head's slice of a projection read in place), on
the CPU register tiles of every width a device may get (bgemm_tiles.cl, B packed where its
columns are not contiguous, the ragged right strip on the portable kernel, a partial last row
tile), on the GPU's local-memory tiles, and on the portable kernel alone; then a
MultiHeadAttention large enough for the tiles, forward and backward, against its float64
reference."""
import numpy as np
import pytest

from conftest import from_dev, to_dev, use_cpu_tile
from layerloom.backend.attention_ops import bgemm_cpu_tile, heads_view, stacked_view


def _ints(rng, shape):
    # small integers: every product and sum exact in float32, so the kernels must agree with
    # the float64 reference exactly (alpha 0.5 keeps them exact)
    return rng.integers(-3, 4, shape).astype(np.float64)


def _forms(n, H, tq, tv, d):
    """(name, M, N, K, A, B, C, reference) for each product of multi-head attention on
    (n, steps, H, d) projections and (n, H, tq, tv) scores: A, B, C build Strided views on
    device buffers of the arrays given, reference computes the float64 product (n, H, M, N)
    from the same arrays (q: (n, tq, H, d), kv: (n, tv, H, d), s: (n, H, tq, tv))."""
    return [
        ("QK^T", tq, tv, d,
         lambda q, kv, s: heads_view(q, tq, H, d), lambda q, kv, s: heads_view(kv, tv, H, d).T,
         lambda c: stacked_view(c, tq, tv, H),
         lambda q, kv, s: np.einsum("nthd,nshd->nhts", q, kv)),
        ("P.V", tq, d, tv,
         lambda q, kv, s: stacked_view(s, tq, tv, H), lambda q, kv, s: heads_view(kv, tv, H, d),
         lambda c: heads_view(c, tq, H, d), lambda q, kv, s: np.einsum("nhts,nshd->nhtd", s, kv)),
        ("P^T.dO", tv, d, tq,
         lambda q, kv, s: stacked_view(s, tq, tv, H).T, lambda q, kv, s: heads_view(q, tq, H, d),
         lambda c: heads_view(c, tv, H, d), lambda q, kv, s: np.einsum("nhts,nthd->nhsd", s, q)),
        ("C^T", tv, tq, d,  # C transposed in place: the portable kernel alone
         lambda q, kv, s: heads_view(kv, tv, H, d), lambda q, kv, s: heads_view(q, tq, H, d).T,
         lambda c: stacked_view(c, tq, tv, H).T,
         lambda q, kv, s: np.einsum("nshd,nthd->nhst", kv, q)),
        ("A^T.B^T", tq, tv, tv,  # both transposed: A = S^T (a square tq = tv), B = S^T
         lambda q, kv, s: stacked_view(s, tv, tv, H).T,
         lambda q, kv, s: stacked_view(s, tv, tv, H).T,
         lambda c: stacked_view(c, tq, tv, H),
         lambda q, kv, s: np.einsum("nhji,nhkj->nhik", s, s)),
    ]


def _check_forms(rt, ops, rng, n, H, tq, tv, d):
    q, kv = _ints(rng, (n, tq, H, d)), _ints(rng, (n, tv, H, d))
    for name, M, N, K, A, B, C, ref in _forms(n, H, tq, tv, d):
        if name == "A^T.B^T" and tq != tv:
            continue
        s = _ints(rng, (n, H, tq, tv))
        bufs = [to_dev(rt, x) for x in (q, kv, s)]
        c0 = _ints(rng, (n, H, M, N))
        # the reference laid out as C's view stores it (C^T: element (i, j) at (j, i))
        lay = (lambda x: x.transpose(0, 1, 3, 2)) if name == "C^T" else (
            (lambda x: x.transpose(0, 2, 1, 3)) if name in ("P.V", "P^T.dO") else (lambda x: x))
        want = ref(q, kv, s)
        for alpha, accumulate in ((1.0, False), (0.5, True)):
            start = lay(c0)
            cb = to_dev(rt, start)
            ops.bgemm(M, N, K, n, H, A(*bufs), B(*bufs), C(cb), alpha=alpha,
                      accumulate=accumulate)
            expect = (start if accumulate else 0) + alpha * lay(want)
            np.testing.assert_array_equal(from_dev(rt, cb, start.shape), expect,
                                          err_msg=f"{name} M={M} N={N} K={K} alpha={alpha}")


# (n, H, tq, tv, d): tiles with ragged right strips and partial last row tiles (13, 37 rows),
# whole tiles only (32 x 64), N narrower than any tile (d = 3), and the transformer's head
# (tq = tv = 128, d = 32) on one sample
SHAPES = [(2, 3, 13, 37, 9), (1, 2, 32, 64, 33), (2, 2, 7, 5, 3), (1, 1, 40, 40, 20),
          (1, 4, 128, 128, 32)]


@pytest.mark.parametrize("tile", [(16, 8), (8, 6), (4, 4)])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_attention_product_on_each_cpu_tile(rt, ops, rng, tile, shape, monkeypatch):
    if rt.kind != "cpu":
        pytest.skip("CPU tile kernels")
    use_cpu_tile(rt, ops, tile, monkeypatch)
    monkeypatch.setattr(ops, "gemm_path", "cpu")
    _check_forms(rt, ops, rng, *shape)


@pytest.mark.parametrize("tile", [(32, 8), (16, 4), (8, 2), (4, 4), (1, 1)])
@pytest.mark.parametrize("shape", SHAPES[:4])
def test_every_attention_product_on_the_gpu_tiles(rt, ops, rng, tile, shape, monkeypatch):
    """The GPU form (bgemm_local) run on this device, every local tile the engine may pick."""
    if tile[0] * tile[0] // tile[1] > rt.device.max_work_group_size:
        pytest.skip(f"{rt.describe()} takes work-groups of {rt.device.max_work_group_size}")
    monkeypatch.setattr(ops, "gemm_path", "local")
    monkeypatch.setattr(ops, "local_tile", tile)
    _check_forms(rt, ops, rng, *shape)


@pytest.mark.parametrize("shape", SHAPES[:3])
def test_every_attention_product_on_the_portable_kernel(rt, ops, rng, shape, monkeypatch):
    """The portable kernel on every column (no CPU tile fits: a device without vectors)."""
    if rt.kind != "cpu":
        pytest.skip("the CPU dispatch")
    monkeypatch.setattr(ops, "gemm_path", "cpu")
    monkeypatch.setattr(ops, "cpu_tile", (1, 1))
    _check_forms(rt, ops, rng, *shape)


@pytest.mark.parametrize("N,widest,widths,want", [
    (128, 16, (4, 8, 16), (16, 8)),
    (32, 16, (4, 8, 16), (16, 8)),
    (37, 16, (4, 8, 16), (16, 8)),   # 5 columns left whatever the width: the widest
    (48, 16, (4, 8, 16), (8, 6)),    # 16-wide tiles would leave 16 columns, 8-wide none
    (20, 16, (4, 8, 16), (8, 6)),    # 4 left either way, 8 the widest that fits
    (12, 16, (4, 8, 16), (4, 4)),
    (7, 16, (4, 8, 16), None),       # narrower than every tile
    (128, 8, (4, 8, 16), (8, 6)),    # no wider than the device's own tile
    (128, 16, (4, 8), (8, 6)),       # only widths the device's compiler takes
])
def test_the_cpu_tile_for_a_width(N, widest, widths, want):
    assert bgemm_cpu_tile(N, widest, widths) == want


def test_a_multi_head_attention_on_the_tiles_is_its_float64_reference(rt, ops, rng):
    """Forward and backward of a MultiHeadAttention whose products take the tiles with ragged
    edges (tq 37, tv 35, heads of 20): the output against the float64 reference, every
    gradient against the reference's directional derivative along a random direction."""
    from layerloom.core.registry import get_layer
    from test_layers import run_layer
    layer = get_layer("MultiHeadAttention")
    p = {**layer.defaults(), "num_heads": 2, "key_dim": 20}
    shapes = [(37, 12), (35, 12)]
    xs = [rng.normal(size=(2,) + sh) for sh in shapes]
    ws = {s.name: rng.normal(size=s.shape) * 0.3 for s in layer.weights(p, shapes)}
    (ref,) = layer.reference(p, xs, ws)
    dy = rng.normal(size=ref.shape)
    y, dxs, dws = run_layer(rt, ops, layer, p, xs, ws, dy)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)

    def f(xs_, ws_):
        return float((layer.reference(p, xs_, ws_)[0] * dy).sum())
    eps = 1e-5
    for kind, name, got in ([("x", i, g) for i, g in enumerate(dxs)]
                            + [("w", k, g) for k, g in dws.items()]):
        base = xs[name] if kind == "x" else ws[name]
        u = rng.normal(size=base.shape)
        plus, minus = [dict(ws) if kind == "w" else list(xs) for _ in range(2)]
        plus[name], minus[name] = base + eps * u, base - eps * u
        args = (lambda v: (v, ws)) if kind == "x" else (lambda v: (xs, v))
        num = (f(*args(plus)) - f(*args(minus))) / (2 * eps)
        np.testing.assert_allclose((got * u).sum(), num, rtol=1e-4, atol=1e-4,
                                   err_msg=f"gradient of {name}")
