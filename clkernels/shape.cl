// Index-map layers (Permute, RepeatVector, Cropping, ZeroPadding, UpSampling): the engine turns
// each layer's declared numpy transform into a per-sample map y[i] = x[map[i]] (or 0 where
// map[i] < 0), and its inverse in CSR form so the backward pass gathers without atomics.

// Global size (out_size, n).
__kernel void gather_map(__global const float* x, __global float* y, __global const int* map,
                         const int in_size, const int out_size)
{
    const int i = get_global_id(0), b = get_global_id(1);
    const int m = map[i];
    y[b * out_size + i] = m >= 0 ? x[b * in_size + m] : 0.0f;
}

// dx[b, j] (+)= sum of dy[b, i] over the outputs i that read input j (src[offs[j]..offs[j+1])).
// Global size (in_size, n).
__kernel void gather_map_grad(__global const float* dy, __global float* dx,
                              __global const int* offs, __global const int* src,
                              const int in_size, const int out_size, const int accumulate)
{
    const int j = get_global_id(0), b = get_global_id(1);
    float s = 0.0f;
    for (int t = offs[j]; t < offs[j + 1]; t++) s += dy[b * out_size + src[t]];
    __global float* d = dx + b * in_size + j;
    if (accumulate) s += *d;
    *d = s;
}
