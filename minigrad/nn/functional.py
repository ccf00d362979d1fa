"""Neural-network functions: each one fused op with a hand-derived backward.

A fused op computes in one record what would otherwise take several (linear is
a matmul, a transpose and an add): fewer records, fewer temporaries, and a
backward that can be read off the maths.
"""
import numpy as np

from ..backend import array_module
from ..ops import _result, _tensors, mm
from ..tensor import Tensor

_REDUCTIONS = ("mean", "sum", "none")


def linear(x, weight, bias=None):
    """y = x W^T + b, as PyTorch's linear.

    x: (..., in)   weight: (out, in)   bias: (out,) or None   ->   y: (..., out)
    """
    tensors = _tensors("linear", [x, weight] if bias is None else [x, weight, bias])
    x, weight = tensors[0], tensors[1]
    X, W = x.data, weight.data
    if W.ndim != 2:
        raise ValueError(f"linear: weight must be (out, in), got shape {W.shape}")
    if X.ndim == 0 or X.shape[-1] != W.shape[1]:
        raise ValueError(f"linear: input {X.shape} and weight {W.shape}: "
                         f"in_features {X.shape[-1] if X.ndim else None} and {W.shape[1]} differ")
    out_features, in_features = W.shape
    X2 = X if X.ndim <= 2 else X.reshape(-1, in_features)
    y = mm(X2, W.T)
    if X.ndim > 2:
        y = y.reshape(X.shape[:-1] + (out_features,))
    if bias is not None:
        b = tensors[2].data
        if b.shape != (out_features,):
            raise ValueError(f"linear: bias of shape {b.shape} for weight {W.shape}; "
                             f"expected ({out_features},)")
        y += b  # y is a fresh array: adding in place is safe
    need_x, need_w, has_bias = x.requires_grad, weight.requires_grad, bias is not None

    def backward(g):
        # y = X W^T + b  ->  gX = g W,  gW = g^T X (summed over all leading axes),  gb = sum g
        g2 = g.reshape(-1, out_features)
        gx = mm(g2, W).reshape(X.shape) if need_x else None
        gw = mm(g2.T, X.reshape(-1, in_features)) if need_w else None
        return (gx, gw, g2.sum(axis=0)) if has_bias else (gx, gw)
    return _result("linear", y, tuple(tensors), backward)


def softmax(x, axis=-1):
    """softmax(x)_i = exp(x_i) / sum_j exp(x_j) along `axis`."""
    (x,) = _tensors("softmax", [x])
    xp = array_module(x.data)
    z = x.data - x.data.max(axis=axis, keepdims=True)  # the same result, and exp never overflows
    e = xp.exp(z)
    y = e / e.sum(axis=axis, keepdims=True)

    def backward(g):  # dy_i = y_i (dx_i - sum_j y_j dx_j)  ->  gx = y (g - sum(g y))
        return (y * (g - (g * y).sum(axis=axis, keepdims=True)),)
    return _result("softmax", y, (x,), backward)


def log_softmax(x, axis=-1):
    """log_softmax(x)_i = x_i - log sum_j exp(x_j) along `axis`, computed stably."""
    (x,) = _tensors("log_softmax", [x])
    xp = array_module(x.data)
    z = x.data - x.data.max(axis=axis, keepdims=True)
    y = z - xp.log(xp.exp(z).sum(axis=axis, keepdims=True))

    def backward(g):  # dy_i = dx_i - sum_j softmax_j dx_j  ->  gx = g - softmax * sum(g)
        return (g - xp.exp(y) * g.sum(axis=axis, keepdims=True),)
    return _result("log_softmax", y, (x,), backward)


