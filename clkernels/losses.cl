// Losses on blocks of EW rows per work-item (vector.cl RB_*: column j of the block is one
// vector, so exp and log run once per column, not per element; a row is the last axis of an
// output). Each writes the rows' losses to loss[r] and the gradient, already multiplied by
// `scale` (= loss weight / number of rows), to grad. Keras semantics: losses average over the
// last axis, then over rows. Global ceil(rows / EW).
// Cross-entropy on probabilities follows Keras: renormalise, clip to [eps, 1-eps].

#define EPS 1e-7f

// Softmax + cross-entropy from logits, numerically stable (log-sum-exp). sparse: t holds class
// indices.
__kernel void softmax_xent_logits(__global const float* z, __global const float* t,
                                  const int cols, const int sparse, const float scale,
                                  __global float* loss, __global float* grad, const int rows)
{
    RB_START(rows)
    __global const float* zr = z + rb_r0_ * cols;
    __global float* gr = grad + rb_r0_ * cols;
    // log-softmax as (z - max) - log sum: max + log sum rounds away the log sum at logits of
    // 1e4 and more
    const EWT m = rb_rowmax(zr, cols, rb_n_);
    const EWT ls = rb_logsumexp_from(zr, cols, rb_n_, m);
    const EWT one = 1.0f, zero = 0.0f;
    if (sparse) {
        const EWT y = RB_GATHER(t + rb_r0_, 1);
        EWT zy = zero;
        for (int j = 0; j < cols; j++) {
            const EWT zj = RB_GATHER(zr + j, cols) - m;
            zy = y == (float)j ? zj : zy;
            RB_SCATTER((exp(zj - ls) - (y == (float)j ? one : zero)) * scale, gr + j, cols)
        }
        RB_SCATTER(ls - zy, loss + rb_r0_, 1)
    } else {
        __global const float* tr = t + rb_r0_ * cols;
        EWT l = zero, tsum = zero;
        for (int j = 0; j < cols; j++) {
            const EWT tj = RB_GATHER(tr + j, cols);
            l += tj * (ls - (RB_GATHER(zr + j, cols) - m));
            tsum += tj;
        }
        RB_SCATTER(l, loss + rb_r0_, 1)
        for (int j = 0; j < cols; j++)
            RB_SCATTER((exp((RB_GATHER(zr + j, cols) - m) - ls) * tsum - RB_GATHER(tr + j, cols))
                       * scale, gr + j, cols)
    }
}

// the row block's target at column j: one-hot from the class indices (sparse) or t's column
#define XENT_T(j) \
    (sparse ? (y == (float)(j) ? one : zero) : RB_GATHER(t + rb_r0_ * cols + (j), cols))

// Cross-entropy on probabilities p (not logits).
__kernel void xent_probs(__global const float* p, __global const float* t, const int cols,
                         const int sparse, const float scale,
                         __global float* loss, __global float* grad, const int rows)
{
    RB_START(rows)
    __global const float* pr = p + rb_r0_ * cols;
    __global float* gr = grad + rb_r0_ * cols;
    const EWT one = 1.0f, zero = 0.0f;
    EWT S = zero;
    for (int j = 0; j < cols; j++) S += RB_GATHER(pr + j, cols);
    const EWT y = sparse ? RB_GATHER(t + rb_r0_, 1) : -one;
    EWT l = zero, gq = zero;  // gq = sum_i g_i q_i
    for (int j = 0; j < cols; j++) {
        const EWT tj = XENT_T(j);
        const EWT q = RB_GATHER(pr + j, cols) / S;
        const EWT qc = CLIP(EWT, q, EPS, 1.0f - EPS);
        l -= tj * log(qc);
        const EWT g = (q > EPS && q < 1.0f - EPS) ? -tj / q : zero;
        gq += g * q;
    }
    RB_SCATTER(l, loss + rb_r0_, 1)
    for (int j = 0; j < cols; j++) {
        const EWT tj = XENT_T(j);
        const EWT q = RB_GATHER(pr + j, cols) / S;
        const EWT g = (q > EPS && q < 1.0f - EPS) ? -tj / q : zero;
        RB_SCATTER((g - gq) / S * scale, gr + j, cols)
    }
}

