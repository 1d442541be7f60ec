// GEMM register-tile kernels for CPU devices: see gemm_cpu_base.cl, built before this file.

// global size (N / (2*VW), ceil(M / MR)) over the whole-tile columns, every row: the last row
// tile, when M is not a multiple of MR, reads zeros for the rows past M and stores none of
// them (on the portable kernel, two rows of a batch of 128 under 6-row tiles took as long as
// the other 126). b_panels: B was packed by pack_panels (below), its whole-tile columns as
// K x 2VW panels one after another, so a work-item reads its B contiguously (ldb = 2VW)
// instead of one row 4 KB or more apart per k (a TLB miss each for a large B).
#define ROW_STEP_G(r) { const VT a = (VT)((i0 + r < M) ? A_ROW(r) : 0.0f); \
    c##r##_0 += a * b0; c##r##_1 += a * b1; }
#define ROW_STORE_G(r) if (i0 + r < M) { ROW_STORE(r) }
#define ROW_STORE_PLAIN_G(r) if (i0 + r < M) { ROW_STORE_PLAIN(r) }
__kernel void gemm_tile(GEMM_PARAMS, const int b_panels)
{
    GEMM_START
    // packed: the grid is (M / MR, N / (2*VW)), the work-items that run one after another
    // sharing a B panel (in L2) and streaming A, instead of re-reading all of B per row block
    // (NOTE: get_global_id with a dimension known only at run time crashes PoCL 3.0)
    const int g0 = get_global_id(0), g1 = get_global_id(1);
    const int j0 = (b_panels ? g1 : g0) * 2 * VW;
    const int i0 = (b_panels ? g0 : g1) * MR;
    FOR_ROWS(ROW_DECL)
    __global const float* b = B + (b_panels ? j0 * K : j0);
    A_START(0)
    const int plain = act == ACT_LINEAR && !has_bias && !accumulate;
    if (i0 + MR <= M) {  // a whole tile: no guard per load
        TILE_LOOP(0, K, ROW_STEP)
        if (plain) { FOR_ROWS(ROW_STORE_PLAIN) } else { FOR_ROWS(ROW_STORE) }
    } else {
        TILE_LOOP(0, K, ROW_STEP_G)
        if (plain) { FOR_ROWS(ROW_STORE_PLAIN_G) } else { FOR_ROWS(ROW_STORE_G) }
    }
}

// C = A . B^T for a short K (fewer than 2VW: a classifier's dX = dY . W^T over 10 classes):
// the work-item gathers its 2VW columns of B^T for every k once, down B's rows, into private
// memory (K < 2VW: at most 2VW - 1 k's), then computes row_tiles register tiles down C with
// them. Gathering per tile had cost more than the tile's multiply-adds; a separate transpose
// launch costs more still at this size. Global (N / (2*VW), ceil(ceil(M / MR) / row_tiles))
// over the whole-tile columns, every row (the last row tile guarded, as in gemm_tile).
__kernel void gemm_tile_bt(GEMM_PARAMS, const int row_tiles)
{
    GEMM_START
    const int j0 = get_global_id(0) * 2 * VW;
    VT bt[2 * 2 * VW];
    for (int k = 0; k < K; k++) {
        bt[2 * k] = VGATHER(VW, B + j0 * ldb + k, ldb);
        bt[2 * k + 1] = VGATHER(VW, B + (j0 + VW) * ldb + k, ldb);
    }
    const int t1 = min((int)(get_global_id(1) + 1) * row_tiles, (M + MR - 1) / MR);
    for (int t = get_global_id(1) * row_tiles; t < t1; t++) {
        const int i0 = t * MR;
        FOR_ROWS(ROW_DECL)
        A_START(0)
        if (i0 + MR <= M) {
            for (int k = 0; k < K; k++) {
                const VT b0 = bt[2 * k], b1 = bt[2 * k + 1];
                FOR_ROWS(ROW_STEP)
                A_NEXT
            }
            FOR_ROWS(ROW_STORE)
        } else {
            for (int k = 0; k < K; k++) {
                const VT b0 = bt[2 * k], b1 = bt[2 * k + 1];
                FOR_ROWS(ROW_STEP_G)
                A_NEXT
            }
            FOR_ROWS(ROW_STORE_G)
        }
    }
}

// panels[p][k][0 .. 2VW) = B[k][2VW p ..] for the whole tiles of a K x N matrix (row stride
// ldb). Global (N / (2*VW), K).
__kernel void pack_panels(__global const float* B, __global float* panels, const int K,
                          const int ldb, const int boff)
{
    const int p = get_global_id(0), k = get_global_id(1);
    __global const float* src = B + boff + k * ldb + p * 2 * VW;
    __global float* dst = panels + (p * K + k) * 2 * VW;
    VSTORE(VLOAD(0, src), 0, dst)
    VSTORE(VLOAD(1, src), 1, dst)
}

