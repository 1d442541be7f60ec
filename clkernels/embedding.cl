// Embedding lookup: y[r, d] = W[idx[r], d]; indices outside [0, V) give zeros.
__kernel void embed(__global const float* idx, __global const float* W, __global float* y,
                    const int V, const int D)
{
    const int d = get_global_id(0), r = get_global_id(1);
    const int k = (int)idx[r];
    y[r * D + d] = (k >= 0 && k < V) ? W[k * D + d] : 0.0f;
}

// dW[idx[r], d] += dy[r, d] for every row r, after dW was zeroed. One work-item per column d owns
// that column, so repeated indices never race.
__kernel void embed_grad(__global const float* idx, __global const float* dy, __global float* dW,
                         const int rows, const int V, const int D)
{
    const int d = get_global_id(0);
    for (int r = 0; r < rows; r++) {
        const int k = (int)idx[r];
        if (k >= 0 && k < V) dW[k * D + d] += dy[r * D + d];
    }
}
