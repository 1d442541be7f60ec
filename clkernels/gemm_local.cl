// GEMM for GPUs: C = act(op(A) . op(B) + bias) (+ C), the contract of gemm.cl, with TS x TS
// tiles of A and B staged in local memory. A work-group of (TS, TS / WPT) work-items computes
// one TS x TS block of C, each work-item WPT outputs of one column (rows RTS apart), so each
// value loaded from local memory serves WPT multiply-adds. Consecutive work-items (get_local_id
// (0)) read consecutive elements of B and of an untransposed A: coalesced on GPUs.
// Compile-time: TS, WPT (picked by the engine from the device's work-group and local memory
// limits), TRANS_A, TRANS_B, ACT, HAS_BIAS. Ragged edges load zeros and skip their stores.
// Global size (ceil(N / TS) * TS, ceil(M / TS) * TS / WPT), local size (TS, TS / WPT).
// A_AT, B_AT and the tile loop (LOCAL_TILE_LOOP): gemm_operands.cl.

#if !defined(TS) || !defined(WPT)
#error "TS and WPT (the tile) are defined by the engine (engine/backend/gemm.py)"
#elif TS % WPT != 0
#error "WPT must divide TS"
#endif
#define RTS (TS / WPT)

__kernel __attribute__((reqd_work_group_size(TS, RTS, 1)))
void gemm_local(const int M, const int N, const int K,
                __global const float* restrict A, const int lda,
                __global const float* restrict B, const int ldb,
                __global float* C, const int ldc,
                __global const float* restrict bias, const int accumulate,
                const int aoff, const int boff, const int coff)
{
    A += aoff; B += boff; C += coff;
    LOCAL_TILE_LOOP
    if (j >= N) return;
    for (int w = 0; w < WPT; w++) {
        const int i = i0 + ti + w * RTS;
        if (i >= M) break;
        float v = acc[w];
#if HAS_BIAS
        v += bias[j];
#endif
        v = act_fwd(ACT, v);
        __global float* c = C + i * ldc + j;
        if (accumulate) v += *c;
        *c = v;
    }
}
