"""The NumPy floor: each workload written by hand in NumPy, with no autodiff.

This is the code one would write without a framework, min-char-rnn style: a loop
forward over the window storing what the backward needs, a loop backward in reverse
time adding into the weight gradients, then the update. It computes the losses too
(a trainer reports them). It calls the same NumPy functions minigrad's ops call
(np.dot for every 2-D product: NumPy's @ does not use BLAS when an inner size is 1),
so minigrad's time divided by this one is what recording a tape and walking it costs.
"""
import numpy as np


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
            # the update (out of place, as minigrad's optimizers)
            for k in p:
                if w.optimizer == "sgd":
                    p[k] = p[k] - w.lr * grads[k]
                else:
                    sums[k] += grads[k] * grads[k]
                    p[k] = p[k] - w.lr * grads[k] / (np.sqrt(sums[k]) + w.eps)
        return p
    return run


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
