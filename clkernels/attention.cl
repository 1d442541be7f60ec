// The attention layers' ops (clkernels/attention.cl): see engine/backend/attention_ops.py

// Batched strided matrix product over a batch of N x H matrices (samples x heads):
//   C[b] = alpha * A[b] . B[b]  (+ C[b] when accumulate),  b = n * H + h
// Every operand is addressed by strides, so a head's slice of a (steps, heads, dim) tensor and
// transposed operands are read in place: A[b][i][k] is A[n * a_n + h * a_h + i * a_i + k * a_k],
// B[b][k][j] and C[b][i][j] likewise. Columns j_start .. N - 1 of C (the register tiles,
// bgemm_tiles.cl, leave this portable form their ragged right strip). Global size
// (ceil((N - j_start) / BT), ceil(M / BT), batch * H); each work-item computes a BT x BT block.
#define BT 4
__kernel void bgemm(const int M, const int N, const int K, const int H, const int j_start,
                    __global const float* A, const int a_n, const int a_h, const int a_i,
                    const int a_k,
                    __global const float* B, const int b_n, const int b_h, const int b_k,
                    const int b_j,
                    __global float* C, const int c_n, const int c_h, const int c_i,
                    const int c_j,
                    const float alpha, const int accumulate)
{
    const int j0 = j_start + get_global_id(0) * BT;
    const int i0 = get_global_id(1) * BT;
    const int b = get_global_id(2);
    if (i0 >= M || j0 >= N) return;
    const int n = b / H, h = b - (b / H) * H;
    __global const float* a = A + n * a_n + h * a_h;
    __global const float* bb = B + n * b_n + h * b_h;
    __global float* c = C + n * c_n + h * c_h;
    const int im = M - i0 < BT ? M - i0 : BT;
    const int jn = N - j0 < BT ? N - j0 : BT;
    float acc[BT][BT];
    for (int r = 0; r < BT; r++)
        for (int q = 0; q < BT; q++) acc[r][q] = 0.0f;
    for (int k = 0; k < K; k++) {
        float av[BT], bv[BT];
        #pragma unroll
        for (int r = 0; r < BT; r++) av[r] = r < im ? a[(i0 + r) * a_i + k * a_k] : 0.0f;
        #pragma unroll
        for (int q = 0; q < BT; q++) bv[q] = q < jn ? bb[k * b_k + (j0 + q) * b_j] : 0.0f;
        #pragma unroll
        for (int r = 0; r < BT; r++) {
            #pragma unroll
            for (int q = 0; q < BT; q++) acc[r][q] = fma(av[r], bv[q], acc[r][q]);
        }
    }
    for (int r = 0; r < im; r++) {
        for (int q = 0; q < jn; q++) {
            __global float* out = c + (i0 + r) * c_i + (j0 + q) * c_j;
            const float v = alpha * acc[r][q];
            *out = accumulate ? *out + v : v;
        }
    }
}

// bgemm's B for the register tiles, which read B with unit column stride: the (rows x cols)
// matrix (n, h) of a strided batch (element (r, c) at n * s_n + h * s_h + r * s_r + c * s_c)
// into dst contiguously, matrix b = n * H + h at b * rows * cols. Global (cols, rows, batch * H).
__kernel void bgemm_pack(__global const float* src, const int s_n, const int s_h, const int s_r,
                         const int s_c, __global float* dst, const int rows, const int cols,
                         const int H)
{
    const int c = get_global_id(0), r = get_global_id(1), b = get_global_id(2);
    const int n = b / H, h = b - (b / H) * H;
    dst[(b * rows + r) * cols + c] = src[n * s_n + h * s_h + r * s_r + c * s_c];
}

// Row softmax of the scores s (rows of `cols`, rows of one matrix: tq) into p (may alias s).
// causal: row i of each matrix attends to columns j <= i only (Keras' use_causal_mask); the
// others get exactly 0, as exp(score - 1e9) does in float32. Global size >= rows.
__kernel void attn_softmax(__global const float* s, __global float* p, const int cols,
                           const int tq, const int causal, const int rows)
{
    const int r = get_global_id(0);
    if (r >= rows) return;
    const int i = r % tq;
    const int last = causal && i < cols - 1 ? i : cols - 1;
    __global const float* sr = s + r * cols;
    __global float* pr = p + r * cols;
    float m = sr[0];
    for (int j = 1; j <= last; j++) m = sr[j] > m ? sr[j] : m;
    float sum = 0.0f;
    for (int j = 0; j <= last; j++) sum += exp(sr[j] - m);
    const float inv = 1.0f / sum;
    for (int j = 0; j < cols; j++) pr[j] = j <= last ? exp(sr[j] - m) * inv : 0.0f;
}

// The same without a mask, EW columns as one vector (cols a multiple of EW): one exp call per
// vector, not per element (PoCL calls its library for each: a (32, 4 heads, 128, 128) softmax
// took 12 ms one column at a time).
__kernel void attn_softmax_ew(__global const float* s, __global float* p, const int cols,
                              const int rows)
{
    const int r = get_global_id(0);
    if (r >= rows) return;
    __global const float* sr = s + r * cols;
    __global float* pr = p + r * cols;
    EWT mv = CAT(VLOAD, EW)(sr);
    for (int j = EW; j < cols; j += EW) mv = VMAX_(CAT(VLOAD, EW)(sr + j), mv);
    const float m = LANES_MAX(EW, mv);
    EWT sv = 0.0f;
    for (int j = 0; j < cols; j += EW) sv += exp(CAT(VLOAD, EW)(sr + j) - m);
    const float inv = 1.0f / LANES_SUM(EW, sv);
    for (int j = 0; j < cols; j += EW)
        CAT(VSTORE, EW)(exp(CAT(VLOAD, EW)(sr + j) - m) * inv, pr + j)
}

