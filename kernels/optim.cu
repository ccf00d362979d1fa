#include "common.cuh"

// optim.cu: SGD, Adam and Adagrad updates of every parameter of a group in one launch.
//
// Primitives: sgd_step, adam_step, adagrad_step (PyTorch's formulas). Adam's amsgrad is not
// here: its wrapper declines it and the NumPy reference runs on the GPU arrays.
// A group has P parameters of different shapes in separate arrays. Instead of one
// launch per parameter, the wrapper hands the kernel a table (one array of 64-bit
// words, copied to the GPU at once):
//     table[role * P + p]   the address of parameter p's array for that role
//                           (the roles: weight, gradient, state arrays, new weight)
//     table[roles * P + p]  offsets: where parameter p starts if the P parameters were
//                           laid end to end; table[roles * P + P] = total
// and every thread maps its element i of the total to its parameter p by a binary
// search of the offsets (P is small: a few steps), then to element i - offset[p] of
// p's arrays. One thread per element, grid-stride.
//
// The new weights go to fresh arrays (the role "new weight"), never over the old ones:
// records on the tape keep the old weights (see optim.py). State arrays (momentum
// buffers, Adam's moments, Adagrad's sums) are updated in place.

// The parameter p whose elements [offsets[p], offsets[p + 1]) hold i: the last p with
// offsets[p] <= i. (An empty parameter has offsets[p] = offsets[p + 1] and never wins.)
static __device__ int parameter_of(const unsigned long long* offsets, int P, long long i) {
    int lo = 0, hi = P;  // offsets[lo] <= i < offsets[hi]
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if ((long long)offsets[mid] <= i) lo = mid; else hi = mid;
    }
    return lo;
}

// The array of `role` for parameter p, as a pointer.
template <typename T>
__device__ __forceinline__ T* array_of(const unsigned long long* table, int role, int P, int p) {
    return reinterpret_cast<T*>(table[(long long)role * P + p]);
}

// SGD. Roles: 0 w, 1 grad, 2 momentum buffer b (absent when use_buf = 0), 3 new w.
//     g = grad + weight_decay w
//     b = momentum b + (1 - dampening) g          (use_buf: b starts at 0, and the wrapper
//                                                  passes dampening 0 at the first step: b = g)
//     g = g + momentum b if nesterov else b       (use_buf only)
//     w' = w - lr g
template <typename T>
__device__ void sgd_step(const unsigned long long* table, int P, long long total,
                         T lr, T momentum, T weight_decay, int nesterov, int use_buf,
                         T dampening) {
    const unsigned long long* offsets = table + 4 * (long long)P;
    for (long long i = global_index(); i < total; i += grid_stride()) {
        int p = parameter_of(offsets, P, i);
        long long e = i - (long long)offsets[p];  // the element within parameter p
        T w = array_of<T>(table, 0, P, p)[e];
        T g = array_of<T>(table, 1, P, p)[e];
        if (weight_decay != T(0)) g = g + weight_decay * w;
        if (use_buf) {
            T* buf = array_of<T>(table, 2, P, p);
            T b = momentum * buf[e] + (T(1) - dampening) * g;
            buf[e] = b;
            g = nesterov ? g + momentum * b : b;
        }
        array_of<T>(table, 3, P, p)[e] = w - lr * g;
    }
}

