// The attention layers' batched GEMM on tiles (engine/backend/attention_ops.py bgemm):
//   C[b] = alpha * A[b] . B[b]  (+ C[b] when accumulate),  b = n * H + h (samples x heads)
// matrix (n, h) of an operand starting at n * x_n + h * x_h, as attention.cl's portable bgemm
// addresses them. One form per device kind, each a program of its own:
// - CPUs (VW and MR defined; built after gemm_cpu_base.cl, whose register tile it runs, the
//   dense GEMM's: MR rows x 2 vectors of VW): A at any strides (one pointer per row, stepping
//   sk), B and C with unit column stride (row strides ldb, ldc; the engine packs a B that has
//   none: attention.cl bgemm_pack). The whole tiles of columns, every row (the last row tile
//   reads zeros past M and stores none of them); the ragged right strip is left to the
//   portable bgemm. Global (N / (2 VW), ceil(M / MR), batch * H), local (1, 1, 1).
// - GPUs (TS and WPT defined; built after gemm_operands.cl): gemm_local.cl's local-memory tiles
//   (its LOCAL_TILE_LOOP) with a batch dimension and strided operands, ragged edges included.
//   Global (ceil(N / TS) TS, ceil(M / TS) TS / WPT, batch * H), local (TS, TS / WPT, 1).

#ifdef MR
#define BROW_STEP_G(r) { const VT a = (VT)((i0 + r < M) ? A_ROW(r) : 0.0f); \
    c##r##_0 += a * b0; c##r##_1 += a * b1; }
#define BROW_STORE(r)                                                                     \
    if (i0 + r < M) {                                                                     \
        __global float* c = C + (i0 + r) * ldc + j0;                                      \
        VT v0 = alpha * c##r##_0, v1 = alpha * c##r##_1;                                  \
        if (accumulate) { v0 += VLOAD(0, c); v1 += VLOAD(1, c); }                         \
        VSTORE(v0, 0, c) VSTORE(v1, 1, c)                                                 \
    }
__kernel void bgemm_tile(const int M, const int K, const int H,
                         __global const float* restrict A, const int a_n, const int a_h,
                         const int sr, const int sk,
                         __global const float* restrict B, const int b_n, const int b_h,
                         const int ldb,
                         __global float* C, const int c_n, const int c_h, const int ldc,
                         const float alpha, const int accumulate)
{
    const int j0 = get_global_id(0) * 2 * VW;
    const int i0 = get_global_id(1) * MR;
    const int bh = get_global_id(2), n = bh / H, h = bh - n * H;
    A += n * a_n + h * a_h;
    C += n * c_n + h * c_h;
    __global const float* b = B + n * b_n + h * b_h + j0;
    FOR_ROWS(ROW_DECL)
    A_START(0)
    if (i0 + MR <= M) { TILE_LOOP(0, K, ROW_STEP) }  // a whole tile: no guard per load
    else { TILE_LOOP(0, K, BROW_STEP_G) }
    FOR_ROWS(BROW_STORE)
}
#endif

#ifdef TS
#if TS % WPT != 0
#error "WPT must divide TS"
#endif
#define RTS (TS / WPT)
#undef A_AT
#undef B_AT
#define A_AT(i, k) A[(i) * a_i + (k) * a_k]
#define B_AT(k, j) B[(k) * b_k + (j) * b_j]
__kernel __attribute__((reqd_work_group_size(TS, RTS, 1)))
void bgemm_local(const int M, const int N, const int K, const int H,
                 __global const float* restrict A, const int a_n, const int a_h, const int a_i,
                 const int a_k,
                 __global const float* restrict B, const int b_n, const int b_h, const int b_k,
                 const int b_j,
                 __global float* C, const int c_n, const int c_h, const int c_i, const int c_j,
                 const float alpha, const int accumulate)
{
    const int bh = get_global_id(2), n = bh / H, h = bh - n * H;
    A += n * a_n + h * a_h;
    B += n * b_n + h * b_h;
    C += n * c_n + h * c_h;
    LOCAL_TILE_LOOP
    if (j >= N) return;
    for (int w = 0; w < WPT; w++) {
        const int i = i0 + ti + w * RTS;
        if (i >= M) break;
        __global float* c = C + i * c_i + j * c_j;
        const float v = alpha * acc[w];
        *c = accumulate ? *c + v : v;
    }
}
#endif
