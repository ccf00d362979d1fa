#include "common.cuh"
#include "lstm.cuh"

// lstm.cu: the LSTM cell's pointwise part, forward and backward, one kernel each.
//
// Primitives: lstm_step and lstm_step_backward. From the gates' pre-activations
// act = x W_ih^T + b_ih + h W_hh^T + b_hh, (B, 4H), in the order i, f, g, o, the cell's
// equations and their derivatives are lstm.cuh's (window.cu calls them too).
// One thread per (batch row b, hidden unit j), grid-stride over the B * H pairs; thread
// (b, j) reads gate k of its unit at act[b, k H + j].

// act: (B, 4H), activated IN PLACE (the backward reads i, f, g, o from it, as the reference's).
// c: (B, H) the state entering the step.   Out: h_new, c_new, tc = tanh(c'): (B, H) each.
template <typename T>
__device__ void lstm_step(T* act, const T* c, T* h_new, T* c_new, T* tc, int B, int H) {
    long long count = (long long)B * H;  // (b, j) pairs
    for (long long idx = global_index(); idx < count; idx += grid_stride()) {
        long long b = idx / H, j = idx % H;
        T* unit = act + b * 4 * H + j;  // gate i of unit j in this batch row; f, g, o H apart
        LstmGates<T> gates = lstm_gates(lstm_load(unit, H));
        lstm_store(unit, H, gates);
        LstmCell<T> cell = lstm_cell(gates, c[idx]);  // c read before c_new: they may be one array
        c_new[idx] = cell.c;
        tc[idx] = cell.tc;
        h_new[idx] = cell.h;
    }
}

// The gradients of the gates' pre-activations from gh = dL/dh' and gc = the gradient c'
// gets directly, with act, c, tc as lstm_step left them (lstm_cell_backward's formulas).
// d: (B, 4H), dL/d(gates before activation), same layout as act.  gc_prev: (B, H), dL/dc.
// has_gc = 0: gc is zero and not read (the wrapper passes a placeholder pointer).
template <typename T>
__device__ void lstm_step_backward(const T* gh, const T* gc, const T* act, const T* c,
                                   const T* tc, T* d, T* gc_prev, int B, int H, int has_gc) {
    long long count = (long long)B * H;  // (b, j) pairs
    for (long long idx = global_index(); idx < count; idx += grid_stride()) {
        long long b = idx / H, j = idx % H;
        long long unit = b * 4 * H + j;  // where gate i of unit j is in act and d
        LstmGates<T> dgates;
        gc_prev[idx] = lstm_cell_backward(lstm_load(act + unit, H), c[idx], tc[idx], gh[idx],
                                          has_gc ? gc[idx] : T(0), dgates);
        lstm_store(d + unit, H, dgates);
    }
}

// -- entry points: one per dtype ---------------------------------------------------------

extern "C" __global__ void lstm_step_f32(float* act, const float* c, float* h_new, float* c_new,
                                         float* tc, int B, int H) {
    lstm_step<float>(act, c, h_new, c_new, tc, B, H);
}
extern "C" __global__ void lstm_step_f64(double* act, const double* c, double* h_new, double* c_new,
                                         double* tc, int B, int H) {
    lstm_step<double>(act, c, h_new, c_new, tc, B, H);
}

extern "C" __global__ void lstm_step_backward_f32(const float* gh, const float* gc,
                                                  const float* act, const float* c, const float* tc,
                                                  float* d, float* gc_prev, int B, int H,
                                                  int has_gc) {
    lstm_step_backward<float>(gh, gc, act, c, tc, d, gc_prev, B, H, has_gc);
}
extern "C" __global__ void lstm_step_backward_f64(const double* gh, const double* gc,
                                                  const double* act, const double* c,
                                                  const double* tc, double* d, double* gc_prev,
                                                  int B, int H, int has_gc) {
    lstm_step_backward<double>(gh, gc, act, c, tc, d, gc_prev, B, H, has_gc);
}
