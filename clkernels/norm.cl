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

// Grouped normalisation (LayerNormalization over axes that are not the trailing ones,
// UnitNormalization, GroupNormalization over another axis than the last; over the last it
// has the gn_* kernels below). Each sample's `size` elements fall into G groups, each
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

// GroupNormalization over the channels (the last axis): each sample is A rows of C channels,
// group g the CW channels [g CW, (g + 1) CW); V channels as one vector (gn_*_ew when C is a
// multiple of EW). Two forms, the same arithmetic:
// - blocks (GPUs, and CPUs with fewer samples than work for their cores): statistics of blocks
//   of R rows (global (P, n), P blocks a sample; a block is a contiguous R x C piece, in cache
//   for its second pass), each group's from its blocks and channels (Chan's formula) with each
//   (sample, channel)'s coefficients (global (G, n)), then the same blocks again, row by row;
// - per sample (CPUs): one work-item does all of a sample in one kernel (global (n)), which
//   then reads it from memory once and again from its core's cache, not three times.
// NOTE: the grouped_norm_* kernels above, one work-item per (sample, group) walking an index
// list, took 4-5x PyTorch's time on 28x28x32 in 8 groups; one work-item per channel strip
// down all the rows, 2.5x (each strided walk read a cache line four work-items shared).
#define GN_LD(V, p) CAT(VLOAD, V)(p)
#define GN_ST(V, v, p) CAT(VSTORE, V)((v), (p))
// lanes c .. c + V - 1 of p[(c + l) / d] (a gather by group); V of 1 is the scalar
#define GN_BY_(p, d, l) (p)[(c + (l)) / (d)]
#define GN_GATHER_1(p, d) ((p)[c / (d)])
#define GN_GATHER_4(p, d) VFROM(4, GN_BY_, p, d)
#define GN_GATHER_8(p, d) VFROM(8, GN_BY_, p, d)
#define GN_GATHER_16(p, d) VFROM(16, GN_BY_, p, d)
#define GN_GATHER(V, p, d) CAT(GN_GATHER_, V)(p, d)

// Statements on the `rows` rows from xb (C apart): each channel's mean and sum of squared
// deviations into pm[c], pq[c]; four sums apart, so that the adds do not wait on each other.
#define GN_STATS_ROWS(V, T, xb, rows, pm, pq)                                               \
    for (int c = 0; c < C; c += V) {                                                        \
        __global const float* xc = (xb) + c;                                                \
        T s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;                                       \
        int r = 0;                                                                          \
        for (; r + 3 < (rows); r += 4) {                                                    \
            s0 += GN_LD(V, xc + r * C); s1 += GN_LD(V, xc + (r + 1) * C);                   \
            s2 += GN_LD(V, xc + (r + 2) * C); s3 += GN_LD(V, xc + (r + 3) * C);             \
        }                                                                                   \
        for (; r < (rows); r++) s0 += GN_LD(V, xc + r * C);                                 \
        const T m = ((s0 + s1) + (s2 + s3)) / (float)(rows);                                \
        T q0 = 0.0f, q1 = 0.0f, q2 = 0.0f, q3 = 0.0f;                                       \
        for (r = 0; r + 3 < (rows); r += 4) {                                               \
            const T d0 = GN_LD(V, xc + r * C) - m, d1 = GN_LD(V, xc + (r + 1) * C) - m;     \
            const T d2 = GN_LD(V, xc + (r + 2) * C) - m, d3 = GN_LD(V, xc + (r + 3) * C) - m; \
            q0 += d0 * d0; q1 += d1 * d1; q2 += d2 * d2; q3 += d3 * d3;                     \
        }                                                                                   \
        for (; r < (rows); r++) { const T d = GN_LD(V, xc + r * C) - m; q0 += d * d; }      \
        GN_ST(V, m, (pm) + c)                                                               \
        GN_ST(V, (q0 + q1) + (q2 + q3), (pq) + c)                                           \
    }

