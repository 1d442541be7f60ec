// Direct convolution for few channels (NHWC, Keras' kernel layout (KH, KW, C, F)): the
// products im2col + GEMM would make, without writing the columns. For 1-16 channels the
// column passes (im2col, col2im) and a GEMM with a K of 9-144 had taken most of a layer's
// step; these kernels read the input where it lies.
// Compile-time (engine/backend/conv_ops.py): the geometry GH .. GPL as conv.cl's (GEOM), GF
// filters, FV (1, 4, 8, 16) filters per vector (and VW = FV: activations.cl's vector forms)
// and NF (1, 2) vectors per work-item, OWT output positions along a row per work-item
// (conv_direct) and CT channels per work-item (conv_direct_dw). A work-item keeps OWT x NF (or CT x NF) accumulators in named variables
// (vector.cl: indexed private arrays and vloadN spilled on PoCL), local size 1 on CPUs.
// NOTE: plain a*b+c, not fma() (gemm_cpu_base.cl).

#if !defined(GH) || !defined(GW) || !defined(GC) || !defined(GOH) || !defined(GOW) || \
    !defined(GKH) || !defined(GKW) || !defined(GSH) || !defined(GSW) || !defined(GDH) || \
    !defined(GDW) || !defined(GPT) || !defined(GPL) || !defined(GF) || !defined(FV) || !defined(NF)
#error "conv_direct.cl needs GH .. GPL, GF, FV and NF (engine/backend/conv_ops.py)"
#endif
#if GF % (FV * NF)
#error "GF must be a multiple of FV * NF"
#endif

#if FV == 1
#define VT float
#define ACTV act_fwd
#else
#define VT CAT(float, FV)
#define ACTV CAT(act_fwd, FV)
#endif
#define VLD(p) CAT(VLOAD, FV)(p)
#define VST(v, p) CAT(VSTORE, FV)((v), (p))
#define ACT_INLINE(a, v) ((a) == ACT_LINEAR ? (v) : (a) == ACT_RELU ? MAX0(VT, v) : ACTV(a, v))

// X(0) .. X(N - 1) for N up to 16
#define REP1(X) X(0)
#define REP2(X) REP1(X) X(1)
#define REP3(X) REP2(X) X(2)
#define REP4(X) REP3(X) X(3)
#define REP5(X) REP4(X) X(4)
#define REP6(X) REP5(X) X(5)
#define REP7(X) REP6(X) X(6)
#define REP8(X) REP7(X) X(7)
#define REP9(X) REP8(X) X(8)
#define REP10(X) REP9(X) X(9)
#define REP11(X) REP10(X) X(10)
#define REP12(X) REP11(X) X(11)
#define REP13(X) REP12(X) X(12)
#define REP14(X) REP13(X) X(13)
#define REP15(X) REP14(X) X(14)
#define REP16(X) REP15(X) X(15)
#define REP(N, X) CAT(REP, N)(X)
#if NF == 2
#define FOR_V(X, j) X(j, 0) X(j, 1)
#else
#define FOR_V(X, j) X(j, 0)
#endif

#ifdef OWT
// y[b, oh, ow, f] = act(sum over (kh, kw, c) of x[b, oh*SH - PT + kh*DH, ow*SW - PL + kw*DW, c]
// * w[kh, kw, c, f] + bias[f]) (+ y): taps outside the input read zeros. Global size
// (GF / (FV*NF), ceil(OW / OWT), n*OH); each work-item OWT positions of one output row by
// FV*NF filters. Also the input gradient of a stride-1 convolution (engine/backend/conv_ops.py
// flips its kernel), with accumulate.
#define ACC_DECL_(j, v) VT a##j##_##v = 0.0f;
#define ACC_DECL(j) FOR_V(ACC_DECL_, j)
#define POS(j)                                                                             \
    const int iw##j = iwb + (j) * GSW;                                                     \
    const int ok##j = ow0 + (j) < GOW && iw##j >= 0 && iw##j < GW;                          \
    __global const float* xp##j = xrow + (ok##j ? iw##j : 0) * GC;
#define FMA_(j, v) a##j##_##v += xv##j * w##v;
#define STEP(j) { const VT xv##j = (VT)(ok##j ? xp##j[c] : 0.0f); FOR_V(FMA_, j) }
#define STORE_(j, v)                                                                       \
    {                                                                                      \
        VT s = a##j##_##v;                                                                 \
        if (has_bias) s += VLD(bias + f0 + (v) * FV);                                      \
        s = ACT_INLINE(act, s);                                                            \
        __global float* d = yrow + (ow0 + (j)) * GF + f0 + (v) * FV;                       \
        if (accumulate) s += VLD(d);                                                       \
        VST(s, d)                                                                          \
    }
