// Elementwise merges. op: 0 add, 1 subtract, 2 multiply, 3 maximum, 4 minimum.
// y = a (op) b; y may alias a.
__kernel void binary(const int op, __global const float* a, __global const float* b,
                     __global float* y)
{
    const int i = get_global_id(0);
    const float u = a[i], v = b[i];
    y[i] = op == 0 ? u + v : op == 1 ? u - v : op == 2 ? u * v : op == 3 ? fmax(u, v) : fmin(u, v);
}

// dx (+)= alpha * g
__kernel void scaled(__global const float* g, __global float* dx, const float alpha,
                     const int accumulate)
{
    const int i = get_global_id(0);
    float v = alpha * g[i];
    if (accumulate) v += dx[i];
    dx[i] = v;
}

// Maximum/Minimum backward: the gradient goes to the first input equal to the output.
// claimed marks elements already given to an earlier input.
__kernel void pick_grad(__global const float* x, __global const float* y,
                        __global const float* dy, __global float* dx, __global float* claimed,
                        const int first, const int accumulate)
{
    const int i = get_global_id(0);
    const int taken = first ? 0 : claimed[i] != 0.0f;
    const int mine = !taken && x[i] == y[i];
    if (first || mine) claimed[i] = (taken || mine) ? 1.0f : 0.0f;
    float v = mine ? dy[i] : 0.0f;
    if (accumulate) v += dx[i];
    dx[i] = v;
}

// Row-wise dot product: y[r] = sum_k a[r, k] * b[r, k].
__kernel void row_dot(__global const float* a, __global const float* b, __global float* y,
                      const int cols)
{
    const int r = get_global_id(0);
    float s = 0.0f;
    for (int k = 0; k < cols; k++) s += a[r * cols + k] * b[r * cols + k];
    y[r] = s;
}

// dx[r, k] (+)= dy[r] * other[r, k]
__kernel void row_dot_grad(__global const float* dy, __global const float* other,
                           __global float* dx, const int cols, const int accumulate)
{
    const int k = get_global_id(0), r = get_global_id(1);
    float v = dy[r] * other[r * cols + k];
    if (accumulate) v += dx[r * cols + k];
    dx[r * cols + k] = v;
}
