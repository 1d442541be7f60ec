// Elementwise and row-wise kernels: activations, softmax, copies, bias gradient.

__kernel void fill(__global float* y, const float v) { y[get_global_id(0)] = v; }

// dst[r, doff + c] (+)= src[r, soff + c]; global size (cols, rows). Row strides sld, dld.
__kernel void copy2d(__global const float* src, const int sld, const int soff,
                     __global float* dst, const int dld, const int doff, const int accumulate)
{
    const int c = get_global_id(0), r = get_global_id(1);
    float v = src[r * sld + soff + c];
    __global float* d = dst + r * dld + doff + c;
    if (accumulate) v += *d;
    *d = v;
}

__kernel void add2(__global const float* a, __global const float* b, __global float* y)
{
    const int i = get_global_id(0);
    y[i] = a[i] + b[i];
}

// EW elements per work-item (EW_BODY, vector.cl); global size ceil(n / EW).
#define ACT_FWD_BODY(T, LD, ST, SUF) { ST(CAT(act_fwd, SUF)(act, LD(x)), y) }
__kernel void act_forward(const int act, __global const float* x, __global float* y,
                          const int n)
    EW_BODY(n, ACT_FWD_BODY)

// x is the pre-activation; callers may pass y for it unless the activation NEEDS_INPUT.
#define ACT_BWD_BODY(T, LD, ST, SUF) {                                                      \
    T v_ = LD(dy) * CAT(act_grad, SUF)(act, LD(x), LD(y));                          \
    if (accumulate) v_ += LD(dx);                                                           \
    ST(v_, dx) }
__kernel void act_backward(const int act, __global const float* x, __global const float* y,
                           __global const float* dy, __global float* dx, const int accumulate,
                           const int n)
    EW_BODY(n, ACT_BWD_BODY)

// Row-wise softmax (log_softmax when log != 0), one work-item per row; y may alias x.
__kernel void softmax_forward(__global const float* x, __global float* y, const int cols,
                              const int log)
{
    const int r = get_global_id(0);
    __global const float* xr = x + r * cols;
    __global float* yr = y + r * cols;
    const float lse = row_logsumexp(xr, cols);
    if (log) for (int j = 0; j < cols; j++) yr[j] = xr[j] - lse;
    else for (int j = 0; j < cols; j++) yr[j] = exp(xr[j] - lse);
}

// softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy). Per row.
__kernel void softmax_backward(__global const float* y, __global const float* dy,
                               __global float* dx, const int cols, const int log,
                               const int accumulate)
{
    const int r = get_global_id(0);
    __global const float* yr = y + r * cols;
    __global const float* gr = dy + r * cols;
    __global float* dr = dx + r * cols;
    float dot = 0.0f;
    if (log) for (int j = 0; j < cols; j++) dot += gr[j];
    else for (int j = 0; j < cols; j++) dot += yr[j] * gr[j];
    for (int j = 0; j < cols; j++) {
        float v = log ? gr[j] - exp(yr[j]) * dot : yr[j] * (gr[j] - dot);
        if (accumulate) v += dr[j];
        dr[j] = v;
    }
}

// Column sums in parts, global (cols / W, P): part p sums a contiguous block of rows into
// out[p, :] (P = 1: the sums themselves, a Dense bias gradient); then sum_parts adds the parts.
// Many rows and few columns (a convolution's bias) otherwise leave one core summing 40,000 rows
// alone. col_sums: one column per work-item; col_sums_ew: EW (cols a multiple of EW).
#define COL_SUMS(NAME, W, T)                                                                \
__kernel void NAME(__global const float* x, __global float* out, const int rows,            \
                   const int cols)                                                          \
{                                                                                           \
    const int c = get_global_id(0) * W, p = get_global_id(1), P = get_global_size(1);       \
    const int rb = (rows + P - 1) / P, r1 = min(rows, (p + 1) * rb);                        \
    T s = 0.0f;                                                                             \
    for (int r = p * rb; r < r1; r++) s += CAT(VLOAD, W)(x + r * cols + c);                 \
    CAT(VSTORE, W)(s, out + p * cols + c)                                                   \
}
COL_SUMS(col_sums, 1, float)
COL_SUMS(col_sums_ew, EW, EWT)

// out[i] = act(sum over p of parts[p * n + i] + bias[i % bias_n]) (+ out[i]); out is taken
// from element ooff of its buffer
__kernel void sum_parts(__global const float* parts, const int P, const int n,
                        __global float* out, __global const float* bias, const int bias_n,
                        const int act, const int accumulate, const int ooff)
{
    const int i = get_global_id(0);
    out += ooff;
    float s = 0.0f;
    for (int p = 0; p < P; p++) s += parts[p * n + i];
    if (bias_n) s += bias[i % bias_n];
    s = act_fwd(act, s);
    if (accumulate) s += out[i];
    out[i] = s;
}

// out[j, i] = x[i, j] for a rows x cols matrix. Global (cols, rows).
__kernel void transpose(__global const float* x, __global float* out, const int rows,
                        const int cols, const int xoff)
{
    const int j = get_global_id(0), i = get_global_id(1);
    out[j * rows + i] = x[xoff + i * cols + j];
}
