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
    T v_ = LD(dy) * CAT(act_grad, SUF)(act, LD(x), LD(y));                                  \
    if (accumulate) v_ += LD(dx);                                                           \
    ST(v_, dx) }
__kernel void act_backward(const int act, __global const float* x, __global const float* y,
                           __global const float* dy, __global float* dx, const int accumulate,
                           const int n)
    EW_BODY(n, ACT_BWD_BODY)

// Row-wise softmax (log_softmax when log != 0) on blocks of EW rows (vector.cl RB_*); y may
// alias x.
__kernel void softmax_forward(__global const float* x, __global float* y, const int cols,
                              const int log, const int rows)
{
    RB_START(rows)
    __global const float* xr = x + rb_r0_ * cols;
    __global float* yr = y + rb_r0_ * cols;
    const EWT m = rb_rowmax(xr, cols, rb_n_);
    const EWT ls = rb_logsumexp_from(xr, cols, rb_n_, m);
    for (int j = 0; j < cols; j++) {
        const EWT v = (RB_GATHER(xr + j, cols) - m) - ls;
        RB_SCATTER(log ? v : exp(v), yr + j, cols)
    }
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

// out[j, i] = x[xoff + i * cols + j] for a rows x cols matrix, in 8 x 8 blocks: a work-item
// loads 8 row pieces as vectors and stores 8 column pieces (a weight matrix for dX = dY . W^T;
// one element per work-item, writing with a stride, took ~3x as long). Blocks on
// the ragged right and bottom edges go element by element. Global (ceil(cols/8), ceil(rows/8)).
// pw: out is cut into panels of pw columns (of x's rows), each cols x pw and stored one
// after another, the layout the CPU GEMM reads a packed B in (gemm_cpu.cl gemm_tile); pw = rows
// is the plain transpose. When pw is a multiple of 8 every whole block's columns start on a
// 32-byte boundary (out is a buffer's start) and are stored as whole float8s: stored lane by
// lane (VSTORE8) they compiled to eight scalar stores each (calls in a loop, best of four:
// 256 x 128 20 -> 16 us, 784 x 256 81 -> 70 us, 1600 x 128 81 -> 72 us).
#define TR_AT(j, i) (((i) / pw * cols + (j)) * pw + (i) % pw)
#define TR_ROW(k) const float8 r##k = VLOAD8(xb + (k) * cols);
#define TR_COL(c) {                                                                        \
    const float8 col_ = (float8)(r0.c, r1.c, r2.c, r3.c, r4.c, r5.c, r6.c, r7.c);          \
    if (aligned) *(__global float8*)ob = col_; else VSTORE8(col_, ob)                       \
    ob += pw; }
__kernel void transpose(__global const float* x, __global float* out, const int rows,
                        const int cols, const int xoff, const int pw)
{
    const int j0 = get_global_id(0) * 8, i0 = get_global_id(1) * 8;
    __global const float* xb = x + xoff + i0 * cols + j0;
    if (i0 + 8 <= rows && j0 + 8 <= cols) {
        const int aligned = (pw & 7) == 0;
        TR_ROW(0) TR_ROW(1) TR_ROW(2) TR_ROW(3) TR_ROW(4) TR_ROW(5) TR_ROW(6) TR_ROW(7)
        __global float* ob = out + TR_AT(j0, i0);
        TR_COL(s0) TR_COL(s1) TR_COL(s2) TR_COL(s3) TR_COL(s4) TR_COL(s5) TR_COL(s6) TR_COL(s7)
    } else {
        for (int i = i0; i < min(rows, i0 + 8); i++)
            for (int j = j0; j < min(cols, j0 + 8); j++)
                out[TR_AT(j, i)] = x[xoff + i * cols + j];
    }
}
