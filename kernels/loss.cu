#include "common.cuh"

// loss.cu: softmax cross-entropy, fused, forward and backward.
//
// Primitives: softmax_xent and softmax_xent_backward. For K rows of C
// logits x and K target classes t, with m_k = max_c x_kc and s_k = sum_c exp(x_kc - m_k):
//     lse_k  = log sum_c exp(x_kc)  =  m_k + log s_k
//     loss_k = lse_k - x_k,t_k
//     dloss_k / dx_kc = softmax(x_k)_c - [c = t_k],   softmax(x_k)_c = exp(x_kc - m_k) / s_k
// Subtracting the maximum keeps exp from overflowing (exp(89) is inf in float32). The
// backward recomputes m and s rather than using exp(x - lse): lse is rounded to T, and near
// 1e5 a float32 lse is off by up to 0.004, which would scale the whole row by exp(0.004).

constexpr int MAX_THREADS = 256;  // a block: a power of two up to this

// The maximum m and the sum s of exp(x - m) of one row of C >= 1 logits, reduced by the whole
// block in buf (MAX_THREADS doubles); every thread of the block gets both.
template <typename T>
__device__ void row_max_and_sum(double* buf, const T* row, int C, T* m_out, double* s_out) {
    int tid = threadIdx.x;
    T m = row[0];  // row[0] is a neutral start (every row has C >= 1)
    for (int c = tid; c < C; c += blockDim.x) m = max_t(m, row[c]);
    m = (T)block_max(buf, m);

    double s = 0;  // sum of exp(x - m), in double: C terms, as in reduce.cu
    for (int c = tid; c < C; c += blockDim.x) s += exp_t(row[c] - m);
    *m_out = m;
    *s_out = block_sum(buf, s);
}

// x: (K, C), t: (K,) class indices, losses and lse: (K,). One block per row; the block's
// threads (a power of two, 32 to 256, picked by the wrapper from C) share the row's C
// logits and reduce in shared memory, twice: the maximum, then the sum of exponentials.
// Grid: K blocks. Needs C >= 1.
template <typename T>
__device__ void softmax_xent(const T* x, const long long* t, T* losses, T* lse, int K, int C) {
    __shared__ double buf[MAX_THREADS];
    int k = blockIdx.x;
    const T* row = x + (long long)(k < K ? k : 0) * C;  // a valid row for every thread
    T m;
    double s;
    row_max_and_sum(buf, row, C, &m, &s);

    if (k < K && threadIdx.x == 0) {
        T log_s = log_t((T)s);
        long long target = t[k];
        // The NumPy reference (primitives.softmax_xent) computes log s - (x_t - m); the same order keeps float32 close to it.
        losses[k] = (target >= 0 && target < C) ? log_s - (row[target] - m) : nan_t<T>();
        lse[k] = m + log_s;
    }
}

// grad = (exp(x - m) / s - onehot(t)) * scale[:, None]; x, grad: (K, C), t, scale: (K,).
// Blocks as the forward's: one per row, m and s reduced as there, then each thread writes
// its columns. Grid: K blocks. Needs C >= 1.
template <typename T>
__device__ void softmax_xent_backward(const T* x, const long long* t, const T* scale,
                                      T* grad, int K, int C) {
    __shared__ double buf[MAX_THREADS];
    int k = blockIdx.x;
    const T* row = x + (long long)(k < K ? k : 0) * C;  // a valid row for every thread
    T m;
    double s;
    row_max_and_sum(buf, row, C, &m, &s);

    if (k < K) {
        T* g = grad + (long long)k * C;
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            T p = exp_t(row[c] - m) / (T)s;  // softmax(x_k)_c
            g[c] = (c == t[k] ? p - T(1) : p) * scale[k];
        }
    }
}

// -- entry points: one per dtype ---------------------------------------------------------

extern "C" __global__ void softmax_xent_f32(const float* x, const long long* t, float* losses,
                                            float* lse, int K, int C) {
    softmax_xent<float>(x, t, losses, lse, K, C);
}
extern "C" __global__ void softmax_xent_f64(const double* x, const long long* t, double* losses,
                                            double* lse, int K, int C) {
    softmax_xent<double>(x, t, losses, lse, K, C);
}

extern "C" __global__ void softmax_xent_backward_f32(const float* x, const long long* t,
                                                     const float* scale, float* grad, int K, int C) {
    softmax_xent_backward<float>(x, t, scale, grad, K, C);
}
extern "C" __global__ void softmax_xent_backward_f64(const double* x, const long long* t,
                                                     const double* scale, double* grad, int K, int C) {
    softmax_xent_backward<double>(x, t, scale, grad, K, C);
}
