"""Neural-network functions: each one fused op with a hand-derived backward.

A fused op computes in one record what would otherwise take several (linear is
a matmul, a transpose and an add): fewer records, fewer temporaries, and a
backward that can be read off the maths.
"""

import numpy as np

from ..backends import primitives
from ..backends.devices import array_module, as_array, to_device
from ..ops import _tensors, record
from ..tensor import FLOAT_DTYPES, Tensor, _generator
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
    count = d.size  # 0 for an empty input: its mean is 0 / 0 = NaN, as numpy.mean's and PyTorch's
    if reduction == "none":
        out = sq
    else:  # sum() / count rather than mean(): the same number, without mean's Python layer
        out = sq.sum() if reduction == "sum" else sq.sum() / count
    # An empty input has an empty gradient whatever the scale: 2 stands in for 2 / 0.
    scale = 2 / count if reduction == "mean" and count else 2
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
    losses, _ = primitives.softmax_xent(x2, t1)  # the backward recomputes softmax: no lse
    count = losses.size  # 0 for an empty input: its mean is 0 / 0 = NaN, as numpy.mean's and PyTorch's
    if reduction == "none":
        out = losses.reshape(t.shape)
    else:  # sum() / count rather than mean(): the same number, without mean's Python layer
        out = primitives.sum_axes(losses, (0,)) if reduction == "sum" else primitives.sum_axes(losses, (0,)) / count

    def backward(g):  # d loss_k / d logits_k = softmax(logits_k) - onehot(target_k)
        scale = xp.empty(t1.size, dtype=x.dtype)  # dL/d loss_k
        scale[...] = g.reshape(-1) if reduction == "none" else (g / count if reduction == "mean" else g)
        return (primitives.softmax_xent_backward(x2, t1, scale).reshape(x.shape),)
    return record("cross_entropy", out, (logits,), backward)


def embedding(indices, weight, padding_idx=None):
    """Rows of weight picked by integer indices, as PyTorch's embedding: y[...] = W[indices[...]].

    indices: (...) integers in [0, num_embeddings), an array or an integer Tensor
    weight:  (num_embeddings, dim)   ->   y: (..., dim)
    padding_idx: a row that gets no gradient (negative counts from the end), as PyTorch's.
    """
    (weight,) = _tensors("embedding", [weight])
    W = weight.data
    if W.ndim != 2:
        raise ValueError(f"embedding: weight must be (num_embeddings, dim), got shape {W.shape}")
    rows = W.shape[0]
    pad = _padding_index("embedding", padding_idx, rows)
    idx = indices.data if isinstance(indices, Tensor) else as_array(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= rows):
        bad = idx[(idx < 0) | (idx >= rows)].flat[0]
        raise ValueError(f"embedding: index {bad} is out of range for {rows} embeddings")
    idx = to_device(idx, weight.device)
    shape = W.shape

    def backward(g):  # y = W[idx]  ->  g_W[i] = the sum of g over the places that picked row i
        xp = array_module(g)
        g_w = xp.zeros(shape, dtype=g.dtype)
        xp.add.at(g_w, idx, g)  # an index may repeat: add.at accumulates where += would not
        if pad is not None:
            g_w[pad] = 0  # NOTE: the padding row is never trained, as in PyTorch
        return (g_w,)
    return record("embedding", W[idx], (weight,), backward)