// Statements: each channel's sums of dy and dy * xhat over the rows into pa[c], pc[c], with
// sample b's group statistics mean, rstd (G each).
#define GN_GRAD_ROWS(V, T, xb, gb, rows, mean, rstd, pa, pc)                                \
    for (int c = 0; c < C; c += V) {                                                        \
        const T m = GN_GATHER(V, mean, CW);                                                 \
        __global const float* xc = (xb) + c;                                                \
        __global const float* gc = (gb) + c;                                                \
        T a0 = 0.0f, a1 = 0.0f, q0 = 0.0f, q1 = 0.0f;                                       \
        int r = 0;                                                                          \
        for (; r + 1 < (rows); r += 2) {                                                    \
            const T g0 = GN_LD(V, gc + r * C), g1 = GN_LD(V, gc + (r + 1) * C);             \
            a0 += g0; a1 += g1;                                                             \
            q0 += g0 * (GN_LD(V, xc + r * C) - m);                                          \
            q1 += g1 * (GN_LD(V, xc + (r + 1) * C) - m);                                    \
        }                                                                                   \
        if (r < (rows)) {                                                                   \
            const T g = GN_LD(V, gc + r * C);                                               \
            a0 += g; q0 += g * (GN_LD(V, xc + r * C) - m);                                  \
        }                                                                                   \
        GN_ST(V, a0 + a1, (pa) + c)                                                         \
        GN_ST(V, (q0 + q1) * GN_GATHER(V, rstd, CW), (pc) + c)                              \
    }

// Statements: y = (x - cm) * ck + beta over the rows, cm and ck the sample's (C each).
#define GN_APPLY_ROWS(V, T, xb, yb, rows, cm, ck)                                           \
    for (int r = 0; r < (rows); r++)                                                        \
        for (int c = 0; c < C; c += V) {                                                    \
            T v = (GN_LD(V, (xb) + r * C + c) - GN_LD(V, (cm) + c)) * GN_LD(V, (ck) + c);   \
            if (has_beta) v += GN_LD(V, beta + c);                                          \
            GN_ST(V, v, (yb) + r * C + c)                                                   \
        }

// Statements: dx (+)= dy * k1 - k0 - (x - cm) * k2 over the rows (the sample's coefficients,
// C each, from gn_group_grad_one).
#define GN_DX_ROWS(V, T, xb, gb, db, rows, cm, k0, k1, k2)                                  \
    for (int r = 0; r < (rows); r++)                                                        \
        for (int c = 0; c < C; c += V) {                                                    \
            const int i = r * C + c;                                                        \
            T v = GN_LD(V, (gb) + i) * GN_LD(V, (k1) + c) - GN_LD(V, (k0) + c)              \
                  - (GN_LD(V, (xb) + i) - GN_LD(V, (cm) + c)) * GN_LD(V, (k2) + c);         \
            if (accumulate) v += GN_LD(V, (db) + i);                                        \
            GN_ST(V, v, (db) + i)                                                           \
        }

// Group g of sample b from its P blocks' channel statistics (pm, pq: (n, P, C); R rows a
// block, equal counts within a block, so Chan's formula): its mean and rstd into mean, rstd
// (n, G), and its channels' coefficients cm (the mean) and ck (rstd * gamma), (n, C).
inline void gn_group_stats_one(__global const float* pm, __global const float* pq, const int A,
                               const int C, const int R, const int P, const int CW,
                               const float eps, __global const float* gamma,
                               const int has_gamma, __global float* mean, __global float* rstd,
                               __global float* cm, __global float* ck, const int g,
                               const int b)
{
    const int c0 = g * CW, G = C / CW;
    float s = 0.0f;
    for (int p = 0; p < P; p++) {
        const float w = (float)(min(A, (p + 1) * R) - p * R);
        for (int k = 0; k < CW; k++) s += w * pm[(b * P + p) * C + c0 + k];
    }
    const float count = (float)A * CW, mg = s / count;
    float v = 0.0f;
    for (int p = 0; p < P; p++) {
        const float w = (float)(min(A, (p + 1) * R) - p * R);
        for (int k = 0; k < CW; k++) {
            const int i = (b * P + p) * C + c0 + k;
            const float d = pm[i] - mg;
            v += pq[i] + w * d * d;
        }
    }
    const float rs = rsqrt(v / count + eps);
    mean[b * G + g] = mg;
    rstd[b * G + g] = rs;
    for (int k = c0; k < c0 + CW; k++) {
        cm[b * C + k] = mg;
        ck[b * C + k] = has_gamma ? rs * gamma[k] : rs;
    }
}

