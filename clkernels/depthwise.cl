// Depthwise convolution on NHWC tensors (engine/backend/depthwise_ops.py): each input channel c
// has its own KH x KW filters, M of them (the depth multiplier), and output channel o = c*M + m
// (Keras' order) reads input channel o / M only. The kernel w is Keras' (KH, KW, C, M), which in
// memory is (KH, KW, CM): tap (kh, kw) of output channel o is w[(kh*KW + kw)*CM + o].
// Direct kernels, no im2col: forward, input gradient (a gather: each input element sums the
// outputs that read it, so no atomics) and weight gradient (sums over the output positions, in
// parts added afterwards by sum_parts). Consecutive channels go in vectors of VO (output
// channels) or VI (input channels): the device's elementwise width EW on CPUs where the
// channels divide by it, 1 on GPUs (work-items are already SIMD lanes) and otherwise.
// Compile-time geometry only (one program per layer shape, as conv.cl's GEOM kernels): the
// window as GH .. GPL (engine/backend/geometry.py ConvGeometry), the multiplier GM.
#if !defined(GEOM) || !defined(GH) || !defined(GW) || !defined(GC) || !defined(GOH) || \
    !defined(GOW) || !defined(GKH) || !defined(GKW) || !defined(GSH) || !defined(GSW) || \
    !defined(GDH) || !defined(GDW) || !defined(GPT) || !defined(GPL) || !defined(GM) || \
    !defined(VO) || !defined(VI)
#error "depthwise.cl needs GEOM, GH .. GPL, GM, VO and VI (engine/backend/depthwise_ops.py)"
#endif

#define CM (GC * GM)
#define QO (CM / VO)
#define QI (GC / VI)

// Vectors of VO output channels: TO, their load and store, the activation at that width, and
// XO(p, o): the input channels o / M .. (o + VO - 1) / M of the pixel at p.
#if VO == 1
#define TO float
#define LDO(p) (*(p))
#define STO(v, p) { *(p) = (v); }
#define ACTO act_fwd
#else
#define TO CAT(float, VO)
#define LDO(p) CAT(VLOAD, VO)(p)
#define STO(v, p) CAT(VSTORE, VO)((v), (p))
#define ACTO CAT(act_fwd, VO)
#endif
#if GM == 1
#define XO(p, o) LDO((p) + (o))
#else
#define XLANE_(p, o, l) (p)[((o) + (l)) / GM]
#if VO == 1
#define XO(p, o) ((p)[(o) / GM])
#else
#define XO(p, o) VFROM(VO, XLANE_, p, o)
#endif
#endif

// Vectors of VI input channels: GI(p) gathers lanes GM apart (channel c's m-th output is c*M+m).
#if VI == 1
#define TI float
#define LDI(p) (*(p))
#define STI(v, p) { *(p) = (v); }
#define GI(p) (*(p))
#else
#define TI CAT(float, VI)
#define LDI(p) CAT(VLOAD, VI)(p)
#define STI(v, p) CAT(VSTORE, VI)((v), (p))
#define GI(p) VGATHER(VI, p, GM)
#endif

// y[b, oh, ow, o] = act(bias[o] + sum over (kh, kw) of x[b, ih, iw, o / M] * w[kh, kw, o]),
// ih = oh*SH - PT + kh*DH (taps in the padding read 0). VO output channels per work-item;
// global n*OH*OW*CM/VO, padded to whole work-groups on CPUs (`items` the real count).
__kernel void dw_forward(__global const float* x, __global const float* w,
                         __global const float* bias, __global float* y, const int has_bias,
                         const int act, const int items)
{
    const int i = get_global_id(0);
    if (i >= items) return;
    const int o = (i % QO) * VO, r = i / QO;
    const int ow = r % GOW, oh = (r / GOW) % GOH, b = r / (GOW * GOH);
    TO s = (TO)(0.0f);
    if (has_bias) s = LDO(bias + o);
    for (int kh = 0; kh < GKH; kh++) {
        const int ih = oh * GSH - GPT + kh * GDH;
        if (ih < 0 || ih >= GH) continue;
        for (int kw = 0; kw < GKW; kw++) {
            const int iw = ow * GSW - GPL + kw * GDW;
            if (iw < 0 || iw >= GW) continue;
            s += XO(x + ((b * GH + ih) * GW + iw) * GC, o) * LDO(w + (kh * GKW + kw) * CM + o);
        }
    }
    STO(ACTO(act, s), y + r * CM + o)
}

// dx[b, ih, iw, c] (+)= sum over the windows that read it and over m of
// dy[b, oh, ow, c*M + m] * w[kh, kw, c*M + m]. VI input channels per work-item; global
// n*H*W*C/VI, padded to whole work-groups on CPUs.
__kernel void dw_backward_input(__global const float* dy, __global const float* w,
                                __global float* dx, const int accumulate, const int items)
{
    const int i = get_global_id(0);
    if (i >= items) return;
    const int c = (i % QI) * VI, p = i / QI;  // p: the pixel (b*H + ih)*W + iw
    const int iw = p % GW, ih = (p / GW) % GH, b = p / (GW * GH);
    TI s = (TI)(0.0f);
    for (int kh = 0; kh < GKH; kh++) {
        const int th = ih + GPT - kh * GDH;
        if (th < 0 || th % GSH) continue;
        const int oh = th / GSH;
        if (oh >= GOH) continue;
        for (int kw = 0; kw < GKW; kw++) {
            const int tw = iw + GPL - kw * GDW;
            if (tw < 0 || tw % GSW) continue;
            const int ow = tw / GSW;
            if (ow >= GOW) continue;
            __global const float* g = dy + ((b * GOH + oh) * GOW + ow) * CM + c * GM;
            __global const float* f = w + (kh * GKW + kw) * CM + c * GM;
            for (int m = 0; m < GM; m++) s += GI(g + m) * GI(f + m);
        }
    }
    __global float* d = dx + p * GC + c;
    if (accumulate) s += LDI(d);
    STI(s, d)
}

// parts[part, kh, kw, o] = sum over the part's output lines l = b*OH + oh (lines split in P
// parts) and over ow of dy[b, oh, ow, o] * x[b, ih, iw, o / M]: the weight gradient when P = 1,
// else summed by sum_parts. Global (KH*KW*CM/VO, P).
__kernel void dw_backward_weight(__global const float* x, __global const float* dy,
                                 __global float* parts, const int lines)
{
    const int q = get_global_id(0), part = get_global_id(1), P = get_global_size(1);
    const int o = (q % QO) * VO, k = q / QO, kw = k % GKW, kh = k / GKW;
    const int per = (lines + P - 1) / P, first = part * per;
    const int last = first + per < lines ? first + per : lines;
    TO s = (TO)(0.0f);
    for (int l = first; l < last; l++) {
        const int oh = l % GOH, b = l / GOH;
        const int ih = oh * GSH - GPT + kh * GDH;
        if (ih < 0 || ih >= GH) continue;
        for (int ow = 0; ow < GOW; ow++) {
            const int iw = ow * GSW - GPL + kw * GDW;
            if (iw < 0 || iw >= GW) continue;
            s += LDO(dy + (l * GOW + ow) * CM + o) * XO(x + ((b * GH + ih) * GW + iw) * GC, o);
        }
    }
    STO(s, parts + part * (GKH * GKW * CM) + k * CM + o)
}
