#include "common.cuh"

// gru.cu: the GRU cell's pointwise part, forward and backward, one kernel each.
//
// Primitives: gru_step and gru_step_backward. From a_ih = x W_ih^T + b_ih and
// a_hh = h W_hh^T + b_hh, (B, 3H) each, gates in the order r, z, n:
//     r = sigmoid(a_ih,r + a_hh,r)      z = sigmoid(a_ih,z + a_hh,z)
//     n = tanh(a_ih,n + r a_hh,n)       (the reset gate acts after the recurrent matmul)
//     h' = (1 - z) n + z h = n + z (h - n)
// One thread per (batch row b, hidden unit j), grid-stride over the B * H pairs.

// a_ih, a_hh: (B, 3H)   h: (B, H)   ->   h_new: (B, H), rz: (B, 2H) = (r, z) side by
// side, cand: (B, H) = n. rz and n are what the backward needs.
template <typename T>
__device__ void gru_step(const T* a_ih, const T* a_hh, const T* h, T* h_new, T* rz, T* cand,
                         int B, int H) {
    long long count = (long long)B * H;  // (b, j) pairs
    for (long long idx = global_index(); idx < count; idx += grid_stride()) {
        long long b = idx / H, j = idx % H;
        const T* ai = a_ih + b * 3 * H;  // this batch row's gates
        const T* ah = a_hh + b * 3 * H;
        T r = gate_sigmoid(ai[j] + ah[j]);                 // reset: how much of h the candidate sees
        T z = gate_sigmoid(ai[H + j] + ah[H + j]);         // update: how much of h to keep
        T cn = tanh_t(ai[2 * H + j] + r * ah[2 * H + j]);  // the candidate n
        h_new[idx] = cn + z * (h[idx] - cn);
        rz[b * 2 * H + j] = r;
        rz[b * 2 * H + H + j] = z;
        cand[idx] = cn;
    }
}

// From g = dL/dh', with a_hh, rz, cand (= n), h as the forward saw or made them:
//     dn = g (1 - z) (1 - n^2)                  (through n = tanh(a_ih,n + r a_hh,n))
//     d_ih,n = dn              d_hh,n = dn r
//     d_ih,r = d_hh,r = dn a_hh,n r (1 - r)      (r scales a_hh,n)
//     d_ih,z = d_hh,z = g (h - n) z (1 - z)      (h' = n + z (h - n))
//     gh = g z                                   (h reaches h' directly, through z)
// r and z see a_ih + a_hh, so both get the same gradient there.
// d_ih, d_hh: (B, 3H), layout of a_hh.   gh: (B, H); accumulate = 1: g z is added to what gh
// holds (the gradient of the state before, which the sequence op gathers there).
template <typename T>
__device__ void gru_step_backward(const T* g, const T* a_hh, const T* rz, const T* cand,
                                  const T* h, T* d_ih, T* d_hh, T* gh, int B, int H,
                                  int accumulate) {
    long long count = (long long)B * H;  // (b, j) pairs
    for (long long idx = global_index(); idx < count; idx += grid_stride()) {
        long long b = idx / H, j = idx % H;
        long long row = b * 3 * H;  // where this batch row's gates start in a_hh, d_ih, d_hh
        T r = rz[b * 2 * H + j], z = rz[b * 2 * H + H + j];
        T cn = cand[idx], dh = g[idx];
        T dn = dh * (T(1) - z) * (T(1) - cn * cn);
        T dr = dn * a_hh[row + 2 * H + j] * r * (T(1) - r);
        T dz = dh * (h[idx] - cn) * z * (T(1) - z);
        d_ih[row + j] = dr;
        d_hh[row + j] = dr;
        d_ih[row + H + j] = dz;
        d_hh[row + H + j] = dz;
        d_ih[row + 2 * H + j] = dn;
        d_hh[row + 2 * H + j] = dn * r;
        gh[idx] = accumulate ? gh[idx] + dh * z : dh * z;
    }
}

// -- entry points: one per dtype ---------------------------------------------------------

extern "C" __global__ void gru_step_f32(const float* a_ih, const float* a_hh, const float* h,
                                        float* h_new, float* rz, float* cand, int B, int H) {
    gru_step<float>(a_ih, a_hh, h, h_new, rz, cand, B, H);
}
extern "C" __global__ void gru_step_f64(const double* a_ih, const double* a_hh, const double* h,
                                        double* h_new, double* rz, double* cand, int B, int H) {
    gru_step<double>(a_ih, a_hh, h, h_new, rz, cand, B, H);
}

extern "C" __global__ void gru_step_backward_f32(const float* g, const float* a_hh, const float* rz,
                                                 const float* cand, const float* h, float* d_ih,
                                                 float* d_hh, float* gh, int B, int H,
                                                 int accumulate) {
    gru_step_backward<float>(g, a_hh, rz, cand, h, d_ih, d_hh, gh, B, H, accumulate);
}
extern "C" __global__ void gru_step_backward_f64(const double* g, const double* a_hh,
                                                 const double* rz, const double* cand,
                                                 const double* h, double* d_ih, double* d_hh,
                                                 double* gh, int B, int H, int accumulate) {
    gru_step_backward<double>(g, a_hh, rz, cand, h, d_ih, d_hh, gh, B, H, accumulate);
}