// Group g of sample b: the means ka, kc of dy gamma and dy gamma xhat from its blocks' sums
// (pa, pc: (n, P, C)), as its channels' coefficients for GN_DX_ROWS: cm the mean, k1 = rstd
// gamma, k0 = rstd ka, k2 = rstd^2 kc, each (n, C).
inline void gn_group_grad_one(__global const float* pa, __global const float* pc,
                              __global const float* gamma, const int has_gamma,
                              __global const float* mean, __global const float* rstd,
                              const int A, const int C, const int P, const int CW,
                              __global float* cm, __global float* k0, __global float* k1,
                              __global float* k2, const int g, const int b)
{
    const int c0 = g * CW, G = C / CW;
    float a = 0.0f, q = 0.0f;
    for (int p = 0; p < P; p++)
        for (int k = c0; k < c0 + CW; k++) {
            const float w = has_gamma ? gamma[k] : 1.0f;
            a += w * pa[(b * P + p) * C + k];
            q += w * pc[(b * P + p) * C + k];
        }
    const float count = (float)A * CW, m = mean[b * G + g], rs = rstd[b * G + g];
    for (int k = c0; k < c0 + CW; k++) {
        cm[b * C + k] = m;
        k0[b * C + k] = rs * a / count;
        k1[b * C + k] = has_gamma ? rs * gamma[k] : rs;
        k2[b * C + k] = rs * rs * q / count;
    }
}

// Blocks: global (P, n); block p of sample b, `rows` rows from row r0.
#define GN_BLOCK const int P = get_global_size(0), p = get_global_id(0), b = get_global_id(1), \
    r0 = p * R, rows = min(A, r0 + R) - r0;
#define GN_BLOCK_STATS(NAME, V, T)                                                          \
__kernel void NAME(__global const float* x, const int A, const int C, const int R,          \
                   __global float* pm, __global float* pq)                                  \
{                                                                                           \
    GN_BLOCK                                                                                \
    GN_STATS_ROWS(V, T, x + (b * A + r0) * C, rows, pm + (b * P + p) * C,                   \
                  pq + (b * P + p) * C)                                                     \
}
#define GN_BLOCK_GRAD(NAME, V, T)                                                           \
__kernel void NAME(__global const float* x, __global const float* dy,                       \
                   __global const float* mean, __global const float* rstd,                  \
                   const int A, const int C, const int R, const int CW,                     \
                   __global float* pa, __global float* pc)                                  \
{                                                                                           \
    GN_BLOCK                                                                                \
    const int G = C / CW, i0 = (b * A + r0) * C, o = (b * P + p) * C;                       \
    GN_GRAD_ROWS(V, T, x + i0, dy + i0, rows, mean + b * G, rstd + b * G, pa + o, pc + o)   \
}
#define GN_APPLY(NAME, V, T)                                                                \
__kernel void NAME(__global const float* x, __global float* y, __global const float* cm,    \
                   __global const float* ck, __global const float* beta, const int A,       \
                   const int C, const int R, const int has_beta)                            \
{                                                                                           \
    GN_BLOCK                                                                                \
    const int i0 = (b * A + r0) * C;                                                        \
    GN_APPLY_ROWS(V, T, x + i0, y + i0, rows, cm + b * C, ck + b * C)                       \
}
#define GN_GRAD_INPUT(NAME, V, T)                                                           \
__kernel void NAME(__global const float* x, __global const float* dy,                       \
                   __global const float* cm, __global const float* k0,                      \
                   __global const float* k1, __global const float* k2,                      \
                   const int A, const int C, const int R, __global float* dx,               \
                   const int accumulate)                                                    \
{                                                                                           \
    GN_BLOCK                                                                                \
    const int i0 = (b * A + r0) * C, o = b * C;                                             \
    GN_DX_ROWS(V, T, x + i0, dy + i0, dx + i0, rows, cm + o, k0 + o, k1 + o, k2 + o)        \
}