// Adam. Roles: 0 w, 1 grad, 2 m, 3 v, 4 new w. bias1 = 1 - beta1^t, bias2 = 1 - beta2^t
// (t counts the steps from 1), computed by the wrapper.
//     g = grad + weight_decay w
//     m = beta1 m + (1 - beta1) g         v = beta2 v + (1 - beta2) g^2
//     w' = w - lr (m / bias1) / (sqrt(v / bias2) + eps)
template <typename T>
__device__ void adam_step(const unsigned long long* table, int P, long long total,
                          T lr, T beta1, T beta2, T eps, T weight_decay, T bias1, T bias2) {
    const unsigned long long* offsets = table + 5 * (long long)P;
    for (long long i = global_index(); i < total; i += grid_stride()) {
        int p = parameter_of(offsets, P, i);
        long long e = i - (long long)offsets[p];
        T w = array_of<T>(table, 0, P, p)[e];
        T g = array_of<T>(table, 1, P, p)[e];
        T* m = array_of<T>(table, 2, P, p);
        T* v = array_of<T>(table, 3, P, p);
        if (weight_decay != T(0)) g = g + weight_decay * w;
        T m_new = beta1 * m[e] + (T(1) - beta1) * g;
        T v_new = beta2 * v[e] + (T(1) - beta2) * (g * g);
        m[e] = m_new;
        v[e] = v_new;
        T denom = sqrt_t(v_new / bias2) + eps;
        array_of<T>(table, 4, P, p)[e] = w - lr * (m_new / bias1) / denom;
    }
}

// Adagrad. Roles: 0 w, 1 grad, 2 s (the sum of squared gradients), 3 new w.
//     g = grad + weight_decay w
//     s = s + g^2        w' = w - lr g / (sqrt(s) + eps)
// (lr is PyTorch's clr = lr / (1 + (t - 1) lr_decay), computed by the optimizer.)
template <typename T>
__device__ void adagrad_step(const unsigned long long* table, int P, long long total, T lr, T eps,
                             T weight_decay) {
    const unsigned long long* offsets = table + 4 * (long long)P;
    for (long long i = global_index(); i < total; i += grid_stride()) {
        int p = parameter_of(offsets, P, i);
        long long e = i - (long long)offsets[p];
        T w = array_of<T>(table, 0, P, p)[e];
        T g = array_of<T>(table, 1, P, p)[e];
        T* s = array_of<T>(table, 2, P, p);
        if (weight_decay != T(0)) g = g + weight_decay * w;
        T s_new = s[e] + g * g;
        s[e] = s_new;
        array_of<T>(table, 3, P, p)[e] = w - lr * g / (sqrt_t(s_new) + eps);
    }
}

// -- entry points: one per dtype ---------------------------------------------------------

extern "C" __global__ void sgd_step_f32(const unsigned long long* table, int P, long long total,
                                        float lr, float momentum, float weight_decay,
                                        int nesterov, int use_buf, float dampening) {
    sgd_step<float>(table, P, total, lr, momentum, weight_decay, nesterov, use_buf, dampening);
}
extern "C" __global__ void sgd_step_f64(const unsigned long long* table, int P, long long total,
                                        double lr, double momentum, double weight_decay,
                                        int nesterov, int use_buf, double dampening) {
    sgd_step<double>(table, P, total, lr, momentum, weight_decay, nesterov, use_buf, dampening);
}

extern "C" __global__ void adam_step_f32(const unsigned long long* table, int P, long long total,
                                         float lr, float beta1, float beta2, float eps,
                                         float weight_decay, float bias1, float bias2) {
    adam_step<float>(table, P, total, lr, beta1, beta2, eps, weight_decay, bias1, bias2);
}
extern "C" __global__ void adam_step_f64(const unsigned long long* table, int P, long long total,
                                         double lr, double beta1, double beta2, double eps,
                                         double weight_decay, double bias1, double bias2) {
    adam_step<double>(table, P, total, lr, beta1, beta2, eps, weight_decay, bias1, bias2);
}

extern "C" __global__ void adagrad_step_f32(const unsigned long long* table, int P, long long total,
                                            float lr, float eps, float weight_decay) {
    adagrad_step<float>(table, P, total, lr, eps, weight_decay);
}
extern "C" __global__ void adagrad_step_f64(const unsigned long long* table, int P, long long total,
                                            double lr, double eps, double weight_decay) {
    adagrad_step<double>(table, P, total, lr, eps, weight_decay);
}
