// GEMM for CPU devices, BLIS-style, and the macros its kernels share (the kernels: gemm_cpu.cl,
// and gemm_narrow.cl, a program of its own per output width NN). Each work-item computes one
// MR x (2*VW) register tile with its accumulators in named vector variables, no local memory,
// no barriers, local size 1. VW (4, 8 or 16: the device's preferred float vector width) and MR
// (4, 6 or 8 rows) are compile-time; the engine picks them so accumulators fit the register
// file (AVX2: 6 x 2 float8, AVX-512: 8 x 2 float16). Only whole tiles: the engine covers a
// ragged right edge with the narrow kernels and a ragged bottom edge with the portable kernel
// in gemm.cl. Same contract as gemm.cl: C = act(op(A) . op(B) + bias) (+ C), except that
// trans_a, the activation and the bias offset (bias_at, -1: no bias) are arguments, not -D
// defines: they change no inner loop, and one program serving every layer loads faster than one
// per variant. With the offsets, a kernel can compute a block of a larger C (ldc its width).
// NOTE: plain a*b+c, not fma(): on PoCL 3.0 fma() compiled to code half as fast.

#if !defined(VW) || (VW != 4 && VW != 8 && VW != 16)
#error "VW (4, 8 or 16) is defined by the engine (engine/backend/gemm.py)"
#endif
#if !defined(MR) || (MR != 4 && MR != 6 && MR != 8)
#error "MR (4, 6 or 8) is defined by the engine (engine/backend/gemm.py)"
#endif
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

// the activation of a stored vector: linear and ReLU inline, the rest through act_fwd (which
// LLVM does not inline: a call that spills the tile's other accumulators)
#define ACT_INLINE(a, v) ((a) == ACT_LINEAR ? (v) : (a) == ACT_RELU ? MAX0(VT, v) : ACTV(a, v))
#define STORE(ACC, ROW, COL)                                                        \
    {                                                                                \
        VT v = ACC;                                                                  \
        if (has_bias) v += VLOAD(0, bias + (COL));                                   \
        v = ACT_INLINE(act, v);                                                      \
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
