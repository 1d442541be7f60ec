// Convolution and pooling on NHWC tensors (channels last, as Keras). Geometry arguments:
// H, W, C input; OH, OW output; KH, KW window; SH, SW strides; DH, DW dilation; PT, PL padding
// before (top, left). Backward passes are gathers: each input element sums the outputs that read
// it, so no two work-items write the same address and no atomics are needed.

// Geometry is compile-time when the engine passes -DGEOM with GH..GPL (one program per layer
// shape): the index divisions then become multiplications, which made these kernels 3-8x
// faster on PoCL. Without GEOM the runtime arguments are used.
#ifdef GEOM
#if !defined(GH) || !defined(GW) || !defined(GC) || !defined(GOH) || !defined(GOW) || \
    !defined(GKH) || !defined(GKW) || !defined(GSH) || !defined(GSW) || !defined(GDH) || \
    !defined(GDW) || !defined(GPT) || !defined(GPL)
#error "GEOM needs every one of GH .. GPL (engine/backend/conv_ops.py)"
#endif
#define gH GH
#define gW GW
#define gC GC
#define gOH GOH
#define gOW GOW
#define gKH GKH
#define gKW GKW
#define gSH GSH
#define gSW GSW
#define gDH GDH
#define gDW GDW
#define gPT GPT
#define gPL GPL
#else
#define gH H
#define gW W
#define gC C
#define gOH OH
#define gOW OW
#define gKH KH
#define gKW KW
#define gSH SH
#define gSW SW
#define gDH DH
#define gDW DW
#define gPT PT
#define gPL PL
#endif

// cols[(b, oh, ow), (kh, kw, c)] = x[b, oh*SH - PT + kh*DH, ow*SW - PL + kw*DW, c] or 0.
// Global size (KH*KW*C, n*OH*OW).
__kernel void im2col(__global const float* x, __global float* cols,
                     const int H, const int W, const int C, const int OH, const int OW,
                     const int KH, const int KW, const int SH, const int SW,
                     const int DH, const int DW, const int PT, const int PL)
{
    const int q = get_global_id(0), r = get_global_id(1);
    const int K = gKH * gKW * gC;
    const int c = q % gC, kw = (q / gC) % gKW, kh = q / (gC * gKW);
    const int ow = r % gOW, oh = (r / gOW) % gOH, b = r / (gOW * gOH);
    const int ih = oh * gSH - gPT + kh * gDH, iw = ow * gSW - gPL + kw * gDW;
    cols[r * K + q] = (ih >= 0 && ih < gH && iw >= 0 && iw < gW)
                      ? x[((b * gH + ih) * gW + iw) * gC + c] : 0.0f;
}

// The same, 8 channels per work-item (C a multiple of 8, compile-time geometry): vector moves
// instead of one index computation per element. Global size (KH*KW*C/8, n*OH*OW).
#if defined(GEOM) && (GC % 8 == 0)
__kernel void im2col8(__global const float* x, __global float* cols, const int rows)
{
    const int q = get_global_id(0) * 8, r = get_global_id(1);
    if (r >= rows) return;  // the grid is padded to whole work-groups
    const int K = gKH * gKW * gC;
    const int c = q % gC, kw = (q / gC) % gKW, kh = q / (gC * gKW);
    const int ow = r % gOW, oh = (r / gOW) % gOH, b = r / (gOW * gOH);
    const int ih = oh * gSH - gPT + kh * gDH, iw = ow * gSW - gPL + kw * gDW;
    const float8 v = (ih >= 0 && ih < gH && iw >= 0 && iw < gW)
                     ? VLOAD8(x + ((b * gH + ih) * gW + iw) * gC + c) : (float8)(0.0f);
    VSTORE8(v, cols + r * K + q)
}
#endif

// Every window (oh, ow) that reads input position (ih, iw) through its tap (kh, kw), taps
// spaced DIL_H, DIL_W: BODY runs once for each (the gathers of the backward passes).
#define WINDOWS_READING(DIL_H, DIL_W, BODY)                                              \
    for (int kh = 0; kh < gKH; kh++) {                                                  \
        const int th = ih + gPT - kh * (DIL_H);                                          \
        if (th < 0 || th % gSH) continue;                                                \
        const int oh = th / gSH;                                                         \
        if (oh >= gOH) continue;                                                         \
        for (int kw = 0; kw < gKW; kw++) {                                              \
            const int tw = iw + gPL - kw * (DIL_W);                                      \
            if (tw < 0 || tw % gSW) continue;                                            \
            const int ow = tw / gSW;                                                     \
            if (ow >= gOW) continue;                                                     \
            BODY;                                                                        \
        }                                                                                \
    }

