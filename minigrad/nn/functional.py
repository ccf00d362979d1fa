"""Neural-network functions: each one fused op with a hand-derived backward.

A fused op computes in one record what would otherwise take several (linear is
a matmul, a transpose and an add): fewer records, fewer temporaries, and a
backward that can be read off the maths.
"""

from ..backends import primitives
from ..backends.devices import array_module, as_array, to_device
from ..ops import _tensors, record
from ..tensor import Tensor
# The recurrent cells and layers live in recurrent.py; they are functions of nn.functional too.
from .recurrent import gru, gru_cell, lstm, lstm_cell, rnn, rnn_cell

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
    y = primitives.matmul(X2, W.T)
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
        # y = X W^T + b  ->  g_X = g W,  g_W = g^T X (summed over all leading axes),  g_b = sum g
        g2 = g.reshape(-1, out_features)
        g_x = primitives.matmul(g2, W).reshape(X.shape) if need_x else None
        g_w = primitives.matmul(g2.T, X.reshape(-1, in_features)) if need_w else None
        return (g_x, g_w, primitives.sum_axes(g2, (0,))) if has_bias else (g_x, g_w)
    return record("linear", y, tuple(tensors), backward)


def softmax(x, axis=-1):
    """softmax(x)_i = exp(x_i) / sum_j exp(x_j) along `axis`."""
    (x,) = _tensors("softmax", [x])
    xp = array_module(x.data)
    z = x.data - x.data.max(axis=axis, keepdims=True)  # the same result, and exp never overflows
    e = xp.exp(z)
    y = e / e.sum(axis=axis, keepdims=True)

    def backward(g):  # dy_i = y_i (dx_i - sum_j y_j dx_j)  ->  g_x = y (g - sum(g y))
        return (y * (g - (g * y).sum(axis=axis, keepdims=True)),)
    return record("softmax", y, (x,), backward)


def log_softmax(x, axis=-1):
    """log_softmax(x)_i = x_i - log sum_j exp(x_j) along `axis`, computed stably."""
    (x,) = _tensors("log_softmax", [x])
    xp = array_module(x.data)
    z = x.data - x.data.max(axis=axis, keepdims=True)
    y = z - xp.log(xp.exp(z).sum(axis=axis, keepdims=True))

    def backward(g):  # dy_i = dx_i - sum_j softmax_j dx_j  ->  g_x = g - softmax * sum(g)
        return (g - xp.exp(y) * g.sum(axis=axis, keepdims=True),)
    return record("log_softmax", y, (x,), backward)


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
        g_p = (scale * g) * d
        return g_p, (-g_p if need_t else None)
    return record("mse_loss", out, (pred, target), backward)


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
    t = targets.data if isinstance(targets, Tensor) else as_array(targets)
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
    t = to_device(t, logits.device)
    # Work on rows: (K, C) logits and K targets, K = the product of the leading axes.
    x2, t1 = x.reshape(-1, classes), t.reshape(-1)
    losses, lse = primitives.softmax_xent(x2, t1)
    count = max(losses.size, 1)
    if reduction == "none":
        out = losses.reshape(t.shape)
    else:  # sum() / count rather than mean(): the same number, without mean's Python layer
        out = primitives.sum_axes(losses, (0,)) if reduction == "sum" else primitives.sum_axes(losses, (0,)) / count

    def backward(g):  # d loss_k / d logits_k = softmax(logits_k) - onehot(target_k)
        scale = xp.empty(t1.size, dtype=x.dtype)  # dL/d loss_k
        scale[...] = g.reshape(-1) if reduction == "none" else (g / count if reduction == "mean" else g)
        return (primitives.softmax_xent_backward(x2, t1, lse, scale).reshape(x.shape),)
    return record("cross_entropy", out, (logits,), backward)


__all__ = ["linear", "softmax", "log_softmax", "mse_loss", "cross_entropy",
           "rnn_cell", "lstm_cell", "gru_cell", "rnn", "lstm", "gru"]
