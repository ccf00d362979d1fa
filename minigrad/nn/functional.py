"""Neural-network functions: each one fused op with a hand-derived backward.

A fused op computes in one record what would otherwise take several (linear is
a matmul, a transpose and an add): fewer records, fewer temporaries, and a
backward that can be read off the maths.
"""

import math

import numpy as np

from ..backends import primitives
from .. import bptt
from ..backends.devices import array_module, as_array, device_of, own_copy, to_device, to_numpy
from ..ops import _one_axis, _tensors, record
from ..tensor import FLOAT_DTYPES, Tensor, _generator, _make
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


def softmax(x, axis=None, *, dim=None):
    """softmax(x)_i = exp(x_i) / sum_j exp(x_j) along `axis` (or PyTorch's name, dim).

    NOTE: the last axis unless given; PyTorch's softmax without dim picks one from the number
    of dimensions (0 for 1-D and 3-D input) and warns that this is deprecated.
    """
    axis = _one_axis("softmax", axis, dim, default=-1)
    (x,) = _tensors("softmax", [x])
    xp = array_module(x.data)
    z = x.data - x.data.max(axis=axis, keepdims=True)  # the same result, and exp never overflows
    e = xp.exp(z)
    y = e / e.sum(axis=axis, keepdims=True)

    def backward(g):  # dy_i = y_i (dx_i - sum_j y_j dx_j)  ->  g_x = y (g - sum(g y))
        return (y * (g - (g * y).sum(axis=axis, keepdims=True)),)
    return record("softmax", y, (x,), backward)


def log_softmax(x, axis=None, *, dim=None):
    """log_softmax(x)_i = x_i - log sum_j exp(x_j) along `axis` (or dim; the last axis unless
    given, as softmax), computed stably."""
    axis = _one_axis("log_softmax", axis, dim, default=-1)
    (x,) = _tensors("log_softmax", [x])
    xp = array_module(x.data)
    z = x.data - x.data.max(axis=axis, keepdims=True)
    y = z - xp.log(xp.exp(z).sum(axis=axis, keepdims=True))

    def backward(g):  # dy_i = dx_i - sum_j softmax_j dx_j  ->  g_x = g - softmax * sum(g)
        return (g - xp.exp(y) * g.sum(axis=axis, keepdims=True),)
    return record("log_softmax", y, (x,), backward)


# -- activations: y = f(x) entry by entry, dy/dx beside f ---------------------------

def softplus(x, beta=1, threshold=20):
    """softplus(x) = log(1 + exp(beta x)) / beta, as PyTorch's: x itself where beta x > threshold.

    x: any shape   ->   y: x's shape
    dy/dx = sigmoid(beta x) = z / (1 + z),  z = exp(beta x)   (1 where beta x > threshold)
    """
    (x,) = _float_tensors("softplus", [x])
    beta = _real("softplus", "beta", beta, lambda b: b != 0, "a nonzero number")  # y divides by it
    threshold = _real("softplus", "threshold", threshold)
    X = x.data
    xp = array_module(X)
    bx = X * beta
    # NOTE: above the threshold y = x and dy/dx = 1 exactly, as PyTorch's: log(1 + e^bx) / b
    # is x there to within e^-threshold, and exp(bx) would overflow further out. At
    # bx == threshold itself the formula holds (PyTorch's test is bx > threshold).
    linear = bx > threshold
    z = xp.exp(xp.where(linear, 0, bx))  # exp only where it is used: never overflows
    y = xp.where(linear, X, xp.log1p(z) / beta)

    def backward(g):  # d log(1 + e^bx) / b = e^bx / (1 + e^bx) dx
        return (xp.where(linear, g, g * (z / (1 + z))),)
    return record("softplus", y, (x,), backward)


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_CUBIC = 0.044715  # the tanh form's coefficient, as in Hendrycks & Gimpel and PyTorch


