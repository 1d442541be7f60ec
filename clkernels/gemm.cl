// C[M,N] = act(op(A)[M,K] . op(B)[K,N] + bias[N])   (+ C when accumulate, linear act only)
// Row-major. Compile-time: TRANS_A, TRANS_B, ACT, HAS_BIAS, TM, TN (register tile per work-item).
// Global size (ceil(N/TN), ceil(M/TM)). The transposed variants serve the backward pass without
// copies: dX = dY . W^T (TRANS_B), dW = X^T . dY (TRANS_A). (i0, j0) offsets the sub-block
// computed: (M, N) is its size, so the CPU path can hand the ragged edges to this kernel.
// A_AT, B_AT: gemm_operands.cl.
#if !defined(TM) || !defined(TN)
#error "TM and TN (the register tile) are defined by the engine (engine/backend/gemm.py)"
#endif

__kernel void gemm(const int M, const int N, const int K, const int bi, const int bj,
                   __global const float* restrict A, const int lda,
                   __global const float* restrict B, const int ldb,
                   __global float* C, const int ldc,
                   __global const float* restrict bias, const int accumulate,
                   const int aoff, const int boff, const int coff)
{
    A += aoff; B += boff; C += coff;  // element offsets: recurrent layers address one time step
    const int jl = get_global_id(0) * TN;
    const int il = get_global_id(1) * TM;
    if (il >= M || jl >= N) return;
    const int im = min(TM, M - il);
    const int jn = min(TN, N - jl);
    const int i0 = bi + il, j0 = bj + jl;
    float acc[TM][TN];
    for (int a = 0; a < TM; a++)
        for (int b = 0; b < TN; b++) acc[a][b] = 0.0f;
    for (int k = 0; k < K; k++) {
        float av[TM], bv[TN];
        #pragma unroll
        for (int a = 0; a < TM; a++) av[a] = (a < im) ? A_AT(i0 + a, k) : 0.0f;
        #pragma unroll
        for (int b = 0; b < TN; b++) bv[b] = (b < jn) ? B_AT(k, j0 + b) : 0.0f;
        #pragma unroll
        for (int a = 0; a < TM; a++) {
            #pragma unroll
            for (int b = 0; b < TN; b++) acc[a][b] = fma(av[a], bv[b], acc[a][b]);
        }
    }
    for (int a = 0; a < im; a++) {
        for (int b = 0; b < jn; b++) {
            float v = acc[a][b];
#if HAS_BIAS
            v += bias[j0 + b];
#endif
            v = act_fwd(ACT, v);
            __global float* c = C + (i0 + a) * ldc + j0 + b;
            if (accumulate) v += *c;
            *c = v;
        }
    }
}
