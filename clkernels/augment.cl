// Preprocessing and augmentation ops (engine/backend/augment_ops.py): resizing, cropping, flips,
// rotation, zoom and translation as one resampling kernel driven by a per-sample affine map,
// contrast and brightness. Built after dropout.cl, whose Philox generator draws the random
// transforms, keyed (seed, salt) with counter (sample, step, 3, 0): a seed reproduces a run.
//
// The map: T[s * tstride + 0..5] = (a0, a1, a2, b0, b1, b2); output pixel (column ox, row oy)
// of sample s samples the input at column a0*ox + a1*oy + a2, row b0*ox + b1*oy + b2 (pixel
// centres at integers, as Keras' affine_transform), inside the box of BH x BW pixels whose top
// left corner is (top, left). A tap outside the box is mapped back by the fill mode: constant
// (fill_value), nearest (the edge), wrap (periodic), reflect (d c b a | a b c d | d c b a).
// tstride 0: one map for every sample (Resizing, CenterCrop, RandomCrop's batch-wide crop).

#define FILL_CONSTANT 0
#define FILL_NEAREST 1
#define FILL_WRAP 2
#define FILL_REFLECT 3

// The index a tap at i reads in a box of `size`, or -1 (constant fill).
inline int aug_fix_index(const int i, const int size, const int mode)
{
    if (i >= 0 && i < size) return i;
    if (mode == FILL_CONSTANT) return -1;
    if (mode == FILL_NEAREST) return i < 0 ? 0 : size - 1;
    if (mode == FILL_WRAP) {
        const int r = i % size;
        return r < 0 ? r + size : r;
    }
    const int period = 2 * size;
    int r = i % period;
    if (r < 0) r += period;
    return r < size ? r : period - 1 - r;
}

// The taps of output pixel (ox, oy): up to 4 input offsets (pixel index in the sample, times C
// added by the caller) and their weights; an index -1 reads fill_value.
inline void aug_taps(__global const float* t, const int ox, const int oy, const int W,
                     const int top, const int left, const int BH, const int BW,
                     const int nearest, const int mode, int* idx, float* wgt)
{
    const float cx = (float)ox + 0.5f, cy = (float)oy + 0.5f;  // the output pixel's centre
    const float sx = t[0] * cx + t[1] * cy + t[2];
    const float sy = t[3] * cx + t[4] * cy + t[5];
    if (nearest) {
        const int ix = aug_fix_index((int)floor(sx + 0.5f), BW, mode);
        const int iy = aug_fix_index((int)floor(sy + 0.5f), BH, mode);
        idx[0] = ix < 0 || iy < 0 ? -1 : (top + iy) * W + left + ix;
        wgt[0] = 1.0f;
        for (int k = 1; k < 4; k++) { idx[k] = -1; wgt[k] = 0.0f; }
        return;
    }
    const float fx0 = floor(sx), fy0 = floor(sy);
    const float fx = sx - fx0, fy = sy - fy0;
    const int x0 = (int)fx0, y0 = (int)fy0;
    for (int k = 0; k < 4; k++) {
        const int ix = aug_fix_index(x0 + (k & 1), BW, mode);
        const int iy = aug_fix_index(y0 + (k >> 1), BH, mode);
        idx[k] = ix < 0 || iy < 0 ? -1 : (top + iy) * W + left + ix;
        wgt[k] = ((k & 1) ? fx : 1.0f - fx) * ((k >> 1) ? fy : 1.0f - fy);
    }
}

// The maps and the geometry (backend/augment_ops.py WarpGeometry, in its order).
#define WARP_ARGS __global const float* T, const int tstride, const int H, const int W, \
    const int C, const int OH, const int OW, const int top, const int left, const int BH, \
    const int BW, const int nearest, const int mode

// y[s, oy, ox, c] = the input sampled through sample s's map; one work-item per output element
// (the grid may be padded past total).
__kernel void warp_forward(__global const float* x, __global float* y, WARP_ARGS,
                           const float fill_value, const int total)
{
    const int i = get_global_id(0);
    if (i >= total) return;
    const int c = i % C;
    int r = i / C;
    const int ox = r % OW;
    r /= OW;
    const int oy = r % OH;
    const int s = r / OH;
    int idx[4];
    float wgt[4];
    aug_taps(T + s * tstride, ox, oy, W, top, left, BH, BW, nearest, mode, idx, wgt);
    __global const float* xs = x + (size_t)s * H * W * C + c;
    float v = 0.0f;
    for (int k = 0; k < 4; k++)
        v += wgt[k] * (idx[k] < 0 ? fill_value : xs[(size_t)idx[k] * C]);
    y[i] = v;
}