def gelu(x, approximate="none"):
    """GELU, as PyTorch's: x Phi(x), Phi the standard normal CDF, or with approximate="tanh"
    its tanh form. x: any shape   ->   y: x's shape

        "none":  y = x Phi(x),                      dy/dx = Phi(x) + x phi(x),
                 phi(x) = exp(-x^2 / 2) / sqrt(2 pi) the normal density
        "tanh":  u = sqrt(2/pi) (x + 0.044715 x^3),   t = tanh(u),   y = x (1 + t) / 2,
                 dy/dx = (1 + t) / 2 + x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2) / 2

    Each form has its own exact derivative (the tanh form's is not the erf form's).
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    (x,) = _float_tensors("gelu", [x])
    X = x.data
    xp = array_module(X)
    # Past |x| = 40, phi(x) = 0 and tanh(u) = +-1 exactly, even in float32: x clipped there
    # gives the same numbers, and x^2, x^3 never overflow (1e300 gives 1e300, not inf - inf).
    Xc = xp.clip(X, -40, 40)
    if approximate == "none":
        cdf = _normal_cdf(xp, X)
        y = X * cdf

        def backward(g):  # d x Phi(x) = (Phi(x) + x phi(x)) dx
            return (g * (cdf + X * (xp.exp(-0.5 * Xc * Xc) * (1 / math.sqrt(2 * math.pi)))),)
    else:
        t = xp.tanh(_SQRT_2_OVER_PI * (Xc + _GELU_CUBIC * Xc * Xc * Xc))
        y = 0.5 * X * (1 + t)

        def backward(g):  # dy = (1 + t) / 2 dx + x / 2 (1 - t^2) du,  du = sqrt(2/pi) (1 + 3c x^2) dx
            du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_CUBIC * Xc * Xc)
            return (g * (0.5 * (1 + t) + 0.5 * X * (1 - t * t) * du),)
    return record("gelu", y, (x,), backward)


def silu(x):
    """SiLU (swish), as PyTorch's: y = x sigmoid(x).   x: any shape   ->   y: x's shape

    dy/dx = s + x s (1 - s) = s (1 + x (1 - s)),   s = sigmoid(x)
    """
    (x,) = _float_tensors("silu", [x])
    X = x.data
    s = _sigmoid(array_module(X), X)

    def backward(g):  # d x s(x) = (s + x s (1 - s)) dx
        return (g * (s * (1 + X * (1 - s))),)
    return record("silu", X * s, (x,), backward)


def leaky_relu(x, negative_slope=0.01):
    """y = x for x > 0, negative_slope * x otherwise, as PyTorch's.   x: any shape -> y: x's shape

    dy/dx = 1 for x > 0, negative_slope otherwise
    """
    slope = _real("leaky_relu", "negative_slope", negative_slope)
    (x,) = _float_tensors("leaky_relu", [x])
    X = x.data
    xp = array_module(X)
    positive = X > 0

    def backward(g):
        # NOTE: at the kink x = 0 the derivative is negative_slope, as PyTorch's (x > 0 takes 1).
        return (xp.where(positive, g, g * slope),)
    return record("leaky_relu", xp.where(positive, X, X * slope), (x,), backward)


def elu(x, alpha=1.0):
    """ELU, as PyTorch's: y = x for x > 0, alpha (exp(x) - 1) otherwise.
    x: any shape   ->   y: x's shape

    dy/dx = 1 for x > 0, alpha exp(x) otherwise
    """
    alpha = _real("elu", "alpha", alpha)
    (x,) = _float_tensors("elu", [x])
    X = x.data
    xp = array_module(X)
    positive = X > 0
    # expm1 keeps the digits of exp(x) - 1 near 0; min(x, 0) keeps exp from overflowing where unused
    y = xp.where(positive, X, alpha * xp.expm1(xp.minimum(X, 0)))

    def backward(g):  # d alpha (e^x - 1) = alpha e^x dx
        # NOTE: at the kink x = 0 the derivative is alpha (the left branch), as PyTorch's; for
        # alpha = 1 both branches give 1 there. alpha e^x rather than y + alpha from the output:
        # far left, y + alpha is alpha minus nearly alpha, and would lose e^x's digits.
        return (xp.where(positive, g, g * (alpha * xp.exp(xp.minimum(X, 0)))),)
    return record("elu", y, (x,), backward)


def _sigmoid(xp, x):
    """1 / (1 + exp(-x)) without overflow, as ops.sigmoid computes it: e = exp(-|x|) <= 1."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1, e) / (1 + e)


# Cephes' rational approximations of erf and erfc (S. L. Moshier, ndtr.c), to a few units in
# the last place of float64: NumPy has no erf, and these run as array maths on every backend.
_ERF_T = (9.60497373987051638749E0, 9.00260197203842689217E1, 2.23200534594684319226E3,
          7.00332514112805075473E3, 5.55923013010394962768E4)
