// Recurrent layers. Sequences are kept time-major inside the layer, (T, n, features), so one time
// step is a contiguous block at an element offset. Gate order as Keras: LSTM [i, f, c, o],
// GRU [z, r, h] with reset_after (the reset gate multiplies the recurrent projection).

// A mask (optional: has_mask 0 passes a dummy M): M holds the token ids (n, T), batch-major;
// a step whose id is 0 is skipped (Keras' Embedding(mask_zero=True)): the state is carried
// over from the step before and the cell's gradients there are zero. ts: the step's index in
// M (T-1-t for a direction reading backwards).
inline int kept(__global const float* M, const int has_mask, const int b, const int T,
                const int ts)
{
    return !has_mask || M[b * T + ts] != 0.0f;
}

// (n, T, D) -> (T, n, D); global size (D, T*n). reverse: step t of y is step T-1-t of x (the
// backward direction of a Bidirectional layer reads the sequence from its end).
__kernel void to_time_major(__global const float* x, __global float* y, const int n, const int T,
                            const int reverse)
{
    const int d = get_global_id(0), r = get_global_id(1), D = get_global_size(0);
    const int t = r / n, b = r % n;
    const int ts = reverse ? T - 1 - t : t;
    y[r * D + d] = x[(b * T + ts) * D + d];
}

// (T, n, D) -> (n, T, D), adding when accumulate; reverse: step t of y goes to step T-1-t of x.
// Global size (D, T*n).
__kernel void from_time_major(__global const float* y, __global float* x, const int n,
                              const int T, const int accumulate, const int reverse)
{
    const int d = get_global_id(0), r = get_global_id(1), D = get_global_size(0);
    const int t = r / n, b = r % n;
    const int ts = reverse ? T - 1 - t : t;
    float v = y[r * D + d];
    __global float* o = x + (b * T + ts) * D + d;
    if (accumulate) v += *o;
    *o = v;
}

// W floats at p as a vector (vector.cl)
#define RNN_LD(W, p) CAT(VLOAD, W)(p)
#define RNN_ST(W, v, p) CAT(VSTORE, W)((v), (p))

// SimpleRNN: h = act(z) for one step block at offset off (h_{t-1} carried where masked);
// global size n*u / W: W units of one sample per work-item (rnn_act_ew: EW, when u is a
// multiple of it; one unit per work-item ran PoCL's scalar library calls, 40 us a step at 128
// units, batch 32, 4x the step's GEMM).
#define RNN_ACT(NAME, W, T, SUF)                                                            \
__kernel void NAME(const int act, __global const float* z, __global float* h, const int off, \
                   __global const float* M, const int has_mask, const int T_, const int ts, \
                   const int u, const int first)                                           \
{                                                                                          \
    const int g = get_global_id(0) * W, i = off + g;                                       \
    if (kept(M, has_mask, g / u, T_, ts)) {                                                \
        RNN_ST(W, CAT(act_fwd, SUF)(act, RNN_LD(W, z + i)), h + i)                         \
    } else {                                                                               \
        const T zero = 0.0f;                                                               \
        RNN_ST(W, first ? zero : RNN_LD(W, h + i - get_global_size(0) * W), h + i)         \
    }                                                                                      \
}

// dz = dh * act'(.) through the output h, for one step block; a masked step passes dh on to
// h_{t-1} instead. Global size n*u / W, as rnn_act.
#define RNN_ACT_GRAD(NAME, W, T, SUF)                                                       \
__kernel void NAME(const int act, __global const float* h, __global float* dh,             \
                   __global float* dz, const int off, __global const float* M,             \
                   const int has_mask, const int T_, const int ts, const int u,            \
                   const int first)                                                        \
{                                                                                          \
    const int g = get_global_id(0) * W, i = off + g;                                       \
    if (kept(M, has_mask, g / u, T_, ts)) {                                                \
        const T y = RNN_LD(W, h + i);                                                      \
        RNN_ST(W, RNN_LD(W, dh + i) * CAT(act_grad, SUF)(act, y, y), dz + i)               \
    } else {                                                                               \
        RNN_ST(W, (T)(0.0f), dz + i)                                                       \
        if (!first) {                                                                      \
            __global float* dp = dh + i - get_global_size(0) * W;                          \
            RNN_ST(W, RNN_LD(W, dp) + RNN_LD(W, dh + i), dp)                               \
        }                                                                                  \
    }                                                                                      \
}
RNN_ACT(rnn_act, 1, float, )
RNN_ACT_GRAD(rnn_act_grad, 1, float, )
#if EW != 1
RNN_ACT(rnn_act_ew, EW, EWT, EW_SUF)
RNN_ACT_GRAD(rnn_act_grad_ew, EW, EWT, EW_SUF)
#endif

