// lstm.cuh: the LSTM cell's equations for one hidden unit, forward and derivative.
//
// Written once, called by lstm.cu (one step of a batch: primitives lstm_step and
// lstm_step_backward) and by window.cu (a whole window, one block per batch row:
// lstm_window and lstm_window_backward). The NumPy references in
// minigrad/backends/primitives.py compute the same formulas, in the same order, on
// whole arrays. With the gates' pre-activations a = (a_i, a_f, a_g, a_o) of one unit:
//     i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o)      g = tanh(a_g)
//     c' = f c + i g                                          h' = o tanh(c')
// Gate k of unit j sits at k H + j of its batch row's 4H numbers.
#pragma once

#include "common.cuh"

// Which gate: k in the (i, f, g, o) order of the 4H layout.
enum { GATE_I = 0, GATE_F = 1, GATE_G = 2, GATE_O = 3 };

// One unit's four gates (or their pre-activations, or their gradients).
template <typename T>
struct LstmGates { T i, f, g, o; };

// What a step makes of one unit: the new cell state c', tanh(c') (the backward reads it),
// and the new output h'.
template <typename T>
struct LstmCell { T c, tc, h; };

// The four gates of one unit from their row: unit[0], unit[H], unit[2H], unit[3H], where
// unit points at gate i of the unit (row + j).
template <typename T>
__device__ __forceinline__ LstmGates<T> lstm_load(const T* unit, int H) {
    return {unit[0], unit[H], unit[2 * H], unit[3 * H]};
}

template <typename T>
__device__ __forceinline__ void lstm_store(T* unit, int H, LstmGates<T> v) {
    unit[0] = v.i;
    unit[H] = v.f;
    unit[2 * H] = v.g;
    unit[3 * H] = v.o;
}

// -- forward -----------------------------------------------------------------------------

// Gate k's activation: the candidate g = tanh(.), the three gates proper sigmoid(.)
// (common.cuh's gate_sigmoid, as the reference's gate_sigmoid_).
template <typename T>
__device__ __forceinline__ T lstm_activate(T a, int gate) {
    return gate == GATE_G ? tanh_t(a) : gate_sigmoid(a);
}

template <typename T>
__device__ __forceinline__ LstmGates<T> lstm_gates(LstmGates<T> a) {
    return {lstm_activate(a.i, GATE_I),   // input gate: how much of g to write
            lstm_activate(a.f, GATE_F),   // forget gate: how much of c to keep
            lstm_activate(a.g, GATE_G),   // the candidate values
            lstm_activate(a.o, GATE_O)};  // output gate: how much of the cell to show
}

// The cell update from the activated gates and the state c entering the step.
template <typename T>
__device__ __forceinline__ LstmCell<T> lstm_cell(LstmGates<T> a, T c) {
    T cn = a.f * c + a.i * a.g;
    T tc = tanh_t(cn);
    return {cn, tc, a.o * tc};
}

// -- backward ----------------------------------------------------------------------------

// The gradients of the pre-activations, into d, from gh = dL/dh' and gc = the gradient c'
// gets directly (from the next step, or the loss), with a the activated gates, c the state
// that entered the step and tc = tanh(c'); returns dL/dc:
//     gc~ = gc + gh o (1 - tanh(c')^2)       (h' = o tanh(c') passes gh on to c')
//     d_i = gc~ g i (1 - i)     d_f = gc~ c f (1 - f)
//     d_g = gc~ i (1 - g^2)     d_o = gh tanh(c') o (1 - o)
//     dL/dc = gc~ f             (c reaches c' through f only)
template <typename T>
__device__ __forceinline__ T lstm_cell_backward(LstmGates<T> a, T c, T tc, T gh, T gc,
                                                LstmGates<T>& d) {
    T dc = gc + gh * a.o * (T(1) - tc * tc);
    d.i = dc * a.g * a.i * (T(1) - a.i);
    d.f = dc * c * a.f * (T(1) - a.f);
    d.g = dc * a.i * (T(1) - a.g * a.g);
    d.o = gh * tc * a.o * (T(1) - a.o);
    return dc * a.f;
}
