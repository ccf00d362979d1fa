"""The NumPy floor: each workload written by hand in NumPy, with no autodiff.

This is the code one would write without a framework, min-char-rnn style: a loop
forward over the window storing what the backward needs, a loop backward in reverse
time adding into the weight gradients, then the update. It computes the losses too
(a trainer reports them). It calls the same NumPy functions minigrad's ops call
(np.dot for every 2-D product: NumPy's @ does not use BLAS when an inner size is 1),
so minigrad's time divided by this one is what recording a tape and walking it costs.
"""
import numpy as np

from .workloads import dropout_generator


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def numpy_recurrent(w, weights, data):
    """TBPTT(k, k) training of an Elman or LSTM cell with a readout, by hand."""
    xs, ys = data
    step_forward, step_backward = {"rnn": (_elman_forward, _elman_backward),
                                   "lstm": (_lstm_forward, _lstm_backward)}[w.cell]
    loss_forward = _mse if w.loss == "mse" else _cross_entropy

    def run():
        p = {k: v.copy() for k, v in weights.items()}
        sums = {k: np.zeros_like(v) for k, v in p.items()}  # Adagrad's running sums
        state = None
        for start in range(0, w.steps, w.k):
            end = min(start + w.k, w.steps)
            # forward through the window, keeping each step's cache
            caches, window_loss = [], 0.0
            for t in range(start, end):
                state, cache = step_forward(p, xs[t], state)
                loss, dy = loss_forward(p, cache["h"], ys[t])
                window_loss += loss
                caches.append((cache, dy))
            # backward in reverse time; dstate is the gradient reaching the state from later steps
            grads = {k: np.zeros_like(v) for k, v in p.items()}
            dstate = None
            for cache, dy in reversed(caches):
                grads["head.weight"] += np.dot(dy.T, cache["h"])
                grads["head.bias"] += dy.sum(axis=0)
                dh = np.dot(dy, p["head.weight"])
                dstate = step_backward(p, cache, dh, dstate, grads)
            _update(w, p, grads, sums)
        return p
    return run


def _update(w, p, grads, sums):
    """SGD or Adagrad (sums: its running sums of squares), out of place as minigrad's optimizers."""
    for k in p:
        if w.optimizer == "sgd":
            p[k] = p[k] - w.lr * grads[k]
        else:
            sums[k] += grads[k] * grads[k]
            p[k] = p[k] - w.lr * grads[k] / (np.sqrt(sums[k]) + w.eps)


def _mse(p, h, y):
    """Readout and mean squared error; returns (loss, dloss/dy_hat)."""
    y_hat = np.dot(h, p["head.weight"].T) + p["head.bias"]
    d = y_hat - y
    return float((d * d).mean()), (2 / d.size) * d


def _cross_entropy(p, h, y):
    """Readout and softmax cross-entropy (averaged over the batch)."""
    logits = np.dot(h, p["head.weight"].T) + p["head.bias"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = -np.log(probs[rows, y]).mean()
    dy = probs
    dy[rows, y] -= 1        # d loss / d logits = softmax - onehot
    return float(loss), dy / len(y)


def _elman_forward(p, x, h):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)."""
    if h is None:
        h = np.zeros((x.shape[0], p["weight_hh"].shape[1]), x.dtype)
    h_new = np.tanh(np.dot(x, p["weight_ih"].T) + p["bias_ih"] + np.dot(h, p["weight_hh"].T) + p["bias_hh"])
    return h_new, {"x": x, "h_prev": h, "h": h_new}


def _elman_backward(p, cache, dh, dh_next, grads):
    """Add this step's weight gradients; return the gradient reaching h_prev."""
    if dh_next is not None:
        dh = dh + dh_next
    da = dh * (1 - cache["h"] * cache["h"])        # tanh' = 1 - tanh^2
    grads["weight_ih"] += np.dot(da.T, cache["x"])
    grads["weight_hh"] += np.dot(da.T, cache["h_prev"])
    db = da.sum(axis=0)
    grads["bias_ih"] += db
    grads["bias_hh"] += db
    return np.dot(da, p["weight_hh"])


def _lstm_forward(p, x, state):
    """i, f, g, o gates; c' = f c + i g; h' = o tanh(c')."""
    n = p["weight_hh"].shape[1]
    if state is None:
        zero = np.zeros((x.shape[0], n), x.dtype)
        state = (zero, zero)
    h, c = state
    a = np.dot(x, p["weight_ih"].T) + p["bias_ih"] + np.dot(h, p["weight_hh"].T) + p["bias_hh"]
    i, f, o = _sigmoid(a[:, :n]), _sigmoid(a[:, n:2 * n]), _sigmoid(a[:, 3 * n:])
    g = np.tanh(a[:, 2 * n:3 * n])
    c_new = f * c + i * g
    tc = np.tanh(c_new)
    h_new = o * tc
    return (h_new, c_new), {"x": x, "h_prev": h, "c_prev": c, "i": i, "f": f, "g": g, "o": o,
                            "tc": tc, "h": h_new}


