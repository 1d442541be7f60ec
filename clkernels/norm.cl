// BatchNormalization over the last axis (channels), statistics over all other axes ("rows");
// LayerNormalization over the last axis of each row. Biased variance, as Keras uses.

// Batch mean and variance in parts, global (C / W, P): part p takes a block of rows and keeps
// its own mean and sum of squared deviations (two passes over rows still in cache), W
// channels as one vector (bn_stats_parts_ew: EW, when C is a multiple of it); bn_stats_combine
// (global C) merges the parts (Chan's formula) and, when `update`, the moving statistics:
// moving = moving * momentum + batch * (1 - momentum). One work-item per channel over every row
// had left the cores half idle and read the channels one by one.
#define BN_BLOCK const int P = get_global_size(1), rb = (rows + P - 1) / P;                  \
    const int r0 = min(rows, p * rb), r1 = min(rows, (p + 1) * rb);
#define BN_STATS_PARTS(NAME, W, T)                                                          \
__kernel void NAME(__global const float* x, const int rows, const int C,                    \
                   __global float* pm, __global float* pq)                                  \
{                                                                                           \
    const int c = get_global_id(0) * W, p = get_global_id(1);                               \
    BN_BLOCK                                                                                \
    T s = 0.0f;                                                                             \
    for (int r = r0; r < r1; r++) s += CAT(VLOAD, W)(x + r * C + c);                        \
    const T m = r1 > r0 ? s / (float)(r1 - r0) : s;                                         \
    T q = 0.0f;                                                                             \
    for (int r = r0; r < r1; r++) { const T d = CAT(VLOAD, W)(x + r * C + c) - m; q += d * d; } \
    CAT(VSTORE, W)(m, pm + p * C + c)                                                       \
    CAT(VSTORE, W)(q, pq + p * C + c)                                                       \
}
BN_STATS_PARTS(bn_stats_parts, 1, float)
BN_STATS_PARTS(bn_stats_parts_ew, EW, EWT)

__kernel void bn_stats_combine(__global const float* pm, __global const float* pq, const int P,
                               const int rows, __global float* mean, __global float* var,
                               __global float* mmean, __global float* mvar,
                               const float momentum, const int update)
{
    const int c = get_global_id(0), C = get_global_size(0), rb = (rows + P - 1) / P;
    float s = 0.0f;
    for (int p = 0; p < P; p++) s += (min(rows, (p + 1) * rb) - min(rows, p * rb)) * pm[p * C + c];
    const float m = s / rows;
    float q = 0.0f;
    for (int p = 0; p < P; p++) {
        const float d = pm[p * C + c] - m;
        q += pq[p * C + c] + (min(rows, (p + 1) * rb) - min(rows, p * rb)) * d * d;
    }
    const float v = q / rows;
    mean[c] = m;
    var[c] = v;
    if (update) {
        mmean[c] = mmean[c] * momentum + m * (1.0f - momentum);
        mvar[c] = mvar[c] * momentum + v * (1.0f - momentum);
    }
}

// y = gamma * (x - mean) / sqrt(var + eps) + beta; global size (C, rows).
__kernel void bn_apply(__global const float* x, __global float* y, __global const float* mean,
                       __global const float* var, __global const float* gamma,
                       __global const float* beta, const float eps, const int has_gamma,
                       const int has_beta)
{
    const int c = get_global_id(0), r = get_global_id(1), C = get_global_size(0);
    float v = (x[r * C + c] - mean[c]) * rsqrt(var[c] + eps);
    if (has_gamma) v *= gamma[c];
    if (has_beta) v += beta[c];
    y[r * C + c] = v;
}

