// Dropout with a counter-based RNG: Philox-4x32-10 (Salmon et al., Random123).
// key = (seed, salt), counter = (group, step, 0, 0): masks are reproducible for a seed and the
// backward pass regenerates them instead of storing them. Each work-item serves 4 elements.

inline uint4 philox4x32_10(const uint4 ctr, const uint2 key)
{
    // scalars and 64-bit products: with mul_hi (a library call, vector.cl) and a uint4 rebuilt
    // each round, PoCL 3.0's code took 2.6x as long (dropout over 8192 elements: 170 -> 65 us)
    uint c0 = ctr.x, c1 = ctr.y, c2 = ctr.z, c3 = ctr.w, k0 = key.x, k1 = key.y;
    #pragma unroll
    for (int r = 0; r < 10; r++) {
        const ulong p0 = (ulong)0xD2511F53u * c0, p1 = (ulong)0xCD9E8D57u * c2;
        const uint n0 = (uint)(p1 >> 32) ^ c1 ^ k0, n2 = (uint)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint)p1;
        c3 = (uint)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return (uint4)(c0, c1, c2, c3);
}

// Known-answer check: out[0..3] = philox(ctr, key).
__kernel void philox_kat(const uint c0, const uint c1, const uint c2, const uint c3,
                         const uint k0, const uint k1, __global uint* out)
{
    const uint4 r = philox4x32_10((uint4)(c0, c1, c2, c3), (uint2)(k0, k1));
    out[0] = r.x; out[1] = r.y; out[2] = r.z; out[3] = r.w;
}

// y = x * mask / (1 - rate) (forward) or dx (+)= dy * mask / (1 - rate) (backward).
__kernel void dropout(__global const float* x, __global float* y, const int n, const float rate,
                      const uint seed, const uint salt, const uint step, const int accumulate)
{
    const int g = get_global_id(0);
    const uint4 u = philox4x32_10((uint4)((uint)g, step, 0u, 0u), (uint2)(seed, salt));
    const uint us[4] = {u.x, u.y, u.z, u.w};
    const float keep_scale = 1.0f / (1.0f - rate);
    for (int e = 0; e < 4; e++) {
        const int i = g * 4 + e;
        if (i >= n) break;
        const float uniform = (float)(us[e] >> 8) * (1.0f / 16777216.0f);
        float v = uniform >= rate ? x[i] * keep_scale : 0.0f;
        if (accumulate) v += y[i];
        y[i] = v;
    }
}

// Dropout with shared masks: element i uses mask m = (i / (S*C)) * C + i % C, i.e. one mask per
// (sample, channel) over S spatial positions (SpatialDropout2D). One work-item per element.
__kernel void dropout_grouped(__global const float* x, __global float* y, const float rate,
                              const uint seed, const uint salt, const uint step, const int S,
                              const int C, const int accumulate)
{
    const int i = get_global_id(0);
    const uint m = (uint)((i / (S * C)) * C + i % C);
    const uint4 u = philox4x32_10((uint4)(m >> 2, step, 1u, 0u), (uint2)(seed, salt));
    const uint us[4] = {u.x, u.y, u.z, u.w};
    const float uniform = (float)(us[m & 3u] >> 8) * (1.0f / 16777216.0f);
    float v = uniform >= rate ? x[i] / (1.0f - rate) : 0.0f;
    if (accumulate) v += y[i];
    y[i] = v;
}

// y = x + stddev * N(0, 1), normals by Box-Muller from Philox; one work-item per element.
__kernel void gaussian_noise(__global const float* x, __global float* y, const float stddev,
                             const uint seed, const uint salt, const uint step)
{
    const int i = get_global_id(0);
    const uint4 u = philox4x32_10((uint4)((uint)i >> 1, step, 2u, 0u), (uint2)(seed, salt));
    const int second = i & 1;
    const float u1 = ((float)((second ? u.z : u.x) >> 8) + 0.5f) * (1.0f / 16777216.0f);
    const float u2 = (float)((second ? u.w : u.y) >> 8) * (1.0f / 16777216.0f);
    y[i] = x[i] + stddev * sqrt(-2.0f * log(u1)) * cospi(2.0f * u2);
}
