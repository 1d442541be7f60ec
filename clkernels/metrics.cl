// Metrics, one work-item per row, writing a per-row value; reduce_sum adds a batch into an
// accumulator on the device so the host reads metrics back only when it wants to.

inline int argmax_row(__global const float* v, const int cols)
{
    int best = 0;
    for (int j = 1; j < cols; j++) if (v[j] > v[best]) best = j;
    return best;
}

__kernel void acc_sparse(__global const float* p, __global const float* t, const int cols,
                         __global float* out)
{
    const int r = get_global_id(0);
    out[r] = argmax_row(p + r * cols, cols) == (int)t[r] ? 1.0f : 0.0f;
}

__kernel void acc_categorical(__global const float* p, __global const float* t, const int cols,
                              __global float* out)
{
    const int r = get_global_id(0);
    out[r] = argmax_row(p + r * cols, cols) == argmax_row(t + r * cols, cols) ? 1.0f : 0.0f;
}

// Mean over the row of (p > threshold) == (t > 0.5).
__kernel void acc_binary(__global const float* p, __global const float* t, const int cols,
                         const float threshold, __global float* out)
{
    const int r = get_global_id(0);
    float s = 0.0f;
    for (int j = 0; j < cols; j++)
        s += ((p[r * cols + j] > threshold) == (t[r * cols + j] > 0.5f)) ? 1.0f : 0.0f;
    out[r] = s / cols;
}

__kernel void abs_err(__global const float* p, __global const float* t, const int cols,
                      __global float* out)
{
    const int r = get_global_id(0);
    float s = 0.0f;
    for (int j = 0; j < cols; j++) s += fabs(p[r * cols + j] - t[r * cols + j]);
    out[r] = s / cols;
}

__kernel void sq_err(__global const float* p, __global const float* t, const int cols,
                     __global float* out)
{
    const int r = get_global_id(0);
    float s = 0.0f;
    for (int j = 0; j < cols; j++) {
        const float d = p[r * cols + j] - t[r * cols + j];
        s += d * d;
    }
    out[r] = s / cols;
}

// acc[slot] += sum(v[0..n)); a single work-item (n is one batch of rows).
__kernel void reduce_sum(__global const float* v, const int n, __global float* acc, const int slot)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += v[i];
    acc[slot] += s;
}
