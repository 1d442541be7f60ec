// Elementwise activations. The ACT_* ids are #defined by the engine from its activation table
// (engine/activations.py) so Python and OpenCL cannot disagree.
// act_grad_from_y: the derivative expressed through the output y, so backward needs no stored input.

inline float act_fwd(const int a, const float x) {
    if (a == ACT_RELU) return fmax(x, 0.0f);
    if (a == ACT_SIGMOID) return 1.0f / (1.0f + exp(-x));
    if (a == ACT_TANH) return tanh(x);
    return x;  // ACT_LINEAR; ACT_SOFTMAX is row-wise, handled by softmax kernels
}

inline float act_grad_from_y(const int a, const float y) {
    if (a == ACT_RELU) return y > 0.0f ? 1.0f : 0.0f;
    if (a == ACT_SIGMOID) return y * (1.0f - y);
    if (a == ACT_TANH) return 1.0f - y * y;
    return 1.0f;
}

// log(sum(exp(x[0..cols)))) computed stably (max subtracted first).
inline float row_logsumexp(__global const float* x, const int cols) {
    float m = x[0];
    for (int j = 1; j < cols; j++) m = fmax(m, x[j]);
    float s = 0.0f;
    for (int j = 0; j < cols; j++) s += exp(x[j] - m);
    return m + log(s);
}
