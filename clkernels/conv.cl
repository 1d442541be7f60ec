// Convolution and pooling on NHWC tensors (channels last, as Keras). Geometry arguments:
// H, W, C input; OH, OW output; KH, KW window; SH, SW strides; DH, DW dilation; PT, PL padding
// before (top, left). Backward passes are gathers: each input element sums the outputs that read
// it, so no two work-items write the same address and no atomics are needed.

// cols[(b, oh, ow), (kh, kw, c)] = x[b, oh*SH - PT + kh*DH, ow*SW - PL + kw*DW, c] or 0.
// Global size (KH*KW*C, n*OH*OW).
__kernel void im2col(__global const float* x, __global float* cols,
                     const int H, const int W, const int C, const int OH, const int OW,
                     const int KH, const int KW, const int SH, const int SW,
                     const int DH, const int DW, const int PT, const int PL)
{
    const int q = get_global_id(0), r = get_global_id(1);
    const int K = KH * KW * C;
    const int c = q % C, kw = (q / C) % KW, kh = q / (C * KW);
    const int ow = r % OW, oh = (r / OW) % OH, b = r / (OW * OH);
    const int ih = oh * SH - PT + kh * DH, iw = ow * SW - PL + kw * DW;
    cols[r * K + q] = (ih >= 0 && ih < H && iw >= 0 && iw < W)
                      ? x[((b * H + ih) * W + iw) * C + c] : 0.0f;
}

// dx[b, ih, iw, c] (+)= sum of dcols entries that im2col read from it. Global size n*H*W*C.
__kernel void col2im(__global const float* dcols, __global float* dx,
                     const int H, const int W, const int C, const int OH, const int OW,
                     const int KH, const int KW, const int SH, const int SW,
                     const int DH, const int DW, const int PT, const int PL, const int accumulate)
{
    const int i = get_global_id(0);
    const int c = i % C, iw = (i / C) % W, ih = (i / (C * W)) % H, b = i / (C * W * H);
    const int K = KH * KW * C;
    float s = 0.0f;
    for (int kh = 0; kh < KH; kh++) {
        const int th = ih + PT - kh * DH;
        if (th < 0 || th % SH) continue;
        const int oh = th / SH;
        if (oh >= OH) continue;
        for (int kw = 0; kw < KW; kw++) {
            const int tw = iw + PL - kw * DW;
            if (tw < 0 || tw % SW) continue;
            const int ow = tw / SW;
            if (ow >= OW) continue;
            s += dcols[((b * OH + oh) * OW + ow) * K + (kh * KW + kw) * C + c];
        }
    }
    if (accumulate) s += dx[i];
    dx[i] = s;
}

// Max pooling: y and the flat per-sample index (h*W + w) of the maximum; padding never wins.
// Average pooling (avg != 0): mean over the window's in-bounds entries (Keras/TF 'same').
// Global size n*OH*OW*C.
__kernel void pool_forward(__global const float* x, __global float* y, __global int* arg,
                           const int H, const int W, const int C, const int OH, const int OW,
                           const int KH, const int KW, const int SH, const int SW,
                           const int PT, const int PL, const int avg)
{
    const int o = get_global_id(0);
    const int c = o % C, ow = (o / C) % OW, oh = (o / (C * OW)) % OH, b = o / (C * OW * OH);
    float best = -INFINITY, sum = 0.0f;
    int besti = -1, count = 0;
    for (int kh = 0; kh < KH; kh++) {
        const int ih = oh * SH - PT + kh;
        if (ih < 0 || ih >= H) continue;
        for (int kw = 0; kw < KW; kw++) {
            const int iw = ow * SW - PL + kw;
            if (iw < 0 || iw >= W) continue;
            const float v = x[((b * H + ih) * W + iw) * C + c];
            sum += v;
            count++;
            if (v > best || besti < 0) { best = v; besti = ih * W + iw; }
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
    const int c = i % C, iw = (i / C) % W, ih = (i / (C * W)) % H, b = i / (C * W * H);
    const int self = ih * W + iw;
    float s = 0.0f;
    for (int kh = 0; kh < KH; kh++) {
        const int th = ih + PT - kh;
        if (th < 0 || th % SH) continue;
        const int oh = th / SH;
        if (oh >= OH) continue;
        for (int kw = 0; kw < KW; kw++) {
            const int tw = iw + PL - kw;
            if (tw < 0 || tw % SW) continue;
            const int ow = tw / SW;
            if (ow >= OW) continue;
            const int o = ((b * OH + oh) * OW + ow) * C + c;
            if (avg) {
                const int h0 = max(oh * SH - PT, 0), h1 = min(oh * SH - PT + KH, H);
                const int w0 = max(ow * SW - PL, 0), w1 = min(ow * SW - PL + KW, W);
                s += dy[o] / (float)((h1 - h0) * (w1 - w0));
            } else if (arg[o] == self) {
                s += dy[o];
            }
        }
    }
    if (accumulate) s += dx[i];
    dx[i] = s;
}

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
