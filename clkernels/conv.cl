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

// Every dcols entry im2col filled from input position (b, ih, iw), channel c: `src` is its index.
#define COL2IM_GATHER(ACC)                                                              \
    for (int kh = 0; kh < gKH; kh++) {                                                  \
        const int th = ih + gPT - kh * gDH;                                              \
        if (th < 0 || th % gSH) continue;                                                \
        const int oh = th / gSH;                                                         \
        if (oh >= gOH) continue;                                                         \
        for (int kw = 0; kw < gKW; kw++) {                                              \
            const int tw = iw + gPL - kw * gDW;                                          \
            if (tw < 0 || tw % gSW) continue;                                            \
            const int ow = tw / gSW;                                                     \
            if (ow >= gOW) continue;                                                     \
            const int src = ((b * gOH + oh) * gOW + ow) * K + (kh * gKW + kw) * gC + c;  \
            ACC;                                                                         \
        }                                                                                \
    }

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

// Max pooling: y and the flat per-sample index (h*W + w) of the maximum; padding never wins.
// Average pooling (avg != 0): mean over the window's in-bounds entries (Keras/TF 'same').
// Global size n*OH*OW*C.
__kernel void pool_forward(__global const float* x, __global float* y, __global int* arg,
                           const int H, const int W, const int C, const int OH, const int OW,
                           const int KH, const int KW, const int SH, const int SW,
                           const int PT, const int PL, const int avg)
{
    const int o = get_global_id(0);
    const int c = o % gC, ow = (o / gC) % gOW, oh = (o / (gC * gOW)) % gOH, b = o / (gC * gOW * gOH);
    float best = -INFINITY, sum = 0.0f;
    int besti = -1, count = 0;
    for (int kh = 0; kh < gKH; kh++) {
        const int ih = oh * gSH - gPT + kh;
        if (ih < 0 || ih >= gH) continue;
        for (int kw = 0; kw < gKW; kw++) {
            const int iw = ow * gSW - gPL + kw;
            if (iw < 0 || iw >= gW) continue;
            const float v = x[((b * gH + ih) * gW + iw) * gC + c];
            sum += v;
            count++;
            if (v > best || besti < 0) { best = v; besti = ih * gW + iw; }
        }
    }
    if (avg) y[o] = count ? sum / count : 0.0f;
    else { y[o] = best; arg[o] = besti; }
}

// Global size n*H*W*C: each input element gathers from the windows that contain it.
__kernel void pool_backward(__global const float* dy, __global const int* arg,
                            __global float* dx,
                            const int H, const int W, const int C, const int OH, const int OW,
                            const int KH, const int KW, const int SH, const int SW,
                            const int PT, const int PL, const int avg, const int accumulate)
{
    const int i = get_global_id(0);
    const int c = i % gC, iw = (i / gC) % gW, ih = (i / (gC * gW)) % gH, b = i / (gC * gW * gH);
    const int self = ih * gW + iw;
    float s = 0.0f;
    for (int kh = 0; kh < gKH; kh++) {
        const int th = ih + gPT - kh;
        if (th < 0 || th % gSH) continue;
        const int oh = th / gSH;
        if (oh >= gOH) continue;
        for (int kw = 0; kw < gKW; kw++) {
            const int tw = iw + gPL - kw;
            if (tw < 0 || tw % gSW) continue;
            const int ow = tw / gSW;
            if (ow >= gOW) continue;
            const int o = ((b * gOH + oh) * gOW + ow) * gC + c;
            if (avg) {
                const int h0 = max(oh * gSH - gPT, 0), h1 = min(oh * gSH - gPT + gKH, gH);
                const int w0 = max(ow * gSW - gPL, 0), w1 = min(ow * gSW - gPL + gKW, gW);
                s += dy[o] / (float)((h1 - h0) * (w1 - w0));
            } else if (arg[o] == self) {
                s += dy[o];
            }
        }
    }
    if (accumulate) s += dx[i];
    dx[i] = s;
}

// Max pooling whose windows tile the input without overlap or padding (strides equal to the
// pool size, "valid"): each output scatters its gradient to its own window, no search.
// Positions no window covers keep what the caller put there (zeros, or the accumulated value).
// Global size n*OH*OW*C. Compile-time geometry only.
#ifdef GEOM
__kernel void max_pool_forward_tiled(__global const float* x, __global float* y,
                                     __global int* arg)
{
    const int o = get_global_id(0);
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

__kernel void max_pool_backward_tiled(__global const float* dy, __global const int* arg,
                                      __global float* dx, const int accumulate)
{
    const int o = get_global_id(0);
    const int c = o % gC, ow = (o / gC) % gOW, oh = (o / (gC * gOW)) % gOH;
    const int b = o / (gC * gOW * gOH);
    const float g = dy[o];
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
                                      __global int* arg)
{
    const int o = get_global_id(0);
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
                                       __global float* dx, const int accumulate)
{
    const int o = get_global_id(0);
    const int cq = o % CQ, ow = (o / CQ) % gOW, oh = (o / (CQ * gOW)) % gOH;
    const int b = o / (CQ * gOW * gOH), c = cq * 8;
    const int out = ((b * gOH + oh) * gOW + ow) * gC + c;
    const float8 g = VLOAD8(dy + out);
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
