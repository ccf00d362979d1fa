#include "common.cuh"

// elementwise.cu: activations, their derivatives, and the four broadcasting arithmetic ops.
//
// Twins: ops.activation, ops.activation_backward, ops.binary. One thread per element in a
// grid-stride loop, so any grid covers any size; element counts are long long.

// Which activation: the numbers minigrad/cuda.py passes (its ACTIVATIONS).
enum { TANH = 0, SIGMOID = 1, RELU = 2, EXP = 3 };

// Which arithmetic op: cuda.py's BINARY_OPS.
enum { ADD = 0, SUB = 1, MUL = 2, DIV = 3 };

// y = f(x) for f = tanh, sigmoid, relu, exp.
// NOTE: relu as `x < 0 ? 0 : x` keeps a NaN a NaN, as NumPy's maximum(x, 0) does.
template <typename T>
__device__ T activate(T x, int kind) {
    switch (kind) {
        case TANH: return tanh_t(x);
        case SIGMOID: return sigmoid_t(x);
        case RELU: return x < T(0) ? T(0) : x;
        default: return exp_t(x);  // EXP
    }
}

// x, y: n elements (C-contiguous, any shape).   y = f(x)
template <typename T>
__device__ void activation(const T* x, T* y, long long n, int kind) {
    for (long long i = global_index(); i < n; i += grid_stride()) {
        y[i] = activate(x[i], kind);
    }
}

// dx = g f'(x), with f' read off the output y where it can be:
//     tanh: g (1 - y^2)    sigmoid: g y (1 - y)    exp: g y    relu: g [x > 0]
// saved = y, except for relu, whose output does not tell x > 0 from x = 0: saved = x.
// NOTE: relu'(0) = 0, as PyTorch; g * 1 or g * 0 (not a select) so that a NaN in g stays
// NaN, as in the twin's g * (x > 0).
template <typename T>
__device__ void activation_backward(const T* g, const T* saved, T* dx, long long n, int kind) {
    for (long long i = global_index(); i < n; i += grid_stride()) {
        T s = saved[i];
        T local;  // f'(x), from y or x
        switch (kind) {
            case TANH: local = T(1) - s * s; break;
            case SIGMOID: local = s * (T(1) - s); break;
            case RELU: local = s > T(0) ? T(1) : T(0); break;
            default: local = s; break;  // EXP: (e^x)' = e^x = y
        }
        dx[i] = g[i] * local;
    }
}

// out = x op y with NumPy broadcasting, on at most 4 dimensions.
//
// out is C-contiguous of n elements, with dimensions (n / (n1 n2 n3), n1, n2, n3). x and y
// are read through element strides, 0 along an axis they are broadcast over; so a
// transposed or broadcast view needs no copy. The wrapper merges axes beforehand (a
// contiguous (5, 13, 24) is one axis of 1560), so most calls use 1 or 2 dimensions.
template <typename T>
__device__ void binary(const T* x, const T* y, T* out, long long n, int op,
                       int n1, int n2, int n3,
                       int x0, int x1, int x2, int x3,
                       int y0, int y1, int y2, int y3) {
    for (long long i = global_index(); i < n; i += grid_stride()) {
        // The coordinates (i0, i1, i2, i3) of element i of out, last axis fastest.
        long long rest = i;
        long long i3 = rest % n3; rest /= n3;
        long long i2 = rest % n2; rest /= n2;
        long long i1 = rest % n1;
        long long i0 = rest / n1;
        T a = x[i0 * x0 + i1 * x1 + i2 * x2 + i3 * x3];
        T b = y[i0 * y0 + i1 * y1 + i2 * y2 + i3 * y3];
        T r;
        switch (op) {
            case ADD: r = a + b; break;
            case SUB: r = a - b; break;
            case MUL: r = a * b; break;
            default: r = a / b; break;  // DIV
        }
        out[i] = r;
    }
}

// -- entry points: one per dtype ---------------------------------------------------------

extern "C" __global__ void activation_f32(const float* x, float* y, long long n, int kind) {
    activation<float>(x, y, n, kind);
}
extern "C" __global__ void activation_f64(const double* x, double* y, long long n, int kind) {
    activation<double>(x, y, n, kind);
}

extern "C" __global__ void activation_backward_f32(const float* g, const float* saved, float* dx,
                                                   long long n, int kind) {
    activation_backward<float>(g, saved, dx, n, kind);
}
extern "C" __global__ void activation_backward_f64(const double* g, const double* saved, double* dx,
                                                   long long n, int kind) {
    activation_backward<double>(g, saved, dx, n, kind);
}

extern "C" __global__ void binary_f32(const float* x, const float* y, float* out, long long n, int op,
                                      int n1, int n2, int n3,
                                      int x0, int x1, int x2, int x3,
                                      int y0, int y1, int y2, int y3) {
    binary<float>(x, y, out, n, op, n1, n2, n3, x0, x1, x2, x3, y0, y1, y2, y3);
}
extern "C" __global__ void binary_f64(const double* x, const double* y, double* out, long long n, int op,
                                      int n1, int n2, int n3,
                                      int x0, int x1, int x2, int x3,
                                      int y0, int y1, int y2, int y3) {
    binary<double>(x, y, out, n, op, n1, n2, n3, x0, x1, x2, x3, y0, y1, y2, y3);
}
