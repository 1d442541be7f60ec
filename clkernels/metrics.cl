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

/* Mean absolute and squared error of a row. A target row is `tcols` wide: cols (one value
   per output column) or 1 (a class index, broadcast against every column, as Keras does). */
__kernel void abs_err(__global const float* p, __global const float* t, const int cols,
                      const int tcols, __global float* out)
{
    const int r = get_global_id(0);
    float s = 0.0f;
    for (int j = 0; j < cols; j++)
        s += fabs(p[r * cols + j] - t[r * tcols + (tcols == 1 ? 0 : j)]);
    out[r] = s / cols;
}

__kernel void sq_err(__global const float* p, __global const float* t, const int cols,
                     const int tcols, __global float* out)
{
    const int r = get_global_id(0);
    float s = 0.0f;
    for (int j = 0; j < cols; j++) {
        const float d = p[r * cols + j] - t[r * tcols + (tcols == 1 ? 0 : j)];
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

// Top-k: the target class is among the k largest (ties count as in, as TF's in_top_k).
__kernel void top_k(__global const float* p, __global const float* t, const int cols,
                    const int k, const int sparse, __global float* out)
{
    const int r = get_global_id(0);
    __global const float* pr = p + r * cols;
    const int y = sparse ? (int)t[r] : argmax_row(t + r * cols, cols);
    if (y < 0 || y >= cols) {  /* not a class index of this output: a miss, never a read */
        out[r] = 0.0f;         /* past the row */
        return;
    }
    int above = 0;
    for (int j = 0; j < cols; j++) above += pr[j] > pr[y];
    out[r] = above < k ? 1.0f : 0.0f;
}

// Per-row counts over the row's elements, each thresholded: which 0: true positives,
// 1: predicted positives, 2: actual positives.
__kernel void binary_counts(__global const float* p, __global const float* t, const int cols,
                            const float threshold, const int which, __global float* out)
{
    const int r = get_global_id(0);
    float s = 0.0f;
    for (int j = 0; j < cols; j++) {
        const int pp = p[r * cols + j] > threshold, ap = t[r * cols + j] > 0.5f;
        s += which == 0 ? (pp && ap) : which == 1 ? pp : ap;
    }
    out[r] = s;
}

// ROC counts at T thresholds (Keras': -eps, 1/(T-1), ..., (T-2)/(T-1), 1+eps). One work-item
// per threshold over all n elements; acc[slot + 4i + (tp, fp, fn, tn)] += counts.
__kernel void auc_counts(__global const float* p, __global const float* t, const int n,
                         const int T, __global float* acc, const int slot)
{
    const int i = get_global_id(0);
    const float thr = i == 0 ? -1e-7f : i == T - 1 ? 1.0f + 1e-7f : (float)i / (T - 1);
    float tp = 0.0f, fp = 0.0f, fn = 0.0f, tn = 0.0f;
    for (int e = 0; e < n; e++) {
        const int pp = p[e] > thr, ap = t[e] > 0.5f;
        tp += pp && ap; fp += pp && !ap; fn += !pp && ap; tn += !pp && !ap;
    }
    __global float* a = acc + slot + 4 * i;
    a[0] += tp; a[1] += fp; a[2] += fn; a[3] += tn;
}
