// Element (i, k) of op(A) and (k, j) of op(B) for the GEMMs whose transposes are compile-time
// (TRANS_A, TRANS_B): gemm.cl and gemm_local.cl, built after this file.
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