// Every dcols entry im2col filled from input position (b, ih, iw), channel c: `src` is its index.
#define COL2IM_GATHER(ACC) WINDOWS_READING(gDH, gDW, {                                  \
    const int src = ((b * gOH + oh) * gOW + ow) * K + (kh * gKW + kw) * gC + c;          \
    ACC; })

// dx[b, ih, iw, c] (+)= sum of dcols entries that im2col read from it. Global size n*H*W*C.
__kernel void col2im(__global const float* dcols, __global float* dx,
                     const int H, const int W, const int C, const int OH, const int OW,
                     const int KH, const int KW, const int SH, const int SW,
                     const int DH, const int DW, const int PT, const int PL, const int accumulate)
{
    const int i = get_global_id(0);
    const int c = i % gC, iw = (i / gC) % gW, ih = (i / (gC * gW)) % gH, b = i / (gC * gW * gH);
    const int K = gKH * gKW * gC;
    float s = 0.0f;
    COL2IM_GATHER(s += dcols[src])
    if (accumulate) s += dx[i];
    dx[i] = s;
}

// col2im with 8 channels per work-item (C a multiple of 8, compile-time geometry). Global size
// n*H*W*C/8.
#if defined(GEOM) && (GC % 8 == 0)
__kernel void col2im8(__global const float* dcols, __global float* dx, const int accumulate,
                      const int items)
{
    const int i = get_global_id(0), CQ8 = gC / 8;
    if (i >= items) return;  // the grid is padded to whole work-groups
    const int c = (i % CQ8) * 8, iw = (i / CQ8) % gW, ih = (i / (CQ8 * gW)) % gH;
    const int b = i / (CQ8 * gW * gH);
    const int K = gKH * gKW * gC;
    float8 s = (float8)(0.0f);
    COL2IM_GATHER(s += VLOAD8(dcols + src))
    __global float* d = dx + ((b * gH + ih) * gW + iw) * gC + c;
    if (accumulate) s += VLOAD8(d);
    VSTORE8(s, d)
}
#endif

// Grouped convolution (groups G, C = G * Cg): im2col's columns as G matrices one after
// another, group j's (rows x Kg, Kg = KH*KW*Cg) from element j*rows*Kg, so that each group's
// GEMM reads a contiguous operand: cols[j][r, (kh, kw, cg)] = x[b, ih, iw, j*Cg + cg] or 0.
// Global size (KH*KW*C, rows), rows = n*OH*OW.
__kernel void im2col_groups(__global const float* x, __global float* cols,
                            const int H, const int W, const int C, const int OH, const int OW,
                            const int KH, const int KW, const int SH, const int SW,
                            const int DH, const int DW, const int PT, const int PL,
                            const int groups)
{
    const int q = get_global_id(0), r = get_global_id(1), rows = get_global_size(1);
    const int Cg = gC / groups, Kg = gKH * gKW * Cg;
    const int c = q % gC, kw = (q / gC) % gKW, kh = q / (gC * gKW);
    const int j = c / Cg, cg = c - j * Cg;
    const int ow = r % gOW, oh = (r / gOW) % gOH, b = r / (gOW * gOH);
    const int ih = oh * gSH - gPT + kh * gDH, iw = ow * gSW - gPL + kw * gDW;
    cols[(j * rows + r) * Kg + (kh * gKW + kw) * Cg + cg] =
        (ih >= 0 && ih < gH && iw >= 0 && iw < gW) ? x[((b * gH + ih) * gW + iw) * gC + c] : 0.0f;
}

