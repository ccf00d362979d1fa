#include "common.cuh"

// elman.cu: the Elman RNN cell's pointwise part, forward and backward.
//
// Twins: functional._elman and functional._elman_backward. The cell is
//     h' = act(a),   a = x W_ih^T + b_ih + h W_hh^T + b_hh   (the matmuls run before),
// with act = tanh or relu. One thread per element of the (B, H) batch, grid-stride.

// a, h_new: n = B * H elements.   h' = tanh(a) or relu(a) = max(a, 0).
// h_new may be a itself (rnn_cell overwrites the pre-activation): each thread reads its
// element before writing it, so that is safe.
template <typename T>
__device__ void elman_fwd(const T* a, T* h_new, long long n, int relu) {
    int kind = relu ? RELU : TANH;
    for (long long i = global_index(); i < n; i += grid_stride()) {
        h_new[i] = activate(a[i], kind);
    }
}

// da = dL/da from g = dL/dh':  tanh: g (1 - h'^2), from the output;  relu: g [a > 0],
// from the input (saved = h' for tanh, a for relu).
// NOTE: relu'(0) = 0, as PyTorch (activation_slope in common.cuh).
template <typename T>
__device__ void elman_bwd(const T* g, const T* saved, T* da, long long n, int relu) {
    int kind = relu ? RELU : TANH;
    for (long long i = global_index(); i < n; i += grid_stride()) {
        da[i] = g[i] * activation_slope(saved[i], kind);
    }
}

// -- entry points: one per dtype ---------------------------------------------------------

extern "C" __global__ void elman_fwd_f32(const float* a, float* h_new, long long n, int relu) {
    elman_fwd<float>(a, h_new, n, relu);
}
extern "C" __global__ void elman_fwd_f64(const double* a, double* h_new, long long n, int relu) {
    elman_fwd<double>(a, h_new, n, relu);
}

extern "C" __global__ void elman_bwd_f32(const float* g, const float* saved, float* da,
                                         long long n, int relu) {
    elman_bwd<float>(g, saved, da, n, relu);
}
extern "C" __global__ void elman_bwd_f64(const double* g, const double* saved, double* da,
                                         long long n, int relu) {
    elman_bwd<double>(g, saved, da, n, relu);
}
