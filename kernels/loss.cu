#include "common.cuh"

// loss.cu: softmax cross-entropy, fused, forward and backward.
//
// Primitives: softmax_xent and softmax_xent_backward. For K rows of C
// logits x and K target classes t:
//     lse_k  = log sum_c exp(x_kc)  =  m_k + log sum_c exp(x_kc - m_k),  m_k = max_c x_kc
//     loss_k = lse_k - x_k,t_k
//     dloss_k / dx_kc = softmax(x_k)_c - [c = t_k] = exp(x_kc - lse_k) - [c = t_k]
// Subtracting the maximum keeps exp from overflowing (exp(89) is inf in float32).

constexpr int MAX_THREADS = 256;  // the forward's block: a power of two up to this

// x: (K, C), t: (K,) class indices, losses and lse: (K,). One block per row; the block's
// threads (a power of two, 32 to 256, picked by the wrapper from C) share the row's C
// logits and reduce in shared memory, twice: the maximum, then the sum of exponentials.
// Grid: K blocks. Needs C >= 1.
template <typename T>
__device__ void softmax_xent(const T* x, const long long* t, T* losses, T* lse, int K, int C) {
    __shared__ double buf[MAX_THREADS];
    int k = blockIdx.x;
    int tid = threadIdx.x;
    const T* row = x + (long long)(k < K ? k : 0) * C;  // a valid row for every thread

    T m = row[0];  // the row's maximum; row[0] is a neutral start (every row has C >= 1)
    for (int c = tid; c < C; c += blockDim.x) m = max_t(m, row[c]);
    m = (T)block_max(buf, m);

    double s = 0;  // sum of exp(x - m), in double: C terms, as in reduce.cu
    for (int c = tid; c < C; c += blockDim.x) s += exp_t(row[c] - m);
    s = block_sum(buf, s);

    if (k < K && tid == 0) {
        T log_s = log_t((T)s);
        long long target = t[k];
        // The NumPy reference (primitives.softmax_xent) computes log s - (x_t - m); the same order keeps float32 close to it.
        losses[k] = (target >= 0 && target < C) ? log_s - (row[target] - m) : nan_t<T>();
        lse[k] = m + log_s;
    }
}

// grad = (exp(x - lse[:, None]) - onehot(t)) * scale[:, None]; x, grad: (K, C),
// t, lse, scale: (K,). One thread per element, grid-stride.
template <typename T>
__device__ void softmax_xent_backward(const T* x, const long long* t, const T* lse, const T* scale,
                                      T* grad, int K, int C) {
    long long n = (long long)K * C;
    for (long long i = global_index(); i < n; i += grid_stride()) {
        long long k = i / C, c = i % C;
        T p = exp_t(x[i] - lse[k]);  // softmax(x_k)_c
        grad[i] = (c == t[k] ? p - T(1) : p) * scale[k];
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

extern "C" __global__ void softmax_xent_backward_f32(const float* x, const long long* t, const float* lse,
                                                     const float* scale, float* grad, int K, int C) {
    softmax_xent_backward<float>(x, t, lse, scale, grad, K, C);
}
extern "C" __global__ void softmax_xent_backward_f64(const double* x, const long long* t, const double* lse,
                                                     const double* scale, double* grad, int K, int C) {
    softmax_xent_backward<double>(x, t, lse, scale, grad, K, C);
}
