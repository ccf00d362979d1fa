"""Gradient clipping: clip_grad_norm_ and clip_grad_value_, PyTorch's (torch.nn.utils)."""
import math

import numpy as np

from ..backends.devices import array_module
from ..tensor import Tensor


def _grads(params):
    params = [params] if isinstance(params, Tensor) else list(params)
    return [p for p in params if p.grad is not None]


def _total_norm(grads, norm_type):
    """The norm_type-norm of all the gradients joined into one vector, as a float (float64).

    Summing |g|^p overflows to inf for float64 gradients near 1e200 (p = 2) and underflows
    to 0 near 1e-200, where the norm itself is finite and not 0. Then the sum is taken
    again over |g| / scale, scale = max |g|, and the norm is scale * (that sum)^(1/p).
    NaN and inf gradients give a NaN or inf norm either way.
    """
    if not grads:
        return 0.0
    abs_grads = [array_module(g).abs(g.astype(np.float64)) for g in grads]

    def largest():  # max |g|; NaN where a gradient has one (Python's max would skip it)
        maxima = [float(a.max()) for a in abs_grads if a.size]
        return math.nan if any(math.isnan(m) for m in maxima) else max(maxima, default=0.0)
    if norm_type == math.inf:
        return largest()
    with np.errstate(over="ignore", under="ignore"):  # an overflow (or all-zero) sum is redone below
        total = sum(float((a ** norm_type).sum()) for a in abs_grads) ** (1 / norm_type)
    if total == 0 or math.isinf(total):  # a NaN gradient gave NaN already; only then the max
        scale = largest()
        if 0 < scale < math.inf:
            total = scale * sum(float(((a / scale) ** norm_type).sum())
                                for a in abs_grads) ** (1 / norm_type)
    return total


def clip_grad_norm_(params, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients together so that their joint norm_type-norm is at most max_norm.

    Returns the norm before clipping (a float). As PyTorch's (same positional order): the
    factor is min(max_norm / (norm + 1e-6), 1), so a NaN norm makes every gradient NaN and
    an inf norm makes the finite entries 0 (and the inf ones NaN), unless error_if_nonfinite,
    which raises RuntimeError instead and leaves the gradients alone. Unlike PyTorch, a
    float64 norm whose squares overflow (gradients of 1e200) is still computed right
    (see _total_norm). Changes .grad in place.
    """
    if max_norm < 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0, got {max_norm}")
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be > 0 (or inf), got {norm_type}")
    with_grad = _grads(params)
    total = _total_norm([p.grad for p in with_grad], norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} for gradients "
                           f"from `parameters` is non-finite ({total}), so it cannot be clipped. "
                           f"To disable this error and scale the gradients by the non-finite norm "
                           f"anyway, set `error_if_nonfinite=False`")
    factor = min(max_norm / (total + 1e-6), 1.0) if not math.isnan(total) else math.nan
    if not factor == 1.0:  # a factor of 1 changes nothing; NaN is not 1
        with np.errstate(invalid="ignore"):  # an inf norm: factor 0, inf * 0 = NaN, as PyTorch
            for p in with_grad:
                p.grad *= p.grad.dtype.type(factor)
    return total


def clip_grad_value_(params, clip_value):
    """Clip every gradient entry into [-clip_value, clip_value], in place."""
    if clip_value < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be >= 0, got {clip_value}")
    for p in _grads(params):
        array_module(p.grad).clip(p.grad, -clip_value, clip_value, out=p.grad)
