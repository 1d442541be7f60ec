// GEMM kernels for outputs narrower than a register tile, on CPU devices: built after
// gemm_cpu_base.cl, one program per width NN (compile-time), so that each holds just these.

// Outputs narrower than a register tile (NN < 2VW columns, compile-time: a classifier's 10,
// the ragged right strip of a wider product): MR rows x one vector (two when NN > VW) per
// work-item, the lanes past NN never stored. Global (ceil(M / MR)).
#if !defined(NN) || NN < 1 || NN >= 2 * VW
#error "NN (1 .. 2 VW - 1 output columns) is defined by the engine (engine/backend/gemm.py)"
#endif
#define NV (NN > VW ? 2 : 1)  // vectors per row
#define N1 (NN < VW ? NN : VW)  // columns in the first
#define NB_LANE_(p, o, l) ((o) + (l) < NN ? (p)[(o) + (l)] : 0.0f)  // column o + l of B's row
#define NROW_DECL(r) VT n##r = 0.0f, m##r = 0.0f;
// (m: columns VW.. ; with NV == 1 never stored, so the compiler drops it)
#define NROW_STEP(r) { const VT a = (VT)((i0 + r < M) ? A_ROW(r) : 0.0f); \
    n##r += a * bv; m##r += a * bw; }
#define NROW_STEP_W(r) { const VT a = (VT)(A_ROW(r)); n##r += a * bv; m##r += a * bw; }
#define NSTORE(ACC, BIAS, J0, J1) { \
    VT v = ACC; \
    if (has_bias) v += BIAS; \
    v = ACT_INLINE(act, v); \
    const float* q_ = (const float*)&v; \
    for (int j = (J0); j < (J1); j++) c_[j] = accumulate ? c_[j] + q_[j - (J0)] : q_[j - (J0)]; }
#define NROW_STORE(r) if (i0 + r < M) { \
    __global float* c_ = C + (i0 + r) * ldc; \
    NSTORE(n##r, bias_v, 0, N1) \
    if (NV == 2) NSTORE(m##r, bias_w, VW, NN) }
#define NB_SAFE(o) VFROM(VW, NB_LANE_, b, o)
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
    const int kf_ = K - (NV * VW - NN + ldb - 1) / ldb, kf = kf_ > 0 ? kf_ : 0;
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
        for (int j = 0; j < N1; j++) q_[j] = bias[j];
        q_ = (float*)&bias_w;
        for (int j = VW; j < NN; j++) q_[j - VW] = bias[j];
    }
    FOR_ROWS(NROW_STORE)
}

// Split-K for narrow outputs (a small convolution's weight gradient, 144 x 16 summed over
// 25,088 positions): gemm_narrow_tile on the rows k0 .. k1 of part p, its tile written without
// epilogue into parts[p][i][pj0 + j] (rows of ldp); sum_parts (elementwise.cl) adds the parts
// with the bias/activation/accumulate epilogue. Global (ceil(M / MR), P).
#define NROW_PART(r) if (i0 + r < M) { \
    const float* q_ = (const float*)&n##r; \
    __global float* c_ = parts + (p * M + i0 + r) * ldp + pj0; \
    for (int j = 0; j < N1; j++) c_[j] = q_[j]; \
    q_ = (const float*)&m##r; \
    for (int j = VW; j < NN; j++) c_[j] = q_[j - VW]; }
__kernel void gemm_narrow_split_k(GEMM_PARAMS, __global float* parts, const int KC,
                                  const int ldp, const int pj0)
{
    GEMM_START
    const int i0 = get_global_id(0) * MR, p = get_global_id(1);
    const int k0 = p * KC, k1 = min(K, k0 + KC);
    FOR_ROWS(NROW_DECL)
    __global const float* b = B + k0 * ldb;
    A_START(k0)
    const int kf_ = K - (NV * VW - NN + ldb - 1) / ldb, kf = clamp(kf_, k0, k1);
    if (i0 + MR <= M) {
        NARROW_LOOP(k0, kf, VLOAD(0, b), NV == 2 ? VLOAD(1, b) : 0.0f, NROW_STEP_W)
        NARROW_LOOP(kf, k1, NB_SAFE(0), NB_SAFE(VW), NROW_STEP_W)
    } else {
        NARROW_LOOP(k0, kf, VLOAD(0, b), NV == 2 ? VLOAD(1, b) : 0.0f, NROW_STEP)
        NARROW_LOOP(kf, k1, NB_SAFE(0), NB_SAFE(VW), NROW_STEP)
    }
    FOR_ROWS(NROW_PART)
}

// C = A^T . B for outputs narrower than a vector with A transposed (a classifier's weight
// gradient X^T . dY: M inputs x NN classes): A's rows run along M, so each work-item takes VW
// consecutive rows of C as one vector per column, loads one vector of A per k and multiplies
// it by each of B's NN values in that row. Per k and VW rows that is NN multiply-adds, where
// gemm_narrow_tile's row broadcasts take 2 (VW / MR) + VW. M a multiple of VW (the engine
// checks); global (M / VW).
#define FOR_NN(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) \
    X(14) X(15)
#define TA_DECL(j) VT t##j = 0.0f;
#define TA_STEP(j) if ((j) < NN) t##j += a * (VT)(b[j]);
#define TA_STORE(j) if ((j) < NN) { \
    VT v = t##j; \
    if (has_bias) v += (VT)(bias[j]); \
    v = ACT_INLINE(act, v); \
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
