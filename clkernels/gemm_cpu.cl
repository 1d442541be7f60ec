// GEMM for CPU devices, BLIS-style: each work-item computes one MR x (2*VW) register tile with
// its accumulators in named vector variables, no local memory, no barriers, local size 1.
// VW (4, 8 or 16: the device's preferred float vector width) and MR (4, 6 or 8 rows) are
// compile-time; the engine picks them so accumulators fit the register file (AVX2: 6 x 2 float8,
// AVX-512: 8 x 2 float16). Only whole tiles: the engine covers a ragged right edge with the
// narrow kernels below and a ragged bottom edge with the portable kernel in gemm.cl. Same
// contract as gemm.cl: C = act(op(A) . op(B) + bias) (+ C), except that
// trans_a, the activation and the bias offset (bias_at, -1: no bias) are arguments, not -D
// defines: they change no inner loop, and one program serving every layer loads faster than one
// per variant. With the offsets, a kernel can compute a block of a larger C (ldc its width).
// NOTE: plain a*b+c, not fma(): on PoCL 3.0 fma() compiled to code half as fast.

#define VT CAT(float, VW)
// vector loads and stores from scalars (vector.cl): o counts vectors from p
#define VLOAD(o, p) CAT(VLOAD, VW)((p) + VW * (o))
#define VSTORE(v, o, p) CAT(VSTORE, VW)((v), (p) + VW * (o))
#define ACTV CAT(act_fwd, VW)

// the arguments every GEMM kernel takes (gemm.cl's after its block offsets, then three more)
#define GEMM_PARAMS const int M, const int N, const int K,                             \
                    __global const float* restrict A, const int lda,                     \
                    __global const float* restrict B, const int ldb,                     \
                    __global float* C, const int ldc,                                    \
                    __global const float* restrict bias, const int accumulate,           \
                    const int aoff, const int boff, const int coff,                      \
                    const int trans_a, const int act, const int bias_at

// every kernel starts with this: operands moved to their offsets, A's strides (below)
#define GEMM_START A += aoff; B += boff; C += coff;                                    \
                   const int has_bias = bias_at >= 0; bias += has_bias ? bias_at : 0;    \
                   A_STRIDES

#define STORE(ACC, ROW, COL)                                                        \
    {                                                                                \
        VT v = ACC;                                                                  \
        if (has_bias) v += VLOAD(0, bias + (COL));                                   \
        v = ACTV(act, v);                                                            \
        __global float* c = C + (ROW) * ldc + (COL);                                 \
        if (accumulate) v += VLOAD(0, c);                                            \
        VSTORE(v, 0, c);                                                             \
    }