def _padding_index(op, padding_idx, rows):
    """padding_idx as a row in [0, rows), or None; negative counts from the end."""
    if padding_idx is None:
        return None
    if (not isinstance(padding_idx, (int, np.integer)) or isinstance(padding_idx, bool)
            or not -rows <= padding_idx < rows):
        raise ValueError(f"{op}: padding_idx must be an integer in [-{rows}, {rows}) for {rows} "
                         f"embeddings, got {padding_idx!r}")
    return int(padding_idx) % rows


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalization, as PyTorch's layer_norm: each slice over the last
    len(normalized_shape) axes is brought to mean 0 and variance 1, then scaled and shifted.

    x: (..., *normalized_shape)   weight, bias: normalized_shape, or None   ->   y: x's shape

        x̂ = (x - mean) / sqrt(var + eps)       mean and the biased variance over those axes
        y = x̂ * weight + bias

    Backward, with g' = g * weight (dL/dx̂) and means over the normalized axes:

        g_x      = (g' - mean(g') - x̂ mean(g' x̂)) / sqrt(var + eps)
        g_weight = sum of g x̂,   g_bias = sum of g   over the leading axes
    """
    shape = _normalized_shape("layer_norm", normalized_shape)
    eps = _eps("layer_norm", eps)
    tensors = _tensors("layer_norm", [t for t in (x, weight, bias) if t is not None])
    x, rest = tensors[0], iter(tensors[1:])
    weight = None if weight is None else next(rest)
    bias = None if bias is None else next(rest)
    X, k = x.data, len(shape)
    if X.ndim < k or X.shape[X.ndim - k:] != shape:
        raise ValueError(f"layer_norm: input of shape {X.shape} does not end in normalized_shape {shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != shape:
            raise ValueError(f"layer_norm: {name} of shape {t.shape} for normalized_shape {shape}")
    axes = tuple(range(X.ndim - k, X.ndim))  # normalized over these ...
    lead = tuple(range(X.ndim - k))           # ... once for each index of these
    xp = array_module(X)
    d = X - X.mean(axis=axes, keepdims=True)
    rstd = 1 / xp.sqrt((d * d).mean(axis=axes, keepdims=True) + eps)  # 1 / sqrt(var + eps)
    x_hat = d * rstd
    W = None if weight is None else weight.data
    y = x_hat if W is None else x_hat * W
    if bias is not None:
        y = y + bias.data

    def over_lead(a):  # the sum over the leading axes: what a broadcast weight or bias gets
        return primitives.sum_axes(a, lead) if lead else a

    def backward(g):
        g_hat = g if W is None else g * W  # g' = dL/dx̂
        g_x = (g_hat - g_hat.mean(axis=axes, keepdims=True)
               - x_hat * (g_hat * x_hat).mean(axis=axes, keepdims=True)) * rstd
        g_w = () if W is None else (over_lead(g * x_hat),)
        g_b = () if bias is None else (over_lead(g),)
        return (g_x,) + g_w + g_b
    return record("layer_norm", y, tuple(tensors), backward)


def _normalized_shape(op, normalized_shape):
    """normalized_shape as a tuple of sizes >= 1; an int n is (n,)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else normalized_shape
    if (not isinstance(shape, (tuple, list)) or not shape
            or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1
                       for n in shape)):
        raise ValueError(f"{op}: normalized_shape must be an integer >= 1 or a non-empty tuple of them, "
                         f"got {normalized_shape!r}")
    return tuple(int(n) for n in shape)


def dropout(x, p=0.5, training=True, *, rng=None):
    """Inverted dropout, as PyTorch's: each entry is kept with probability 1 - p and scaled by
    1/(1 - p), so that the mean is unchanged, and zeroed otherwise.

        y = x * mask / (1 - p),   mask ~ Bernoulli(1 - p) entry by entry

    training=False or p=0 returns x itself; p=1 gives zeros. The mask is drawn with NumPy
    (then moved to x's device), so that one seed gives one mask on every device.
    rng: an int seed, a numpy.random.Generator (advanced by the call: nn.Dropout and the
    recurrent layers pass theirs, for a new mask at each call), or None (fresh entropy); a
    keyword, since PyTorch's fourth argument is `inplace`.
    """
    p = _probability("dropout", p)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"dropout: training must be True or False, got {training!r}")
    (x,) = _tensors("dropout", [x])
    if not training or p == 0:
        return x
    X = x.data
    if X.dtype not in FLOAT_DTYPES:
        raise TypeError(f"dropout: x must be float32 or float64, got {X.dtype}")
    mask = to_device((_generator(rng).random(X.shape) >= p).astype(X.dtype), x.device)  # 1: kept
    # NOTE: for p = 1 the mask is all zeros; dividing by 1, not 0, gives zeros, not 0/0 = NaN
    keep = 1 - p if p < 1 else 1.0
    y = X * mask / keep

    def backward(g):  # y = x * mask / (1 - p)  ->  g_x = g * mask / (1 - p)
        return (g * mask / keep,)
    return record("dropout", y, (x,), backward)


def _eps(op, eps):
    """eps as a float >= 0 (a negative one makes var + eps negative: NaN); ValueError otherwise."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)) or not eps >= 0:
        raise ValueError(f"{op}: eps must be a number >= 0, got {eps!r}")
    return float(eps)


def _probability(op, p):
    """p as a float in [0, 1]; ValueError naming p otherwise."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not 0 <= p <= 1:
        raise ValueError(f"{op}: dropout probability p has to be a number between 0 and 1, but got {p!r}")
    return float(p)


__all__ = ["linear", "softmax", "log_softmax", "mse_loss", "cross_entropy",
           "embedding", "layer_norm", "dropout",
           "rnn_cell", "lstm_cell", "gru_cell", "rnn", "lstm", "gru"]