// dx[s, :, :, c] (+)= what each output pixel read from it, times dy; one work-item per
// (sample, channel), which owns that plane of dx: no two work-items write one element (a
// sample's map may read an input pixel from many outputs: zoom, reflect, wrap).
__kernel void warp_backward(__global const float* dy, __global float* dx, WARP_ARGS,
                            const int accumulate, const int total)
{
    const int i = get_global_id(0);
    if (i >= total) return;
    const int c = i % C, s = i / C;
    __global float* d = dx + (size_t)s * H * W * C + c;
    __global const float* g = dy + (size_t)s * OH * OW * C + c;
    if (!accumulate)
        for (int p = 0; p < H * W; p++) d[(size_t)p * C] = 0.0f;
    int idx[4];
    float wgt[4];
    for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++) {
            const float go = g[((size_t)oy * OW + ox) * C];
            aug_taps(T + s * tstride, ox, oy, W, top, left, BH, BW, nearest, mode, idx, wgt);
            for (int k = 0; k < 4; k++)
                if (idx[k] >= 0) d[(size_t)idx[k] * C] += wgt[k] * go;
        }
}

#define DRAW_FLIP 0
#define DRAW_ROTATE 1
#define DRAW_ZOOM 2
#define DRAW_TRANSLATE 3
#define DRAW_CROP 4
#define DRAW_SCALAR 5
#define DRAW_CROP_RESIZE 6

// One work-item per sample (one in all when the draw is batch-wide): sample s's map from its
// four uniforms u0..u3 in [0, 1), Keras' distributions:
//  FLIP: flipped when u0 <= 0.5; p0 bit 0 horizontal, bit 1 vertical (both or neither, as Keras)
//  ROTATE: angle uniform in [p0, p1) turns (factor * 360 degrees) about the image centre
//  ZOOM: height zoom 1 + uniform [p0, p1), width zoom 1 + uniform [p2, p3) (the height's when
//        p4 != 0); > 1 zooms out
//  TRANSLATE: rows uniform [p0, p1) * H, columns uniform [p2, p3) * W
//  CROP: offsets floor(u * (H - p0 + 1)), floor(u * (W - p1 + 1)) of a p0 x p1 window
//  SCALAR: T[s * tstride] = uniform [p0, p1) (contrast factor, brightness delta)
//  CROP_RESIZE: keras_cv's RandomCropAndResize: area fraction uniform [p0, p1), aspect ratio
//        (of the fractions, width / height) uniform [p2, p3); the box's height and width
//        fractions sqrt(area / ratio), sqrt(area * ratio) clipped to 1, its top and left
//        uniform over where it fits (u2, u3); then tf.image.crop_and_resize's sampling to
//        p4 x p5 (OH x OW): output row i reads input row (y1 + i bh / (OH - 1)) (H - 1), the
//        box's centre row where OH is 1 (columns alike)
__kernel void draw_transforms(__global float* T, const int tstride, const int count,
                              const int kind, const float p0, const float p1, const float p2,
                              const float p3, const float p4, const float p5, const int H,
                              const int W, const uint seed, const uint salt, const uint step)
{
    const int s = get_global_id(0);
    if (s >= count) return;
    const uint4 r = philox4x32_10((uint4)((uint)s, step, 3u, 0u), (uint2)(seed, salt));
    const float u0 = (float)(r.x >> 8) * (1.0f / 16777216.0f);
    const float u1 = (float)(r.y >> 8) * (1.0f / 16777216.0f);
    __global float* t = T + s * tstride;
    float a0 = 1.0f, a1 = 0.0f, a2 = 0.0f, b0 = 0.0f, b1 = 1.0f, b2 = 0.0f;
    const float cx = 0.5f * (float)(W - 1), cy = 0.5f * (float)(H - 1);
    if (kind == DRAW_SCALAR) {
        t[0] = p0 + u0 * (p1 - p0);
        return;
    } else if (kind == DRAW_FLIP) {
        const int flip = u0 <= 0.5f;
        const int mode = (int)p0;
        if (flip && (mode & 1)) { a0 = -1.0f; a2 = (float)(W - 1); }
        if (flip && (mode & 2)) { b1 = -1.0f; b2 = (float)(H - 1); }
    } else if (kind == DRAW_ROTATE) {
        const float angle = (p0 + u0 * (p1 - p0)) * 2.0f * M_PI_F;
        const float co = cos(angle), si = sin(angle);
        a0 = co; a1 = -si; a2 = cx - cx * a0 - cy * a1;
        b0 = si; b1 = co; b2 = cy - cx * b0 - cy * b1;
    } else if (kind == DRAW_ZOOM) {
        const float zy = 1.0f + p0 + u0 * (p1 - p0);
        const float zx = p4 != 0.0f ? zy : 1.0f + p2 + u1 * (p3 - p2);
        a0 = zx; a2 = cx * (1.0f - zx);
        b1 = zy; b2 = cy * (1.0f - zy);
    } else if (kind == DRAW_TRANSLATE) {
        b2 = -(p0 + u0 * (p1 - p0)) * (float)H;
        a2 = -(p2 + u1 * (p3 - p2)) * (float)W;
    } else if (kind == DRAW_CROP) {
        const int rows = H - (int)p0 + 1, cols = W - (int)p1 + 1;
        const int oy = (int)(u0 * (float)rows), ox = (int)(u1 * (float)cols);
        b2 = (float)(oy < rows ? oy : rows - 1);
        a2 = (float)(ox < cols ? ox : cols - 1);
    } else if (kind == DRAW_CROP_RESIZE) {
        const float u2 = (float)(r.z >> 8) * (1.0f / 16777216.0f);
        const float u3 = (float)(r.w >> 8) * (1.0f / 16777216.0f);
        const float area = p0 + u0 * (p1 - p0), ratio = p2 + u1 * (p3 - p2);
        const float bh = fmin(sqrt(area / ratio), 1.0f), bw = fmin(sqrt(area * ratio), 1.0f);
        const float y1 = u2 * (1.0f - bh), x1 = u3 * (1.0f - bw);
        const float h1 = (float)(H - 1), w1 = (float)(W - 1);
        const int OH = (int)p4, OW = (int)p5;
        b1 = OH > 1 ? bh * h1 / (float)(OH - 1) : 0.0f;
        b2 = OH > 1 ? y1 * h1 : (y1 + 0.5f * bh) * h1;
        a0 = OW > 1 ? bw * w1 / (float)(OW - 1) : 0.0f;
        a2 = OW > 1 ? x1 * w1 : (x1 + 0.5f * bw) * w1;
    }
    // Keras' maps take the output pixel (ox, oy); warp hands them its centre (ox + 0.5, oy + 0.5)
    t[0] = a0; t[1] = a1; t[2] = a2 - 0.5f * (a0 + a1);
    t[3] = b0; t[4] = b1; t[5] = b2 - 0.5f * (b0 + b1);
}