// Per channel: sdy = sum(dy), sdx = sum(dy * xhat) (dbeta and dgamma), in parts as
// bn_stats_parts: global (C / W, P) into pa[p, :] and pb[p, :]; sum_parts adds them.
#define BN_GRAD_PARTS(NAME, W, T)                                                           \
__kernel void NAME(__global const float* x, __global const float* dy,                       \
                   __global const float* mean, __global const float* var, const float eps,  \
                   const int rows, const int C, __global float* pa, __global float* pb)     \
{                                                                                           \
    const int c = get_global_id(0) * W, p = get_global_id(1);                               \
    BN_BLOCK                                                                                \
    const T m = CAT(VLOAD, W)(mean + c), rs = rsqrt(CAT(VLOAD, W)(var + c) + eps);          \
    T a = 0.0f, b = 0.0f;                                                                   \
    for (int r = r0; r < r1; r++) {                                                         \
        const T g = CAT(VLOAD, W)(dy + r * C + c);                                          \
        a += g;                                                                             \
        b += g * (CAT(VLOAD, W)(x + r * C + c) - m) * rs;                                   \
    }                                                                                       \
    CAT(VSTORE, W)(a, pa + p * C + c)                                                       \
    CAT(VSTORE, W)(b, pb + p * C + c)                                                       \
}
BN_GRAD_PARTS(bn_grad_parts, 1, float)
BN_GRAD_PARTS(bn_grad_parts_ew, EW, EWT)

// dx = gamma * rstd * (dy - sdy/N - xhat * sdx/N); global size (C, rows).
__kernel void bn_grad_input(__global const float* x, __global const float* dy,
                            __global const float* mean, __global const float* var,
                            __global const float* gamma, const float eps,
                            __global const float* sdy, __global const float* sdx, const int rows,
                            const int has_gamma, __global float* dx, const int accumulate)
{
    const int c = get_global_id(0), r = get_global_id(1), C = get_global_size(0);
    const int i = r * C + c;
    const float rs = rsqrt(var[c] + eps);
    const float xhat = (x[i] - mean[c]) * rs;
    float v = (dy[i] - sdy[c] / rows - xhat * sdx[c] / rows) * rs;
    if (has_gamma) v *= gamma[c];
    if (accumulate) v += dx[i];
    dx[i] = v;
}

// LayerNormalization over the trailing axis: one work-item per row, W consecutive columns as
// one vector (ln_*_ew: EW, when the columns are a multiple of it; the scalar kernels ran 5-8x
// as long as PyTorch's on a transformer's 128 columns), the row's sums reduced across lanes.
#define LN_FORWARD(NAME, W, T)                                                              \
__kernel void NAME(__global const float* x, __global float* y, __global const float* gamma, \
                   __global const float* beta, __global float* mean, __global float* rstd,  \
                   const int cols, const float eps, const int has_gamma, const int has_beta) \
{                                                                                           \
    const int r = get_global_id(0);                                                         \
    __global const float* xr = x + r * cols;                                                \
    __global float* yr = y + r * cols;                                                      \
    T s = 0.0f;                                                                             \
    for (int j = 0; j < cols; j += W) s += CAT(VLOAD, W)(xr + j);                           \
    const float m = LANES_SUM(W, s) / cols;                                                 \
    T v = 0.0f;                                                                             \
    for (int j = 0; j < cols; j += W) { const T d = CAT(VLOAD, W)(xr + j) - m; v += d * d; } \
    const float rs = rsqrt(LANES_SUM(W, v) / cols + eps);                                   \
    mean[r] = m;                                                                            \
    rstd[r] = rs;                                                                           \
    for (int j = 0; j < cols; j += W) {                                                     \
        T o = (CAT(VLOAD, W)(xr + j) - m) * rs;                                             \
        if (has_gamma) o *= CAT(VLOAD, W)(gamma + j);                                       \
        if (has_beta) o += CAT(VLOAD, W)(beta + j);                                         \
        CAT(VSTORE, W)(o, yr + j)                                                           \
    }                                                                                       \
}
LN_FORWARD(ln_forward, 1, float)
LN_FORWARD(ln_forward_ew, EW, EWT)

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma; one work-item per row.
#define LN_G(W, i, j) (CAT(VLOAD, W)(dy + (i)) * (has_gamma ? CAT(VLOAD, W)(gamma + (j)) : 1.0f))
#define LN_BACKWARD(NAME, W, T)                                                             \
__kernel void NAME(__global const float* x, __global const float* dy,                       \
                   __global const float* gamma, __global const float* mean,                 \
                   __global const float* rstd, const int cols, const int has_gamma,         \
                   __global float* dx, const int accumulate)                                \
{                                                                                           \
    const int r = get_global_id(0);                                                         \
    const float m = mean[r], rs = rstd[r];                                                  \
    T a = 0.0f, b = 0.0f;                                                                   \
    for (int j = 0; j < cols; j += W) {                                                     \
        const T g = LN_G(W, r * cols + j, j);                                               \
        a += g;                                                                             \
        b += g * (CAT(VLOAD, W)(x + r * cols + j) - m) * rs;                                \
    }                                                                                       \
    const float am = LANES_SUM(W, a) / cols, bm = LANES_SUM(W, b) / cols;                   \
    for (int j = 0; j < cols; j += W) {                                                     \
        const int i = r * cols + j;                                                         \
        T v = rs * (LN_G(W, i, j) - am - (CAT(VLOAD, W)(x + i) - m) * rs * bm);             \
        if (accumulate) v += CAT(VLOAD, W)(dx + i);                                         \
        CAT(VSTORE, W)(v, dx + i)                                                           \
    }                                                                                       \
}
LN_BACKWARD(ln_backward, 1, float)
LN_BACKWARD(ln_backward_ew, EW, EWT)

