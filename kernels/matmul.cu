#include "common.cuh"

// matmul.cu: the 2-D product out = x @ y, or out += x @ y, tiled through shared memory.
//
// Primitives: matmul (x.dot(y)) and, with accumulate = 1, matmul_add (out += x.dot(y): the
// recurrent product of a time step added to its gates as it is written, one launch where
// a product and an addition would take two). x is (M, K), y is (K, N), out is (M, N),
// all logically; an operand may be stored transposed (trans = 1: x as its C-contiguous
// transpose (K, M), as W.T is stored as W), so the backward's products g W and g^T X
// need no copy.
//
// Each block computes one TILE x TILE tile of out. It walks along K one TILE at a time:
// the block copies a TILE x TILE tile of x and one of y into shared memory (every
// element read from global memory once per block instead of TILE times), then every
// thread multiplies from shared memory. Block: TILE x ROWS threads = 32 x 8 = 256; each
// thread computes TILE / ROWS = 4 outputs of one column, rows ROWS apart, so that a
// value of y loaded into a register serves four products.
// Grid: (ceil(N / TILE), ceil(M / TILE)).

constexpr int TILE = 32;
constexpr int ROWS = 8;
constexpr int PER_THREAD = TILE / ROWS;

template <typename T>
__device__ void matmul(const T* x, const T* y, T* out, int M, int N, int K, int trans_x,
                       int trans_y, int accumulate) {
    // +1 column: a transposed load writes a column of the tile, and with rows of 33 words
    // the 32 threads of a warp then write to 32 different shared-memory banks.
    __shared__ T x_tile[TILE][TILE + 1];  // x_tile[r][k] = x[row0 + r, k0 + k]
    __shared__ T y_tile[TILE][TILE + 1];  // y_tile[k][c] = y[k0 + k, col0 + c]
    int tx = threadIdx.x, ty = threadIdx.y;
    int row0 = blockIdx.y * TILE, col0 = blockIdx.x * TILE;
    T acc[PER_THREAD];
    for (int j = 0; j < PER_THREAD; ++j) acc[j] = T(0);

    for (int k0 = 0; k0 < K; k0 += TILE) {
        // Load both tiles, zeros outside the matrices. Consecutive threads (tx) read
        // consecutive addresses (coalesced): along a row of what is stored, so a stored
        // transpose is read along its rows and written into a column of the tile.
        for (int j = ty; j < TILE; j += ROWS) {
            int r, k;  // x[row0 + r, k0 + k]
            long long at;
            if (trans_x) { r = tx; k = j; at = (long long)(k0 + k) * M + row0 + r; }
            else         { r = j; k = tx; at = (long long)(row0 + r) * K + k0 + k; }
            x_tile[r][k] = (row0 + r < M && k0 + k < K) ? x[at] : T(0);

            int c;  // y[k0 + k, col0 + c]
            if (trans_y) { c = j; k = tx; at = (long long)(col0 + c) * K + k0 + k; }
            else         { k = j; c = tx; at = (long long)(k0 + k) * N + col0 + c; }
            y_tile[k][c] = (k0 + k < K && col0 + c < N) ? y[at] : T(0);
        }
        __syncthreads();  // the tiles are complete

        for (int k = 0; k < TILE; ++k) {
            T b = y_tile[k][tx];
            for (int j = 0; j < PER_THREAD; ++j) acc[j] = fma_t(x_tile[ty + j * ROWS][k], b, acc[j]);
        }
        __syncthreads();  // everyone is done with the tiles before the next load overwrites them
    }

    int col = col0 + tx;
    for (int j = 0; j < PER_THREAD; ++j) {
        int row = row0 + ty + j * ROWS;
        if (row < M && col < N) {
            long long at = (long long)row * N + col;
            out[at] = accumulate ? out[at] + acc[j] : acc[j];
        }
    }
}

// -- entry points: one per dtype ---------------------------------------------------------

extern "C" __global__ void matmul_f32(const float* x, const float* y, float* out, int M, int N,
                                      int K, int trans_x, int trans_y, int accumulate) {
    matmul<float>(x, y, out, M, N, K, trans_x, trans_y, accumulate);
}
extern "C" __global__ void matmul_f64(const double* x, const double* y, double* out, int M, int N,
                                      int K, int trans_x, int trans_y, int accumulate) {
    matmul<double>(x, y, out, M, N, K, trans_x, trans_y, accumulate);
}
