#include "common.cuh"

// reduce.cu: sums over a run of consecutive axes.
//
// Primitive: sum_axes (a.sum(axis=axes)). The wrapper views a C-contiguous input as
// (A, R, C), the axes before the run, the run, the axes after it, and sums R away:
//     out[a, c] = sum_r in[a, r, c]                       out: (A, C)
// Two kernels, for the two shapes this takes:
//   - sum_axes_rows (C = 1, R large): a full sum or a sum over the last axes. One block
//     per output, its threads share the R numbers and add them up in a tree, so that a
//     sum of a million numbers is not one thread's million additions.
//   - sum_axes_cols (otherwise): 32 outputs per block, 8 threads per output. The 32
//     threads of a warp read 32 neighbouring outputs' numbers, consecutive in memory
//     when C > 1.
// Sums are accumulated in double for float32 too: the sum of many float32 numbers one by
// one loses digits that NumPy's pairwise summation keeps.

constexpr int BLOCK = 256;   // sum_axes_rows' threads per block (block_sum needs a power of two)
constexpr int OUTPUTS = 32;  // sum_axes_cols: outputs per block (blockDim.x)
constexpr int SPLIT = 8;     // sum_axes_cols: threads per output (blockDim.y), a power of two

// in: (A, R) C-contiguous, out: (A,). Block: BLOCK threads; grid: A blocks.
template <typename T>
__device__ void sum_axes_rows(const T* in, T* out, long long A, long long R) {
    __shared__ double buf[BLOCK];
    long long a = blockIdx.x;
    double s = 0;
    if (a < A) {
        for (long long r = threadIdx.x; r < R; r += blockDim.x) s += in[a * R + r];
    }
    s = block_sum(buf, s);  // outside the `if`: every thread of the block must take part
    if (a < A && threadIdx.x == 0) out[a] = (T)s;
}

// in: (A, R, C) C-contiguous, out: (A, C). Block: (OUTPUTS, SPLIT) threads; grid:
// ceil(A C / OUTPUTS) blocks. Thread (x, y) adds r = y, y + SPLIT, ... of output
// blockIdx.x * OUTPUTS + x; the SPLIT partial sums then meet in a tree.
template <typename T>
__device__ void sum_axes_cols(const T* in, T* out, long long A, long long R, long long C) {
    __shared__ double partial[SPLIT][OUTPUTS];
    int tx = threadIdx.x, ty = threadIdx.y;
    long long o = (long long)blockIdx.x * OUTPUTS + tx;  // which output: a * C + c
    double s = 0;
    if (o < A * C) {
        long long a = o / C, c = o % C;
        const T* first = in + a * R * C + c;  // in[a, 0, c]; in[a, r, c] is first[r * C]
        for (long long r = ty; r < R; r += SPLIT) s += first[r * C];
    }
    partial[ty][tx] = s;
    __syncthreads();
    for (int half = SPLIT / 2; half > 0; half /= 2) {
        if (ty < half) partial[ty][tx] += partial[ty + half][tx];
        __syncthreads();
    }
    if (ty == 0 && o < A * C) out[o] = (T)partial[0][tx];
}

// -- entry points: one per dtype ---------------------------------------------------------

extern "C" __global__ void sum_axes_rows_f32(const float* in, float* out, long long A,
                                             long long R) {
    sum_axes_rows<float>(in, out, A, R);
}
extern "C" __global__ void sum_axes_rows_f64(const double* in, double* out, long long A,
                                             long long R) {
    sum_axes_rows<double>(in, out, A, R);
}

extern "C" __global__ void sum_axes_cols_f32(const float* in, float* out, long long A, long long R,
                                             long long C) {
    sum_axes_cols<float>(in, out, A, R, C);
}
extern "C" __global__ void sum_axes_cols_f64(const double* in, double* out, long long A,
                                             long long R, long long C) {
    sum_axes_cols<double>(in, out, A, R, C);
}
