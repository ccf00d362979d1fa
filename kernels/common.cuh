// common.cuh: the device helpers that every kernel file shares.
//
// Kernels are written in a small subset of CUDA C++ so that tests/emulator.py can also
// compile them as plain C++17 with g++ (its prelude defines __global__, __device__ and
// __forceinline__ as nothing, __shared__ as `static`, the thread and block indices as
// globals, and __syncthreads()). Hence: no #include, no std::, no warp shuffles or
// atomics, and dynamic shared memory only through dynamic_shared<T>() below. The math
// functions (expf, exp, tanhf, tanh, ...) are the ones NVRTC provides on the device and
// the C library provides on the host.
//
// Helpers that are not templates are `static`: each .cu file gets its own copy, so two
// files compiled into one program never clash.
#pragma once

// -- where a thread is -----------------------------------------------------------------

// The index of this thread in a one-dimensional grid. long long: elementwise kernels
// count elements as long long, so arrays of more than 2^31 elements work.
static __device__ __forceinline__ long long global_index() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}

// How many threads the grid has: the step of a grid-stride loop
//     for (long long i = global_index(); i < n; i += grid_stride())
// which covers any n with a grid of any size (the launcher caps the grid).
static __device__ __forceinline__ long long grid_stride() {
    return (long long)gridDim.x * blockDim.x;
}

// The block's dynamic shared memory, as an array of T: the `shared_mem` bytes its launch
// asked for (cuda.launch's shared_mem=). One region per block, whatever T a kernel reads
// it as; declared as doubles so that it is aligned for float and double alike. The CPU
// emulator defines its own (tests/emulate.h).
#ifndef EMU_DYNAMIC_SHARED
template <typename T>
__device__ __forceinline__ T* dynamic_shared() {
    extern __shared__ double dynamic_shared_words[];
    return reinterpret_cast<T*>(dynamic_shared_words);
}
#endif

// -- math in the kernel's precision -----------------------------------------------------
//
// One name per function, overloaded for float and double, so that a kernel body written
// once as a template calls expf for float and exp for double. (exp(float) alone may mean
// the double function on some compilers: slower, and not what the NumPy reference computes.)

static __device__ __forceinline__ float exp_t(float x) { return expf(x); }
static __device__ __forceinline__ double exp_t(double x) { return exp(x); }
static __device__ __forceinline__ float log_t(float x) { return logf(x); }
static __device__ __forceinline__ double log_t(double x) { return log(x); }
static __device__ __forceinline__ float tanh_t(float x) { return tanhf(x); }
static __device__ __forceinline__ double tanh_t(double x) { return tanh(x); }
static __device__ __forceinline__ float sqrt_t(float x) { return sqrtf(x); }
static __device__ __forceinline__ double sqrt_t(double x) { return sqrt(x); }
// a * b + c with one rounding (a fused multiply-add): what the GPU does for `a * b + c`
// anyway, and what BLAS libraries use; spelled out so that the emulator on the CPU rounds
// the same way.
static __device__ __forceinline__ float fma_t(float a, float b, float c) { return fmaf(a, b, c); }
static __device__ __forceinline__ double fma_t(double a, double b, double c) { return fma(a, b, c); }

template <typename T>
__device__ __forceinline__ T abs_t(T x) { return x < T(0) ? -x : x; }

// The larger of a and b; NaN in a is kept (a > b is false, so b is returned only if b
// wins a comparison), as NumPy's maximum mostly does.
template <typename T>
__device__ __forceinline__ T max_t(T a, T b) { return b > a ? b : a; }

// A quiet NaN: sqrt of a negative number is NaN under IEEE 754, on the GPU and the CPU
// (a constant such as 0.0 / 0.0 draws compiler warnings).
template <typename T>
__device__ __forceinline__ T nan_t() { return sqrt_t(T(-1)); }

// -- the two sigmoids -----------------------------------------------------------------

// sigmoid(x) = 1 / (1 + e^-x), stably: with e = exp(-|x|) <= 1, 1 / (1 + e) for x >= 0
// and e / (1 + e) for x < 0. Never overflows, and keeps relative precision far in the
// left tail (sigmoid(-40) = 4.2e-18, not 0). The NumPy reference is primitives.sigmoid.
template <typename T>
__device__ __forceinline__ T sigmoid_t(T x) {
    T e = exp_t(-abs_t(x));
    return (x >= T(0) ? T(1) : e) / (T(1) + e);
}

// The gates' sigmoid, (1 + tanh(x / 2)) / 2: the same function, precise in absolute
// terms only (enough for a gate, which multiplies a state), one tanh and no division.
// The NumPy reference is primitives.gate_sigmoid_, which the cells' references use.
template <typename T>
__device__ __forceinline__ T gate_sigmoid(T x) {
    return T(0.5) * tanh_t(T(0.5) * x) + T(0.5);
}

// -- activations and their derivatives -------------------------------------------------
//
// Used by elementwise.cu's activation kernels, which are also the Elman cell's pointwise part.

// Which activation: the numbers minigrad/backends/cuda.py passes (its ACTIVATIONS).
enum { TANH = 0, SIGMOID = 1, RELU = 2, EXP = 3 };

// f(x) for f = tanh, sigmoid, relu, exp.
// NOTE: relu as `x < 0 ? 0 : x` keeps a NaN a NaN, as NumPy's maximum(x, 0) does.
template <typename T>
__device__ __forceinline__ T activate(T x, int kind) {
    switch (kind) {
        case TANH: return tanh_t(x);
        case SIGMOID: return sigmoid_t(x);
        case RELU: return x < T(0) ? T(0) : x;
        default: return exp_t(x);  // EXP
    }
}

// f'(x), read off the output y where it can be:
//     tanh: 1 - y^2    sigmoid: y (1 - y)    exp: y    relu: [x > 0]
// saved = y, except for relu, whose output does not tell x > 0 from x = 0: saved = x.
// NOTE: relu'(0) = 0, as PyTorch; 1 or 0 (multiplied, not selected, by the caller) so that a
// NaN in the incoming gradient stays NaN, as in the reference's g * (x > 0).
template <typename T>
__device__ __forceinline__ T activation_slope(T saved, int kind) {
    switch (kind) {
        case TANH: return T(1) - saved * saved;
        case SIGMOID: return saved * (T(1) - saved);
        case RELU: return saved > T(0) ? T(1) : T(0);
        default: return saved;  // EXP: (e^x)' = e^x = y
    }
}

// -- reductions over a block -------------------------------------------------------------
//
// A tree over shared memory: each thread puts its value in buf, then in log2(blockDim.x)
// rounds the lower half of the active threads adds (or maxes) in the upper half's values.
// For one-dimensional blocks whose size is a power of two, at most 256 (buf's size).
// Every thread of the block must call them (they hold __syncthreads()); every thread gets
// the result.

static __device__ double block_sum(double* buf, double v) {
    int tid = threadIdx.x;
    __syncthreads();  // every thread has read buf[0] of a previous reduction
    buf[tid] = v;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (tid < half) buf[tid] += buf[tid + half];
        __syncthreads();
    }
    return buf[0];
}

static __device__ double block_max(double* buf, double v) {
    int tid = threadIdx.x;
    __syncthreads();
    buf[tid] = v;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (tid < half) buf[tid] = max_t(buf[tid], buf[tid + half]);
        __syncthreads();
    }
    return buf[0];
}