// dgamma[j] = sum_r dy * xhat, dbeta[j] = sum_r dy, in parts as col_sums (elementwise.cl):
// global (cols / W, P), part p sums a block of rows into pg[p, :] and pb[p, :]; sum_parts adds
// the parts (one work-item per column over every row had left the cores idle).
#define LN_PARAM_PARTS(NAME, W, T)                                                          \
__kernel void NAME(__global const float* x, __global const float* dy,                       \
                   __global const float* mean, __global const float* rstd,                  \
                   const int rows, const int cols, __global float* pg, __global float* pb)  \
{                                                                                           \
    const int c = get_global_id(0) * W, p = get_global_id(1), P = get_global_size(1);       \
    const int rb = (rows + P - 1) / P, r1 = min(rows, (p + 1) * rb);                        \
    T a = 0.0f, b = 0.0f;                                                                   \
    for (int r = p * rb; r < r1; r++) {                                                     \
        const T g = CAT(VLOAD, W)(dy + r * cols + c);                                       \
        a += g * (CAT(VLOAD, W)(x + r * cols + c) - mean[r]) * rstd[r];                     \
        b += g;                                                                             \
    }                                                                                       \
    CAT(VSTORE, W)(a, pg + p * cols + c)                                                    \
    CAT(VSTORE, W)(b, pb + p * cols + c)                                                    \
}
LN_PARAM_PARTS(ln_param_parts, 1, float)
LN_PARAM_PARTS(ln_param_parts_ew, EW, EWT)

// Grouped normalisation (GroupNormalization, LayerNormalization over axes that are not the
// trailing ones, UnitNormalization). Each sample's `size` elements fall into G groups, each
// normalised over its own members; the layer lists them once, as constants: the members of
// group g are src[offs[g] .. offs[g+1]), pidx[i] is element i's entry of gamma and beta, and
// grp[i] its group. unit: L2 normalisation, x * min(1/sqrt(sum x^2), 1/eps), no centring.
// mean and rstd keep each (sample, group)'s statistics for the backward pass.

// Global size (G, n).
__kernel void grouped_norm_forward(__global const float* x, __global float* y,
                                   __global const float* gamma, __global const float* beta,
                                   __global float* mean, __global float* rstd,
                                   __global const int* offs, __global const int* src,
                                   __global const int* pidx, const int size, const float eps,
                                   const int has_gamma, const int has_beta, const int unit)
{
    const int g = get_global_id(0), b = get_global_id(1), G = get_global_size(0);
    __global const float* xb = x + b * size;
    const int first = offs[g], last = offs[g + 1];
    float m = 0.0f, rs;
    if (unit) {
        float ss = 0.0f;
        for (int t = first; t < last; t++) { const float v = xb[src[t]]; ss += v * v; }
        const float cap = 1.0f / eps;
        rs = ss > 0.0f ? rsqrt(ss) : cap;
        rs = rs < cap ? rs : cap;
    } else {
        float s = 0.0f;
        for (int t = first; t < last; t++) s += xb[src[t]];
        m = s / (last - first);
        float v = 0.0f;
        for (int t = first; t < last; t++) { const float d = xb[src[t]] - m; v += d * d; }
        rs = rsqrt(v / (last - first) + eps);
    }
    mean[b * G + g] = m;
    rstd[b * G + g] = rs;
    for (int t = first; t < last; t++) {
        const int i = src[t];
        float o = (xb[i] - m) * rs;
        if (has_gamma) o *= gamma[pidx[i]];
        if (has_beta) o += beta[pidx[i]];
        y[b * size + i] = o;
    }
}