#define STORE(j) if (ow0 + (j) < GOW) { FOR_V(STORE_, j) }

#if GC == 1 && GSW == 1 && GDW == 1
// One channel, stride and dilation 1 along the row (a first layer on gray images): the row's
// OWT + KW - 1 inputs are loaded once per kernel row and each serves every tap that reads it,
// instead of OWT loads and bounds checks per tap (PoCL unrolls the taps: the inputs stay in
// registers).
#define ROWN (OWT + GKW - 1)
#define XLOAD(i) { const int iw = ow0 - GPL + (i); \
    xs[i] = (iw >= 0 && iw < GW) ? xrow[iw] : 0.0f; }
#define TAP_FMA_(j, v) a##j##_##v += xs[(j) + kw] * w##v;
#define TAP_FMA(j) FOR_V(TAP_FMA_, j)
#endif
// the filters' weights of one tap and channel at p
#if NF == 2
#define W_LOAD(p) const VT w0 = VLD(p), w1 = VLD((p) + FV);
#else
#define W_LOAD(p) const VT w0 = VLD(p);
#endif
__kernel void conv_direct(__global const float* restrict x, __global const float* restrict w,
                          __global const float* restrict bias, __global float* y,
                          const int has_bias, const int act, const int accumulate)
{
    const int f0 = get_global_id(0) * (FV * NF), ow0 = get_global_id(1) * OWT;
    const int r = get_global_id(2), oh = r % GOH, b = r / GOH;
    REP(OWT, ACC_DECL)
#ifdef ROWN
    float xs[ROWN];
#endif
    for (int kh = 0; kh < GKH; kh++) {
        const int ih = oh * GSH - GPT + kh * GDH;
        if (ih < 0 || ih >= GH) continue;
        __global const float* xrow = x + (b * GH + ih) * GW * GC;
#ifdef ROWN
#pragma unroll
        for (int i = 0; i < ROWN; i++) XLOAD(i)
        __global const float* wk = w + kh * GKW * GF + f0;
#pragma unroll
        for (int kw = 0; kw < GKW; kw++) {
            W_LOAD(wk + kw * GF)
            REP(OWT, TAP_FMA)
        }
#else
        for (int kw = 0; kw < GKW; kw++) {
            const int iwb = ow0 * GSW - GPL + kw * GDW;
            REP(OWT, POS)
            __global const float* wk = w + (kh * GKW + kw) * GC * GF + f0;
            for (int c = 0; c < GC; c++) {
                W_LOAD(wk + c * GF)
                REP(OWT, STEP)
            }
        }
#endif
    }
    __global float* yrow = y + r * GOW * GF;
    REP(OWT, STORE)
}
#endif

// w_t[kh, kw, f, c] = w[KH-1-kh, KW-1-kw, c, f]: the kernel of the transposed convolution that
// gives a stride-1 convolution's input gradient (conv_direct on dy with this kernel, the
// padding (K-1)*D - P). Global size KH*KW*C*F; this program's GC, GF are the forward's.
__kernel void flip_kernel(__global const float* w, __global float* w_t, const int C,
                          const int F)
{
    const int i = get_global_id(0);
    const int f = i % F, c = (i / F) % C, t = i / (F * C);
    const int taps = GKH * GKW;
    w_t[((taps - 1 - t) * F + f) * C + c] = w[i];
}

#ifdef CT
// parts[p, kh, kw, c, f] = sum over the rows (b, oh) of part p, and every ow, of
// x[b, oh*SH - PT + kh*DH, ow*SW - PL + kw*DW, c] * dy[b, oh, ow, f]: a convolution's kernel
// gradient as a direct reduction, in P parts that sum_parts adds. Global size
// (KH*KW * GF/(FV*NF), GC/CT, P); each work-item CT channels by FV*NF filters of one tap.
#if GC % CT
#error "GC must be a multiple of CT"
#endif
#define DACC_DECL_(i, v) VT g##i##_##v = 0.0f;
#define DACC_DECL(i) FOR_V(DACC_DECL_, i)
#define DFMA_(i, v) g##i##_##v += xv##i * d##v;
#define DSTEP(i) { const VT xv##i = (VT)(xp[i]); FOR_V(DFMA_, i) }
#define DSTORE_(i, v) VST(g##i##_##v, out + (c0 + (i)) * GF + f0 + (v) * FV)
#define DSTORE(i) FOR_V(DSTORE_, i)