def _check_reduction(op, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {', '.join(_REDUCTIONS)}, got {reduction!r}")


def mse_loss(pred, target, reduction="mean"):
    """Squared error (pred - target)^2, averaged ("mean"), summed ("sum") or kept ("none").

    pred and target must have the same shape (broadcasting them is almost always a
    bug, such as (N, 1) against (N,)); both may require grad.
    """
    _check_reduction("mse_loss", reduction)
    pred, target = _tensors("mse_loss", [pred, target])
    p, t = pred.data, target.data
    if p.shape != t.shape:
        raise ValueError(f"mse_loss: pred {p.shape} and target {t.shape} differ in shape")
    d = p - t
    sq = d * d
    count = max(d.size, 1)
    if reduction == "none":
        out = sq
    else:  # sum() / count rather than mean(): the same number, without mean's Python layer
        out = sq.sum() if reduction == "sum" else sq.sum() / count
    scale = 2 / count if reduction == "mean" else 2
    need_t = target.requires_grad

    def backward(g):  # d (p - t)^2 = 2 (p - t) (dp - dt)
        gp = (scale * g) * d
        return gp, (-gp if need_t else None)
    return _result("mse_loss", out, (pred, target), backward)


def cross_entropy(logits, targets, reduction="mean"):
    """Cross-entropy of softmax(logits) against integer class targets, as one fused op.

    logits:  (..., C) with the classes on the LAST axis
             (for (N, C) and (C,) this is PyTorch's layout)
    targets: (...) integer class indices in [0, C), a NumPy array or an integer tensor
    loss_k = log sum_c exp(logits_kc) - logits_k,target_k, then averaged, summed or kept.
    Stable for large logits: the row maximum is subtracted first.
    """
    _check_reduction("cross_entropy", reduction)
    if not isinstance(logits, Tensor):
        raise TypeError(f"cross_entropy: logits must be a Tensor, got {type(logits).__name__}")
    t = targets.data if isinstance(targets, Tensor) else np.asarray(targets)
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integer class indices, got dtype {t.dtype}")
    x = logits.data
    if x.ndim == 0 or t.shape != x.shape[:-1]:
        raise ValueError(f"cross_entropy: logits {x.shape} need targets of shape {x.shape[:-1]}, "
                         f"got {t.shape}")
    classes = x.shape[-1]
    if t.size and (t.min() < 0 or t.max() >= classes):
        bad = t[(t < 0) | (t >= classes)].flat[0]
        raise ValueError(f"cross_entropy: target {bad} is out of range for {classes} classes")
    xp = array_module(x)
    # Work on rows: (K, C) logits and K targets, K = the product of the leading axes.
    x2, t1 = x.reshape(-1, classes), t.reshape(-1)
    rows = xp.arange(t1.size)
    z = x2 - x2.max(axis=1, keepdims=True)
    e = xp.exp(z)
    total = e.sum(axis=1)
    losses = xp.log(total) - z[rows, t1]
    count = max(losses.size, 1)
    if reduction == "none":
        out = losses.reshape(t.shape)
    else:  # sum() / count rather than mean(): the same number, without mean's Python layer
        out = losses.sum() if reduction == "sum" else losses.sum() / count

    def backward(g):  # d loss_k / d logits_k = softmax(logits_k) - onehot(target_k)
        grad = e / total[:, None]
        grad[rows, t1] -= 1
        if reduction == "none":
            grad *= g.reshape(-1, 1)
        else:
            grad *= g / count if reduction == "mean" else g
        return (grad.reshape(x.shape),)
    return _result("cross_entropy", out, (logits,), backward)


# -- recurrent cells -------------------------------------------------------------
#
# One time step of a recurrent cell is one op on the tape, as PyTorch defines it:
# gates = x W_ih^T + b_ih + h W_hh^T + b_hh, stacked G*H wide (G gates of H units),
# then a pointwise part. The backward is the pointwise part's derivative, giving
# d(gates), then the affine part's, which is the same for every cell (`_affine_backward`).
# x is (B, I) or, unbatched, (I,); the states are (B, H) or (H,).


def _cell_operands(op, gates, x, states, weight_ih, weight_hh, bias_ih, bias_hh):
    """Check a cell's operands; return (tensors, arrays as 2-D, unbatched?).

    tensors: (x, *states, weight_ih, weight_hh[, bias_ih, bias_hh]), the op's inputs.
    """
    if (bias_ih is None) != (bias_hh is None):
        raise ValueError(f"{op}: give both bias_ih and bias_hh, or neither")
    items = [x, *states, weight_ih, weight_hh]
    if bias_ih is not None:
        items += [bias_ih, bias_hh]
    tensors = _tensors(op, items)
    if tensors[0].data.dtype.kind != "f":
        raise TypeError(f"{op}: x must be a float tensor, got dtype {tensors[0].data.dtype}")
    k = len(states)
    X, W_ih, W_hh = tensors[0].data, tensors[k + 1].data, tensors[k + 2].data
    if W_hh.ndim != 2 or W_hh.shape[0] != gates * W_hh.shape[1]:
        raise ValueError(f"{op}: weight_hh must be ({gates}*H, H), got shape {W_hh.shape}")
    hidden = W_hh.shape[1]
    if X.ndim not in (1, 2):
        raise ValueError(f"{op}: x must be (batch, input_size) or (input_size,), got shape {X.shape}")
    if W_ih.shape != (gates * hidden, X.shape[-1]):
        raise ValueError(f"{op}: weight_ih {W_ih.shape} does not fit input {X.shape} and "
                         f"weight_hh {W_hh.shape}; expected {(gates * hidden, X.shape[-1])}")
    for name, t in zip(("h", "c"), tensors[1:k + 1]):
        if t.shape != X.shape[:-1] + (hidden,):
            raise ValueError(f"{op}: state {name} of shape {t.shape} for input {X.shape} and "
                             f"hidden size {hidden}; expected {X.shape[:-1] + (hidden,)}")
    for t in tensors[k + 3:]:
        if t.shape != (gates * hidden,):
            raise ValueError(f"{op}: a bias of shape {t.shape}; expected ({gates * hidden},)")
    arrays = [t.data for t in tensors]
    unbatched = X.ndim == 1
    if unbatched:  # x and the states as batches of one
        arrays[:k + 1] = [a[None] for a in arrays[:k + 1]]
    return tuple(tensors), arrays, unbatched


def _affine_backward(tensors, k, d_ih, d_hh, X, Hprev, W_ih, W_hh):
    """Gradients of gates_ih = X W_ih^T + b_ih and gates_hh = h W_hh^T + b_hh.

    Given d_ih = dL/d(gates_ih) and d_hh = dL/d(gates_hh) (the same array for cells
    that only use their sum): gX = d_ih W_ih, gh = d_hh W_hh, gW_ih = d_ih^T X,
    gW_hh = d_hh^T h, gb = d summed over the batch. Returns them in the op's input
    order, None where the input does not require grad; the k states after x, of which
    only h gets a gradient here (the cell adds its own terms).
    """
    need = [t.requires_grad for t in tensors]
    gx = mm(d_ih, W_ih) if need[0] else None
    gh = mm(d_hh, W_hh) if need[1] else None
    grads = [gx, gh] + [None] * (k - 1)
    grads.append(mm(d_ih.T, X) if need[k + 1] else None)
    grads.append(mm(d_hh.T, Hprev) if need[k + 2] else None)
    if len(tensors) > k + 3:
        gb_ih = d_ih.sum(axis=0)
        grads += [gb_ih, gb_ih if d_hh is d_ih else d_hh.sum(axis=0)]
    return grads


def _gates(X, Hprev, W_ih, W_hh, biases):
    """x W_ih^T + h W_hh^T (+ b_ih + b_hh): (B, G*H), a fresh array."""
    a = mm(X, W_ih.T)
    a += mm(Hprev, W_hh.T)
    for b in biases:
        a += b
    return a


def _sigmoid_(a):
    """sigmoid(a) = (1 + tanh(a / 2)) / 2, computed in place in `a` (a gate's pre-activation).

    NOTE: gates need the sigmoid to absolute precision only (it multiplies a state or a
    candidate), which this form gives with no overflow, in four passes and no temporary.
    The public sigmoid op keeps `ops.sigmoid_array`, which is slower (a where and a
    division) but also keeps relative precision in the far left tail.
    """
    xp = array_module(a)
    a *= 0.5
    xp.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


def _unbatch(grads, tensors, unbatched):
    """Reshape the gradients of x and the states back to (I,) and (H,) for unbatched input."""
    if unbatched:
        grads = [g.reshape(t.shape) if g is not None else None for g, t in zip(grads, tensors)]
    return tuple(grads)


def rnn_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """One step of an Elman RNN (PyTorch's RNNCell), one op on the tape:

        h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),   act = tanh or relu

    x: (B, I) or (I,)   h: (B, H) or (H,)   weight_ih: (H, I)   weight_hh: (H, H)
    bias_ih, bias_hh: (H,) or both None    ->   h': the shape of h
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"rnn_cell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    tensors, (X, Hprev, W_ih, W_hh, *biases), unbatched = _cell_operands(
        "rnn_cell", 1, x, (h,), weight_ih, weight_hh, bias_ih, bias_hh)
    xp = array_module(X)
    a = _gates(X, Hprev, W_ih, W_hh, biases)
    tanh = nonlinearity == "tanh"
    h_new = xp.tanh(a) if tanh else xp.maximum(a, 0)
    slope = None if tanh else (a > 0)  # relu' (0 at 0, as PyTorch); tanh' comes from h'

    def backward(g):
        g = g.reshape(h_new.shape)
        da = g * (1 - h_new * h_new) if tanh else g * slope  # tanh' = 1 - tanh^2
        return _unbatch(_affine_backward(tensors, 1, da, da, X, Hprev, W_ih, W_hh),
                        tensors, unbatched)
    return _result("rnn_cell", h_new[0] if unbatched else h_new, tensors, backward)


def lstm_cell(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One step of an LSTM (PyTorch's LSTMCell), one op on the tape with two outputs:

        i, f, g, o = split(x W_ih^T + b_ih + h W_hh^T + b_hh)    (gate order i, f, g, o)
        i, f, o = sigmoid(.);  g = tanh(.)
        c' = f * c + i * g
        h' = o * tanh(c')

    x: (B, I) or (I,)   state: (h, c), each (B, H) or (H,)
    weight_ih: (4H, I)   weight_hh: (4H, H)   biases: (4H,) or both None   ->   (h', c')
    """
    if not isinstance(state, tuple) or len(state) != 2:
        raise TypeError(f"lstm_cell: state must be a tuple (h, c), got {type(state).__name__}")
    tensors, (X, Hprev, Cprev, W_ih, W_hh, *biases), unbatched = _cell_operands(
        "lstm_cell", 4, x, state, weight_ih, weight_hh, bias_ih, bias_hh)
    xp = array_module(X)
    n = W_hh.shape[1]
    act = _gates(X, Hprev, W_ih, W_hh, biases)  # activated in place, gate by gate
    _sigmoid_(act[:, :2 * n])
    xp.tanh(act[:, 2 * n:3 * n], out=act[:, 2 * n:3 * n])
    _sigmoid_(act[:, 3 * n:])
    i, f, g, o = act[:, :n], act[:, n:2 * n], act[:, 2 * n:3 * n], act[:, 3 * n:]
    c_new = f * Cprev + i * g
    tc = xp.tanh(c_new)
    h_new = o * tc
    shape = h_new.shape

    def backward(grads):
        gh, gc = (t.reshape(shape) for t in grads)
        # through h' = o tanh(c'): to o, and to c' (joining the gradient c' gets directly)
        gc = gc + gh * o * (1 - tc * tc)
        d = xp.empty_like(act)  # dL/d(gates before activation), gate by gate
        d[:, :n] = gc * g * i * (1 - i)                    # c' = ... + i g
        d[:, n:2 * n] = gc * Cprev * f * (1 - f)           # c' = f c + ...
        d[:, 2 * n:3 * n] = gc * i * (1 - g * g)
        d[:, 3 * n:] = gh * tc * o * (1 - o)
        out = _affine_backward(tensors, 2, d, d, X, Hprev, W_ih, W_hh)
        if tensors[2].requires_grad:
            out[2] = gc * f                                # c reaches c' through f only
        return _unbatch(out, tensors, unbatched)
    if unbatched:
        return _result("lstm_cell", (h_new[0], c_new[0]), tensors, backward)
    return _result("lstm_cell", (h_new, c_new), tensors, backward)


def gru_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One step of a GRU (PyTorch's GRUCell), one op on the tape:

        r, z, n gates (in that order) of a_ih = x W_ih^T + b_ih and a_hh = h W_hh^T + b_hh
        r = sigmoid(a_ih,r + a_hh,r);   z = sigmoid(a_ih,z + a_hh,z)
        n = tanh(a_ih,n + r * a_hh,n)   (the reset gate acts after the recurrent matmul)
        h' = (1 - z) * n + z * h

    x: (B, I) or (I,)   h: (B, H) or (H,)   weight_ih: (3H, I)   weight_hh: (3H, H)
    biases: (3H,) or both None   ->   h': the shape of h
    """
    tensors, (X, Hprev, W_ih, W_hh, *biases), unbatched = _cell_operands(
        "gru_cell", 3, x, (h,), weight_ih, weight_hh, bias_ih, bias_hh)
    xp = array_module(X)
    n = W_hh.shape[1]
    a_ih = mm(X, W_ih.T)
    a_hh = mm(Hprev, W_hh.T)
    if biases:
        a_ih += biases[0]
        a_hh += biases[1]
    rz = _sigmoid_(a_ih[:, :2 * n] + a_hh[:, :2 * n])
    r, z = rz[:, :n], rz[:, n:]
    hn = a_hh[:, 2 * n:]
    cand = xp.tanh(a_ih[:, 2 * n:] + r * hn)
    h_new = (1 - z) * cand + z * Hprev
    shape = h_new.shape

    def backward(g):
        g = g.reshape(shape)
        d_ih = xp.empty_like(a_ih)  # dL/d(a_ih) and dL/d(a_hh), gate by gate
        d_hh = xp.empty_like(a_hh)
        dn = g * (1 - z) * (1 - cand * cand)         # through n = tanh(a_ih,n + r a_hh,n)
        d_ih[:, 2 * n:] = dn
        d_hh[:, 2 * n:] = dn * r
        d_ih[:, :n] = dn * hn * r * (1 - r)          # r scales a_hh,n
        d_ih[:, n:2 * n] = g * (Hprev - cand) * z * (1 - z)  # h' = n + z (h - n)
        d_hh[:, :2 * n] = d_ih[:, :2 * n]            # r and z see a_ih + a_hh: the same gradient
        out = _affine_backward(tensors, 1, d_ih, d_hh, X, Hprev, W_ih, W_hh)
        if tensors[1].requires_grad:
            out[1] = out[1] + g * z                  # h reaches h' directly, through z
        return _unbatch(out, tensors, unbatched)
    return _result("gru_cell", h_new[0] if unbatched else h_new, tensors, backward)


__all__ = ["linear", "softmax", "log_softmax", "mse_loss", "cross_entropy",
           "rnn_cell", "lstm_cell", "gru_cell"]
