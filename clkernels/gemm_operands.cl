// Element (i, k) of op(A) and (k, j) of op(B) for the GEMMs whose transposes are compile-time
// (TRANS_A, TRANS_B): gemm.cl and gemm_local.cl, built after this file; and the local-memory
// tile loop of gemm_local.cl, which bgemm_tiles.cl's batched form shares. The defines they share
// default to the plain product: no transposes, linear, no bias.
#ifndef TRANS_A
#define TRANS_A 0
#endif
#ifndef TRANS_B
#define TRANS_B 0
#endif
#ifndef ACT
#define ACT ACT_LINEAR
#endif
#ifndef HAS_BIAS
#define HAS_BIAS 0
#endif
#if TRANS_A
#define A_AT(i, k) A[(k) * lda + (i)]
#else
#define A_AT(i, k) A[(i) * lda + (k)]
#endif
#if TRANS_B
#define B_AT(k, j) B[(j) * ldb + (k)]
#else
#define B_AT(k, j) B[(k) * ldb + (j)]
#endif

// The local-memory tile loop (gemm_local.cl; bgemm_tiles.cl bgemm_local, on its own A_AT and
// B_AT): a work-item's acc[WPT], rows i0 + ti + w * RTS of column j of C, summed over K from
// TS x TS tiles of op(A) and op(B) staged in local memory, zeros past M, N and K. TS, WPT and
// RTS are defined by the kernel's file.
#define LOCAL_TILE_LOOP                                                                    \
    __local float As[TS][TS + 1];  /* +1: a column walk does not hit one memory bank */    \
    __local float Bs[TS][TS];                                                             \
    const int tj = get_local_id(0), ti = get_local_id(1);                                 \
    const int j = get_group_id(0) * TS + tj, i0 = get_group_id(1) * TS;                   \
    float acc[WPT];                                                                       \
    for (int w = 0; w < WPT; w++) acc[w] = 0.0f;                                         \
    for (int t = 0; t < K; t += TS) {                                                     \
        for (int w = 0; w < WPT; w++) {                                                   \
            const int r = ti + w * RTS;                                                   \
            const int ai = i0 + r, ak = t + tj, bk = t + r;                               \
            As[r][tj] = (ai < M && ak < K) ? A_AT(ai, ak) : 0.0f;                         \
            Bs[r][tj] = (bk < K && j < N) ? B_AT(bk, j) : 0.0f;                           \
        }                                                                                 \
        barrier(CLK_LOCAL_MEM_FENCE);                                                     \
        for (int k = 0; k < TS; k++) {                                                    \
            const float b_ = Bs[k][tj];                                                   \
            for (int w = 0; w < WPT; w++) acc[w] += As[ti + w * RTS][k] * b_;             \
        }                                                                                 \
        barrier(CLK_LOCAL_MEM_FENCE);                                                     \
    }