// dx[b, ih, iw, c] (+)= the entries of im2col_groups' columns read from it. Global size
// n*H*W*C.
__kernel void col2im_groups(__global const float* dcols, __global float* dx,
                            const int H, const int W, const int C, const int OH, const int OW,
                            const int KH, const int KW, const int SH, const int SW,
                            const int DH, const int DW, const int PT, const int PL,
                            const int groups, const int n, const int accumulate)
{
    const int i = get_global_id(0);
    const int c = i % gC, iw = (i / gC) % gW, ih = (i / (gC * gW)) % gH, b = i / (gC * gW * gH);
    const int Cg = gC / groups, Kg = gKH * gKW * Cg, rows = n * gOH * gOW;
    const int j = c / Cg, cg = c - j * Cg;
    float s = 0.0f;
    WINDOWS_READING(gDH, gDW, s += dcols[(j * rows + (b * gOH + oh) * gOW + ow) * Kg
                                         + (kh * gKW + kw) * Cg + cg])
    if (accumulate) s += dx[i];
    dx[i] = s;
}

// y[b, a, i] (+)= x[a, b, i] (+ bias[a*I + i]): the two outer axes of an (A, B, I) array
// swapped, I elements moved as a block. Moves a grouped convolution's kernel, outputs and
// gradients between Keras' layout (filters of all groups side by side) and one matrix per
// group. Global size A*B*I.
__kernel void swap_outer(__global const float* x, __global float* y, __global const float* bias,
                         const int A, const int B, const int I, const int has_bias,
                         const int accumulate)
{
    const int o = get_global_id(0);
    const int i = o % I, a = (o / I) % A, b = o / (I * A);
    float v = x[(a * B + b) * I + i];
    if (has_bias) v += bias[a * I + i];
    if (accumulate) v += y[o];
    y[o] = v;
}

// An average pooling window's divisor: the cells of the window inside the input, or with inc
// (PyTorch's count_include_pad) inside the padded input, H + PB rows by W + PR columns from
// (-PT, -PL): the padding counts, the overhang a rounded-up window count adds does not.
#define POOL_DIVISOR(oh, ow)                                                               \
    (inc ? (min((oh) * gSH - gPT + gKH, gH + PB) - ((oh) * gSH - gPT)) *                   \
           (min((ow) * gSW - gPL + gKW, gW + PR) - ((ow) * gSW - gPL))                     \
         : (min((oh) * gSH - gPT + gKH, gH) - max((oh) * gSH - gPT, 0)) *                  \
           (min((ow) * gSW - gPL + gKW, gW) - max((ow) * gSW - gPL, 0)))

// Max pooling: y and the flat per-sample index (h*W + w) of the maximum; padding never wins.
// Average pooling (avg != 0): the window's sum over POOL_DIVISOR (Keras/TF 'same': the
// in-bounds entries). Global size n*OH*OW*C.
__kernel void pool_forward(__global const float* x, __global float* y, __global int* arg,
                           const int H, const int W, const int C, const int OH, const int OW,
                           const int KH, const int KW, const int SH, const int SW,
                           const int PT, const int PL, const int PB, const int PR,
                           const int inc, const int avg)
{
    const int o = get_global_id(0);
    const int c = o % gC, ow = (o / gC) % gOW, oh = (o / (gC * gOW)) % gOH, b = o / (gC * gOW * gOH);
    float best = -INFINITY, sum = 0.0f;
    int besti = -1;
    for (int kh = 0; kh < gKH; kh++) {
        const int ih = oh * gSH - gPT + kh;
        if (ih < 0 || ih >= gH) continue;
        for (int kw = 0; kw < gKW; kw++) {
            const int iw = ow * gSW - gPL + kw;
            if (iw < 0 || iw >= gW) continue;
            const float v = x[((b * gH + ih) * gW + iw) * gC + c];
            sum += v;
            if (v > best || besti < 0) { best = v; besti = ih * gW + iw; }
        }
    }
    if (avg) {
        const int count = besti < 0 ? 0 : POOL_DIVISOR(oh, ow);
        y[o] = count > 0 ? sum / count : 0.0f;
    }
    else { y[o] = best; arg[o] = besti; }
}

// Global size n*H*W*C: each input element gathers from the windows that contain it.
__kernel void pool_backward(__global const float* dy, __global const int* arg,
                            __global float* dx,
                            const int H, const int W, const int C, const int OH, const int OW,
                            const int KH, const int KW, const int SH, const int SW,
                            const int PT, const int PL, const int PB, const int PR,
                            const int inc, const int avg, const int accumulate)
{
    const int i = get_global_id(0);
    const int c = i % gC, iw = (i / gC) % gW, ih = (i / (gC * gW)) % gH, b = i / (gC * gW * gH);
    const int self = ih * gW + iw;
    float s = 0.0f;
    WINDOWS_READING(1, 1, {
        const int o = ((b * gOH + oh) * gOW + ow) * gC + c;
        if (avg) s += dy[o] / (float)POOL_DIVISOR(oh, ow);
        else if (arg[o] == self) s += dy[o]; })
    if (accumulate) s += dx[i];
    dx[i] = s;
}

