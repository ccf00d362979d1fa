#include "common.cuh"

// lstm.cu: the LSTM cell's pointwise part, forward and backward, one kernel each.
//
// Twins: functional._lstm and functional._lstm_backward. With the gates' pre-activations
// act = x W_ih^T + b_ih + h W_hh^T + b_hh, (B, 4H), in the order i, f, g, o:
//     i, f, o = sigmoid(.)    g = tanh(.)
//     c' = f c + i g          h' = o tanh(c')
// One thread per (batch row b, hidden unit j), grid-stride over the B * H pairs; thread
// (b, j) reads gate k of its unit at act[b, k H + j].

// act: (B, 4H), activated IN PLACE (the backward reads i, f, g, o from it, as the twin's).
// c: (B, H) the state entering the step.   Out: h_new, c_new, tc = tanh(c'): (B, H) each.
template <typename T>
__device__ void lstm_fwd(T* act, const T* c, T* h_new, T* c_new, T* tc, int B, int H) {
    long long count = (long long)B * H;  // (b, j) pairs
    for (long long idx = global_index(); idx < count; idx += grid_stride()) {
        long long b = idx / H, j = idx % H;
        T* gates = act + b * 4 * H;  // this batch row's 4H gates
        T i = gate_sigmoid(gates[j]);          // input gate: how much of g to write
        T f = gate_sigmoid(gates[H + j]);      // forget gate: how much of c to keep
        T g = tanh_t(gates[2 * H + j]);        // the candidate values
        T o = gate_sigmoid(gates[3 * H + j]);  // output gate: how much of the cell to show
        gates[j] = i;
        gates[H + j] = f;
        gates[2 * H + j] = g;
        gates[3 * H + j] = o;
        T cn = f * c[idx] + i * g;  // read c before writing c_new: they may be one array
        T t = tanh_t(cn);
        c_new[idx] = cn;
        tc[idx] = t;
        h_new[idx] = o * t;
    }
}

// From gh = dL/dh' and gc = the gradient c' gets directly (from the next step, or the
// loss), with act, c, tc as lstm_fwd left them:
//     gc~ = gc + gh o (1 - tanh(c')^2)       (h' = o tanh(c') passes gh on to c')
//     d_i = gc~ g i (1 - i)     d_f = gc~ c f (1 - f)
//     d_g = gc~ i (1 - g^2)     d_o = gh tanh(c') o (1 - o)
//     gc_prev = gc~ f           (c reaches c' through f only)
// d: (B, 4H), dL/d(gates before activation), same layout as act.  gc_prev: (B, H).
// has_gc = 0: gc is zero and not read (the wrapper passes a placeholder pointer).
template <typename T>
__device__ void lstm_bwd(const T* gh, const T* gc, const T* act, const T* c, const T* tc,
                         T* d, T* gc_prev, int B, int H, int has_gc) {
    long long count = (long long)B * H;  // (b, j) pairs
    for (long long idx = global_index(); idx < count; idx += grid_stride()) {
        long long b = idx / H, j = idx % H;
        const T* gates = act + b * 4 * H;
        T* dgates = d + b * 4 * H;
        T i = gates[j], f = gates[H + j], g = gates[2 * H + j], o = gates[3 * H + j];
        T t = tc[idx], dh = gh[idx];
        T dc = (has_gc ? gc[idx] : T(0)) + dh * o * (T(1) - t * t);
        dgates[j] = dc * g * i * (T(1) - i);
        dgates[H + j] = dc * c[idx] * f * (T(1) - f);
        dgates[2 * H + j] = dc * i * (T(1) - g * g);
        dgates[3 * H + j] = dh * t * o * (T(1) - o);
        gc_prev[idx] = dc * f;
    }
}

// -- entry points: one per dtype ---------------------------------------------------------

extern "C" __global__ void lstm_fwd_f32(float* act, const float* c, float* h_new, float* c_new,
                                        float* tc, int B, int H) {
    lstm_fwd<float>(act, c, h_new, c_new, tc, B, H);
}
extern "C" __global__ void lstm_fwd_f64(double* act, const double* c, double* h_new, double* c_new,
                                        double* tc, int B, int H) {
    lstm_fwd<double>(act, c, h_new, c_new, tc, B, H);
}

extern "C" __global__ void lstm_bwd_f32(const float* gh, const float* gc, const float* act,
                                        const float* c, const float* tc, float* d, float* gc_prev,
                                        int B, int H, int has_gc) {
    lstm_bwd<float>(gh, gc, act, c, tc, d, gc_prev, B, H, has_gc);
}
extern "C" __global__ void lstm_bwd_f64(const double* gh, const double* gc, const double* act,
                                        const double* c, const double* tc, double* d, double* gc_prev,
                                        int B, int H, int has_gc) {
    lstm_bwd<double>(gh, gc, act, c, tc, d, gc_prev, B, H, has_gc);
}
