// Elementwise activations. The ACT_* ids and constants are #defined by the engine from its
// activation table (engine/activations.py) so Python and OpenCL cannot disagree.
// act_grad(a, x, y): the derivative at pre-activation x with output y. Only the GELUs, SiLU, Mish,
// hard SiLU and tanh shrink read x (NEEDS_INPUT); every other activation is differentiated
// through y, so layers need not keep x for them.

// Defined for float and float4/8/16 (GEMM epilogues apply them to a vector at once); ?: on a
// comparison keeps the vector forms branch-free, and stands in for select, fmax, fmin, clamp
// and fabs, library calls on PoCL 3.0 (see vector.cl). Their inline forms for type T (NaN maps
// as fmax/fmin would: to the bound):
#define MAX0(T, x) (((x) > 0.0f) ? (x) : (T)(0.0f))
#define MIN0(T, x) (((x) < 0.0f) ? (x) : (T)(0.0f))
#define CLAMP06(T, x) (((x) > 0.0f) ? (((x) < 6.0f) ? (x) : (T)(6.0f)) : (T)(0.0f))
#define ABS(x) (((x) < 0.0f) ? -(x) : (x))
#define CLIP(T, x, lo, hi) (((x) < (lo)) ? (T)(lo) : ((x) > (hi)) ? (T)(hi) : (x))
#define SIGN(T, x) (((x) > 0.0f) ? (T)(1.0f) : ((x) < 0.0f) ? (T)(-1.0f) : (T)(0.0f))
#define DEFINE_ACTIVATIONS(T, NAME_FWD, NAME_GRAD)                                               \
inline T NAME_FWD(const int a, const T x) {                                                      \
    if (a == ACT_RELU) return MAX0(T, x);                                                        \
    if (a == ACT_RELU6) return CLAMP06(T, x);                                                    \
    if (a == ACT_LEAKY_RELU) return ((x > 0.0f) ? (x) : (LEAKY_SLOPE * x));                      \
    if (a == ACT_ELU) return ((x > 0.0f) ? (x) : (expm1(MIN0(T, x))));                           \
    if (a == ACT_SELU) return SELU_SCALE * ((x > 0.0f) ? (x) : (SELU_ALPHA * expm1(MIN0(T, x)))); \
    if (a == ACT_GELU) return 0.5f * x * (1.0f + erf(x * 0.70710678118654752f));                 \
    if (a == ACT_GELU_TANH)                                                                      \
        return 0.5f * x * (1.0f + tanh(GELU_TANH_C * (x + GELU_TANH_K * x * x * x)));            \
    if (a == ACT_SILU) return x / (1.0f + exp(-x));                                              \
    if (a == ACT_MISH) return x * tanh(MAX0(T, x) + log1p(exp(-ABS(x))));                        \
    if (a == ACT_SIGMOID) return 1.0f / (1.0f + exp(-x));                                        \
    if (a == ACT_HARD_SIGMOID) return CLAMP06(T, x + 3.0f) * (1.0f / 6.0f);                      \
    if (a == ACT_HARD_SILU) return x * (CLAMP06(T, x + 3.0f) * (1.0f / 6.0f));                   \
    if (a == ACT_TANH) return tanh(x);                                                           \
    if (a == ACT_SOFTPLUS) return MAX0(T, x) + log1p(exp(-ABS(x)));                              \
    if (a == ACT_SOFTSIGN) return x / (1.0f + ABS(x));                                           \
    if (a == ACT_EXPONENTIAL) return exp(x);                                                     \
    if (a == ACT_LOG_SIGMOID) return MIN0(T, x) - log1p(exp(-ABS(x)));                           \
    if (a == ACT_HARD_TANH) return CLIP(T, x, -1.0f, 1.0f);                                      \
    if (a == ACT_TANH_SHRINK) return x - tanh(x);                                                \
    if (a == ACT_SQUAREPLUS) return 0.5f * (x + sqrt(x * x + 4.0f));                             \
    if (a == ACT_SPARSE_PLUS) {                                                                  \
        const T t = x + 1.0f;                                                                    \
        return ((x <= -1.0f) ? ((T)(0.0f)) : ((x < 1.0f) ? (0.25f * t * t) : (x)));              \
    }                                                                                            \
    if (a == ACT_SOFT_SHRINK)                                                                    \
        return ((x > 0.5f) ? (x - 0.5f) : ((x < -0.5f) ? (x + 0.5f) : ((T)(0.0f))));             \
    if (a == ACT_HARD_SHRINK) return ((ABS(x) > 0.5f) ? (x) : ((T)(0.0f)));                      \
    return x; /* ACT_LINEAR; softmax and log_softmax are row-wise, see elementwise.cl */         \
}                                                                                                \
inline T NAME_GRAD(const int a, const T x, const T y) {                                          \
    const T one = (T)(1.0f), zero = (T)(0.0f);                                                   \
    if (a == ACT_RELU) return ((y > 0.0f) ? (one) : (zero));                                     \
    if (a == ACT_RELU6) return ((y > 0.0f && y < 6.0f) ? (one) : (zero));                        \
    if (a == ACT_LEAKY_RELU) return ((y > 0.0f) ? (one) : ((T)(LEAKY_SLOPE)));                   \
    if (a == ACT_ELU) return ((y > 0.0f) ? (one) : (y + 1.0f));                                  \
    if (a == ACT_SELU) return ((y > 0.0f) ? ((T)(SELU_SCALE)) : (y + SELU_SCALE * SELU_ALPHA));  \
    if (a == ACT_GELU)                                                                           \
        return 0.5f * (1.0f + erf(x * 0.70710678118654752f))                                     \
               + x * 0.39894228040143268f * exp(-0.5f * x * x);                                  \
    if (a == ACT_GELU_TANH) {                                                                    \
        const T t = tanh(GELU_TANH_C * (x + GELU_TANH_K * x * x * x));                           \
        return 0.5f * (1.0f + t)                                                                 \
               + 0.5f * x * (1.0f - t * t) * GELU_TANH_C * (1.0f + 3.0f * GELU_TANH_K * x * x);   \
    }                                                                                            \
    if (a == ACT_SILU) { const T s = 1.0f / (1.0f + exp(-x)); return s * (1.0f + x * (1.0f - s)); } \
    if (a == ACT_MISH) { /* tanh(softplus(x)) + x sigmoid(x) (1 - tanh(softplus(x))^2) */       \
        const T t = tanh(MAX0(T, x) + log1p(exp(-ABS(x)))), s = 1.0f / (1.0f + exp(-x));         \
        return t + x * s * (1.0f - t * t);                                                       \
    }                                                                                            \
    if (a == ACT_SIGMOID) return y * (1.0f - y);                                                 \
    if (a == ACT_HARD_SIGMOID) return ((y > 0.0f && y < 1.0f) ? ((T)(1.0f / 6.0f)) : (zero));    \
    if (a == ACT_HARD_SILU) /* torch's hardswish_backward: x/3 + 1/2 on [-3, 3] */               \
        return ((x < -3.0f) ? (zero) : ((x > 3.0f) ? (one) : (x * (1.0f / 3.0f) + 0.5f)));      \
    if (a == ACT_TANH) return 1.0f - y * y;                                                      \
    if (a == ACT_SOFTPLUS) return -expm1(-y); /* sigmoid(x) = 1 - exp(-softplus(x)) */           \
    if (a == ACT_SOFTSIGN) { const T t = 1.0f - ABS(y); return t * t; }                          \
    if (a == ACT_EXPONENTIAL) return y;                                                          \
    if (a == ACT_LOG_SIGMOID) return -expm1(y); /* 1 - sigmoid(x), sigmoid(x) = exp(y) */        \
    if (a == ACT_HARD_TANH) return ((y > -1.0f && y < 1.0f) ? (one) : (zero));                   \
    if (a == ACT_TANH_SHRINK) { const T t = tanh(x); return t * t; }                             \
    if (a == ACT_SQUAREPLUS) /* y / sqrt(x^2 + 4) = y^2 / (y^2 + 1) */                           \
        return 1.0f / (1.0f + 1.0f / (y * y));                                                   \
    if (a == ACT_SPARSE_PLUS) /* (x + 1) / 2 = sqrt(y) on (-1, 1) */                             \
        return ((y >= 1.0f) ? (one) : (sqrt(y)));                                                \
    if (a == ACT_SOFT_SHRINK || a == ACT_HARD_SHRINK) return ((y != 0.0f) ? (one) : (zero));     \
    return one;                                                                                  \
}

