// Element (i, k) of op(A) and (k, j) of op(B) for the GEMMs whose transposes are compile-time
// (TRANS_A, TRANS_B): gemm.cl and gemm_local.cl, built after this file. The defines they share
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