_ERF_U = (1.0, 3.35617141647503099647E1, 5.21357949780152679795E2, 4.59432382970980127987E3,
          2.26290000613890934246E4, 4.92673942608635921086E4)
_ERFC_P = (2.46196981473530512524E-10, 5.64189564831068821977E-1, 7.46321056442269912687E0,
           4.86371970985681366614E1, 1.96520832956077098242E2, 5.26445194995477358631E2,
           9.34528527171957607540E2, 1.02755188689515710272E3, 5.57535335369399327526E2)
_ERFC_Q = (1.0, 1.32281951154744992508E1, 8.67072140885989742329E1, 3.54937778887819891062E2,
           9.75708501743205489753E2, 1.82390916687909736289E3, 2.24633760818710981792E3,
           1.65666309194161350182E3, 5.57535340817727675546E2)
_ERFC_R = (5.64189583547755073984E-1, 1.27536670759978104416E0, 5.01905042251180477414E0,
           6.16021097993053585195E0, 7.40974269950448939160E0, 2.97886665372100240670E0)
_ERFC_S = (1.0, 2.26052863220117276590E0, 9.39603524938001434673E0, 1.20489539808096656605E1,
           1.70814450747565897222E1, 9.60896809063285878198E0, 3.36907645100081516050E0)


def _polynomial(z, coefficients):
    """c0 z^n + c1 z^(n-1) + ... + cn, by Horner's rule (Python floats keep z's dtype)."""
    y = coefficients[0] * z + coefficients[1]
    for c in coefficients[2:]:
        y = y * z + c
    return y


