// Optimizer updates, Keras 3 semantics. The updates take EW elements per work-item
// (EW_BODY, vector.cl; global size ceil(n / EW)); the rest one work-item per element.

// SGD with momentum: v = momentum*v - lr*g; w += v (nesterov: w += momentum*v - lr*g).
#define SGD_BODY(T, LD, ST, SUF) {                                                          \
    const T g_ = LD(g);                                                                     \
    if (momentum == 0.0f) { ST(LD(w) - lr * g_, w) }                                        \
    else {                                                                                  \
        const T v_ = momentum * LD(v) - lr * g_;                                            \
        ST(v_, v)                                                                           \
        ST(LD(w) + (nesterov ? momentum * v_ - lr * g_ : v_), w)                            \
    } }
__kernel void sgd(__global float* w, __global const float* g, __global float* v,
                  const float lr, const float momentum, const int nesterov, const int n)
    EW_BODY(n, SGD_BODY)

// RMSprop (Keras 3): v = rho v + (1-rho) g^2; centered: a = rho a + (1-rho) g, denom = v - a^2;
// inc = lr g / sqrt(denom + eps); with momentum: m = momentum m + inc, w -= m; else w -= inc.
#define RMSPROP_BODY(T, LD, ST, SUF) {                                                      \
    const T g_ = LD(g);                                                                     \
    const T v_ = rho * LD(v) + (1.0f - rho) * g_ * g_;                                      \
    ST(v_, v)                                                                               \
    T denom = v_;                                                                           \
    if (centered) {                                                                         \
        const T a_ = rho * LD(a) + (1.0f - rho) * g_;                                       \
        ST(a_, a)                                                                           \
        denom -= a_ * a_;                                                                   \
    }                                                                                       \
    const T inc = lr * g_ / sqrt(denom + eps);                                              \
    if (momentum > 0.0f) {                                                                  \
        const T m_ = momentum * LD(m) + inc;                                                \
        ST(m_, m)                                                                           \
        ST(LD(w) - m_, w)                                                                   \
    } else {                                                                                \
        ST(LD(w) - inc, w)                                                                  \
    } }
__kernel void rmsprop(__global float* w, __global const float* g, __global float* v,
                      __global float* a, __global float* m, const float lr, const float rho,
                      const float momentum, const float eps, const int centered, const int n)
    EW_BODY(n, RMSPROP_BODY)

// Adagrad: acc += g^2; w -= lr g / sqrt(acc + eps).
#define ADAGRAD_BODY(T, LD, ST, SUF) {                                                      \
    const T g_ = LD(g);                                                                     \
    const T a_ = LD(acc) + g_ * g_;                                                         \
    ST(a_, acc)                                                                             \
    ST(LD(w) - lr * g_ / sqrt(a_ + eps), w) }
__kernel void adagrad(__global float* w, __global const float* g, __global float* acc,
                      const float lr, const float eps, const int n)
    EW_BODY(n, ADAGRAD_BODY)

// Adam's moment estimates, shared by Adam, AdamW and Nadam:
// m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, stored, and kept in m_ and v_.
#define MOMENTS(T, LD, ST)                                                                  \
    const T g_ = LD(g);                                                                     \
    const T m_ = LD(m) + (g_ - LD(m)) * (1.0f - b1);                                        \
    const T v_ = LD(v) + (g_ * g_ - LD(v)) * (1.0f - b2);                                   \
    ST(m_, m) ST(v_, v)

// Adam: alpha = lr * sqrt(1 - b2^t) / (1 - b1^t) computed on the host.
#define ADAM_BODY(T, LD, ST, SUF) {                                                         \
    MOMENTS(T, LD, ST)                                                                      \
    ST(LD(w) - alpha * m_ / (sqrt(v_) + eps), w) }
__kernel void adam(__global float* w, __global const float* g, __global float* m,
                   __global float* v, const float alpha, const float b1, const float b2,
                   const float eps, const int n)
    EW_BODY(n, ADAM_BODY)

// Nadam (Keras 3), coefficients from the host: c1 = u_{t+1} / (1 - prod u_{..t+1}),
// c2 = (1 - u_t) / (1 - prod u_{..t}), c3 = 1 / (1 - b2^t).
#define NADAM_BODY(T, LD, ST, SUF) {                                                        \
    MOMENTS(T, LD, ST)                                                                      \
    ST(LD(w) - lr * (c1 * m_ + c2 * g_) / (sqrt(v_ * c3) + eps), w) }
__kernel void nadam(__global float* w, __global const float* g, __global float* m,
                    __global float* v, const float lr, const float b1, const float b2,
                    const float c1, const float c2, const float c3, const float eps,
                    const int n)
    EW_BODY(n, NADAM_BODY)

// Decoupled weight decay, Keras 3: w -= w * decay * lr.
__kernel void decay(__global float* w, const float factor)
{
    const int i = get_global_id(0);
    w[i] -= w[i] * factor;
}

// Gradient clipping by value.
__kernel void clip_value(__global float* g, const float limit)
{
    const int i = get_global_id(0);
    g[i] = clamp(g[i], -limit, limit);
}

// acc[slot] += sum(g^2) (a single work-item; one parameter tensor).
__kernel void sum_squares(__global const float* g, const int n, __global float* acc,
                          const int slot)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += g[i] * g[i];
    acc[slot] += s;
}

// g *= min(1, limit / sqrt(acc[slot])) : clipping by norm with the norm kept on the device.
__kernel void clip_norm(__global float* g, __global const float* acc, const int slot,
                        const float limit)
{
    const int i = get_global_id(0);
    const float norm = sqrt(acc[slot]);
    if (norm > limit) g[i] *= limit / norm;
}

// Regularisation: dw += l1 * sign(w) + 2 * l2 * w.
__kernel void reg_grad(__global const float* w, __global float* dw, const float l1,
                       const float l2)
{
    const int i = get_global_id(0);
    dw[i] += l1 * sign(w[i]) + 2.0f * l2 * w[i];
}

// acc[slot] += weight * (l1 * sum|w| + l2 * sum w^2) (a single work-item).
__kernel void reg_penalty(__global const float* w, const int n, const float l1, const float l2,
                          const float weight, __global float* acc, const int slot)
{
    float a = 0.0f, b = 0.0f;
    for (int i = 0; i < n; i++) { a += fabs(w[i]); b += w[i] * w[i]; }
    acc[slot] += weight * (l1 * a + l2 * b);
}
