// BatchNormalization over the last axis (channels), statistics over all other axes ("rows");
// LayerNormalization over the last axis of each row. Biased variance, as Keras uses.

// One work-item per channel: batch mean and variance (two passes), and when `update` the
// moving statistics: moving = moving * momentum + batch * (1 - momentum).
__kernel void bn_stats(__global const float* x, const int rows, __global float* mean,
                       __global float* var, __global float* mmean, __global float* mvar,
                       const float momentum, const int update)
{
    const int c = get_global_id(0), C = get_global_size(0);
    float s = 0.0f;
    for (int r = 0; r < rows; r++) s += x[r * C + c];
    const float m = s / rows;
    float v = 0.0f;
    for (int r = 0; r < rows; r++) { const float d = x[r * C + c] - m; v += d * d; }
    v /= rows;
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

// Per channel: sdy = sum(dy), sdx = sum(dy * xhat). These are dbeta and dgamma.
__kernel void bn_grad_sums(__global const float* x, __global const float* dy,
                           __global const float* mean, __global const float* var,
                           const float eps, const int rows, __global float* sdy,
                           __global float* sdx)
{
    const int c = get_global_id(0), C = get_global_size(0);
    const float m = mean[c], rs = rsqrt(var[c] + eps);
    float a = 0.0f, b = 0.0f;
    for (int r = 0; r < rows; r++) {
        const float g = dy[r * C + c];
        a += g;
        b += g * (x[r * C + c] - m) * rs;
    }
    sdy[c] = a;
    sdx[c] = b;
}

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

// LayerNormalization, one work-item per row; keeps mean and 1/std per row for backward.
__kernel void ln_forward(__global const float* x, __global float* y, __global const float* gamma,
                         __global const float* beta, __global float* mean, __global float* rstd,
                         const int cols, const float eps, const int has_gamma, const int has_beta)
{
    const int r = get_global_id(0);
    __global const float* xr = x + r * cols;
    float s = 0.0f;
    for (int j = 0; j < cols; j++) s += xr[j];
    const float m = s / cols;
    float v = 0.0f;
    for (int j = 0; j < cols; j++) { const float d = xr[j] - m; v += d * d; }
    const float rs = rsqrt(v / cols + eps);
    mean[r] = m;
    rstd[r] = rs;
    for (int j = 0; j < cols; j++) {
        float o = (xr[j] - m) * rs;
        if (has_gamma) o *= gamma[j];
        if (has_beta) o += beta[j];
        y[r * cols + j] = o;
    }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma; one work-item per row.
__kernel void ln_backward(__global const float* x, __global const float* dy,
                          __global const float* gamma, __global const float* mean,
                          __global const float* rstd, const int cols, const int has_gamma,
                          __global float* dx, const int accumulate)
{
    const int r = get_global_id(0);
    const float m = mean[r], rs = rstd[r];
    float a = 0.0f, b = 0.0f;
    for (int j = 0; j < cols; j++) {
        const float g = dy[r * cols + j] * (has_gamma ? gamma[j] : 1.0f);
        a += g;
        b += g * (x[r * cols + j] - m) * rs;
    }
    a /= cols;
    b /= cols;
    for (int j = 0; j < cols; j++) {
        const int i = r * cols + j;
        const float g = dy[i] * (has_gamma ? gamma[j] : 1.0f);
        float v = rs * (g - a - (x[i] - m) * rs * b);
        if (accumulate) v += dx[i];
        dx[i] = v;
    }
}

// dgamma[j] = sum_r dy * xhat, dbeta[j] = sum_r dy; one work-item per column.
__kernel void ln_param_grad(__global const float* x, __global const float* dy,
                            __global const float* mean, __global const float* rstd,
                            const int rows, const int cols, __global float* dgamma,
                            __global float* dbeta)
{
    const int j = get_global_id(0);
    float a = 0.0f, b = 0.0f;
    for (int r = 0; r < rows; r++) {
        const float g = dy[r * cols + j];
        a += g * (x[r * cols + j] - mean[r]) * rstd[r];
        b += g;
    }
    dgamma[j] = a;
    dbeta[j] = b;
}

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
// use entry k (src[offs[k] .. offs[k+1])); grp[i]: element i's group. Global size (K,).
__kernel void grouped_norm_param_grad(__global const float* x, __global const float* dy,
                                      __global const float* mean, __global const float* rstd,
                                      __global const int* offs, __global const int* src,
                                      __global const int* grp, const int size, const int G,
                                      const int n, __global float* dgamma, __global float* dbeta,
                                      const int has_gamma, const int has_beta)
{
    const int k = get_global_id(0);
    float a = 0.0f, c = 0.0f;
    for (int b = 0; b < n; b++) {
        for (int t = offs[k]; t < offs[k + 1]; t++) {
            const int i = src[t], s = b * G + grp[i];
            const float d = dy[b * size + i];
            a += d * (x[b * size + i] - mean[s]) * rstd[s];
            c += d;
        }
    }
    if (has_gamma) dgamma[k] = a;
    if (has_beta) dbeta[k] = c;
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
