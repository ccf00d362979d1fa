#include "common.cuh"
#include "lstm.cuh"

// window.cu: a whole window of an Elman or LSTM layer in one launch, each way: the
// persistent-RNN idea at small hidden sizes.
//
// Primitives: elman_window, elman_window_backward, lstm_window, lstm_window_backward,
// whose NumPy references are the step loops that nn.RNN and nn.LSTM otherwise run, one
// matmul and one pointwise kernel per time step. Here one block owns one batch row for
// all T steps: it loads the recurrent weights W_hh (G*H, H) into shared memory once, keeps
// the row's state on chip, and walks the steps with two barriers each; the rows are
// independent, so the blocks never wait for each other. What stays per step is a
// matrix-vector product out of shared memory, no launch and no trip through global memory
// for the weights.
//
// The input projections A[t] = x_t W_ih^T + b_ih + b_hh of all steps come in precomputed
// (one matmul for the window), and the weight gradients are one matmul each after the
// backward kernel; these kernels do only the sequential part.
//
// Shared memory: the weights (G H^2 values, and H of padding) and a vector or two, as
// dynamic shared memory (cuda.launch's shared_mem=): up to 227 KiB on an H100, so H <= 240
// for the Elman cell and H <= 119 for the LSTM in float32 (169 and 84 in float64).
// minigrad/backends/cuda.py runs the step loop instead when a layer does not fit.
//
// Layouts (all C-contiguous): A, D: (T, B, G*H); Hs, Cs: (T + 1, B, H), Hs[0] = h0;
// TC, G: (T, B, H); W: (G*H, H) as PyTorch stores weight_hh. Block b, thread k.

// Forward: for t = 0 .. T-1,  A[t] += Hs[t] W^T  and  Hs[t+1] = act(A[t]),  act = tanh or relu.
// A holds the completed pre-activations afterwards (relu's backward in the reference reads them).
template <typename T>
__device__ void elman_window(T* A, T* Hs, const T* W, int steps, int B, int H, int kind) {
    // W^T, so that threads k read along a row: wt[j (H + 1) + k] = W[k, j]. The extra column
    // puts the transposing writes below (stride H + 1) in different banks.
    T* wt = dynamic_shared<T>();
    T* h = wt + H * (H + 1);      // this row's state h_t, read by every thread
    int b = blockIdx.x, k = threadIdx.x;
    for (int e = k; e < H * H; e += blockDim.x) wt[(e % H) * (H + 1) + e / H] = W[e];
    if (k < H) h[k] = Hs[(long long)b * H + k];
    __syncthreads();
    for (int t = 0; t < steps; ++t) {
        long long at = ((long long)t * B + b) * H + k;  // (t, b, k) in A and, one step on, in Hs
        T a = T(0);
        if (k < H) {
            T s = T(0);
            for (int j = 0; j < H; ++j) s = fma_t(h[j], wt[j * (H + 1) + k], s);
            a = A[at] + s;
            A[at] = a;
        }
        __syncthreads();  // every thread has read h_t: it may be overwritten
        if (k < H) {
            T hn = activate(a, kind);
            h[k] = hn;
            Hs[at + (long long)B * H] = hn;
        }
        __syncthreads();  // h_{t+1} is whole
    }
}

// Backward: G[t] = dL/dh_{t+1} from outside the recurrence (the outputs). Walking back,
//     D[t] = (G[t] + carry) act'(h_{t+1})      carry = D[t] W    (the gradient reaching h_t)
// and the last carry is dL/dh0, written to gh0 (B, H) when need_h0. act' is read off the
// output: 1 - h^2 for tanh, [h > 0] for relu (h > 0 exactly where the pre-activation is).
template <typename T>
__device__ void elman_window_backward(const T* G, const T* Hs, const T* W, T* D, T* gh0,
                                      int steps, int B, int H, int kind, int need_h0) {
    T* w = dynamic_shared<T>();  // W as it is, w[k H + j]: thread j reads down column j
    T* d = w + H * H;            // this step's D[t] of the row, read by every thread
    int b = blockIdx.x, j = threadIdx.x;
    for (int e = j; e < H * H; e += blockDim.x) w[e] = W[e];
    T carry = T(0);
    for (int t = steps - 1; t >= 0; --t) {
        long long at = ((long long)t * B + b) * H + j;
        if (j < H) {
            T dj = (G[at] + carry) * activation_slope(Hs[at + (long long)B * H], kind);
            D[at] = dj;
            d[j] = dj;
        }
        __syncthreads();  // d (and, at the first step, w) is whole
        if (j < H) {
            T s = T(0);
            for (int k = 0; k < H; ++k) s = fma_t(d[k], w[k * H + j], s);
            carry = s;
        }
        __syncthreads();  // every thread has read d: the next step may overwrite it
    }
    if (j < H && need_h0) gh0[(long long)b * H + j] = carry;
}