// Max pooling whose windows tile the input without overlap or padding (strides equal to the
// pool size, "valid"): each output scatters its gradient to its own window, no search.
// Positions no window covers keep what the caller put there (zeros, or the accumulated value).
// Global size n*OH*OW*C (items), padded to whole work-groups on CPUs: with its input in cache,
// the work-group sizes PoCL picks itself took twice as long (26x26x32 at batch 64, 2x2: forward
// 0.47 -> 0.25 ms, backward 0.50 -> 0.24); inside a training step, reading a convolution's
// output just written, both take about as long (0.53-0.60 and 0.31-0.33 ms either way).
// Compile-time geometry only.
#ifdef GEOM
__kernel void max_pool_forward_tiled(__global const float* x, __global float* y,
                                     __global int* arg, const int items)
{
    const int o = get_global_id(0);
    if (o >= items) return;
    const int c = o % gC, ow = (o / gC) % gOW, oh = (o / (gC * gOW)) % gOH;
    const int b = o / (gC * gOW * gOH);
    const int first = (oh * gKH) * gW + ow * gKW;  // the first maximum wins, as pool_forward
    float best = x[((b * gH) * gW + first) * gC + c];
    int besti = first;
    for (int kh = 0; kh < gKH; kh++) {
        for (int kw = 0; kw < gKW; kw++) {
            const int idx = (oh * gKH + kh) * gW + ow * gKW + kw;
            const float v = x[((b * gH) * gW + idx) * gC + c];
            const int better = v > best;
            best = better ? v : best;
            besti = better ? idx : besti;
        }
    }
    y[o] = best;
    arg[o] = besti;
}

// act (not ACT_LINEAR): the input is the output of an activation whose derivative its output
// gives (NodeStep.fold_act), y the pooled output: the gradient goes to the activation's input.
// The window's maximum is the activation's output at the argmax, so the derivative there is
// act_grad at y; the producer then skips its own pass over the whole input (a ReLU's
// backward read and wrote 16 MB a step for a 26x26x32 convolution at batch 64).
__kernel void max_pool_backward_tiled(__global const float* dy, __global const int* arg,
                                      __global float* dx, const int accumulate,
                                      __global const float* y, const int act,
                                      const int items)
{
    const int o = get_global_id(0);
    if (o >= items) return;
    const int c = o % gC, ow = (o / gC) % gOW, oh = (o / (gC * gOW)) % gOH;
    const int b = o / (gC * gOW * gOH);
    const float g = act == ACT_LINEAR ? dy[o] : dy[o] * act_grad(act, 0.0f, y[o]);
    const int best = arg[o];
    for (int kh = 0; kh < gKH; kh++) {
        for (int kw = 0; kw < gKW; kw++) {
            const int ih = oh * gKH + kh, iw = ow * gKW + kw;
            const int i = ((b * gH + ih) * gW + iw) * gC + c;
            const float v = (ih * gW + iw == best) ? g : 0.0f;
            dx[i] = accumulate ? dx[i] + v : v;
        }
    }
}
#endif

// The same two kernels, 8 channels per work-item (C a multiple of 8): explicit float8 work the
// runtime does not have to discover. Loads and stores component by component (vector.cl).
#if defined(GEOM) && (GC % 8 == 0)
#define LDI8(p) ((int8)((p)[0], (p)[1], (p)[2], (p)[3], (p)[4], (p)[5], (p)[6], (p)[7]))
#define VSTORE8I(v, p) { const int8 i8_ = (v); __global int* q8_ = (p); \
    q8_[0] = i8_.s0; q8_[1] = i8_.s1; q8_[2] = i8_.s2; q8_[3] = i8_.s3; \
    q8_[4] = i8_.s4; q8_[5] = i8_.s5; q8_[6] = i8_.s6; q8_[7] = i8_.s7; }