__kernel void conv_direct_dw(__global const float* restrict x, __global const float* restrict dy,
                             __global float* parts, const int rows)
{
    const int FB = GF / (FV * NF);
    const int t = get_global_id(0) / FB, f0 = (get_global_id(0) % FB) * (FV * NF);
    const int c0 = get_global_id(1) * CT, p = get_global_id(2), P = get_global_size(2);
    const int kh = t / GKW, kw = t % GKW;
    // the output columns whose tap kw falls inside the input: ow*SW - PL + kw*DW in [0, W)
    const int lo = GPL - kw * GDW, hi = GW - 1 + GPL - kw * GDW;
    const int ow_lo = lo > 0 ? (lo + GSW - 1) / GSW : 0;
    const int ow_hi = hi < 0 ? 0 : min(GOW, hi / GSW + 1);
    const int rb = (rows + P - 1) / P, r1 = min(rows, (p + 1) * rb);
    REP(CT, DACC_DECL)
    for (int r = p * rb; r < r1; r++) {
        const int oh = r % GOH, b = r / GOH;
        const int ih = oh * GSH - GPT + kh * GDH;
        if (ih < 0 || ih >= GH) continue;
        __global const float* xrow = x + (b * GH + ih) * GW * GC + c0;
        __global const float* drow = dy + r * GOW * GF + f0;
        for (int ow = ow_lo; ow < ow_hi; ow++) {
            __global const float* xp = xrow + (ow * GSW - GPL + kw * GDW) * GC;
            const VT d0 = VLD(drow + ow * GF);
#if NF == 2
            const VT d1 = VLD(drow + ow * GF + FV);
#endif
            REP(CT, DSTEP)
        }
    }
    __global float* out = parts + (p * GKH * GKW + t) * GC * GF;
    REP(CT, DSTORE)
}
#endif

#ifdef TAPS1
// One input channel (a first layer on gray images): parts[p, kh, kw, 0, f] as conv_direct_dw's,
// every tap of FV*NF filters in one work-item, and bias_parts[p, f] = the sum of dy over part
// p's positions (the bias gradient) beside them: each output gradient vector is read once for
// all the taps and the bias, where conv_direct_dw read it once per tap and the bias's column
// sums once more. Global size (GF/(FV*NF), P); GKH*GKW*NF + NF accumulators (the engine keeps
// it to 3x3).
#if GC != 1
#error "TAPS1 is for one input channel"
#endif
#define T1_DECL_(t, v) VT g##t##_##v = 0.0f;
#define T1_DECL(t) FOR_V(T1_DECL_, t)
#define T1_STEP_(t, v) g##t##_##v += xv##t * d##v;
#define T1_STEP(t)                                                                         \
    {                                                                                      \
        const int kh_ = (t) / GKW, kw_ = (t) % GKW;                                        \
        const int ih_ = ih0 + kh_ * GDH, iw_ = iw0 + kw_ * GDW;                            \
        const VT xv##t = (VT)((ih_ >= 0 && ih_ < GH && iw_ >= 0 && iw_ < GW)               \
                              ? xb[ih_ * GW + iw_] : 0.0f);                                \
        FOR_V(T1_STEP_, t)                                                                 \
    }
#define T1_STORE_(t, v) VST(g##t##_##v, out + (t) * GF + f0 + (v) * FV);
#define T1_STORE(t) FOR_V(T1_STORE_, t)
#define B_STORE_(j, v) VST(s##v, bout + f0 + (v) * FV);

__kernel void conv_direct_dw1(__global const float* restrict x, __global const float* restrict dy,
                              __global float* parts, __global float* bias_parts, const int rows)
{
    const int f0 = get_global_id(0) * (FV * NF), p = get_global_id(1), P = get_global_size(1);
    const int rb = (rows + P - 1) / P, r1 = min(rows, (p + 1) * rb);
    REP(TAPS1, T1_DECL)
    VT s0 = 0.0f;
#if NF == 2
    VT s1 = 0.0f;
#endif
    for (int r = p * rb; r < r1; r++) {
        const int oh = r % GOH, b = r / GOH;
        const int ih0 = oh * GSH - GPT;
        __global const float* xb = x + b * GH * GW;
        __global const float* drow = dy + r * GOW * GF + f0;
        for (int ow = 0; ow < GOW; ow++) {
            const int iw0 = ow * GSW - GPL;
            const VT d0 = VLD(drow + ow * GF);
            s0 += d0;
#if NF == 2
            const VT d1 = VLD(drow + ow * GF + FV);
            s1 += d1;
#endif
            REP(TAPS1, T1_STEP)
        }
    }
    __global float* out = parts + p * GKH * GKW * GF;
    REP(TAPS1, T1_STORE)
    __global float* bout = bias_parts + p * GF;
    FOR_V(B_STORE_, 0)
}
#endif