// Binary cross-entropy from logits: max(z,0) - z t + log(1 + exp(-|z|)).
__kernel void bce_logits(__global const float* z, __global const float* t, const int cols,
                         const float scale, __global float* loss, __global float* grad,
                         const int rows)
{
    RB_START(rows)
    const int i0 = rb_r0_ * cols;
    EWT l = 0.0f;
    for (int j = 0; j < cols; j++) {
        const EWT zi = RB_GATHER(z + i0 + j, cols), ti = RB_GATHER(t + i0 + j, cols);
        l += MAX0(EWT, zi) - zi * ti + log1p(exp(-ABS(zi)));
        RB_SCATTER((1.0f / (1.0f + exp(-zi)) - ti) * scale / cols, grad + i0 + j, cols)
    }
    RB_SCATTER(l / cols, loss + rb_r0_, 1)
}

__kernel void bce_probs(__global const float* p, __global const float* t, const int cols,
                        const float scale, __global float* loss, __global float* grad,
                        const int rows)
{
    RB_START(rows)
    const int i0 = rb_r0_ * cols;
    const EWT zero = 0.0f;
    EWT l = zero;
    for (int j = 0; j < cols; j++) {
        const EWT pi = RB_GATHER(p + i0 + j, cols), ti = RB_GATHER(t + i0 + j, cols);
        const EWT pc = CLIP(EWT, pi, EPS, 1.0f - EPS);
        l -= ti * log(pc) + (1.0f - ti) * log(1.0f - pc);
        RB_SCATTER((pi > EPS && pi < 1.0f - EPS) ? (pc - ti) / (pc * (1.0f - pc)) * scale / cols
                   : zero, grad + i0 + j, cols)
    }
    RB_SCATTER(l / cols, loss + rb_r0_, 1)
}

// Regression losses, per element d = y - t, averaged over the row. kind 0: squared error;
// 1: absolute error; 2: Huber (0.5 d^2 where |d| <= delta, else delta (|d| - 0.5 delta)).
__kernel void regression(__global const float* y, __global const float* t, const int cols,
                         const float scale, __global float* loss, __global float* grad,
                         const int kind, const float delta, const int rows)
{
    RB_START(rows)
    const int i0 = rb_r0_ * cols;
    EWT l = 0.0f;
    for (int j = 0; j < cols; j++) {
        const EWT d = RB_GATHER(y + i0 + j, cols) - RB_GATHER(t + i0 + j, cols), a = ABS(d);
        EWT li, gi;
        if (kind == 0) { li = d * d; gi = 2.0f * d; }
        else if (kind == 1) { li = a; gi = SIGN(EWT, d); }
        else {
            li = a <= delta ? 0.5f * d * d : delta * (a - 0.5f * delta);
            gi = a <= delta ? d : delta * SIGN(EWT, d);
        }
        l += li;
        RB_SCATTER(gi * scale / cols, grad + i0 + j, cols)
    }
    RB_SCATTER(l / cols, loss + rb_r0_, 1)
}

// KL divergence, Keras: sum t * log(t / p) with both clipped to [eps, 1].
__kernel void kld(__global const float* p, __global const float* t, const int cols,
                  const float scale, __global float* loss, __global float* grad, const int rows)
{
    RB_START(rows)
    const int i0 = rb_r0_ * cols;
    const EWT zero = 0.0f;
    EWT l = zero;
    for (int j = 0; j < cols; j++) {
        const EWT pj = RB_GATHER(p + i0 + j, cols);
        const EWT tc = CLIP(EWT, RB_GATHER(t + i0 + j, cols), EPS, 1.0f);
        const EWT pc = CLIP(EWT, pj, EPS, 1.0f);
        l += tc * log(tc / pc);
        RB_SCATTER((pj > EPS && pj < 1.0f) ? -tc / pc * scale : zero, grad + i0 + j, cols)
    }
    RB_SCATTER(l, loss + rb_r0_, 1)
}
