// Lambda layer: the engine #defines LAMBDA_Y(a, b, c, d) and LAMBDA_D{A,B,C,D}(a, b, c, d) from
// the checked expression and its symbolic derivatives (engine/expr.py) in the program prelude.
// Up to four inputs of equal shape; unused ones are passed as a dummy buffer and never read.

__kernel void lambda_forward(const int k, __global const float* A, __global const float* B,
                             __global const float* C, __global const float* D,
                             __global float* y)
{
    const int i = get_global_id(0);
    const float a = A[i], b = k > 1 ? B[i] : 0.0f, c = k > 2 ? C[i] : 0.0f, d = k > 3 ? D[i] : 0.0f;
    y[i] = LAMBDA_Y(a, b, c, d);
}

// d{A..D}[i] (+)= dy[i] * dLAMBDA/d{a..d}; mask bit j set: write input j's gradient, acc bit j: add.
__kernel void lambda_backward(const int k, __global const float* A, __global const float* B,
                              __global const float* C, __global const float* D,
                              __global const float* dy, __global float* dA, __global float* dB,
                              __global float* dC, __global float* dD, const int mask,
                              const int acc)
{
    const int i = get_global_id(0);
    const float a = A[i], b = k > 1 ? B[i] : 0.0f, c = k > 2 ? C[i] : 0.0f, d = k > 3 ? D[i] : 0.0f;
    const float g = dy[i];
    if (mask & 1) dA[i] = ((acc & 1) ? dA[i] : 0.0f) + g * LAMBDA_DA(a, b, c, d);
    if (mask & 2) dB[i] = ((acc & 2) ? dB[i] : 0.0f) + g * LAMBDA_DB(a, b, c, d);
    if (mask & 4) dC[i] = ((acc & 4) ? dC[i] : 0.0f) + g * LAMBDA_DC(a, b, c, d);
    if (mask & 8) dD[i] = ((acc & 8) ? dD[i] : 0.0f) + g * LAMBDA_DD(a, b, c, d);
}