#define CQ (gC / 8)
__kernel void max_pool_forward_tiled8(__global const float* x, __global float* y,
                                      __global int* arg, const int items)
{
    const int o = get_global_id(0);
    if (o >= items) return;
    const int cq = o % CQ, ow = (o / CQ) % gOW, oh = (o / (CQ * gOW)) % gOH;
    const int b = o / (CQ * gOW * gOH), c = cq * 8;
    const int first = (oh * gKH) * gW + ow * gKW;
    float8 best = VLOAD8(x + ((b * gH) * gW + first) * gC + c);
    int8 besti = (int8)(first);
    for (int kh = 0; kh < gKH; kh++) {
        for (int kw = 0; kw < gKW; kw++) {
            const int idx = (oh * gKH + kh) * gW + ow * gKW + kw;
            const float8 v = VLOAD8(x + ((b * gH) * gW + idx) * gC + c);
            const int8 better = v > best;  // not isgreater/select (vector.cl)
            best = better ? v : best;
            besti = better ? (int8)(idx) : besti;
        }
    }
    const int out = ((b * gOH + oh) * gOW + ow) * gC + c;
    VSTORE8(best, y + out)
    VSTORE8I(besti, arg + out)
}

__kernel void max_pool_backward_tiled8(__global const float* dy, __global const int* arg,
                                       __global float* dx, const int accumulate,
                                       __global const float* y, const int act,
                                       const int items)
{
    const int o = get_global_id(0);
    if (o >= items) return;
    const int cq = o % CQ, ow = (o / CQ) % gOW, oh = (o / (CQ * gOW)) % gOH;
    const int b = o / (CQ * gOW * gOH), c = cq * 8;
    const int out = ((b * gOH + oh) * gOW + ow) * gC + c;
    float8 g = VLOAD8(dy + out);
    if (act == ACT_RELU) {  // the common case inline: the activations' float8 form is not
        const float8 v = VLOAD8(y + out);  // in every program (activations.cl)
        g = v > 0.0f ? g : (float8)(0.0f);
    } else if (act != ACT_LINEAR) {
        const float8 v = VLOAD8(y + out);
        g *= (float8)(act_grad(act, 0.0f, v.s0), act_grad(act, 0.0f, v.s1),
                      act_grad(act, 0.0f, v.s2), act_grad(act, 0.0f, v.s3),
                      act_grad(act, 0.0f, v.s4), act_grad(act, 0.0f, v.s5),
                      act_grad(act, 0.0f, v.s6), act_grad(act, 0.0f, v.s7));
    }
    const int8 best = LDI8(arg + out);
    for (int kh = 0; kh < gKH; kh++) {
        for (int kw = 0; kw < gKW; kw++) {
            const int ih = oh * gKH + kh, iw = ow * gKW + kw;
            __global float* d = dx + ((b * gH + ih) * gW + iw) * gC + c;
            float8 v = best == (int8)(ih * gW + iw) ? g : (float8)(0.0f);
            if (accumulate) v += VLOAD8(d);
            VSTORE8(v, d)
        }
    }
}

// pool_forward and pool_backward, 8 channels per work-item (any window: overlapping, padded,
// ceil_mode, average): a 3x3 stride-2 max pooling's step had taken ~10x the 2x2 one's. Max
// pooling picks the first maximum and never a pad, as pool_forward. Global size
// n*OH*OW*C/8 and n*H*W*C/8 (items), padded as the tiled kernels' (above).
__kernel void pool_forward8(__global const float* x, __global float* y, __global int* arg,
                            const int PB, const int PR, const int inc, const int avg,
                            const int items)
{
    const int o = get_global_id(0);
    if (o >= items) return;
    const int cq = o % CQ, ow = (o / CQ) % gOW, oh = (o / (CQ * gOW)) % gOH;
    const int b = o / (CQ * gOW * gOH), c = cq * 8;
    float8 best = (float8)(-INFINITY), sum = (float8)(0.0f);
    int8 besti = (int8)(-1);
    int any = 0;
    for (int kh = 0; kh < gKH; kh++) {
        const int ih = oh * gSH - gPT + kh;
        if (ih < 0 || ih >= gH) continue;
        for (int kw = 0; kw < gKW; kw++) {
            const int iw = ow * gSW - gPL + kw;
            if (iw < 0 || iw >= gW) continue;
            const float8 v = VLOAD8(x + ((b * gH + ih) * gW + iw) * gC + c);
            sum += v;
            const int8 better = (v > best) | (besti < (int8)(0));  // not select (vector.cl)
            best = better ? v : best;
            besti = better ? (int8)(ih * gW + iw) : besti;
            any = 1;
        }
    }
    const int out = ((b * gOH + oh) * gOW + ow) * gC + c;
    if (avg) {
        const int count = any ? POOL_DIVISOR(oh, ow) : 0;
        VSTORE8(count > 0 ? sum / (float)count : (float8)(0.0f), y + out)
    } else {
        VSTORE8(best, y + out)
        VSTORE8I(besti, arg + out)
    }
}

