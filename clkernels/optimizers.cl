// Optimizer updates, Keras 3 semantics. One work-item per parameter element.

// SGD with momentum: v = momentum*v - lr*g; w += v (nesterov: w += momentum*v - lr*g).
__kernel void sgd(__global float* w, __global const float* g, __global float* v,
                  const float lr, const float momentum, const int nesterov)
{
    const int i = get_global_id(0);
    if (momentum == 0.0f) { w[i] -= lr * g[i]; return; }
    const float vi = momentum * v[i] - lr * g[i];
    v[i] = vi;
    w[i] += nesterov ? momentum * vi - lr * g[i] : vi;
}

// Adam: alpha = lr * sqrt(1 - b2^t) / (1 - b1^t) computed on the host.
__kernel void adam(__global float* w, __global const float* g, __global float* m,
                   __global float* v, const float alpha, const float b1, const float b2,
                   const float eps)
{
    const int i = get_global_id(0);
    const float gi = g[i];
    const float mi = m[i] + (gi - m[i]) * (1.0f - b1);
    const float vi = v[i] + (gi * gi - v[i]) * (1.0f - b2);
    m[i] = mi;
    v[i] = vi;
    w[i] -= alpha * mi / (sqrt(vi) + eps);
}
