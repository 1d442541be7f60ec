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

// SimpleRNN: h = act(z) for one step block at offset off (h_{t-1} carried where masked);
// global size n*u.
__kernel void rnn_act(const int act, __global const float* z, __global float* h, const int off,
                      __global const float* M, const int has_mask, const int T, const int ts,
                      const int u, const int first)
{
    const int g = get_global_id(0), i = off + g;
    if (kept(M, has_mask, g / u, T, ts)) h[i] = act_fwd(act, z[i]);
    else h[i] = first ? 0.0f : h[i - get_global_size(0)];
}

// dz = dh * act'(.) through the output h, for one step block; a masked step passes dh on to
// h_{t-1} instead.
__kernel void rnn_act_grad(const int act, __global const float* h, __global float* dh,
                           __global float* dz, const int off, __global const float* M,
                           const int has_mask, const int T, const int ts, const int u,
                           const int first)
{
    const int g = get_global_id(0), i = off + g;
    if (kept(M, has_mask, g / u, T, ts)) {
        dz[i] = dh[i] * act_grad(act, h[i], h[i]);
    } else {
        dz[i] = 0.0f;
        if (!first) dh[i - get_global_size(0)] += dh[i];
    }
}

// y[b, t, :] = 0 where step t of sample b is masked (a Bidirectional's outputs, Keras'
// zero_output_for_mask); global size (D, n*T), y batch-major (n, T, D).
__kernel void zero_masked(__global float* y, __global const float* M)
{
    const int d = get_global_id(0), r = get_global_id(1), D = get_global_size(0);
    if (M[r] == 0.0f) y[r * D + d] = 0.0f;
}

inline float sigm(const float x) { return 1.0f / (1.0f + exp(-x)); }

// LSTM step: g (n, 4u) holds pre-activations at goff and receives the activated gates;
// c_t = f c_{t-1} + i g~, h_t = o act(c_t), g~ = act(.) (tanh; a ConvLSTM2D's may be another
// whose derivative its output gives, as rnn_act_grad's). first: c_{t-1} = 0. Global size (u, n).
__kernel void lstm_cell(__global float* g, const int goff, __global float* C, const int cprev,
                        const int cnow, __global float* H, const int hnow, const int first,
                        __global const float* M, const int has_mask, const int T, const int ts,
                        const int act)
{
    const int j = get_global_id(0), b = get_global_id(1), u = get_global_size(0);
    if (!kept(M, has_mask, b, T, ts)) {  // carried: c_t = c_{t-1}, h_t = h_{t-1}
        const int nu = u * get_global_size(1);
        C[cnow + b * u + j] = first ? 0.0f : C[cprev + b * u + j];
        H[hnow + b * u + j] = first ? 0.0f : H[hnow - nu + b * u + j];
        return;
    }
    __global float* gr = g + goff + b * 4 * u;
    const float i = sigm(gr[j]), f = sigm(gr[u + j]), cc = act_fwd(act, gr[2 * u + j]),
                o = sigm(gr[3 * u + j]);
    gr[j] = i; gr[u + j] = f; gr[2 * u + j] = cc; gr[3 * u + j] = o;
    const float cp = first ? 0.0f : C[cprev + b * u + j];
    const float c = f * cp + i * cc;
    C[cnow + b * u + j] = c;
    H[hnow + b * u + j] = o * act_fwd(act, c);
}

// LSTM step backward. dh: total gradient of h_t (at dhoff in dH); dc: carried gradient of c_t
// (read and replaced by that of c_{t-1}); writes pre-activation gate gradients to dG at goff.
__kernel void lstm_cell_grad(__global const float* g, const int goff, __global const float* C,
                             const int cprev, const int cnow, __global float* dH,
                             const int dhoff, __global float* dc, __global float* dG,
                             const int first, __global const float* M, const int has_mask,
                             const int T, const int ts, const int act)
{
    const int j = get_global_id(0), b = get_global_id(1), u = get_global_size(0);
    __global const float* gr = g + goff + b * 4 * u;
    __global float* dr = dG + goff + b * 4 * u;
    if (!kept(M, has_mask, b, T, ts)) {  // carried: dc passes on, dh goes to h_{t-1}
        dr[j] = 0.0f; dr[u + j] = 0.0f; dr[2 * u + j] = 0.0f; dr[3 * u + j] = 0.0f;
        if (!first) dH[dhoff - u * get_global_size(1) + b * u + j] += dH[dhoff + b * u + j];
        return;
    }
    const float i = gr[j], f = gr[u + j], cc = gr[2 * u + j], o = gr[3 * u + j];
    const float c = C[cnow + b * u + j], tc = act_fwd(act, c);
    const float cp = first ? 0.0f : C[cprev + b * u + j];
    const float dh = dH[dhoff + b * u + j];
    const float dct = dc[b * u + j] + dh * o * act_grad(act, c, tc);
    dr[j] = dct * cc * i * (1.0f - i);
    dr[u + j] = dct * cp * f * (1.0f - f);
    dr[2 * u + j] = dct * i * act_grad(act, cc, cc);  // through its output: no NEEDS_INPUT
    dr[3 * u + j] = dh * tc * o * (1.0f - o);
    dc[b * u + j] = dct * f;
}

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