// y[b, t, :] = 0 where step t of sample b is masked (a Bidirectional's outputs, Keras'
// zero_output_for_mask); global size (D, n*T), y batch-major (n, T, D).
__kernel void zero_masked(__global float* y, __global const float* M)
{
    const int d = get_global_id(0), r = get_global_id(1), D = get_global_size(0);
    if (M[r] == 0.0f) y[r * D + d] = 0.0f;
}

inline float sigm(const float x) { return 1.0f / (1.0f + exp(-x)); }

// The cell's activation g~ and its derivative through its output: tanh first (the LSTM's own;
// ConvLSTM2D may pass another), on float or the EW-wide vector. tanh as 2 sigmoid(2x) - 1:
// one exp, which PoCL runs faster than its tanh (an LSTM's 64 cells at 128 units, batch 32:
// 1.29 -> 1.07 ms); absolute error ~1e-7.
#if EW != 1
// e^x for the cells' vector form without PoCL's library call (an LSTM's 64 cells at 128 units,
// batch 32, on PoCL 3.0: 1.19 -> 0.94 ms): x = n ln2 + r, |r| <= ln2 / 2, e^r by Cephes' expf
// polynomial (within ~1e-7 relative), 2^n written into the exponent bits; x clamped to
// [-87, 88]. GPUs (EW 1) keep exp.
inline EWT rnn_exp_ew(EWT x)
{
    x = x < -87.0f ? (EWT)(-87.0f) : x;
    x = x > 88.0f ? (EWT)(88.0f) : x;
    const EWT t = x * 1.44269504088896341f + 12582912.0f;  /* 1.5 2^23: rounds to n */
    const EWT n = t - 12582912.0f;
    const EWT r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
    EWT p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * CAT(as_float, EW)((CAT(as_int, EW)(t) - 0x4B400000 + 127) << 23);
}
#endif
#define DEFINE_LSTM_ACT(T, SUF, EXP)                                                        \
inline T CAT(lstm_act, SUF)(const int a, const T x) {                                       \
    if (a == ACT_TANH) return 2.0f / (1.0f + EXP(-2.0f * x)) - 1.0f;                       \
    return CAT(act_fwd, SUF)(a, x);                                                        \
}                                                                                          \
inline T CAT(lstm_act_grad, SUF)(const int a, const T x, const T y) {                       \
    if (a == ACT_TANH) return 1.0f - y * y;                                                \
    return CAT(act_grad, SUF)(a, x, y);                                                    \
}
DEFINE_LSTM_ACT(float, , exp)
#if EW != 1
DEFINE_LSTM_ACT(EWT, EW_SUF, rnn_exp_ew)
#endif