def _normal_cdf(xp, x):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2, as Cephes' ndtr: with z = |x| / sqrt 2,
    erf(z) = z T(z^2) / U(z^2) for z < 1, and for z >= 1 erfc(z) = exp(-z^2) P(z) / Q(z)
    (R(z) / S(z) from z = 8), Phi(x) = erfc(z) / 2 for x < 0 and 1 - erfc(z) / 2 for x > 0.
    erfc keeps its digits in the far left tail, where 1 + erf(x / sqrt 2) would lose them."""
    w = x * (1 / math.sqrt(2))
    z = xp.abs(w)
    # Both branches are computed everywhere, then picked: each gets its argument clipped to
    # where it can be picked (erfc(30) underflows in float64), so that none overflows.
    wc = xp.clip(w, -1, 1)
    erf = wc * _polynomial(wc * wc, _ERF_T) / _polynomial(wc * wc, _ERF_U)
    zc = xp.clip(z, 1, 30)
    erfc = xp.exp(-zc * zc) * xp.where(zc < 8, _polynomial(zc, _ERFC_P) / _polynomial(zc, _ERFC_Q),
                                       _polynomial(zc, _ERFC_R) / _polynomial(zc, _ERFC_S))
    return xp.where(z < 1, 0.5 + 0.5 * erf, xp.where(x < 0, 0.5 * erfc, 1 - 0.5 * erfc))


def _check_reduction(op, reduction):
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:  # (an array's `in` is ambiguous)
        raise ValueError(f"{op}: reduction must be one of {', '.join(_REDUCTIONS)}, got {reduction!r}")


def mse_loss(input, target, *, reduction="mean"):
    """Squared error (input - target)^2, averaged ("mean"), summed ("sum") or kept ("none").

    input and target must have the same shape (broadcasting them is almost always a
    bug, such as (N, 1) against (N,)); both may require grad. reduction is keyword-only:
    PyTorch's third positional argument is its deprecated size_average.
    """
    _check_reduction("mse_loss", reduction)
    pred, target = _tensors("mse_loss", [input, target])
    p, t = pred.data, target.data
    if p.shape != t.shape:
        raise ValueError(f"mse_loss: input {p.shape} and target {t.shape} differ in shape")
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


def cross_entropy(input, target, weight=None, *, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Cross-entropy of softmax(input) against integer class targets, as one fused op, with
    PyTorch's argument names, weight, ignore_index and label_smoothing.

    input:   the logits, (..., C) with the classes on the LAST axis
             (for (N, C) and (C,) this is PyTorch's layout; PyTorch's (N, C, d1, ...) puts
             them on axis 1: move them last, or a recurrent output (L, N, C) needs nothing)
    target:  (...) integer class indices in [0, C), or ignore_index; a NumPy array or an
             integer tensor
    weight:  (C,) a weight per class, or None; a constant (it gets no gradient)
    The rest are keyword-only: PyTorch's next positional slots hold its deprecated
    size_average and reduce, so a positional value would mean something else there.

    With p = softmax(logits_k), y = targets_k, w_c the weights (1 without), e = label_smoothing:

        loss_k = (1 - e) w_y (-log p_y) + e / C  sum_c w_c (-log p_c)     (0 if y == ignore_index)

    the cross-entropy against (1 - e) onehot(y) + e / C, the classes weighted as PyTorch does.
    "mean" divides the sum by sum_k w_(y_k) over the targets not ignored (their number without
    weight; 0 of them give NaN), "sum" sums, "none" keeps the (...) losses.
    Stable for large logits: the row maximum is subtracted first.
    Backward: with a_c = (1 - e) w_y [c == y] + e / C w_c, d loss_k / d logits_k = (sum_c a_c) p - a.
    """
    logits, targets = input, target
    _check_reduction("cross_entropy", reduction)
    if not isinstance(logits, Tensor):
        raise TypeError(f"cross_entropy: logits must be a Tensor, got {type(logits).__name__}")
    label_smoothing = _real("cross_entropy", "label_smoothing", label_smoothing, lambda e: 0 <= e <= 1,
                            "a number in [0, 1]")
    x = logits.data
    t, ignored = _class_targets("cross_entropy", "logits", x, targets, ignore_index, logits.device)
    if weight is None and ignored is None and label_smoothing == 0:
        return _cross_entropy_plain(logits, t, reduction)
    xp = array_module(x)
    classes = x.shape[-1]
    x2, rows, t1, w, w_y, keep = _class_rows("cross_entropy", x, t, ignored, weight, logits.device)
    z = x2 - x2.max(axis=1, keepdims=True)  # the same result, and exp never overflows
    log_p = z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))
    e = label_smoothing
    losses = (1 - e) * w_y * -log_p[rows, t1]
    if e:  # the uniform part: e / C times the weighted sum of -log p over the classes
        smooth = -(log_p if w is None else log_p * w).sum(axis=1)
        losses = losses + (e / classes) * (smooth if keep is None else smooth * keep)
    denominator = w_y.sum()  # of the mean: the weights of the targets not ignored
    out = _reduce(losses, reduction, denominator, t.shape)
    total = (1 - e) * w_y + (e / classes) * (classes if w is None else w.sum())  # sum_c a_c

    def backward(g):
        s = _row_scale(g, reduction, denominator, keep)[:, None]  # dL/d loss_k; 0 for ignored rows
        with np.errstate(invalid="ignore"):  # inf * 0 = NaN over a total weight of 0, as PyTorch's
            g_x = xp.exp(log_p) * (total[:, None] * s)  # (sum_c a_c) p
            if e:
                g_x -= (e / classes) * s * (1 if w is None else w)  # - a: its uniform part ...
            g_x[rows, t1] -= (1 - e) * w_y * s[:, 0]  # ... and its target part, one entry a row
        return (g_x.reshape(x.shape),)
    return record("cross_entropy", out, (logits,), backward)


def _cross_entropy_plain(logits, t, reduction):
    """cross_entropy without weight, ignored targets or label smoothing: softmax_xent's fused
    kernel on a GPU."""
    x = logits.data
    xp = array_module(x)
    classes = x.shape[-1]
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


