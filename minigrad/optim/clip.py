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

    def each(f):
        """[float(f(|g|)) for each non-empty gradient], each computed on its gradient's device
        (array_module makes it current: the gradients may be on several GPUs)."""
        values = []
        for a in abs_grads:
            if a.size:
                array_module(a)
                values.append(float(f(a)))
        return values

    def largest():  # max |g|; NaN where a gradient has one (Python's max would skip it)
        maxima = each(lambda a: a.max())
        return math.nan if any(math.isnan(m) for m in maxima) else max(maxima, default=0.0)
    if norm_type == math.inf:
        return largest()
    with np.errstate(over="ignore", under="ignore"):  # an overflow (or all-zero) sum is redone below
        total = sum(each(lambda a: (a ** norm_type).sum())) ** (1 / norm_type)
    if total == 0 or math.isinf(total):  # a NaN gradient gave NaN already; only then the max
        scale = largest()
        if 0 < scale < math.inf:
            total = scale * sum(each(lambda a: ((a / scale) ** norm_type).sum())) ** (1 / norm_type)
    return total


def _device_norm(grads, norm_type):
    """_total_norm for gradients on one GPU, as a 0-d float64 array there, computed without
    reading anything back: the gradients joined into one vector (one reduction rather than
    one per parameter), and the overflow rescue chosen by `where` instead of an `if`."""
    xp = array_module(grads[0])
    flat = xp.abs(xp.concatenate([g.reshape(-1) for g in grads]).astype(np.float64))
    if flat.size == 0:
        return xp.zeros((), np.float64)
    largest = flat.max()  # NaN where a gradient has one
    if norm_type == math.inf:
        return largest
    total = (flat ** norm_type).sum() ** (1 / norm_type)
    rescued = largest * ((flat / largest) ** norm_type).sum() ** (1 / norm_type)
    redo = ((total == 0) | xp.isinf(total)) & (largest > 0) & (largest < math.inf)
    return xp.where(redo, rescued, total)


def _norm(grads, norm_type):
    """The joint norm of `grads`: a float, or for gradients on one GPU a 0-d array there
    (reading it back would make the host wait for the GPU)."""
    if grads and all(hasattr(g, "__cuda_array_interface__") for g in grads) \
            and len({g.device.id for g in grads}) == 1:
        return _device_norm(grads, norm_type)
    return _total_norm(grads, norm_type)


def _scale(with_grad, max_norm, total):
    """Multiply each gradient by min(max_norm / (total + 1e-6), 1), PyTorch's clip factor."""
    if isinstance(total, float):
        factor = min(max_norm / (total + 1e-6), 1.0) if not math.isnan(total) else math.nan
        if factor == 1.0:  # a factor of 1 changes nothing; NaN is not 1
            return
    else:  # on a GPU: always multiply, which costs less than reading the factor to skip it
        factor = array_module(total).minimum(max_norm / (total + 1e-6), 1.0)  # NaN stays NaN
    with np.errstate(invalid="ignore"):  # an inf norm: factor 0, inf * 0 = NaN, as PyTorch
        for p in with_grad:
            array_module(p.grad)  # (on a GPU: its device made current, see devices.array_module)
            p.grad *= (p.grad.dtype.type(factor) if isinstance(factor, float)
                       else factor.astype(p.grad.dtype))


def _check_clip(max_norm, norm_type):
    if max_norm < 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0, got {max_norm}")
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be > 0 (or inf), got {norm_type}")
    return norm_type


def clip_grad_norm_(params, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients together so that their joint norm_type-norm is at most max_norm.

    Returns the norm before clipping (a float). As PyTorch's (same positional order): the
    factor is min(max_norm / (norm + 1e-6), 1), so a NaN norm makes every gradient NaN and
    an inf norm makes the finite entries 0 (and the inf ones NaN), unless error_if_nonfinite,
    which raises RuntimeError instead and leaves the gradients alone. Unlike PyTorch, a
    float64 norm whose squares overflow (gradients of 1e200) is still computed right
    (see _total_norm). Changes .grad in place. On a GPU, returning the norm reads it back,
    once; train_sequence and streams clip with scale_grad_norm_, which does not.
    """
    norm_type = _check_clip(max_norm, norm_type)
    with_grad = _grads(params)
    total = _norm([p.grad for p in with_grad], norm_type)
    value = float(total)  # (from a GPU: the one read)
    if error_if_nonfinite and not math.isfinite(value):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} for gradients "
                           f"from `parameters` is non-finite ({value}), so it cannot be "
                           f"clipped. To disable this error and scale the gradients by the "
                           f"non-finite norm anyway, set `error_if_nonfinite=False`")
    _scale(with_grad, max_norm, value)  # (read anyway: the host's factor, and no multiply by 1)
    return value


def scale_grad_norm_(params, max_norm):
    """clip_grad_norm_(params, max_norm) without reading the norm: on a GPU the norm and the
    factor stay there, so the host queues the optimizer's step without waiting for the GPU
    (the training loops clip every update). Returns nothing."""
    _check_clip(max_norm, 2.0)
    with_grad = _grads(params)
    _scale(with_grad, max_norm, _norm([p.grad for p in with_grad], 2.0))


def clip_grad_value_(params, clip_value):
    """Clip every gradient entry into [-clip_value, clip_value], in place."""
    if clip_value < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be >= 0, got {clip_value}")
    for p in _grads(params):
        array_module(p.grad).clip(p.grad, -clip_value, clip_value, out=p.grad)