__kernel void pool_backward8(__global const float* dy, __global const int* arg,
                             __global float* dx, const int PB, const int PR, const int inc,
                             const int avg, const int accumulate, const int items)
{
    const int i = get_global_id(0);
    if (i >= items) return;
    const int c = (i % CQ) * 8, iw = (i / CQ) % gW, ih = (i / (CQ * gW)) % gH;
    const int b = i / (CQ * gW * gH);
    const int8 self = (int8)(ih * gW + iw);
    float8 s = (float8)(0.0f);
    WINDOWS_READING(1, 1, {
        const int o = ((b * gOH + oh) * gOW + ow) * gC + c;
        if (avg) s += VLOAD8(dy + o) / (float)POOL_DIVISOR(oh, ow);
        else s += LDI8(arg + o) == self ? VLOAD8(dy + o) : (float8)(0.0f); })
    __global float* d = dx + ((b * gH + ih) * gW + iw) * gC + c;
    if (accumulate) s += VLOAD8(d);
    VSTORE8(s, d)
}
#endif

// Global pooling over the S = H*W positions of each (b, c). Global size (C, n).
__kernel void global_pool_forward(__global const float* x, __global float* y, __global int* arg,
                                  const int S, const int avg)
{
    const int c = get_global_id(0), b = get_global_id(1), C = get_global_size(0);
    __global const float* xb = x + b * S * C + c;
    float best = xb[0], sum = 0.0f;
    int besti = 0;
    for (int s = 0; s < S; s++) {
        const float v = xb[s * C];
        sum += v;
        if (v > best) { best = v; besti = s; }
    }
    if (avg) y[b * C + c] = sum / S;
    else { y[b * C + c] = best; arg[b * C + c] = besti; }
}

// Global average pooling on EW channels at once (C a multiple of EW; EW 1 on GPUs): global
// (C / EW, n), each work-item sums its channels down the S positions as vectors, two
// accumulators apart. The scalar kernel above, one channel per work-item in a loop over
// strided loads, took 4-5x PyTorch's time at 14x14x128.
__kernel void global_avg_pool_forward_ew(__global const float* x, __global float* y,
                                         const int S, const int C)
{
    const int c = get_global_id(0) * EW, b = get_global_id(1);
    __global const float* xb = x + b * S * C + c;
    EWT s0 = 0.0f, s1 = 0.0f;
    int s = 0;
    for (; s + 1 < S; s += 2) {
        s0 += CAT(VLOAD, EW)(xb + s * C);
        s1 += CAT(VLOAD, EW)(xb + (s + 1) * C);
    }
    if (s < S) s0 += CAT(VLOAD, EW)(xb + s * C);
    CAT(VSTORE, EW)((s0 + s1) / (float)S, y + b * C + c)
}

// Its gradient: dy / S to every position; global (C / EW, S, n), no index divisions.
__kernel void global_avg_pool_backward_ew(__global const float* dy, __global float* dx,
                                          const int S, const int C, const int accumulate)
{
    const int c = get_global_id(0) * EW, s = get_global_id(1), b = get_global_id(2);
    EWT v = CAT(VLOAD, EW)(dy + b * C + c) / (float)S;
    __global float* d = dx + (b * S + s) * C + c;
    if (accumulate) v += CAT(VLOAD, EW)(d);
    CAT(VSTORE, EW)(v, d)
}

// Global size n*S*C.
__kernel void global_pool_backward(__global const float* dy, __global const int* arg,
                                   __global float* dx, const int S, const int C, const int avg,
                                   const int accumulate)
{
    const int i = get_global_id(0);
    const int c = i % C, s = (i / C) % S, b = i / (C * S);
    const int o = b * C + c;
    float v = avg ? dy[o] / S : (arg[o] == s ? dy[o] : 0.0f);
    if (accumulate) v += dx[i];
    dx[i] = v;
}