// C = A . B^T with A [M,K] and B [N,K] row-major (dX = dY . W^T): dot products along K in VT
// partial sums. 4 x 4 outputs per work-item, K tail handled scalarly.
#define DOT_DECL(i) VT s##i##0 = 0.0f, s##i##1 = 0.0f, s##i##2 = 0.0f, s##i##3 = 0.0f;
#define DOT_STEP(i) { const VT x = VLOAD(0, a##i + k); \
    s##i##0 += x * y0; s##i##1 += x * y1; s##i##2 += x * y2; s##i##3 += x * y3; }
#define HSUM(v) hsum(v)

inline float hsum(const VT v) {
#if VW == 16
    const float8 h = v.lo + v.hi;
    const float4 q = h.lo + h.hi;
#elif VW == 8
    const float4 q = v.lo + v.hi;
#else
    const float4 q = v;
#endif
    return q.x + q.y + q.z + q.w;
}

__kernel void gemm_nt(GEMM_PARAMS)
{
    GEMM_START
    const int j0 = get_global_id(0) * 4;
    const int i0 = get_global_id(1) * 4;
    __global const float* a0 = A + (i0 + 0) * lda;
    __global const float* a1 = A + (i0 + 1) * lda;
    __global const float* a2 = A + (i0 + 2) * lda;
    __global const float* a3 = A + (i0 + 3) * lda;
    __global const float* b0 = B + (j0 + 0) * ldb;
    __global const float* b1 = B + (j0 + 1) * ldb;
    __global const float* b2 = B + (j0 + 2) * ldb;
    __global const float* b3 = B + (j0 + 3) * ldb;
    DOT_DECL(0) DOT_DECL(1) DOT_DECL(2) DOT_DECL(3)
    const int KV = K - K % VW;
    for (int k = 0; k < KV; k += VW) {
        const VT y0 = VLOAD(0, b0 + k), y1 = VLOAD(0, b1 + k);
        const VT y2 = VLOAD(0, b2 + k), y3 = VLOAD(0, b3 + k);
        DOT_STEP(0) DOT_STEP(1) DOT_STEP(2) DOT_STEP(3)
    }
    float r[4][4] = {{HSUM(s00), HSUM(s01), HSUM(s02), HSUM(s03)},
                     {HSUM(s10), HSUM(s11), HSUM(s12), HSUM(s13)},
                     {HSUM(s20), HSUM(s21), HSUM(s22), HSUM(s23)},
                     {HSUM(s30), HSUM(s31), HSUM(s32), HSUM(s33)}};
    for (int k = KV; k < K; k++) {
        const float x[4] = {a0[k], a1[k], a2[k], a3[k]};
        const float y[4] = {b0[k], b1[k], b2[k], b3[k]};
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) r[i][j] += x[i] * y[j];
    }
    // epilogue a row of 4 at a time (the activation's branch chain once per row, not per output)
    const float4 b4 = has_bias ? VLOAD4(bias + j0) : (float4)(0.0f);
    for (int i = 0; i < 4; i++) {
        float4 v = act_fwd4(act, (float4)(r[i][0], r[i][1], r[i][2], r[i][3]) + b4);
        __global float* c = C + (i0 + i) * ldc + j0;
        if (accumulate) v += VLOAD4(c);
        VSTORE4(v, c)
    }
}

// The same split-K with the register tile: global (N / (2*VW), ceil(M / MR), P); rows past M
// read zeros (ROW_STEP_G, above). On C's whole tiles of columns; the parts' rows are ldp long
// (the whole N: a ragged right strip goes to gemm_narrow_split_k).
#define ROW_PART(r) if (i0 + r < M) { \
    VSTORE(c##r##_0, 0, parts + (p * M + i0 + r) * ldp + j0); \
    VSTORE(c##r##_1, 0, parts + (p * M + i0 + r) * ldp + j0 + VW); }
__kernel void gemm_tile_split_k(GEMM_PARAMS, __global float* parts, const int KC,
                                const int ldp)
{
    GEMM_START
    const int j0 = get_global_id(0) * 2 * VW;
    const int i0 = get_global_id(1) * MR;
    const int p = get_global_id(2);
    const int k0 = p * KC, k1 = min(K, k0 + KC);
    FOR_ROWS(ROW_DECL)
    __global const float* b = B + k0 * ldb + j0;
    A_START(k0)
    if (i0 + MR <= M) { TILE_LOOP(k0, k1, ROW_STEP) }  // a whole tile: no guard per load
    else { TILE_LOOP(k0, k1, ROW_STEP_G) }
    FOR_ROWS(ROW_PART)
}