// RandomContrast: y = clip((x - m) * f + m, lo, hi), m the mean of the sample's channel over
// its S pixels, f = F[s * fstride]; m kept in M[s * C + c] for the backward. One work-item per
// (sample, channel).
__kernel void contrast_forward(__global const float* x, __global float* y,
                               __global const float* F, const int fstride, __global float* M,
                               const int S, const int C, const float lo, const float hi,
                               const int total)
{
    const int i = get_global_id(0);
    if (i >= total) return;
    const int c = i % C, s = i / C;
    __global const float* xs = x + (size_t)s * S * C + c;
    __global float* ys = y + (size_t)s * S * C + c;
    float sum = 0.0f;
    for (int p = 0; p < S; p++) sum += xs[(size_t)p * C];
    const float m = sum / (float)S, f = F[s * fstride];
    M[i] = m;
    for (int p = 0; p < S; p++) {
        const float v = (xs[(size_t)p * C] - m) * f + m;
        ys[(size_t)p * C] = v < lo ? lo : v > hi ? hi : v;
    }
}

// Its gradient: g = dy where the value was not clipped, dx (+)= f * g + (1 - f) * mean(g).
__kernel void contrast_backward(__global const float* x, __global const float* dy,
                                __global float* dx, __global const float* F, const int fstride,
                                __global const float* M, const int S, const int C,
                                const float lo, const float hi, const int accumulate,
                                const int total)
{
    const int i = get_global_id(0);
    if (i >= total) return;
    const int c = i % C, s = i / C;
    const size_t base = (size_t)s * S * C + c;
    const float m = M[i], f = F[s * fstride];
    float sum = 0.0f;
    for (int p = 0; p < S; p++) {
        const float v = (x[base + (size_t)p * C] - m) * f + m;
        sum += v >= lo && v <= hi ? dy[base + (size_t)p * C] : 0.0f;
    }
    const float shift = (1.0f - f) * sum / (float)S;
    for (int p = 0; p < S; p++) {
        const size_t e = base + (size_t)p * C;
        const float v = (x[e] - m) * f + m;
        float d = (v >= lo && v <= hi ? f * dy[e] : 0.0f) + shift;
        if (accumulate) d += dx[e];
        dx[e] = d;
    }
}

// RandomBrightness: y = clip(x + D[s], lo, hi) over samples of `per` elements (forward), or
// dx (+)= dy where x + D[s] was not clipped (backward, x given); one work-item per element.
__kernel void brightness(__global const float* x, __global const float* dy, __global float* out,
                         __global const float* D, const int dstride, const int per,
                         const float lo, const float hi, const int backward,
                         const int accumulate, const int total)
{
    const int i = get_global_id(0);
    if (i >= total) return;
    const float v = x[i] + D[(i / per) * dstride];
    float r;
    if (backward) r = v >= lo && v <= hi ? dy[i] : 0.0f;
    else r = v < lo ? lo : v > hi ? hi : v;
    if (accumulate) r += out[i];
    out[i] = r;
}

// Rescaling per channel: y (+)= x * S[c] + O[c] (has_offset 0: y (+)= x * S[c], its gradient),
// c = i % C; one work-item per element.
__kernel void channel_affine(__global const float* x, __global float* y, __global const float* S,
                             __global const float* O, const int C, const int has_offset,
                             const int accumulate, const int total)
{
    const int i = get_global_id(0);
    if (i >= total) return;
    const int c = i % C;
    float v = x[i] * S[c] + (has_offset ? O[c] : 0.0f);
    if (accumulate) v += y[i];
    y[i] = v;
}