// A is walked with one pointer per row, each stepping sk per k: sr and sk are A's row and k
// strides (lda and 1, or 1 and lda when A is transposed). With indexed addressing LLVM 14
// spilled row addresses and accumulators to the stack every iteration.
#define A_STRIDES const int sr = trans_a ? 1 : lda, sk = trans_a ? lda : 1;
#define A_AT(r, k) A[(i0 + (r)) * sr + (k) * sk]
#define A_PTR(r) __global const float* a##r = A + (i0 + (r)) * sr + a_k0 * sk;
#define A_START(k0) const int a_k0 = (k0); FOR_ROWS(A_PTR)
#define A_ROW(r) *a##r
#define A_INC(r) a##r += sk;
#define A_NEXT FOR_ROWS(A_INC)
#define ROW_DECL(r) VT c##r##_0 = 0.0f, c##r##_1 = 0.0f;
#define ROW_STEP(r) { const VT a = (VT)(A_ROW(r)); c##r##_0 += a * b0; c##r##_1 += a * b1; }
#define ROW_STORE(r) STORE(c##r##_0, i0 + r, j0) STORE(c##r##_1, i0 + r, j0 + VW)
// without an epilogue (a gradient): the activation's branch chain per vector stored cost a
// K = 128 GEMM ~8%
#define ROW_STORE_PLAIN(r) VSTORE(c##r##_0, 0, C + (i0 + r) * ldc + j0) \
                           VSTORE(c##r##_1, 1, C + (i0 + r) * ldc + j0)
#if MR == 8
#define FOR_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#elif MR == 6
#define FOR_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#else
#define FOR_ROWS(X) X(0) X(1) X(2) X(3)
#endif
// k = K0 .. K1 of a register tile: two vectors of B's row k (b, stepping ldb), one A value per
// row (STEP: ROW_STEP, or ROW_STEP_G guarding rows past M)
#define TILE_LOOP(K0, K1, STEP)                                                            \
    for (int k = (K0); k < (K1); k++, b += ldb) {                                          \
        const VT b0 = VLOAD(0, b), b1 = VLOAD(1, b);                                       \
        FOR_ROWS(STEP)                                                                     \
        A_NEXT                                                                             \
    }

// global size (N / (2*VW), M / MR) over the whole-tile region. b_panels: B was packed by
// pack_panels (below), its whole-tile columns as K x 2VW panels one after another, so a
// work-item reads its B contiguously (ldb = 2VW) instead of one row 4 KB or more apart per k
// (a TLB miss each for a large B).
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
    TILE_LOOP(0, K, ROW_STEP)
    if (act == ACT_LINEAR && !has_bias && !accumulate) { FOR_ROWS(ROW_STORE_PLAIN) }
    else { FOR_ROWS(ROW_STORE) }
}

// C = A . B^T for a short K (fewer than 2VW: a classifier's dX = dY . W^T over 10 classes):
// the work-item gathers its 2VW columns of B^T for every k once, down B's rows, into private
// memory (K < 2VW: at most 2VW - 1 k's), then computes row_tiles register tiles down C with
// them. Gathering per tile had cost more than the tile's multiply-adds; a separate transpose
// launch costs more still at this size. Global (N / (2*VW), ceil(M / MR / row_tiles)) over
// the whole-tile region.
#if VW == 16
#define VGATHER(p, s) ((float16)((p)[0], (p)[s], (p)[2*s], (p)[3*s], (p)[4*s], (p)[5*s], \
    (p)[6*s], (p)[7*s], (p)[8*s], (p)[9*s], (p)[10*s], (p)[11*s], (p)[12*s], (p)[13*s],     \
    (p)[14*s], (p)[15*s]))
#elif VW == 8
#define VGATHER(p, s) ((float8)((p)[0], (p)[s], (p)[2*s], (p)[3*s], (p)[4*s], (p)[5*s], \
    (p)[6*s], (p)[7*s]))