// LSTM step: g (n, 4u) holds pre-activations at goff and receives the activated gates;
// c_t = f c_{t-1} + i g~, h_t = o act(c_t), g~ = act(.) (tanh; a ConvLSTM2D's may be another
// whose derivative its output gives, as rnn_act_grad's). first: c_{t-1} = 0. Global size
// (u / W, n): W units of one sample per work-item (lstm_cell_ew: EW, when u is a multiple of
// it). NOTE: one unit per work-item, with the activation chosen at run time among all of
// act_fwd's, PoCL ran scalar library calls: 125 us a step at 128 units, batch 32, 6x the GRU's.
#define LSTM_CELL(NAME, W, T, SUF, EXP)                                                     \
__kernel void NAME(__global float* g, const int goff, __global float* C, const int cprev,   \
                   const int cnow, __global float* H, const int hnow, const int first,      \
                   __global const float* M, const int has_mask, const int T_, const int ts, \
                   const int act)                                                           \
{                                                                                           \
    const int j = get_global_id(0) * W, b = get_global_id(1);                               \
    const int u = get_global_size(0) * W, o_ = b * u + j;                                   \
    if (!kept(M, has_mask, b, T_, ts)) {  /* carried: c_t = c_{t-1}, h_t = h_{t-1} */       \
        const int nu = u * get_global_size(1);                                              \
        const T zero = 0.0f;                                                                \
        RNN_ST(W, first ? zero : RNN_LD(W, C + cprev + o_), C + cnow + o_)                  \
        RNN_ST(W, first ? zero : RNN_LD(W, H + hnow - nu + o_), H + hnow + o_)              \
        return;                                                                             \
    }                                                                                       \
    __global float* gr = g + goff + b * 4 * u + j;                                          \
    const T i = 1.0f / (1.0f + EXP(-RNN_LD(W, gr)));                                        \
    const T f = 1.0f / (1.0f + EXP(-RNN_LD(W, gr + u)));                                    \
    const T cc = CAT(lstm_act, SUF)(act, RNN_LD(W, gr + 2 * u));                            \
    const T o = 1.0f / (1.0f + EXP(-RNN_LD(W, gr + 3 * u)));                                \
    RNN_ST(W, i, gr) RNN_ST(W, f, gr + u)                                                   \
    RNN_ST(W, cc, gr + 2 * u) RNN_ST(W, o, gr + 3 * u)                                      \
    const T cp = first ? (T)(0.0f) : RNN_LD(W, C + cprev + o_);                             \
    const T c = f * cp + i * cc;                                                            \
    RNN_ST(W, c, C + cnow + o_)                                                             \
    RNN_ST(W, o * CAT(lstm_act, SUF)(act, c), H + hnow + o_)                                \
}

// LSTM step backward. dh: total gradient of h_t (at dhoff in dH); dc: carried gradient of c_t
// (read and replaced by that of c_{t-1}); writes pre-activation gate gradients to dG at goff.
// Global size (u / W, n), as lstm_cell.
#define LSTM_CELL_GRAD(NAME, W, T, SUF, EXP)                                                \
__kernel void NAME(__global const float* g, const int goff, __global const float* C,        \
                   const int cprev, const int cnow, __global float* dH, const int dhoff,    \
                   __global float* dc, __global float* dG, const int first,                 \
                   __global const float* M, const int has_mask, const int T_, const int ts, \
                   const int act)                                                           \
{                                                                                           \
    const int j = get_global_id(0) * W, b = get_global_id(1);                               \
    const int u = get_global_size(0) * W, o_ = b * u + j;                                   \
    __global const float* gr = g + goff + b * 4 * u + j;                                    \
    __global float* dr = dG + goff + b * 4 * u + j;                                         \
    if (!kept(M, has_mask, b, T_, ts)) {  /* carried: dc passes on, dh goes to h_{t-1} */   \
        const T zero = 0.0f;                                                                \
        RNN_ST(W, zero, dr) RNN_ST(W, zero, dr + u) RNN_ST(W, zero, dr + 2 * u)             \
        RNN_ST(W, zero, dr + 3 * u)                                                         \
        if (!first) {                                                                       \
            __global float* dp = dH + dhoff - u * get_global_size(1) + o_;                  \
            RNN_ST(W, RNN_LD(W, dp) + RNN_LD(W, dH + dhoff + o_), dp)                       \
        }                                                                                   \
        return;                                                                             \
    }                                                                                       \
    const T i = RNN_LD(W, gr), f = RNN_LD(W, gr + u), cc = RNN_LD(W, gr + 2 * u),           \
            o = RNN_LD(W, gr + 3 * u);                                                      \
    const T c = RNN_LD(W, C + cnow + o_), tc = CAT(lstm_act, SUF)(act, c);                  \
    const T cp = first ? (T)(0.0f) : RNN_LD(W, C + cprev + o_);                             \
    const T dh = RNN_LD(W, dH + dhoff + o_);                                                \
    const T dct = RNN_LD(W, dc + o_) + dh * o * CAT(lstm_act_grad, SUF)(act, c, tc);        \
    RNN_ST(W, dct * cc * i * (1.0f - i), dr)                                                \
    RNN_ST(W, dct * cp * f * (1.0f - f), dr + u)                                            \
    /* through its output: no NEEDS_INPUT */                                                \
    RNN_ST(W, dct * i * CAT(lstm_act_grad, SUF)(act, cc, cc), dr + 2 * u)                   \
    RNN_ST(W, dh * tc * o * (1.0f - o), dr + 3 * u)                                         \
    RNN_ST(W, dct * f, dc + o_)                                                             \
}
LSTM_CELL(lstm_cell, 1, float, , exp)
LSTM_CELL_GRAD(lstm_cell_grad, 1, float, , exp)
#if EW != 1
LSTM_CELL(lstm_cell_ew, EW, EWT, EW_SUF, rnn_exp_ew)
LSTM_CELL_GRAD(lstm_cell_grad_ew, EW, EWT, EW_SUF, rnn_exp_ew)
#endif