def nll_loss(input, target, weight=None, *, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of class targets under log-probabilities, as PyTorch's nll_loss.

    input:  (..., C) log-probabilities with the classes on the LAST axis, as cross_entropy's
            logits (PyTorch's (N, C) and (C,) are the same; its (N, C, d1, ...) puts them on axis 1)
    target: (...) integer class indices in [0, C), or ignore_index; an array or an integer tensor
    weight: (C,) a weight per class, or None; a constant (it gets no gradient)
    ignore_index and reduction are keyword-only, as cross_entropy's.

        loss_k = -w_(y_k) input_k,y_k     (0 where y_k == ignore_index)

    "mean" divides the sum by sum_k w_(y_k) over the targets not ignored (NaN if none is left),
    "sum" sums, "none" keeps the (...) losses. Backward: d loss_k / d input_k,y_k = -w_(y_k).
    """
    _check_reduction("nll_loss", reduction)
    if not isinstance(input, Tensor):
        raise TypeError(f"nll_loss: input must be a Tensor, got {type(input).__name__}")
    x = input.data
    t, ignored = _class_targets("nll_loss", "log-probabilities", x, target, ignore_index, input.device)
    x2, rows, t1, _, w_y, keep = _class_rows("nll_loss", x, t, ignored, weight, input.device)
    denominator = w_y.sum()  # of the mean: the weights of the targets not ignored
    out = _reduce(-w_y * x2[rows, t1], reduction, denominator, t.shape)

    def backward(g):
        g_x = array_module(x).zeros_like(x2)
        with np.errstate(invalid="ignore"):  # inf * 0 = NaN over a total weight of 0, as PyTorch's
            g_x[rows, t1] = -w_y * _row_scale(g, reduction, denominator, keep)  # one entry a row
        return (g_x.reshape(x.shape),)
    return record("nll_loss", out, (input,), backward)


def _class_targets(op, what, x, targets, ignore_index, device):
    """Class targets checked against x (..., C): (the targets as an integer array on `device`,
    the mask of those equal to ignore_index, or None when there are none).
    A target outside [0, C) is an error unless it is ignore_index. Targets that a running
    stream was fed are checked once for their whole piece (_piece_has_ignored)."""
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"{op}: ignore_index must be an integer, got {ignore_index!r}")
    t = targets.data if isinstance(targets, Tensor) else as_array(targets)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: targets must be integer class indices, got dtype {t.dtype}")
    if x.ndim == 0 or t.shape != x.shape[:-1]:
        raise ValueError(f"{op}: {what} {x.shape} need targets of shape {x.shape[:-1]}, got {t.shape}")
    classes = x.shape[-1]
    piece_has_ignored = _piece_has_ignored(t, classes, ignore_index)
    if not isinstance(targets, Tensor):
        t = own_copy(t)  # the backward keeps it: the caller may change its array afterwards
    if piece_has_ignored is not None:  # checked with its piece: no bad target in it
        ignored = None
        if piece_has_ignored:  # asking whether these targets have any would wait for the GPU;
            ignored = t == ignore_index  # the masked path gives the same numbers
        return to_device(t, device), (None if ignored is None else to_device(ignored, device))
    ignored = None
    if t.size and (t.min() < 0 or t.max() >= classes):  # ignored targets, or an error
        ignored = t == ignore_index
        bad = ((t < 0) | (t >= classes)) & ~ignored
        if bad.any():
            raise ValueError(f"{op}: target {t[bad].flat[0]} is out of range for {classes} classes")
    elif t.size and 0 <= ignore_index < classes:  # a class may be ignored too, as in PyTorch
        ignored = t == ignore_index
    if ignored is not None and not ignored.any():
        ignored = None
    return to_device(t, device), (None if ignored is None else to_device(ignored, device))


def _piece_has_ignored(t, classes, ignore_index):
    """For class targets t that lie in the targets of a piece a running stream was fed
    (bptt.fed_targets: the training loop tells the loss what it was fed), whether that piece
    has targets equal to ignore_index, checked once for the whole piece. None for other
    targets, and for a piece with a bad target: then each call checks its own, and the one
    that has it says which. One read back from a GPU per piece instead of two per call.
    NumPy targets: None (on the CPU a check waits for nothing, and costs less than finding
    the piece)."""
    if type(t) is np.ndarray:
        return None
    fed = bptt.fed_targets(t)
    if fed is None:
        return None
    piece, checks = fed
    key = (classes, int(ignore_index))
    if key not in checks:
        ignored = piece == ignore_index
        bad = ((piece < 0) | (piece >= classes)) & ~ignored
        xp = array_module(piece)
        any_bad, any_ignored = to_numpy(xp.stack([bad.any(), ignored.any()])).tolist()
        checks[key] = None if any_bad else any_ignored
    return checks[key]


def _class_rows(op, x, t, ignored, weight, device):
    """x and t as rows, and the weights of the rows' targets: (x2 (K, C), arange(K), t1 (K,)
    with ignored targets set to class 0 so that they index, the class weights w (C,) or None,
    w_y (K,) the weight of each row's target (0 where ignored), keep (K,) 1 where not ignored
    or None)."""
    xp = array_module(x)
    classes = x.shape[-1]
    x2, t1 = x.reshape(-1, classes), t.reshape(-1)
    w = _constant_array(op, "weight", weight)
    if w is not None:
        if w.shape != (classes,):
            raise ValueError(f"{op}: weight must hold a number for each of the {classes} classes, "
                             f"shape ({classes},), got shape {w.shape}")
        w = to_device(w, device).astype(x.dtype, copy=False)
    keep = None
    if ignored is not None:
        keep = (~ignored.reshape(-1)).astype(x.dtype)
        t1 = xp.where(ignored.reshape(-1), 0, t1)
    w_y = xp.ones(t1.shape, dtype=x.dtype) if w is None else w[t1]
    if keep is not None:
        w_y = w_y * keep
    return x2, xp.arange(t1.size), t1, w, w_y, keep


def _reduce(losses, reduction, denominator, shape):
    """The losses reduced: kept in `shape` ("none"), summed ("sum"), or summed and divided by
    denominator ("mean"; 0 / 0 = NaN for an empty input or one with every target ignored)."""
    if reduction == "none":
        return losses.reshape(shape)
    total = primitives.sum_axes(losses.reshape(-1), (0,))
    if reduction == "sum":
        return total
    # NOTE: a mean over a total weight of 0 is NaN, as PyTorch's, even where label smoothing
    # makes the summed losses nonzero (x / 0 = inf): PyTorch divides the NLL part, 0 / 0,
    # on its own.
    with np.errstate(divide="ignore", invalid="ignore"):
        return array_module(total).where(denominator == 0, np.nan, total / denominator)


def _row_scale(g, reduction, denominator, keep):
    """dL/d loss_k for each of the K losses that _reduce reduced: g's entries ("none"), g
    ("sum") or g / denominator ("mean"), as a (K,) array or one that broadcasts to it; 0 where
    keep is 0 (an ignored target's loss is the constant 0: no gradient, and no inf * 0 = NaN
    from a mean over no targets)."""
    with np.errstate(divide="ignore"):  # a mean over a total weight of 0: g / 0, quietly
        s = g.reshape(-1) if reduction == "none" else (g if reduction == "sum" else g / denominator).reshape(1)
    # NOTE: an ignored row's gradient is 0 even when every row is ignored and the mean is NaN,
    # as PyTorch's (its mean's gradient, inf, meets a masked 0 there).
    return s if keep is None else array_module(g).where(keep > 0, s, 0)


def binary_cross_entropy_with_logits(input, target, weight=None, *, reduction="mean", pos_weight=None):
    """Binary cross-entropy of sigmoid(input) against target probabilities, as PyTorch's, in the
    stable form that never takes the log of a rounded sigmoid.

    input, target: the same shape (target in [0, 1]; both may require grad)
    weight:        a weight per entry, broadcast to input's shape, or None (a constant)
    pos_weight:    a weight of the positive term, broadcast to input's shape (usually (C,) for
                   classes on the last axis), or None (a constant)
    reduction and pos_weight are keyword-only, as cross_entropy's options.

        loss = -w [p t log s(x) + (1 - t) log(1 - s(x))],   s = sigmoid, p = pos_weight
             = w [(1 - t) x - l log s(x)],   l = 1 + (p - 1) t      (log(1 - s(x)) = log s(x) - x)
        log s(x) = min(x, 0) - log(1 + exp(-|x|))

    then averaged over the entries ("mean"), summed ("sum") or kept ("none").
    Backward: d loss / dx = w [(1 - t) - l (1 - s(x))],   d loss / dt = -w [x + (p - 1) log s(x)]
    """
    op = "binary_cross_entropy_with_logits"
    _check_reduction(op, reduction)
    input, target = _float_tensors(op, [input, target])
    x, t = input.data, target.data
    if x.shape != t.shape:
        raise ValueError(f"{op}: target {t.shape} must have input's shape {x.shape}")
    xp = array_module(x)
    w = _broadcast_constant(op, "weight", weight, input)
    p = _broadcast_constant(op, "pos_weight", pos_weight, input)
    log_s = xp.minimum(x, 0) - xp.log1p(xp.exp(-xp.abs(x)))  # log sigmoid(x)
    lw = 1 if p is None else 1 + (p - 1) * t  # l, the weight of -log s(x)
    losses = (1 - t) * x - lw * log_s
    if w is not None:
        losses = losses * w
    count = losses.size
    out = _reduce(losses, reduction, count, x.shape)
    need_t = target.requires_grad

    def backward(g):
        s = g / count if reduction == "mean" and count else g  # dL/d loss (an empty input: no gradient)
        if w is not None:
            s = s * w
        g_x = s * ((1 - t) - lw * _sigmoid(xp, -x))  # 1 - s(x) = s(-x)
        g_t = None
        if need_t:
            g_t = -s * (x if p is None else x + (p - 1) * log_s)
        return g_x, g_t
    return record(op, out, (input, target), backward)


def huber_loss(input, target, reduction="mean", delta=1.0):
    """Huber loss, as PyTorch's: quadratic near the target, linear beyond delta.

    input, target: the same shape (both may require grad);  d = input - target

        loss = d^2 / 2              for |d| < delta
               delta (|d| - delta / 2)  otherwise

    then averaged ("mean"), summed ("sum") or kept ("none").
    Backward: d loss / d input = clip(d, -delta, delta) = -d loss / d target.
    """
    _check_reduction("huber_loss", reduction)
    delta = _real("huber_loss", "delta", delta, lambda v: v > 0, "a number > 0")
    input, target = _float_tensors("huber_loss", [input, target])
    x, t = input.data, target.data
    if x.shape != t.shape:
        raise ValueError(f"huber_loss: input {x.shape} and target {t.shape} differ in shape")
    xp = array_module(x)
    d = x - t
    a = xp.abs(d)
    losses = xp.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta))
    count = losses.size
    out = _reduce(losses, reduction, count, x.shape)
    need_t = target.requires_grad

    def backward(g):
        # NOTE: at |d| = delta both pieces have slope +-delta (PyTorch's backward takes the
        # linear one there): the derivative is continuous, only the second one jumps.
        s = g / count if reduction == "mean" and count else g  # dL/d loss (an empty input: no gradient)
        g_x = s * xp.clip(d, -delta, delta)
        return g_x, (-g_x if need_t else None)
    return record("huber_loss", out, (input, target), backward)


def _broadcast_constant(op, name, value, like):
    """A weight-like argument (an array, a Tensor or None) as an array of like's dtype on its
    device, checked to broadcast to like's shape (see _constant_array)."""
    v = _constant_array(op, name, value)
    if v is None:
        return None
    try:
        fits = np.broadcast_shapes(v.shape, like.shape) == like.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{op}: {name} of shape {v.shape} does not broadcast to input's shape {like.shape}")
    return to_device(v, like.device).astype(like.dtype, copy=False)


