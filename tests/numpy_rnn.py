"""Elman, LSTM and GRU over a sequence, forward and backpropagation through time written out
by hand in plain NumPy, min-char-rnn style: the independent reference of the sequence layers
(tests/test_layers.py).

It imports nothing from minigrad: every line comes from PyTorch's equations (the docstring
of minigrad/nn/recurrent.py repeats them), gate order and weight layout:

  Elman   h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)                     act = tanh or relu
  LSTM    i, f, g, o = split(x W_ih^T + b_ih + h W_hh^T + b_hh)          (4 blocks of H rows)
          c' = sigmoid(f) c + sigmoid(i) tanh(g);   h' = sigmoid(o) tanh(c')
  GRU     r, z, n blocks of a_ih = x W_ih^T + b_ih and a_hh = h W_hh^T + b_hh
          r = sigmoid(a_ih,r + a_hh,r);  z = sigmoid(a_ih,z + a_hh,z)
          n = tanh(a_ih,n + r a_hh,n);   h' = (1 - z) n + z h

Shapes: xs (T, B, I); every state (B, H); W_ih (G*H, I), W_hh (G*H, H), biases (G*H,) or None.
Gradients are named g_<what>, as in minigrad: g_h = dL/dh. Meant for float64.
"""
import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def forward(kind, xs, state, W_ih, W_hh, b_ih=None, b_hh=None):
    """kind: "rnn_tanh", "rnn_relu", "lstm" or "gru"; state: (h0,), or (h0, c0) for the LSTM.

    Returns (hs, last, cache): hs (T, B, H) holds every h_t, last the final state as a tuple
    like `state`, cache what `backward` needs."""
    p = dict(W_ih=W_ih, W_hh=W_hh, b_ih=b_ih, b_hh=b_hh)
    step = {"rnn_tanh": _elman, "rnn_relu": _elman, "lstm": _lstm, "gru": _gru}[kind]
    hs, steps = [], []
    for x in xs:  # forward in time, keeping each step's values
        state, saved = step(kind, p, x, state)
        hs.append(state[0])
        steps.append(saved)
    return np.stack(hs), state, (kind, p, steps)


def backward(cache, g_hs, g_last):
    """g_hs = dL/dhs (T, B, H) and g_last = dL/d(the final state), a tuple like it, come from
    outside the recurrence. Returns a dict of gradients: xs, h0 (and c0), W_ih, W_hh (and
    b_ih, b_hh when the forward had biases)."""
    kind, p, steps = cache
    back = {"rnn_tanh": _elman_back, "rnn_relu": _elman_back, "lstm": _lstm_back, "gru": _gru_back}[kind]
    grads = {name: np.zeros_like(p[name]) for name in ("W_ih", "W_hh")}
    if p["b_ih"] is not None:
        grads["b_ih"], grads["b_hh"] = np.zeros_like(p["b_ih"]), np.zeros_like(p["b_hh"])
    g_xs = []
    g_state = tuple(g_last)                              # what reaches the state from later steps
    for t in reversed(range(len(steps))):                # backward in reverse time
        g_state = (g_state[0] + g_hs[t],) + g_state[1:]  # h_t is also an output
        g_x, g_state = back(kind, p, steps[t], g_state, grads)
        g_xs.append(g_x)
    grads["xs"] = np.stack(g_xs[::-1])
    grads["h0"] = g_state[0]
    if kind == "lstm":
        grads["c0"] = g_state[1]
    return grads


def _pre(p, x, h):
    """x W_ih^T + b_ih and h W_hh^T + b_hh, the two affine parts of every cell."""
    a_ih, a_hh = x @ p["W_ih"].T, h @ p["W_hh"].T
    if p["b_ih"] is not None:
        a_ih, a_hh = a_ih + p["b_ih"], a_hh + p["b_hh"]
    return a_ih, a_hh


def _affine_back(p, saved, g_a_ih, g_a_hh, grads):
    """Add the weight gradients of the affine parts; return (g_x, the gradient h gets through W_hh)."""
    grads["W_ih"] += g_a_ih.T @ saved["x"]  # a_ih = x W_ih^T + b_ih
    grads["W_hh"] += g_a_hh.T @ saved["h"]  # a_hh = h W_hh^T + b_hh
    if "b_ih" in grads:
        grads["b_ih"] += g_a_ih.sum(axis=0)
        grads["b_hh"] += g_a_hh.sum(axis=0)
    return g_a_ih @ p["W_ih"], g_a_hh @ p["W_hh"]


