// The Activation category's layers with parameters (engine/layers/activation.py, launched by
// engine/backend/activation_ops.py): Keras' ReLU (max_value, negative_slope, threshold) and ELU
// (alpha) elementwise, PReLU with its learned alpha broadcast over shared axes, and a softmax
// along an axis other than the last. The activation table's functions (activations.cl) are
// built before this file: MAX0, MIN0 come from there.

// Keras' ReLU: x > threshold ? min(x, max_value) : 0, minus negative_slope * (threshold - x)
// below the threshold (max_value +inf: none). ELU: x > 0 ? x : alpha * (exp(x) - 1).
#define PACT_RELU 0
#define PACT_ELU 1
#define PACT_FWD_BODY(T, LD, ST, SUF) {                                                     \
    const T v_ = LD(x);                                                                     \
    T r_;                                                                                   \
    if (kind == PACT_ELU) r_ = (v_ > 0.0f) ? v_ : (T)(p0) * expm1(MIN0(T, v_));             \
    else r_ = ((v_ > p2) ? ((v_ < p0) ? v_ : (T)(p0)) : (T)(0.0f))                          \
              - p1 * MAX0(T, p2 - v_);                                                      \
    ST(r_, y) }
// kind PACT_*; p0, p1, p2: ReLU's max_value, negative_slope, threshold, ELU's alpha (p0)
__kernel void param_act_forward(const int kind, __global const float* x, __global float* y,
                                const float p0, const float p1, const float p2, const int n)
    EW_BODY(n, PACT_FWD_BODY)

// dx (+)= dy * f'(x): ReLU 1 on (threshold, max_value), negative_slope below the threshold;
// ELU 1 above 0, alpha * exp(x) at and below.
#define PACT_BWD_BODY(T, LD, ST, SUF) {                                                     \
    const T v_ = LD(x);                                                                     \
    T g_;                                                                                   \
    if (kind == PACT_ELU) g_ = (v_ > 0.0f) ? (T)(1.0f) : (T)(p0) * exp(MIN0(T, v_));        \
    else g_ = (v_ > p2) ? ((v_ < p0) ? (T)(1.0f) : (T)(0.0f))                               \
                        : ((v_ < p2) ? (T)(p1) : (T)(0.0f));                                \
    T r_ = LD(dy) * g_;                                                                     \
    if (accumulate) r_ += LD(dx);                                                           \
    ST(r_, dx) }
__kernel void param_act_backward(const int kind, __global const float* x,
                                 __global const float* dy, __global float* dx, const float p0,
                                 const float p1, const float p2, const int accumulate,
                                 const int n)
    EW_BODY(n, PACT_BWD_BODY)

// PReLU over a per-sample shape of 4 axes (d0..d3, leading ones 1 for fewer): alpha has the
// same axes with the shared ones 1, a0..a3 its strides (0 on a shared axis). One element per
// work-item; n elements in all (the batch's).
inline int prelu_alpha_index(int i, const int d1, const int d2, const int d3, const int a0,
                             const int a1, const int a2, const int a3, const int per)
{
    int j = i % per;
    const int i3 = j % d3; j /= d3;
    const int i2 = j % d2; j /= d2;
    const int i1 = j % d1;
    return (j / d1) * a0 + i1 * a1 + i2 * a2 + i3 * a3;
}

__kernel void prelu_forward(__global const float* x, __global const float* alpha,
                            __global float* y, const int d1, const int d2, const int d3,
                            const int a0, const int a1, const int a2, const int a3,
                            const int per, const int n)
{
    const int i = get_global_id(0);
    if (i >= n) return;
    const float v = x[i];
    y[i] = v > 0.0f ? v : alpha[prelu_alpha_index(i, d1, d2, d3, a0, a1, a2, a3, per)] * v;
}

__kernel void prelu_backward(__global const float* x, __global const float* alpha,
                             __global const float* dy, __global float* dx, const int d1,
                             const int d2, const int d3, const int a0, const int a1,
                             const int a2, const int a3, const int per, const int accumulate,
                             const int n)
{
    const int i = get_global_id(0);
    if (i >= n) return;
    float g = dy[i];
    if (!(x[i] > 0.0f)) g *= alpha[prelu_alpha_index(i, d1, d2, d3, a0, a1, a2, a3, per)];
    if (accumulate) g += dx[i];
    dx[i] = g;
}

// dalpha[k] = sum over the batch and the shared axes of dy * min(x, 0): one alpha element per
// work-item (a gather, no atomics). shared: bit a set when axis a (of d0..d3) is shared.
__kernel void prelu_alpha_grad(__global const float* x, __global const float* dy,
                               __global float* dalpha, const int d0, const int d1, const int d2,
                               const int d3, const int shared, const int batch,
                               const int alpha_n)
{
    const int k = get_global_id(0);
    if (k >= alpha_n) return;
    const int e0 = (shared & 1) ? 1 : d0, e1 = (shared & 2) ? 1 : d1;
    const int e2 = (shared & 4) ? 1 : d2, e3 = (shared & 8) ? 1 : d3;
    int j = k;  // k's coordinates over alpha's axes e0..e3
    const int c3 = j % e3; j /= e3;
    const int c2 = j % e2; j /= e2;
    const int c1 = j % e1;
    const int c0 = j / e1;
    const int per = d0 * d1 * d2 * d3;
    float s = 0.0f;
    for (int b = 0; b < batch; b++)
        for (int t0 = 0; t0 < d0 / e0; t0++)
            for (int t1 = 0; t1 < d1 / e1; t1++)
                for (int t2 = 0; t2 < d2 / e2; t2++)
                    for (int t3 = 0; t3 < d3 / e3; t3++) {
                        const int i = b * per + (((c0 + t0) * d1 + (c1 + t1)) * d2 + (c2 + t2))
                                      * d3 + (c3 + t3);
                        const float v = x[i];
                        s += v < 0.0f ? dy[i] * v : 0.0f;
                    }
    dalpha[k] = s;
}

// Softmax along an axis of `len` entries `inner` apart (the axes after it taken as one):
// one (outer, inner) line per work-item, lines = outer * inner. y may alias x.
__kernel void softmax_axis_forward(__global const float* x, __global float* y, const int len,
                                   const int inner, const int lines)
{
    const int l = get_global_id(0);
    if (l >= lines) return;
    const int base = (l / inner) * len * inner + l % inner;
    float m = x[base];
    for (int j = 1; j < len; j++) { const float v = x[base + j * inner]; m = v > m ? v : m; }
    float s = 0.0f;
    for (int j = 0; j < len; j++) s += exp(x[base + j * inner] - m);
    const float ls = log(s);
    for (int j = 0; j < len; j++) y[base + j * inner] = exp((x[base + j * inner] - m) - ls);
}

// dx (+)= y * (dy - sum(dy * y)) along the line
__kernel void softmax_axis_backward(__global const float* y, __global const float* dy,
                                    __global float* dx, const int len, const int inner,
                                    const int accumulate, const int lines)
{
    const int l = get_global_id(0);
    if (l >= lines) return;
    const int base = (l / inner) * len * inner + l % inner;
    float s = 0.0f;
    for (int j = 0; j < len; j++) s += dy[base + j * inner] * y[base + j * inner];
    for (int j = 0; j < len; j++) {
        const int i = base + j * inner;
        float g = y[i] * (dy[i] - s);
        if (accumulate) g += dx[i];
        dx[i] = g;
    }
}
