#include "common.cuh"

// elementwise.cu: activations, their derivatives, and the four broadcasting arithmetic ops.
//
// Primitives: activation, activation_backward, binary. One thread per element in a
// grid-stride loop, so any grid covers any size; element counts are long long.

// Which arithmetic op: cuda.py's BINARY_OPS. (The activations' numbers, activate() and
// activation_slope() are in common.cuh.) The activation kernels are also the Elman cell's
// pointwise part (h' = activation(a)): y may be x itself, since each thread reads its element
// before writing it.
enum { ADD = 0, SUB = 1, MUL = 2, DIV = 3 };

// x, y: n elements (C-contiguous, any shape).   y = f(x), f = tanh, sigmoid, relu or exp.
template <typename T>
__device__ void activation(const T* x, T* y, long long n, int kind) {
    for (long long i = global_index(); i < n; i += grid_stride()) {
        y[i] = activate(x[i], kind);
    }
}

// dx = g f'(x), with f' read off `saved` (the output y; the input x for relu).
template <typename T>
__device__ void activation_backward(const T* g, const T* saved, T* dx, long long n, int kind) {
    for (long long i = global_index(); i < n; i += grid_stride()) {
        dx[i] = g[i] * activation_slope(saved[i], kind);
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