// Only the widths the program uses: the elementwise width EW, and in the CPU GEMM programs
// their register tiles' VW and gemm_nt's float4. A compiler whose target lacks a width's
// registers warns that such functions change the ABI, and PoCL 3.0 can then crash (float16
// on AMD Zen 4, which its LLVM 14 compiles for as znver3, without AVX-512).
#ifndef EW
#error "EW (the elementwise vector width) is defined by the engine (engine/backend/ops.py)"
#endif
DEFINE_ACTIVATIONS(float, act_fwd, act_grad)
#if EW == 4 || defined(VW)
DEFINE_ACTIVATIONS(float4, act_fwd4, act_grad4)
#endif
#if EW == 8 || (defined(VW) && VW == 8)
DEFINE_ACTIVATIONS(float8, act_fwd8, act_grad8)
#endif
#if EW == 16 || (defined(VW) && VW == 16)
DEFINE_ACTIVATIONS(float16, act_fwd16, act_grad16)
#endif

// The max of each row of a block (vector.cl RB_*: x is the block's first row, rb_n_ its row
// count) and log(sum(exp(x - max))): x - max - that is a log-softmax without x - (max + log
// sum)'s rounding, which at logits of 1e4 and more loses the log sum in max's last bit.
inline EWT rb_rowmax(__global const float* x, const int cols, const int rb_n_) {
    EWT m = RB_GATHER(x, cols);
    for (int j = 1; j < cols; j++) { const EWT v = RB_GATHER(x + j, cols); m = v > m ? v : m; }
    return m;
}
inline EWT rb_logsumexp_from(__global const float* x, const int cols, const int rb_n_,
                             const EWT m) {
    EWT s = 0.0f;
    for (int j = 0; j < cols; j++) s += exp(RB_GATHER(x + j, cols) - m);
    return log(s);
}