// Forward, LSTM: for t = 0 .. T-1, A[t] += Hs[t] W^T, then lstm.cuh's cell step on the
// gates i, f, g, o: A[t] activated in place, Cs[t+1] = c', TC[t] = tanh(c'), Hs[t+1] = h'.
// Threads k < 4H make the gates (k / H is which); threads j < H then own unit j's cell (c
// in a register).
template <typename T>
__device__ void lstm_window(T* A, T* Hs, T* Cs, T* TC, const T* W, int steps, int B, int H) {
    int G = 4 * H;
    T* wt = dynamic_shared<T>();  // W^T with an extra column, as above: wt[j (4H + 1) + k] = W[k, j]
    T* h = wt + (G + 1) * H;      // h_t
    T* gates = h + H;             // this step's activated gates
    int b = blockIdx.x, k = threadIdx.x;
    for (int e = k; e < G * H; e += blockDim.x) wt[(e % H) * (G + 1) + e / H] = W[e];
    T c = T(0);
    if (k < H) {
        h[k] = Hs[(long long)b * H + k];
        c = Cs[(long long)b * H + k];
    }
    __syncthreads();
    for (int t = 0; t < steps; ++t) {
        if (k < G) {
            long long at = ((long long)t * B + b) * G + k;
            T s = T(0);
            for (int j = 0; j < H; ++j) s = fma_t(h[j], wt[j * (G + 1) + k], s);
            T a = lstm_activate(A[at] + s, k / H);
            A[at] = a;
            gates[k] = a;
        }
        __syncthreads();  // the gates are whole, and every thread has read h_t
        if (k < H) {
            long long at = ((long long)t * B + b) * H + k, next = at + (long long)B * H;
            LstmCell<T> cell = lstm_cell(lstm_load(gates + k, H), c);
            c = cell.c;
            h[k] = cell.h;
            Cs[next] = cell.c;
            TC[at] = cell.tc;
            Hs[next] = cell.h;
        }
        __syncthreads();  // h_{t+1} is whole, and every thread has read the gates
    }
}

// Backward, LSTM: G[t] = dL/dh_{t+1} from the outputs, gc (B, H) the gradient reaching the
// last cell state; A, Cs, TC as the forward left them. Walking back, each step is
// lstm.cuh's lstm_cell_backward, as in lstm.cu's lstm_step_backward:
//     gh = G[t] + carry_h      (D[t], gc) = lstm_cell_backward(gates, c, tanh(c'), gh, gc)
//     carry_h = D[t] W
// At the end gh0 = carry_h (when need_h0) and gc0 = gc, each (B, H).
template <typename T>
__device__ void lstm_window_backward(const T* G, const T* gc_in, const T* A, const T* Cs,
                                     const T* TC, const T* W, T* D, T* gh0, T* gc0, int steps,
                                     int B, int H, int need_h0) {
    int GH = 4 * H;
    T* w = dynamic_shared<T>();  // W as it is, w[k H + j]
    T* d = w + GH * H;           // this step's D[t] of the row
    int b = blockIdx.x, j = threadIdx.x;
    for (int e = j; e < GH * H; e += blockDim.x) w[e] = W[e];
    T carry = T(0), gc = T(0);
    if (j < H) gc = gc_in[(long long)b * H + j];
    for (int t = steps - 1; t >= 0; --t) {
        if (j < H) {
            long long at = ((long long)t * B + b) * H + j;
            long long unit = ((long long)t * B + b) * GH + j;  // gate i of unit j in A and D
            LstmGates<T> dgates;
            gc = lstm_cell_backward(lstm_load(A + unit, H), Cs[at], TC[at], G[at] + carry, gc,
                                    dgates);
            lstm_store(D + unit, H, dgates);
            lstm_store(d + j, H, dgates);
        }
        __syncthreads();  // d (and, at the first step, w) is whole
        if (j < H) {
            T s = T(0);
            for (int k = 0; k < GH; ++k) s = fma_t(d[k], w[k * H + j], s);
            carry = s;
        }
        __syncthreads();  // every thread has read d
    }
    if (j < H) {
        if (need_h0) gh0[(long long)b * H + j] = carry;
        gc0[(long long)b * H + j] = gc;
    }
}

// -- entry points: one per dtype ---------------------------------------------------------

extern "C" __global__ void elman_window_f32(float* A, float* Hs, const float* W, int steps, int B,
                                            int H, int kind) {
    elman_window<float>(A, Hs, W, steps, B, H, kind);
}
extern "C" __global__ void elman_window_f64(double* A, double* Hs, const double* W, int steps,
                                            int B, int H, int kind) {
    elman_window<double>(A, Hs, W, steps, B, H, kind);
}

extern "C" __global__ void elman_window_backward_f32(const float* G, const float* Hs,
                                                     const float* W, float* D, float* gh0,
                                                     int steps, int B, int H, int kind,
                                                     int need_h0) {
    elman_window_backward<float>(G, Hs, W, D, gh0, steps, B, H, kind, need_h0);
}
extern "C" __global__ void elman_window_backward_f64(const double* G, const double* Hs,
                                                     const double* W, double* D, double* gh0,
                                                     int steps, int B, int H, int kind,
                                                     int need_h0) {
    elman_window_backward<double>(G, Hs, W, D, gh0, steps, B, H, kind, need_h0);
}

extern "C" __global__ void lstm_window_f32(float* A, float* Hs, float* Cs, float* TC,
                                           const float* W, int steps, int B, int H) {
    lstm_window<float>(A, Hs, Cs, TC, W, steps, B, H);
}
extern "C" __global__ void lstm_window_f64(double* A, double* Hs, double* Cs, double* TC,
                                           const double* W, int steps, int B, int H) {
    lstm_window<double>(A, Hs, Cs, TC, W, steps, B, H);
}

extern "C" __global__ void lstm_window_backward_f32(const float* G, const float* gc, const float* A,
                                                    const float* Cs, const float* TC,
                                                    const float* W, float* D, float* gh0,
                                                    float* gc0, int steps, int B, int H,
                                                    int need_h0) {
    lstm_window_backward<float>(G, gc, A, Cs, TC, W, D, gh0, gc0, steps, B, H, need_h0);
}
extern "C" __global__ void lstm_window_backward_f64(const double* G, const double* gc,
                                                    const double* A, const double* Cs,
                                                    const double* TC, const double* W, double* D,
                                                    double* gh0, double* gc0, int steps, int B,
                                                    int H, int need_h0) {
    lstm_window_backward<double>(G, gc, A, Cs, TC, W, D, gh0, gc0, steps, B, H, need_h0);
}