// GRU step (reset_after): xw = x W + b_in (n, 3u) at xoff, hu = h_{t-1} U + b_rec at huoff;
// stores z, r, h~ into gates at xoff; h_t into H at hnow. first: h_{t-1} = 0.
__kernel void gru_cell(__global const float* XW, __global const float* HU, const int xoff,
                       __global float* gates, __global float* H, const int hprev,
                       const int hnow, const int first, __global const float* M,
                       const int has_mask, const int T, const int ts)
{
    const int j = get_global_id(0), b = get_global_id(1), u = get_global_size(0);
    if (!kept(M, has_mask, b, T, ts)) {  // carried: h_t = h_{t-1}
        H[hnow + b * u + j] = first ? 0.0f : H[hprev + b * u + j];
        return;
    }
    __global const float* x = XW + xoff + b * 3 * u;
    __global const float* h = HU + xoff + b * 3 * u;
    const float z = sigm(x[j] + h[j]);
    const float r = sigm(x[u + j] + h[u + j]);
    const float hh = tanh(x[2 * u + j] + r * h[2 * u + j]);
    __global float* gr = gates + xoff + b * 3 * u;
    gr[j] = z; gr[u + j] = r; gr[2 * u + j] = hh;
    const float hp = first ? 0.0f : H[hprev + b * u + j];
    H[hnow + b * u + j] = z * hp + (1.0f - z) * hh;
}

// GRU step backward: writes d(xw) and d(hu) for the step, and the direct part of dh_{t-1}
// (dh * z) into dH at hprev (added; the recurrent part comes from a GEMM).
__kernel void gru_cell_grad(__global const float* HU, __global const float* gates,
                            const int xoff, __global const float* H, const int hprev,
                            __global float* dH, const int dhoff, __global float* dXW,
                            __global float* dHU, const int first, __global const float* M,
                            const int has_mask, const int T, const int ts)
{
    const int j = get_global_id(0), b = get_global_id(1), u = get_global_size(0);
    if (!kept(M, has_mask, b, T, ts)) {  // carried: dh goes to h_{t-1}, the cell gets none
        __global float* dx = dXW + xoff + b * 3 * u;
        __global float* du = dHU + xoff + b * 3 * u;
        dx[j] = 0.0f; dx[u + j] = 0.0f; dx[2 * u + j] = 0.0f;
        du[j] = 0.0f; du[u + j] = 0.0f; du[2 * u + j] = 0.0f;
        if (!first) dH[hprev + b * u + j] += dH[dhoff + b * u + j];
        return;
    }
    __global const float* gr = gates + xoff + b * 3 * u;
    const float z = gr[j], r = gr[u + j], hh = gr[2 * u + j];
    const float hp = first ? 0.0f : H[hprev + b * u + j];
    const float dh = dH[dhoff + b * u + j];
    const float pz = dh * (hp - hh) * z * (1.0f - z);
    const float ph = dh * (1.0f - z) * (1.0f - hh * hh);
    const float hu_h = HU[xoff + b * 3 * u + 2 * u + j];
    const float pr = ph * hu_h * r * (1.0f - r);
    __global float* dx = dXW + xoff + b * 3 * u;
    __global float* du = dHU + xoff + b * 3 * u;
    dx[j] = pz; dx[u + j] = pr; dx[2 * u + j] = ph;
    du[j] = pz; du[u + j] = pr; du[2 * u + j] = ph * r;
    if (!first) dH[hprev + b * u + j] += dh * z;
}