// dx over each group, with g = dy * gamma and xhat = (x - mean) * rstd:
// standardised: rstd * (g - mean(g) - xhat * mean(g * xhat));
// unit: rstd * (g - xhat * sum(g * xhat)), or rstd * g where the cap 1/eps held.
// Global size (G, n).
__kernel void grouped_norm_backward(__global const float* x, __global const float* dy,
                                    __global const float* gamma, __global const float* mean,
                                    __global const float* rstd, __global const int* offs,
                                    __global const int* src, __global const int* pidx,
                                    const int size, const float eps, const int has_gamma,
                                    const int unit, __global float* dx, const int accumulate)
{
    const int g = get_global_id(0), b = get_global_id(1), G = get_global_size(0);
    const int first = offs[g], last = offs[g + 1], base = b * size;
    const float m = mean[b * G + g], rs = rstd[b * G + g];
    float a = 0.0f, c = 0.0f;
    for (int t = first; t < last; t++) {
        const int i = src[t];
        const float gi = dy[base + i] * (has_gamma ? gamma[pidx[i]] : 1.0f);
        a += gi;
        c += gi * (x[base + i] - m) * rs;
    }
    float ka, kc;
    if (unit) {
        ka = 0.0f;
        kc = rs >= 1.0f / eps ? 0.0f : c;
    } else {
        ka = a / (last - first);
        kc = c / (last - first);
    }
    for (int t = first; t < last; t++) {
        const int i = src[t];
        const float gi = dy[base + i] * (has_gamma ? gamma[pidx[i]] : 1.0f);
        float v = rs * (gi - ka - (x[base + i] - m) * rs * kc);
        if (accumulate) v += dx[base + i];
        dx[base + i] = v;
    }
}

// dgamma[k] = sum of dy * xhat, dbeta[k] = sum of dy, over the samples and the elements that
// use entry k (src[offs[k] .. offs[k+1])); grp[i]: element i's group. In parts, one per sample
// (global (K, n), into pa[b, k] and pc[b, k]); sum_parts adds them (one work-item per entry
// over every sample had taken ~40x PyTorch's time for 32 entries).
__kernel void grouped_norm_param_parts(__global const float* x, __global const float* dy,
                                       __global const float* mean, __global const float* rstd,
                                       __global const int* offs, __global const int* src,
                                       __global const int* grp, const int size, const int G,
                                       __global float* pa, __global float* pc)
{
    const int k = get_global_id(0), b = get_global_id(1), K = get_global_size(0);
    float a = 0.0f, c = 0.0f;
    for (int t = offs[k]; t < offs[k + 1]; t++) {
        const int i = src[t], s = b * G + grp[i];
        const float d = dy[b * size + i];
        a += d * (x[b * size + i] - mean[s]) * rstd[s];
        c += d;
    }
    pa[b * K + k] = a;
    pc[b * K + k] = c;
}

// Normalization (Keras' preprocessing layer) with its statistics: y = (x - mean[k]) / s, or with
// invert mean[k] + x * s, where s = max(sqrt(variance[k]), 1e-7) (a negative variance counts as
// 0) and k = sidx[i], element i's statistic. Global size (size, n).
inline float stats_scale(const float v)
{
    const float s = v > 0.0f ? sqrt(v) : 0.0f;
    return s < 1e-7f ? 1e-7f : s;
}

__kernel void stats_apply(__global const float* x, __global float* y,
                          __global const float* mean, __global const float* var,
                          __global const int* sidx, const int size, const int invert)
{
    const int i = get_global_id(0), b = get_global_id(1), k = sidx[i];
    const float s = stats_scale(var[k]), v = x[b * size + i];
    y[b * size + i] = invert ? mean[k] + v * s : (v - mean[k]) / s;
}

// dx (+)= dy / s, or dy * s with invert. Global size (size, n).
__kernel void stats_apply_grad(__global const float* dy, __global float* dx,
                               __global const float* var, __global const int* sidx,
                               const int size, const int invert, const int accumulate)
{
    const int i = get_global_id(0), b = get_global_id(1);
    const float s = stats_scale(var[sidx[i]]), g = dy[b * size + i];
    float v = invert ? g * s : g / s;
    if (accumulate) v += dx[b * size + i];
    dx[b * size + i] = v;
}
