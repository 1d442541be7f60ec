// Elementwise activations. The ACT_* ids and constants are #defined by the engine from its
// activation table (engine/activations.py) so Python and OpenCL cannot disagree.
// act_grad(a, x, y): the derivative at pre-activation x with output y. Only GELU and SiLU read x;
// every other activation is differentiated through y, so layers need not keep x for them.

// Defined for float and float4/8/16 (GEMM epilogues apply them to a vector at once); select()
// keeps the vector forms branch-free.
#define DEFINE_ACTIVATIONS(T, NAME_FWD, NAME_GRAD)                                              \
inline T NAME_FWD(const int a, const T x) {                                                      \
    if (a == ACT_RELU) return fmax(x, 0.0f);                                                     \
    if (a == ACT_RELU6) return clamp(x, 0.0f, 6.0f);                                             \
    if (a == ACT_LEAKY_RELU) return select(LEAKY_SLOPE * x, x, x > 0.0f);                         \
    if (a == ACT_ELU) return select(expm1(fmin(x, 0.0f)), x, x > 0.0f);                           \
    if (a == ACT_SELU) return SELU_SCALE * select(SELU_ALPHA * expm1(fmin(x, 0.0f)), x, x > 0.0f);\
    if (a == ACT_GELU) return 0.5f * x * (1.0f + erf(x * 0.70710678118654752f));                 \
    if (a == ACT_SILU) return x / (1.0f + exp(-x));                                              \
    if (a == ACT_SIGMOID) return 1.0f / (1.0f + exp(-x));                                        \
    if (a == ACT_HARD_SIGMOID) return clamp(x + 3.0f, 0.0f, 6.0f) * (1.0f / 6.0f);               \
    if (a == ACT_TANH) return tanh(x);                                                           \
    if (a == ACT_SOFTPLUS) return fmax(x, 0.0f) + log1p(exp(-fabs(x)));                          \
    if (a == ACT_SOFTSIGN) return x / (1.0f + fabs(x));                                          \
    if (a == ACT_EXPONENTIAL) return exp(x);                                                     \
    return x; /* ACT_LINEAR; softmax and log_softmax are row-wise, see elementwise.cl */        \
}                                                                                                \
inline T NAME_GRAD(const int a, const T x, const T y) {                                          \
    const T one = (T)(1.0f), zero = (T)(0.0f);                                                   \
    if (a == ACT_RELU) return select(zero, one, y > 0.0f);                                       \
    if (a == ACT_RELU6) return select(zero, one, y > 0.0f && y < 6.0f);                          \
    if (a == ACT_LEAKY_RELU) return select((T)(LEAKY_SLOPE), one, y > 0.0f);                      \
    if (a == ACT_ELU) return select(y + 1.0f, one, y > 0.0f);                                    \
    if (a == ACT_SELU) return select(y + SELU_SCALE * SELU_ALPHA, (T)(SELU_SCALE), y > 0.0f);     \
    if (a == ACT_GELU)                                                                           \
        return 0.5f * (1.0f + erf(x * 0.70710678118654752f))                                     \
               + x * 0.39894228040143268f * exp(-0.5f * x * x);                                  \
    if (a == ACT_SILU) { const T s = 1.0f / (1.0f + exp(-x)); return s * (1.0f + x * (1.0f - s)); } \
    if (a == ACT_SIGMOID) return y * (1.0f - y);                                                 \
    if (a == ACT_HARD_SIGMOID) return select(zero, (T)(1.0f / 6.0f), y > 0.0f && y < 1.0f);      \
    if (a == ACT_TANH) return 1.0f - y * y;                                                      \
    if (a == ACT_SOFTPLUS) return -expm1(-y); /* sigmoid(x) = 1 - exp(-softplus(x)) */           \
    if (a == ACT_SOFTSIGN) { const T t = 1.0f - fabs(y); return t * t; }                         \
    if (a == ACT_EXPONENTIAL) return y;                                                          \
    return one;                                                                                  \
}

DEFINE_ACTIVATIONS(float, act_fwd, act_grad)
DEFINE_ACTIVATIONS(float4, act_fwd4, act_grad4)
DEFINE_ACTIVATIONS(float8, act_fwd8, act_grad8)
DEFINE_ACTIVATIONS(float16, act_fwd16, act_grad16)

// log(sum(exp(x[0..cols)))) computed stably (max subtracted first).
inline float row_logsumexp(__global const float* x, const int cols) {
    float m = x[0];
    for (int j = 1; j < cols; j++) m = fmax(m, x[j]);
    float s = 0.0f;
    for (int j = 0; j < cols; j++) s += exp(x[j] - m);
    return m + log(s);
}