#else
#define VGATHER(p, s) ((float4)((p)[0], (p)[s], (p)[2*s], (p)[3*s]))
#endif
__kernel void gemm_tile_bt(GEMM_PARAMS, const int row_tiles)
{
    GEMM_START
    const int j0 = get_global_id(0) * 2 * VW;
    VT bt[2 * 2 * VW];
    for (int k = 0; k < K; k++) {
        bt[2 * k] = VGATHER(B + j0 * ldb + k, ldb);
        bt[2 * k + 1] = VGATHER(B + (j0 + VW) * ldb + k, ldb);
    }
    const int t1 = min((int)(get_global_id(1) + 1) * row_tiles, M / MR);
    for (int t = get_global_id(1) * row_tiles; t < t1; t++) {
        const int i0 = t * MR;
        FOR_ROWS(ROW_DECL)
        A_START(0)
        for (int k = 0; k < K; k++) {
            const VT b0 = bt[2 * k], b1 = bt[2 * k + 1];
            FOR_ROWS(ROW_STEP)
            A_NEXT
        }
        FOR_ROWS(ROW_STORE)
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

// Outputs narrower than a register tile (NN < 2VW columns, compile-time: a classifier's 10,
// the ragged right strip of a wider product): MR rows x one vector (two when NN > VW) per
// work-item, the lanes past NN never stored. Global (ceil(M / MR)).
#if defined(NN)
#define NV (NN > VW ? 2 : 1)  // vectors per row
#define NB_LOAD1(o, i) ((o) + (i) < NN ? b[(o) + (i)] : 0.0f)
#define NROW_DECL(r) VT n##r = 0.0f, m##r = 0.0f;
// (m: columns VW.. ; with NV == 1 never stored, so the compiler drops it)
#define NROW_STEP(r) { const VT a = (VT)((i0 + r < M) ? A_ROW(r) : 0.0f); \
    n##r += a * bv; m##r += a * bw; }
#define NROW_STEP_W(r) { const VT a = (VT)(A_ROW(r)); n##r += a * bv; m##r += a * bw; }
#define NSTORE(ACC, BIAS, J0, J1) { \
    VT v = ACC; \
    if (has_bias) v += BIAS; \
    v = ACTV(act, v); \
    const float* q_ = (const float*)&v; \
    for (int j = (J0); j < (J1); j++) c_[j] = accumulate ? c_[j] + q_[j - (J0)] : q_[j - (J0)]; }
#define NROW_STORE(r) if (i0 + r < M) { \
    __global float* c_ = C + (i0 + r) * ldc; \
    NSTORE(n##r, bias_v, 0, min(NN, VW)) \
    if (NV == 2) NSTORE(m##r, bias_w, VW, NN) }
#if VW == 16
#define NB_SAFE(o) (VT)(NB_LOAD1(o, 0), NB_LOAD1(o, 1), NB_LOAD1(o, 2), NB_LOAD1(o, 3), \
    NB_LOAD1(o, 4), NB_LOAD1(o, 5), NB_LOAD1(o, 6), NB_LOAD1(o, 7), NB_LOAD1(o, 8), \
    NB_LOAD1(o, 9), NB_LOAD1(o, 10), NB_LOAD1(o, 11), NB_LOAD1(o, 12), NB_LOAD1(o, 13), \
    NB_LOAD1(o, 14), NB_LOAD1(o, 15))
#elif VW == 8
#define NB_SAFE(o) (VT)(NB_LOAD1(o, 0), NB_LOAD1(o, 1), NB_LOAD1(o, 2), NB_LOAD1(o, 3), \
    NB_LOAD1(o, 4), NB_LOAD1(o, 5), NB_LOAD1(o, 6), NB_LOAD1(o, 7))
#else
#define NB_SAFE(o) (VT)(NB_LOAD1(o, 0), NB_LOAD1(o, 1), NB_LOAD1(o, 2), NB_LOAD1(o, 3))
#endif
#define NARROW_LOOP(K0, K1, BV, BW, STEP) \
    for (int k = (K0); k < (K1); k++, b += ldb) { \
        const VT bv = BV, bw = BW; FOR_ROWS(STEP) A_NEXT }
__kernel void gemm_narrow_tile(GEMM_PARAMS)
{
    GEMM_START
    const int i0 = get_global_id(0) * MR;
    FOR_ROWS(NROW_DECL)
    __global const float* b = B;
    A_START(0)
    // B's rows load as whole vectors: the lanes past NN read the next row into accumulator
    // lanes that are never stored (one load instead of NN). The last rows, where a vector
    // would read past B's end, load lane by lane. Whole tiles of rows skip the row guards.
    const int kf = max(0, K - (NV * VW - NN + ldb - 1) / ldb);
    if (i0 + MR <= M) {
        NARROW_LOOP(0, kf, VLOAD(0, b), NV == 2 ? VLOAD(1, b) : 0.0f, NROW_STEP_W)
        NARROW_LOOP(kf, K, NB_SAFE(0), NB_SAFE(VW), NROW_STEP_W)
    } else {
        NARROW_LOOP(0, kf, VLOAD(0, b), NV == 2 ? VLOAD(1, b) : 0.0f, NROW_STEP)
        NARROW_LOOP(kf, K, NB_SAFE(0), NB_SAFE(VW), NROW_STEP)
    }
    VT bias_v = 0.0f, bias_w = 0.0f;
    if (has_bias) {
        float* q_ = (float*)&bias_v;
        for (int j = 0; j < min(NN, VW); j++) q_[j] = bias[j];
        q_ = (float*)&bias_w;
        for (int j = VW; j < NN; j++) q_[j - VW] = bias[j];
    }
    FOR_ROWS(NROW_STORE)
}
#endif

// C = A^T . B for outputs narrower than a vector with A transposed (a classifier's weight
// gradient X^T . dY: M inputs x NN classes): A's rows run along M, so each work-item takes VW
// consecutive rows of C as one vector per column, loads one vector of A per k and multiplies
// it by each of B's NN values in that row. Per k and VW rows that is NN multiply-adds, where
// gemm_narrow_tile's row broadcasts take 2 (VW / MR) + VW. M a multiple of VW (the engine
// checks); global (M / VW).
#if defined(NN)
#define FOR_NN(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) \
    X(14) X(15)
#define TA_DECL(j) VT t##j = 0.0f;
#define TA_STEP(j) if ((j) < NN) t##j += a * (VT)(b[j]);
#define TA_STORE(j) if ((j) < NN) { \
    VT v = t##j; \
    if (has_bias) v += (VT)(bias[j]); \
    v = ACTV(act, v); \
    const float* q_ = (const float*)&v; \
    __global float* c_ = C + i0 * ldc + (j); \
    for (int l = 0; l < VW; l++, c_ += ldc) *c_ = accumulate ? *c_ + q_[l] : q_[l]; }
