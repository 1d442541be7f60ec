// The Primitives category's own kernels (engine/layers/primitives.py, launched by
// engine/backend/primitive_ops.py): a reduction along one axis and its backward, and normal
// samples from Philox. Built after dropout.cl, whose philox4x32_10 it uses. MatMul runs on
// attention.cl's batched strided GEMM, Weight on attention.cl's position_forward and
// elementwise.cl's col_sums, Slice on elementwise.cl's copy2d.

#define REDUCE_SUM 0
#define REDUCE_MEAN 1
#define REDUCE_MAX 2

// y[o][i] = op over l of x[o][l][i], x viewed as (outer, L, inner); one work-item per (o, i)
// line, `lines` = outer * inner (the grid may be padded past it).
__kernel void reduce_axis_forward(__global const float* x, __global float* y, const int L,
                                  const int inner, const int op, const int lines)
{
    const int g = get_global_id(0);
    if (g >= lines) return;
    const int o = g / inner, i = g - o * inner;
    __global const float* p = x + (size_t)o * L * inner + i;
    float acc = op == REDUCE_MAX ? p[0] : 0.0f;
    for (int l = 0; l < L; l++) {
        const float v = p[(size_t)l * inner];
        acc = op == REDUCE_MAX ? (v > acc ? v : acc) : acc + v;
    }
    y[g] = op == REDUCE_MEAN ? acc / (float)L : acc;
}

// dx[o][l][i] (+)= dy[o][i] (sum), dy[o][i] / L (mean), or dy[o][i] at the first maximum of
// the line and 0 elsewhere (max: the maximum is found again, as the forward found it).
__kernel void reduce_axis_backward(__global const float* x, __global const float* dy,
                                   __global float* dx, const int L, const int inner,
                                   const int op, const int accumulate, const int lines)
{
    const int g = get_global_id(0);
    if (g >= lines) return;
    const int o = g / inner, i = g - o * inner;
    const size_t base = (size_t)o * L * inner + i;
    int arg = -1;
    if (op == REDUCE_MAX) {
        float best = x[base];
        arg = 0;
        for (int l = 1; l < L; l++) {
            const float v = x[base + (size_t)l * inner];
            if (v > best) { best = v; arg = l; }
        }
    }
    const float d = op == REDUCE_MEAN ? dy[g] / (float)L : dy[g];
    for (int l = 0; l < L; l++) {
        const size_t e = base + (size_t)l * inner;
        float v = (op != REDUCE_MAX || l == arg) ? d : 0.0f;
        if (accumulate) v += dx[e];
        dx[e] = v;
    }
}

// y[i] = mean + stddev * N(0, 1): normals by Box-Muller from Philox, key (seed, salt), counter
// (i / 2, step, lane, 0), two normals from each draw's four words; one work-item per element.
// lane keeps these draws apart from the others the same key and step give (dropout.cl uses
// lanes 0 to 2).
__kernel void random_normal(__global float* y, const float mean, const float stddev,
                            const uint seed, const uint salt, const uint step, const uint lane)
{
    const int i = get_global_id(0);
    const uint4 u = philox4x32_10((uint4)((uint)i >> 1, step, lane, 0u), (uint2)(seed, salt));
    const int second = i & 1;
    const float u1 = ((float)((second ? u.z : u.x) >> 8) + 0.5f) * (1.0f / 16777216.0f);
    const float u2 = (float)((second ? u.w : u.y) >> 8) * (1.0f / 16777216.0f);
    y[i] = mean + stddev * sqrt(-2.0f * log(u1)) * cospi(2.0f * u2);
}