def _constant_array(op, name, value):
    """The array of a weight argument (an array, a Tensor or None), a constant: as in PyTorch,
    no gradient flows to it, so a Tensor that requires grad is an error rather than a silent 0."""
    if value is None:
        return None
    if isinstance(value, str):  # f(x, t, "sum"): reduction where weight goes
        raise TypeError(f"{op}: {name} must be an array of numbers, got {value!r}; reduction is "
                        f"keyword-only: {op}(..., reduction={value!r})")
    if isinstance(value, Tensor) and value.requires_grad:
        raise ValueError(f"{op}: {name} gets no gradient, but it requires grad; pass {name}.detach()")
    v = value.data if isinstance(value, Tensor) else own_copy(as_array(value))  # kept by backward
    if v.dtype.kind not in "fiu":
        raise TypeError(f"{op}: {name} must hold numbers, got dtype {v.dtype}")
    return v


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
    idx = indices.data if isinstance(indices, Tensor) else own_copy(as_array(indices))  # kept by backward
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


def one_hot(tensor, num_classes=-1):
    """Integer class indices as one-hot rows, as PyTorch's one_hot: an int64 Tensor, no gradient.

    tensor: (...) integers in [0, num_classes), an array or an integer Tensor
    num_classes: the length of the rows; -1 for max(tensor) + 1
    ->  (..., num_classes), out[..., c] = 1 where tensor[...] == c, else 0
    """
    t = tensor.data if isinstance(tensor, Tensor) else as_array(tensor)
    device = tensor.device if isinstance(tensor, Tensor) else device_of(t)
    if t.dtype.kind not in "iu":
        raise TypeError(f"one_hot: tensor must hold integer class indices, got dtype {t.dtype}")
    if (isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer))
            or num_classes < -1):
        raise ValueError(f"one_hot: num_classes must be -1 (max + 1) or an integer >= 0, "
                         f"got {num_classes!r}")
    if t.size == 0:
        if num_classes <= 0:  # as PyTorch's: no class to infer, nor to make
            raise ValueError(f"one_hot: cannot infer the number of classes from an empty tensor "
                             f"{t.shape}; give num_classes >= 1")
    elif t.min() < 0:
        raise ValueError(f"one_hot: class values must be non-negative, got {t.min()}")
    elif num_classes == -1:
        num_classes = int(t.max()) + 1
    elif t.max() >= num_classes:
        raise ValueError(f"one_hot: class values must be smaller than num_classes {num_classes}, "
                         f"got {t.max()}")
    xp = array_module(t)
    out = (t[..., None] == xp.arange(num_classes)).astype(np.int64)
    return _make(out, device)