# -- Elman -----------------------------------------------------------------------------

def _elman(kind, p, x, state):
    (h,) = state
    a_ih, a_hh = _pre(p, x, h)
    a = a_ih + a_hh                                                 # pre-activation
    h_new = np.tanh(a) if kind == "rnn_tanh" else np.maximum(a, 0)  # new hidden state
    return (h_new,), dict(x=x, h=h, a=a, h_new=h_new)


def _elman_back(kind, p, s, g_state, grads):
    (g_h,) = g_state
    if kind == "rnn_tanh":
        g_a = g_h * (1 - s["h_new"] ** 2)  # tanh' = 1 - tanh^2
    else:
        g_a = g_h * (s["a"] > 0)           # relu' = 1 above 0, else 0 (NOTE: 0 at 0, as PyTorch)
    g_x, g_h_prev = _affine_back(p, s, g_a, g_a, grads)
    return g_x, (g_h_prev,)


# -- LSTM ------------------------------------------------------------------------------

def _lstm(kind, p, x, state):
    h, c = state
    H = h.shape[1]
    a_ih, a_hh = _pre(p, x, h)
    a = a_ih + a_hh
    i = sigmoid(a[:, :H])           # input gate
    f = sigmoid(a[:, H:2 * H])      # forget gate
    g = np.tanh(a[:, 2 * H:3 * H])  # candidate
    o = sigmoid(a[:, 3 * H:])       # output gate
    c_new = f * c + i * g           # new cell state
    h_new = o * np.tanh(c_new)      # new hidden state
    return (h_new, c_new), dict(x=x, h=h, c=c, i=i, f=f, g=g, o=o, c_new=c_new)


def _lstm_back(kind, p, s, g_state, grads):
    g_h, g_c = g_state
    i, f, g, o = s["i"], s["f"], s["g"], s["o"]
    tc = np.tanh(s["c_new"])
    g_o = g_h * tc                                  # h' = o tanh(c')
    g_c = g_c + g_h * o * (1 - tc ** 2)             # ... and c' reaches h' through tanh
    g_i, g_f, g_g = g_c * g, g_c * s["c"], g_c * i  # c' = f c + i g
    g_a = np.concatenate([g_i * i * (1 - i),        # sigmoid' = s (1 - s)
                         g_f * f * (1 - f),
                         g_g * (1 - g ** 2),
                         g_o * o * (1 - o)], axis=1)
    g_x, g_h_prev = _affine_back(p, s, g_a, g_a, grads)
    return g_x, (g_h_prev, g_c * f)  # c reaches c' through f only


# -- GRU -------------------------------------------------------------------------------

def _gru(kind, p, x, state):
    (h,) = state
    H = h.shape[1]
    a_ih, a_hh = _pre(p, x, h)
    r = sigmoid(a_ih[:, :H] + a_hh[:, :H])              # reset gate
    z = sigmoid(a_ih[:, H:2 * H] + a_hh[:, H:2 * H])    # update gate
    n = np.tanh(a_ih[:, 2 * H:] + r * a_hh[:, 2 * H:])  # candidate: r after the matmul
    h_new = (1 - z) * n + z * h                         # new hidden state
    return (h_new,), dict(x=x, h=h, a_hh=a_hh, r=r, z=z, n=n)


def _gru_back(kind, p, s, g_state, grads):
    (g_h,) = g_state
    H = g_h.shape[1]
    r, z, n, h = s["r"], s["z"], s["n"], s["h"]
    g_n = g_h * (1 - z)                                      # h' = (1 - z) n + z h
    g_z = g_h * (h - n)
    g_h_direct = g_h * z                                     # h reaches h' directly, through z
    g_an = g_n * (1 - n ** 2)                                # n = tanh(a_ih,n + r a_hh,n)
    g_r = g_an * s["a_hh"][:, 2 * H:]                        # r scales a_hh,n
    g_ar, g_az = g_r * r * (1 - r), g_z * z * (1 - z)        # r, z = sigmoid(a_ih + a_hh)
    g_a_ih = np.concatenate([g_ar, g_az, g_an], axis=1)
    g_a_hh = np.concatenate([g_ar, g_az, g_an * r], axis=1)  # a_hh,n enters times r
    g_x, g_h_prev = _affine_back(p, s, g_a_ih, g_a_hh, grads)
    return g_x, (g_h_prev + g_h_direct,)