// The softmax's backward per row: ds = p * (dp - sum(p * dp)); ds may alias dp.
__kernel void attn_softmax_grad(__global const float* p, __global const float* dp,
                                __global float* ds, const int cols, const int rows)
{
    const int r = get_global_id(0);
    if (r >= rows) return;
    __global const float* pr = p + r * cols;
    __global const float* gr = dp + r * cols;
    __global float* dr = ds + r * cols;
    float dot = 0.0f;
    for (int j = 0; j < cols; j++) dot += pr[j] * gr[j];
    for (int j = 0; j < cols; j++) dr[j] = pr[j] * (gr[j] - dot);
}

// Additive (Bahdanau) scores, and Luong's concat scores:
//   S[n][i][j] = c * sum_d w[d] * tanh(s * (q[n][i][d] + k[n][j][d]))
// w: a vector of D (AdditiveAttention's scale) when has_w, else 1; s and c: scalars held in
// one-element buffers (Attention's scale and concat_score_weight) when has_s / has_c, else 1.
// Global size (Tv, Tq, N).
#define ADD_FACTORS                                                                       \
    const float s_ = has_s ? sc[0] : 1.0f;                                                \
    const float c_ = has_c ? cw[0] : 1.0f;
__kernel void additive_scores(__global const float* q, __global const float* k,
                              __global float* S, const int tq, const int tv, const int D,
                              __global const float* w, const int has_w,
                              __global const float* sc, const int has_s,
                              __global const float* cw, const int has_c)
{
    const int j = get_global_id(0), i = get_global_id(1), n = get_global_id(2);
    ADD_FACTORS
    __global const float* qr = q + (n * tq + i) * D;
    __global const float* kr = k + (n * tv + j) * D;
    float acc = 0.0f;
    for (int d = 0; d < D; d++) {
        const float t = tanh(s_ * (qr[d] + kr[d]));
        acc += (has_w ? w[d] : 1.0f) * t;
    }
    S[(n * tq + i) * tv + j] = c_ * acc;
}

// The backward of additive_scores, one side at a time: for each element (n, a, d) of x (the
// query, or the key), over the other side's steps b:
//   dx = sum_b g * s with g = dS * c * w[d] * (1 - t^2), t = tanh(s * (x + other))
// and, when parts, the weights' terms per element, summed afterwards: pw for dw[d]
// (dS * c * t), ps for ds (g * (x + other)), pc for dc (dS * w[d] * t). dS of sample n is
// (Tq, Tv): element (a, b) at a * ds_a + b * ds_b. Global size (D, steps of x, N).
__kernel void additive_grad(__global const float* x, __global const float* other,
                            __global const float* dS, const int ta, const int tb,
                            const int D, const int ds_a, const int ds_b,
                            __global const float* w, const int has_w,
                            __global const float* sc, const int has_s,
                            __global const float* cw, const int has_c,
                            __global float* dx, const int want_dx, const int accumulate,
                            __global float* pw, __global float* ps, __global float* pc,
                            const int parts)
{
    const int d = get_global_id(0), a = get_global_id(1), n = get_global_id(2);
    ADD_FACTORS
    const float wd = has_w ? w[d] : 1.0f;
    const int row = n * ta + a;
    const float xv = x[row * D + d];
    __global const float* g_row = dS + n * ta * tb + a * ds_a;
    float gx = 0.0f, gw = 0.0f, gs = 0.0f, gc = 0.0f;
    for (int b = 0; b < tb; b++) {
        const float u = xv + other[(n * tb + b) * D + d];
        const float t = tanh(s_ * u);
        const float g = g_row[b * ds_b];
        const float gt = g * c_ * wd * (1.0f - t * t);
        gx += gt;
        gw += g * c_ * t;
        gs += gt * u;
        gc += g * wd * t;
    }
    if (want_dx) {
        const float v = gx * s_;
        dx[row * D + d] = accumulate ? dx[row * D + d] + v : v;
    }
    if (parts) {
        pw[row * D + d] = gw;
        ps[row * D + d] = gs;
        pc[row * D + d] = gc;
    }
}

// y = x * w[0] (a scalar weight on the device; y may be x).
__kernel void scale_by(__global const float* x, __global float* y, __global const float* w)
{
    const int i = get_global_id(0);
    y[i] = x[i] * w[0];
}

// PositionEmbedding: y[n][t][d] = W[t][d] for t < T (the first T of sequence_length rows),
// plus x when add (TokenAndPositionEmbedding adds it to the token vectors). Global size
// (T * D, N).
__kernel void position_forward(__global const float* W, __global const float* x,
                               __global float* y, const int TD, const int add)
{
    const int e = get_global_id(0), n = get_global_id(1);
    y[n * TD + e] = W[e] + (add ? x[n * TD + e] : 0.0f);
}

// Its weight gradient: dW[t][d] = sum_n dy[n][t][d] for t < T, 0 for the rows after.
// Global size (S * D).
__kernel void position_grad(__global const float* dy, __global float* dW, const int TD,
                            const int N)
{
    const int e = get_global_id(0);
    float acc = 0.0f;
    if (e < TD)
        for (int n = 0; n < N; n++) acc += dy[n * TD + e];
    dW[e] = acc;
}