_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def pad(x, pad, mode="constant", value=0.0):
    """x padded with `value`, or cropped where a pad is negative, as PyTorch's pad (constant mode).

    pad: (left, right) for the last axis, then (top, bottom) for the one before, and so on:
         len(pad) / 2 <= x.ndim axes, counted from the last; an axis of size d becomes
         d + before + after
    x: (..., d)   ->   y: (..., d + left + right), and so on for each padded axis

    Backward: y holds x's entries (those not cropped) at an offset, so g_x is g sliced back
    there (0 for cropped entries); the padding is a constant and sends nothing back.
    """
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode must be one of {', '.join(_PAD_MODES)}, got {mode!r}")
    if mode != "constant":
        raise ValueError(f"pad: only mode 'constant' is implemented, got {mode!r}")
    (x,) = _tensors("pad", [x])
    X = x.data
    if (not isinstance(pad, (tuple, list))
            or not all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in pad)):
        raise TypeError(f"pad: pad must be a tuple of integers, got {pad!r}")
    if len(pad) % 2 or len(pad) > 2 * X.ndim:
        raise ValueError(f"pad: pad needs an even length of at most 2 * x.ndim = {2 * X.ndim} "
                         f"(two numbers for each axis, from the last), got {len(pad)}: {tuple(pad)}")
    value = _real("pad", "value", value)
    out_shape, src, dst = list(X.shape), [slice(None)] * X.ndim, [slice(None)] * X.ndim
    for k in range(len(pad) // 2):
        axis, before, after = X.ndim - 1 - k, int(pad[2 * k]), int(pad[2 * k + 1])
        size = X.shape[axis]
        kept = size + min(before, 0) + min(after, 0)  # what is left of x after the crops
        if kept < 0:
            raise ValueError(f"pad: pads ({before}, {after}) crop axis {axis} of size {size} "
                             f"below 0, for x of shape {X.shape}")
        out_shape[axis] = size + before + after
        src[axis] = slice(max(-before, 0), max(-before, 0) + kept)  # x's entries that stay ...
        dst[axis] = slice(max(before, 0), max(before, 0) + kept)    # ... and where they go in y
    xp = array_module(X)
    y = xp.full(out_shape, value, dtype=X.dtype)
    src, dst = tuple(src), tuple(dst)
    y[dst] = X[src]

    def backward(g):  # y[dst] = x[src]: g_x[src] = g[dst], 0 where x was cropped
        g_x = xp.zeros_like(X)
        g_x[src] = g[dst]
        return (g_x,)
    return record("pad", y, (x,), backward)


def _eps(op, eps):
    """eps as a float >= 0 (a negative one makes var + eps negative: NaN); ValueError otherwise."""
    return _real(op, "eps", eps, lambda v: v >= 0, "a number >= 0")


def _probability(op, p):
    """p as a float in [0, 1]; ValueError naming p otherwise."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not 0 <= p <= 1:
        raise ValueError(f"{op}: dropout probability p has to be a number between 0 and 1, but got {p!r}")
    return float(p)


def _float_tensors(op, items):
    """items as Tensors of one float dtype and device; TypeError naming the dtype otherwise."""
    tensors = _tensors(op, items)
    if tensors[0].data.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: expected float32 or float64 input, got {tensors[0].data.dtype}")
    return tensors


def _real(op, name, value, ok=lambda v: True, expected="a real number"):
    """value as a Python float (which, NEP 50, never changes an array's dtype), checked by ok;
    ValueError naming it otherwise. NaN is never accepted."""
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating))
            or value != value or not ok(value)):
        raise ValueError(f"{op}: {name} must be {expected}, got {value!r}")
    return float(value)


__all__ = ["linear", "softmax", "log_softmax",
           "softplus", "gelu", "silu", "leaky_relu", "elu",
           "mse_loss", "cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "huber_loss",
           "embedding", "layer_norm", "dropout", "one_hot", "pad",
           "rnn_cell", "lstm_cell", "gru_cell", "rnn", "lstm", "gru"]
