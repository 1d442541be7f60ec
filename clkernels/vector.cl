// Vector loads and stores built from scalars, and the elementwise vector width EW.
// NOTE: PoCL 3.0 emits vloadN/vstoreN as calls into its library; a call clobbers every vector
// register (a GEMM spilled all its accumulators around each load and ran at a third of its
// speed) and keeps elementwise kernels scalar. Built from scalars, LLVM merges them into one
// unaligned vector access, inline; other compilers do the same or keep valid scalar code.
// The same holds for select, isgreater, fmax, fmin, clamp, fabs, min, max and mul_hi: kernels
// on a hot path write them as comparisons with ?: (OpenCL's vector ?: is select) and 64-bit
// products (activations.cl MAX0 and friends; max pooling 1.8x, ReLU backward 1.6x, Philox
// 2.6x faster without the calls).
// p points at the first element.
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
// A float vector of W (4, 8, 16) built from scalars: VFROM(W, F, p, s) takes lane l from
// F(p, s, l), s being F's own parameter (a stride, an offset). VLOAD: W consecutive elements;
// VGATHER: W elements s apart.
#define VTYPE_(W) float##W
#define VTYPE(W) VTYPE_(W)
#define LANES4_(F, p, s, l) F(p, s, l), F(p, s, (l) + 1), F(p, s, (l) + 2), F(p, s, (l) + 3)
#define LANES_4(F, p, s) LANES4_(F, p, s, 0)
#define LANES_8(F, p, s) LANES4_(F, p, s, 0), LANES4_(F, p, s, 4)
#define LANES_16(F, p, s) LANES_8(F, p, s), LANES4_(F, p, s, 8), LANES4_(F, p, s, 12)
#define LANES_(W) LANES_##W
#define LANES(W) LANES_(W)
#define VFROM(W, F, p, s) ((VTYPE(W))(LANES(W)(F, p, s)))
#define STRIDED_(p, s, l) (p)[(l) * (s)]
#define VGATHER(W, p, s) VFROM(W, STRIDED_, p, s)
#define VLOAD1(p) (*(p))
#define VLOAD4(p) VGATHER(4, p, 1)
#define VLOAD8(p) VGATHER(8, p, 1)
#define VLOAD16(p) VGATHER(16, p, 1)
#define VSTORE1(v, p) { *(p) = (v); }
#define VSTORE4(v, p) { const float4 v4_ = (v); __global float* p4_ = (p); \
    p4_[0] = v4_.s0; p4_[1] = v4_.s1; p4_[2] = v4_.s2; p4_[3] = v4_.s3; }
#define VSTORE8(v, p) { const float8 v8_ = (v); __global float* p8_ = (p); \
    p8_[0] = v8_.s0; p8_[1] = v8_.s1; p8_[2] = v8_.s2; p8_[3] = v8_.s3; \
    p8_[4] = v8_.s4; p8_[5] = v8_.s5; p8_[6] = v8_.s6; p8_[7] = v8_.s7; }
#define VSTORE16(v, p) { const float16 v16_ = (v); \
    VSTORE8(v16_.lo, (p)) VSTORE8(v16_.hi, (p) + 8) }

// Elementwise kernels handle EW consecutive elements per work-item (EW is #defined by the
// engine from the device: 8 on CPUs, where PoCL's own vectorisation across work-items left
// these kernels 3-4x slower; 1 on GPUs, whose work-items are already SIMD lanes).
// EW_BODY(n, BODY) runs BODY(T, LD, ST, SUF) once on EW elements as the vector type T, or,
// for the last work-item of a ragged n, element by element as float: LD(p) loads the current
// element(s) of p, ST(v, p) stores them, SUF names the width (act_grad##SUF).
#if EW == 1
#define EWT float
#define EW_SUF
#else
#define EWT CAT(float, EW)
#define EW_SUF EW
#endif
#define EW_LD(p) CAT(VLOAD, EW)((p) + ew_i0_)
#define EW_ST(v, p) CAT(VSTORE, EW)((v), (p) + ew_i0_)
#define EW_LD1(p) ((p)[ew_i_])
#define EW_ST1(v, p) { (p)[ew_i_] = (v); }
#define EW_BODY(n, BODY)                                                                  \
    {                                                                                     \
        const int ew_i0_ = get_global_id(0) * EW;                                         \
        if (ew_i0_ + EW <= (n)) { BODY(EWT, EW_LD, EW_ST, EW_SUF) }                      \
        else for (int ew_i_ = ew_i0_; ew_i_ < (n); ew_i_++) { BODY(float, EW_LD1, EW_ST1, ) } \
    }

// Row-wise kernels (softmax, cross-entropy from logits) take EW rows per work-item: column j of
// those rows is one EWT vector gathered down the rows, so exp and log run as one vector call
// per column instead of one call per element (PoCL 3.0 calls its library for each: a 128 x 10
// softmax took ~25 us). RB_START(rows) names the block's first row rb_r0_ and its row count
// rb_n_ (EW but for the last block, whose spare lanes repeat its last row and are not stored),
// and returns from work-items past the rows. Global ceil(rows / EW).
#define RB_START(rows) const int rb_r0_ = get_global_id(0) * EW;                           \
    if (rb_r0_ >= (rows)) return;                                                           \
    const int rb_n_ = (rows) - rb_r0_ < EW ? (rows) - rb_r0_ : EW;
// p: the block's first row at the wanted column, s: the row stride
#define RB_LANE_(p, s, l) (p)[((l) < rb_n_ ? (l) : rb_n_ - 1) * (s)]
#if EW == 1
#define RB_GATHER(p, s) ((p)[0])
#else
#define RB_GATHER(p, s) VFROM(EW, RB_LANE_, p, s)
#endif
#define RB_SCATTER(v, p, s) { const EWT rb_v_ = (v); const float* rb_q_ = (const float*)&rb_v_; \
    for (int rb_l_ = 0; rb_l_ < rb_n_; rb_l_++) (p)[rb_l_ * (s)] = rb_q_[rb_l_]; }

// A vector's lanes reduced to one float: LANES_SUM(W, v) their sum, LANES_MAX(W, v)
// their maximum (W of 1, 4, 8, 16; ?: rather than fmax, see above).
#define LANES_SUM_1(v) (v)
#define LANES_SUM_4(v) ((v).s0 + (v).s1 + (v).s2 + (v).s3)
#define LANES_SUM_8(v) LANES_SUM_4((v).lo + (v).hi)
#define LANES_SUM_16(v) LANES_SUM_8((v).lo + (v).hi)
#define LANES_SUM(W, v) CAT(LANES_SUM_, W)(v)
#define VMAX_(a, b) ((a) > (b) ? (a) : (b))
#define LANES_MAX_1(v) (v)
#define LANES_MAX_4(v) VMAX_(VMAX_((v).s0, (v).s1), VMAX_((v).s2, (v).s3))
#define LANES_MAX_8(v) LANES_MAX_4(VMAX_((v).lo, (v).hi))
#define LANES_MAX_16(v) LANES_MAX_8(VMAX_((v).lo, (v).hi))
#define LANES_MAX(W, v) CAT(LANES_MAX_, W)(v)
