// Losses, one work-item per row (a row is the last axis of an output). Each writes the row's loss
// to loss[r] and the gradient, already multiplied by `scale` (= loss weight / number of rows),
// to grad. Keras semantics: losses average over the last axis, then over rows.
// Cross-entropy on probabilities follows Keras: renormalise, clip to [eps, 1-eps].

#define EPS 1e-7f

// Softmax + cross-entropy from logits, numerically stable (log-sum-exp), on blocks of EW rows
// (vector.cl RB_*). sparse: t holds class indices.
__kernel void softmax_xent_logits(__global const float* z, __global const float* t,
                                  const int cols, const int sparse, const float scale,
                                  __global float* loss, __global float* grad, const int rows)
{
    RB_START(rows)
    __global const float* zr = z + rb_r0_ * cols;
    __global float* gr = grad + rb_r0_ * cols;
    const EWT lse = rb_logsumexp(zr, cols, rb_n_);
    const EWT one = 1.0f, zero = 0.0f;
    if (sparse) {
        const EWT y = RB_GATHER(t + rb_r0_, 1);
        EWT zy = zero;
        for (int j = 0; j < cols; j++) {
            const EWT zj = RB_GATHER(zr + j, cols);
            zy = y == (float)j ? zj : zy;
            RB_SCATTER((exp(zj - lse) - (y == (float)j ? one : zero)) * scale, gr + j, cols)
        }
        RB_SCATTER(lse - zy, loss + rb_r0_, 1)
    } else {
        __global const float* tr = t + rb_r0_ * cols;
        EWT l = zero, tsum = zero;
        for (int j = 0; j < cols; j++) {
            const EWT tj = RB_GATHER(tr + j, cols);
            l += tj * (lse - RB_GATHER(zr + j, cols));
            tsum += tj;
        }
        RB_SCATTER(l, loss + rb_r0_, 1)
        for (int j = 0; j < cols; j++)
            RB_SCATTER((exp(RB_GATHER(zr + j, cols) - lse) * tsum - RB_GATHER(tr + j, cols))
                       * scale, gr + j, cols)
    }
}

// Cross-entropy on probabilities p (not logits).
__kernel void xent_probs(__global const float* p, __global const float* t, const int cols,
                         const int sparse, const float scale,
                         __global float* loss, __global float* grad)
{
    const int r = get_global_id(0);
    __global const float* pr = p + r * cols;
    __global float* gr = grad + r * cols;
    float S = 0.0f;
    for (int j = 0; j < cols; j++) S += pr[j];
    const int y = sparse ? (int)t[r] : -1;
    float l = 0.0f, gq = 0.0f;  // gq = sum_i g_i q_i
    for (int j = 0; j < cols; j++) {
        const float tj = sparse ? (j == y ? 1.0f : 0.0f) : t[r * cols + j];
        const float q = pr[j] / S;
        const float qc = clamp(q, EPS, 1.0f - EPS);
        l -= tj * log(qc);
        const float g = (q > EPS && q < 1.0f - EPS) ? -tj / q : 0.0f;
        gq += g * q;
    }
    loss[r] = l;
    for (int j = 0; j < cols; j++) {
        const float tj = sparse ? (j == y ? 1.0f : 0.0f) : t[r * cols + j];
        const float q = pr[j] / S;
        const float g = (q > EPS && q < 1.0f - EPS) ? -tj / q : 0.0f;
        gr[j] = (g - gq) / S * scale;
    }
}

// Binary cross-entropy from logits: max(z,0) - z t + log(1 + exp(-|z|)).
__kernel void bce_logits(__global const float* z, __global const float* t, const int cols,
                         const float scale, __global float* loss, __global float* grad)
{
    const int r = get_global_id(0);
    float l = 0.0f;
    for (int j = 0; j < cols; j++) {
        const int i = r * cols + j;
        const float zi = z[i], ti = t[i];
        l += fmax(zi, 0.0f) - zi * ti + log1p(exp(-fabs(zi)));
        grad[i] = (1.0f / (1.0f + exp(-zi)) - ti) * scale / cols;
    }
    loss[r] = l / cols;
}

__kernel void bce_probs(__global const float* p, __global const float* t, const int cols,
                        const float scale, __global float* loss, __global float* grad)
{
    const int r = get_global_id(0);
    float l = 0.0f;
    for (int j = 0; j < cols; j++) {
        const int i = r * cols + j;
        const float pi = p[i], ti = t[i];
        const float pc = clamp(pi, EPS, 1.0f - EPS);
        l -= ti * log(pc) + (1.0f - ti) * log(1.0f - pc);
        grad[i] = (pi > EPS && pi < 1.0f - EPS) ? (pc - ti) / (pc * (1.0f - pc)) * scale / cols : 0.0f;
    }
    loss[r] = l / cols;
}

// Regression losses, per element d = y - t, averaged over the row. kind 0: squared error;
// 1: absolute error; 2: Huber (0.5 d^2 where |d| <= delta, else delta (|d| - 0.5 delta)).
__kernel void regression(__global const float* y, __global const float* t, const int cols,
                         const float scale, __global float* loss, __global float* grad,
                         const int kind, const float delta)
{
    const int r = get_global_id(0);
    float l = 0.0f;
    for (int j = 0; j < cols; j++) {
        const int i = r * cols + j;
        const float d = y[i] - t[i], a = fabs(d);
        float li, gi;
        if (kind == 0) { li = d * d; gi = 2.0f * d; }
        else if (kind == 1) { li = a; gi = sign(d); }
        else if (a <= delta) { li = 0.5f * d * d; gi = d; }
        else { li = delta * (a - 0.5f * delta); gi = delta * sign(d); }
        l += li;
        grad[i] = gi * scale / cols;
    }
    loss[r] = l / cols;
}

// KL divergence, Keras: sum t * log(t / p) with both clipped to [eps, 1].
__kernel void kld(__global const float* p, __global const float* t, const int cols,
                  const float scale, __global float* loss, __global float* grad)
{
    const int r = get_global_id(0);
    float l = 0.0f;
    for (int j = 0; j < cols; j++) {
        const int i = r * cols + j;
        const float tc = clamp(t[i], EPS, 1.0f), pc = clamp(p[i], EPS, 1.0f);
        l += tc * log(tc / pc);
        grad[i] = (p[i] > EPS && p[i] < 1.0f) ? -tc / pc * scale : 0.0f;
    }
    loss[r] = l;
}