// Per sample: global (n); pm, pq and the coefficients as the blocks' with P = 1.
#define GN_SAMPLE_FORWARD(NAME, V, T)                                                       \
__kernel void NAME(__global const float* x, __global float* y, __global const float* gamma, \
                   __global const float* beta, __global float* mean, __global float* rstd,  \
                   const int A, const int C, const int CW, const float eps,                 \
                   const int has_gamma, const int has_beta, __global float* pm,             \
                   __global float* pq, __global float* cm, __global float* ck)              \
{                                                                                           \
    const int b = get_global_id(0), o = b * C;                                              \
    __global const float* xb = x + b * A * C;                                               \
    GN_STATS_ROWS(V, T, xb, A, pm + o, pq + o)                                              \
    for (int g = 0; g < C / CW; g++)                                                        \
        gn_group_stats_one(pm, pq, A, C, A, 1, CW, eps, gamma, has_gamma, mean, rstd, cm,   \
                           ck, g, b);                                                       \
    GN_APPLY_ROWS(V, T, xb, y + b * A * C, A, cm + o, ck + o)                               \
}
#define GN_SAMPLE_BACKWARD(NAME, V, T)                                                      \
__kernel void NAME(__global const float* x, __global const float* dy,                       \
                   __global const float* gamma, const int has_gamma,                        \
                   __global const float* mean, __global const float* rstd, const int A,     \
                   const int C, const int CW, __global float* pa, __global float* pc,       \
                   __global float* cm, __global float* k0, __global float* k1,              \
                   __global float* k2, __global float* dx, const int has_dx,                \
                   const int accumulate)                                                    \
{                                                                                           \
    const int b = get_global_id(0), o = b * C, G = C / CW, i0 = b * A * C;                  \
    GN_GRAD_ROWS(V, T, x + i0, dy + i0, A, mean + b * G, rstd + b * G, pa + o, pc + o)      \
    if (!has_dx) return;                                                                    \
    for (int g = 0; g < G; g++)                                                             \
        gn_group_grad_one(pa, pc, gamma, has_gamma, mean, rstd, A, C, 1, CW, cm, k0, k1,    \
                          k2, g, b);                                                        \
    GN_DX_ROWS(V, T, x + i0, dy + i0, dx + i0, A, cm + o, k0 + o, k1 + o, k2 + o)           \
}
GN_BLOCK_STATS(gn_block_stats, 1, float)
GN_BLOCK_GRAD(gn_block_grad, 1, float)
GN_APPLY(gn_apply, 1, float)
GN_GRAD_INPUT(gn_grad_input, 1, float)
GN_SAMPLE_FORWARD(gn_sample_forward, 1, float)
GN_SAMPLE_BACKWARD(gn_sample_backward, 1, float)
#if EW != 1
GN_BLOCK_STATS(gn_block_stats_ew, EW, EWT)
GN_BLOCK_GRAD(gn_block_grad_ew, EW, EWT)
GN_APPLY(gn_apply_ew, EW, EWT)
GN_GRAD_INPUT(gn_grad_input_ew, EW, EWT)
GN_SAMPLE_FORWARD(gn_sample_forward_ew, EW, EWT)
GN_SAMPLE_BACKWARD(gn_sample_backward_ew, EW, EWT)
#endif

// The blocks' group stages: global (G, n).
__kernel void gn_group_stats(__global const float* pm, __global const float* pq, const int A,
                             const int C, const int R, const int P, const int CW,
                             const float eps, __global const float* gamma, const int has_gamma,
                             __global float* mean, __global float* rstd, __global float* cm,
                             __global float* ck)
{
    gn_group_stats_one(pm, pq, A, C, R, P, CW, eps, gamma, has_gamma, mean, rstd, cm, ck,
                       get_global_id(0), get_global_id(1));
}

__kernel void gn_group_grad(__global const float* pa, __global const float* pc,
                            __global const float* gamma, const int has_gamma,
                            __global const float* mean, __global const float* rstd,
                            const int A, const int C, const int P, const int CW,
                            __global float* cm, __global float* k0, __global float* k1,
                            __global float* k2)
{
    gn_group_grad_one(pa, pc, gamma, has_gamma, mean, rstd, A, C, P, CW, cm, k0, k1, k2,
                      get_global_id(0), get_global_id(1));
}

// dgamma[k] = sum of pc, dbeta[k] = sum of pa over the parts (n P); global (C).
__kernel void gn_param_grad(__global const float* pa, __global const float* pc,
                            const int parts, __global float* dgamma, __global float* dbeta,
                            const int has_dgamma, const int has_dbeta)
{
    const int k = get_global_id(0), C = get_global_size(0);
    float a = 0.0f, q = 0.0f;
    for (int i = 0; i < parts; i++) {
        a += pa[i * C + k];
        q += pc[i * C + k];
    }
    if (has_dgamma) dgamma[k] = q;
    if (has_dbeta) dbeta[k] = a;
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