__kernel void gemm_narrow_ta(GEMM_PARAMS)
{
    GEMM_START
    const int i0 = get_global_id(0) * VW;
    FOR_NN(TA_DECL)
    __global const float* a_ = A + i0;
    __global const float* b = B;
    for (int k = 0; k < K; k++, a_ += lda, b += ldb) {
        const VT a = VLOAD(0, a_);
        FOR_NN(TA_STEP)
    }
    FOR_NN(TA_STORE)
}
#endif


// Split-K for outputs too small to occupy the cores while K is long (a first convolution's
// weight gradient: 9 x 32 outputs summed over 40,000 positions). Global (N, M, P): part p
// handles k = p*KC .. min(K, (p+1)*KC) and writes parts[p][i][j]; sum_parts (elementwise.cl)
// adds the parts with the bias/activation/accumulate epilogue.
__kernel void gemm_split_k(GEMM_PARAMS, __global float* parts, const int KC)
{
    GEMM_START
    const int j = get_global_id(0), i0 = get_global_id(1), p = get_global_id(2);
    const int k0 = p * KC, k1 = min(K, k0 + KC);
    float s = 0.0f;
    for (int k = k0; k < k1; k++) s += A_AT(0, k) * B[k * ldb + j];
    parts[(p * M + i0) * N + j] = s;
}

// The same split-K with the register tile: global (N / (2*VW), ceil(M / MR), P); rows past M
// read zeros. Used when N is a whole number of tiles.
#define ROW_STEP_G(r) { const VT a = (VT)((i0 + r < M) ? A_ROW(r) : 0.0f); \
    c##r##_0 += a * b0; c##r##_1 += a * b1; }
#define ROW_PART(r) if (i0 + r < M) { \
    VSTORE(c##r##_0, 0, parts + (p * M + i0 + r) * N + j0); \
    VSTORE(c##r##_1, 0, parts + (p * M + i0 + r) * N + j0 + VW); }
__kernel void gemm_tile_split_k(GEMM_PARAMS, __global float* parts, const int KC)
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
