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

// Adam's moment estimates, shared by Adam, AdamW and Nadam:
// m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2; returns (m, v) after storing them.
inline float2 update_moments(__global float* m, __global float* v, const int i, const float g,
                             const float b1, const float b2)
{
    const float mi = m[i] + (g - m[i]) * (1.0f - b1);
    const float vi = v[i] + (g * g - v[i]) * (1.0f - b2);
    m[i] = mi;
    v[i] = vi;
    return (float2)(mi, vi);
}

// Adam: alpha = lr * sqrt(1 - b2^t) / (1 - b1^t) computed on the host.
__kernel void adam(__global float* w, __global const float* g, __global float* m,
                   __global float* v, const float alpha, const float b1, const float b2,
                   const float eps)
{
    const int i = get_global_id(0);
    const float2 mv = update_moments(m, v, i, g[i], b1, b2);
    w[i] -= alpha * mv.x / (sqrt(mv.y) + eps);
}

// RMSprop (Keras 3): v = rho v + (1-rho) g^2; centered: a = rho a + (1-rho) g, denom = v - a^2;
// inc = lr g / sqrt(denom + eps); with momentum: m = momentum m + inc, w -= m; else w -= inc.
__kernel void rmsprop(__global float* w, __global const float* g, __global float* v,
                      __global float* a, __global float* m, const float lr, const float rho,
                      const float momentum, const float eps, const int centered)
{
    const int i = get_global_id(0);
    const float gi = g[i];
    const float vi = rho * v[i] + (1.0f - rho) * gi * gi;
    v[i] = vi;
    float denom = vi;
    if (centered) {
        const float ai = rho * a[i] + (1.0f - rho) * gi;
        a[i] = ai;
        denom -= ai * ai;
    }
    const float inc = lr * gi / sqrt(denom + eps);
    if (momentum > 0.0f) {
        const float mi = momentum * m[i] + inc;
        m[i] = mi;
        w[i] -= mi;
    } else {
        w[i] -= inc;
    }
}

// Adagrad: acc += g^2; w -= lr g / sqrt(acc + eps).
__kernel void adagrad(__global float* w, __global const float* g, __global float* acc,
                      const float lr, const float eps)
{
    const int i = get_global_id(0);
    const float gi = g[i];
    const float ai = acc[i] + gi * gi;
    acc[i] = ai;
    w[i] -= lr * gi / sqrt(ai + eps);
}

// Nadam (Keras 3), coefficients from the host: c1 = u_{t+1} / (1 - prod u_{..t+1}),
// c2 = (1 - u_t) / (1 - prod u_{..t}), c3 = 1 / (1 - b2^t).
__kernel void nadam(__global float* w, __global const float* g, __global float* m,
                    __global float* v, const float lr, const float b1, const float b2,
                    const float c1, const float c2, const float c3, const float eps)
{
    const int i = get_global_id(0);
    const float2 mv = update_moments(m, v, i, g[i], b1, b2);
    w[i] -= lr * (c1 * mv.x + c2 * g[i]) / (sqrt(mv.y * c3) + eps);
}

// Decoupled weight decay, Keras 3: w -= w * decay * lr.
__kernel void decay(__global float* w, const float factor)
{
    const int i = get_global_id(0);
    w[i] -= w[i] * factor;
}

// Gradient clipping by value.
__kernel void clip_value(__global float* g, const float limit)
{
    const int i = get_global_id(0);
    g[i] = clamp(g[i], -limit, limit);
}

// acc[slot] += sum(g^2) (a single work-item; one parameter tensor).
__kernel void sum_squares(__global const float* g, const int n, __global float* acc,
                          const int slot)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += g[i] * g[i];
    acc[slot] += s;
}

// g *= min(1, limit / sqrt(acc[slot])) : clipping by norm with the norm kept on the device.
__kernel void clip_norm(__global float* g, __global const float* acc, const int slot,
                        const float limit)
{
    const int i = get_global_id(0);
    const float norm = sqrt(acc[slot]);
    if (norm > limit) g[i] *= limit / norm;
}

// Regularisation: dw += l1 * sign(w) + 2 * l2 * w.
__kernel void reg_grad(__global const float* w, __global float* dw, const float l1,
                       const float l2)
{
    const int i = get_global_id(0);
    dw[i] += l1 * sign(w[i]) + 2.0f * l2 * w[i];
}

// acc[slot] += weight * (l1 * sum|w| + l2 * sum w^2) (a single work-item).
__kernel void reg_penalty(__global const float* w, const int n, const float l1, const float l2,
                          const float weight, __global float* acc, const int slot)
{
    float a = 0.0f, b = 0.0f;
    for (int i = 0; i < n; i++) { a += fabs(w[i]); b += w[i] * w[i]; }
    acc[slot] += weight * (l1 * a + l2 * b);
}