def _lstm_backward(p, cache, dh, dstate, grads):
    """Add this step's weight gradients; return the gradients reaching (h_prev, c_prev)."""
    i, f, g, o, tc = cache["i"], cache["f"], cache["g"], cache["o"], cache["tc"]
    if dstate is not None:
        dh = dh + dstate[0]
    dc = dh * o * (1 - tc * tc)                           # through h' = o tanh(c')
    if dstate is not None:
        dc = dc + dstate[1]                               # and straight from c'
    da = np.concatenate([dc * g * i * (1 - i),            # input gate
                         dc * cache["c_prev"] * f * (1 - f),  # forget gate
                         dc * i * (1 - g * g),            # cell candidate
                         dh * tc * o * (1 - o)], axis=1)  # output gate
    grads["weight_ih"] += np.dot(da.T, cache["x"])
    grads["weight_hh"] += np.dot(da.T, cache["h_prev"])
    db = da.sum(axis=0)
    grads["bias_ih"] += db
    grads["bias_hh"] += db
    return np.dot(da, p["weight_hh"]), dc * f


# -- the window floor: what a careful hand batches over a window ---------------------------

def numpy_recurrent_window(w, weights, data):
    """The same training, written to make the fewest NumPy calls by hand: the input
    projections and the readout of a window's k steps are one matmul each, and only the
    recurrence goes step by step (forward, then backward in reverse time). This is the
    floor for minigrad's sequence layers, which batch the same way.

    Stacked layers (W6) run one after the other over the window, each layer's states the
    next one's inputs through dropout, with the masks minigrad's layer draws (from
    workloads.dropout_generator: entries kept where a uniform draw is >= dropout)."""
    xs, ys = data
    forward, backward = {"rnn": (_elman_window, _elman_window_backward),
                         "lstm": (_lstm_window, _lstm_window_backward)}[w.cell]
    keep = 1 - w.dropout

    def run():
        p = {k: v.copy() for k, v in weights.items()}
        sums = {k: np.zeros_like(v) for k, v in p.items()}  # Adagrad's running sums
        states = [None] * w.layers
        masks = dropout_generator(w)
        for start in range(0, w.steps, w.k):
            X, Y = xs[start:start + w.k], ys[start:start + w.k]
            T, B = X.shape[:2]
            layers = [_layer(p, suffix) for suffix in w.layer_suffixes]
            caches = []                     # per layer: (its cache, the mask on its input)
            for k, q in enumerate(layers):
                mask = None
                if k and w.dropout:         # dropout on the states of the layer below
                    mask = (masks.random(X.shape) >= w.dropout).astype(X.dtype)
                    X = X * mask / keep
                cache, states[k] = forward(q, X, states[k])
                caches.append((cache, mask))
                X = cache["Hs"][1:]         # every step's h: the next layer's inputs
            Hs = X.reshape(T * B, -1)                          # every step's h, as rows
            out = np.dot(Hs, p["head.weight"].T) + p["head.bias"]
            if w.loss == "mse":  # the sum over steps of each step's mean squared error
                d = out - Y.reshape(T * B, -1)
                dout = (2 / (B * d.shape[1])) * d
            else:                # the sum over steps of each step's mean cross-entropy
                e = np.exp(out - out.max(axis=1, keepdims=True))
                dout = e / e.sum(axis=1, keepdims=True)
                dout[np.arange(T * B), Y.reshape(-1)] -= 1
                dout /= B
            grads = {"head.weight": np.dot(dout.T, Hs), "head.bias": dout.sum(axis=0)}
            dHs = np.dot(dout, p["head.weight"]).reshape(T, B, -1)  # dL/dh of the top layer
            for k in reversed(range(w.layers)):
                (cache, mask), q, layer_grads = caches[k], layers[k], {}
                D = backward(q, cache, dHs, layer_grads)
                grads.update({name + w.layer_suffixes[k]: g for name, g in layer_grads.items()})
                if k:                       # dL/dh of the layer below, back through dropout
                    dHs = np.dot(D.reshape(T * B, -1), q["weight_ih"]).reshape(T, B, -1)
                    if mask is not None:
                        dHs = dHs * mask / keep
            _update(w, p, grads, sums)
        return p
    return run


def _layer(p, suffix):
    """One layer's weights, named as a cell's (weight_ih, ...), from the workload's names."""
    return {name: p[name + suffix] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}


def _projections(p, X):
    """x_t W_ih^T + b_ih + b_hh for every step of the window: one matmul."""
    T, B, _ = X.shape
    return np.dot(X.reshape(T * B, -1), p["weight_ih"].T).reshape(T, B, -1) + (p["bias_ih"] + p["bias_hh"])


def _states(p, X, h):
    """Hs (T + 1, B, H) with Hs[0] = h (zeros for None): the states, filled step by step."""
    T, B, _ = X.shape
    Hs = np.empty((T + 1, B, p["weight_hh"].shape[1]), X.dtype)
    Hs[0] = 0 if h is None else h
    return Hs


def _window_weight_grads(p, cache, D, grads):
    """The cell's weight gradients from D = dL/d(pre-activations), (T, B, G*H): one matmul
    each. Returns D (a layer above the first passes it on to the layer below)."""
    X, Hs = cache["X"], cache["Hs"]
    T, B = X.shape[:2]
    D2 = D.reshape(T * B, -1)
    grads["weight_ih"] = np.dot(D2.T, X.reshape(T * B, -1))
    grads["weight_hh"] = np.dot(D2.T, Hs[:-1].reshape(T * B, -1))
    grads["bias_ih"] = grads["bias_hh"] = D2.sum(axis=0)
    return D


def _elman_window(p, X, h):
    A = _projections(p, X)
    Hs = _states(p, X, h)
    for t in range(len(X)):
        Hs[t + 1] = np.tanh(A[t] + np.dot(Hs[t], p["weight_hh"].T))
    return {"X": X, "Hs": Hs}, Hs[-1]


def _elman_window_backward(p, cache, dHs, grads):
    Hs = cache["Hs"]
    D = np.empty_like(dHs)
    dh = 0                                  # the gradient reaching h_t from later steps
    for t in range(len(D) - 1, -1, -1):
        D[t] = (dHs[t] + dh) * (1 - Hs[t + 1] * Hs[t + 1])
        dh = np.dot(D[t], p["weight_hh"])
    return _window_weight_grads(p, cache, D, grads)


def _lstm_window(p, X, state):
    n = p["weight_hh"].shape[1]
    A = _projections(p, X)                  # activated in place, step by step
    Hs = _states(p, X, None if state is None else state[0])
    Cs = _states(p, X, None if state is None else state[1])
    TC = np.empty_like(Hs[1:])
    for t in range(len(X)):
        a = A[t]
        a += np.dot(Hs[t], p["weight_hh"].T)
        a[:, :2 * n] = _sigmoid(a[:, :2 * n])
        a[:, 2 * n:3 * n] = np.tanh(a[:, 2 * n:3 * n])
        a[:, 3 * n:] = _sigmoid(a[:, 3 * n:])
        i, f, g, o = a[:, :n], a[:, n:2 * n], a[:, 2 * n:3 * n], a[:, 3 * n:]
        Cs[t + 1] = f * Cs[t] + i * g
        TC[t] = np.tanh(Cs[t + 1])
        Hs[t + 1] = o * TC[t]
    return {"X": X, "Hs": Hs, "Cs": Cs, "TC": TC, "A": A}, (Hs[-1], Cs[-1])


def _lstm_window_backward(p, cache, dHs, grads):
    n = p["weight_hh"].shape[1]
    A, Cs, TC = cache["A"], cache["Cs"], cache["TC"]
    D = np.empty_like(A)
    dh = dc = 0                             # the gradients reaching h_t and c_t from later steps
    for t in range(len(D) - 1, -1, -1):
        a, tc = A[t], TC[t]
        i, f, g, o = a[:, :n], a[:, n:2 * n], a[:, 2 * n:3 * n], a[:, 3 * n:]
        dh = dHs[t] + dh
        dc = dc + dh * o * (1 - tc * tc)    # through h' = o tanh(c'), and straight from c'
        D[t, :, :n] = dc * g * i * (1 - i)
        D[t, :, n:2 * n] = dc * Cs[t] * f * (1 - f)
        D[t, :, 2 * n:3 * n] = dc * i * (1 - g * g)
        D[t, :, 3 * n:] = dh * tc * o * (1 - o)
        dh, dc = np.dot(D[t], p["weight_hh"]), dc * f
    return _window_weight_grads(p, cache, D, grads)


def numpy_chain(w, data):
    """y = tanh(y * a + b), repeated, by hand; returns d(sum y)/dx."""
    x, a, b = data

    def run():
        ys = []
        y = x
        for _ in range(w.ops // 3):
            y = np.tanh(y * a + b)
            ys.append(y)
        g = np.ones_like(y)
        for y in reversed(ys):
            g = g * (1 - y * y) * a     # through tanh, then through * a (+ b passes it on)
        return {"x.grad": g}
    return run
