"""Optimizers (SGD, Adam, Adagrad) with PyTorch's update formulas, and gradient clipping.

Every update is out of place: `p.data = p.data - step`, never `p.data -= step`.
Records on the tape hold the arrays their ops saw, so a window of truncated BPTT
that reaches back across an update still back-propagates through the values its
forward pass used.

Each optimizer updates a whole parameter group in one call of its step function
(backends/primitives.py's sgd_step, adam_step, adagrad_step, where each formula is
written out): a loop over the parameters in NumPy, one fused CUDA kernel that updates
every parameter in one launch on a GPU.
Optimizers follow their parameters: the state lives on each parameter's device.
"""
import math

import numpy as np

from .backends.devices import array_module, device_of, to_device, to_numpy
from .backends.primitives import adagrad_step, adam_step, sgd_step
from .tensor import Tensor


class Optimizer:
    """Parameters in groups, each group with its options; per-parameter state.

    params: an iterable of Parameters, or a list of dicts {"params": [...], option: value}
            whose missing options take the optimizer's defaults (PyTorch's parameter groups).
    """

    def __init__(self, params, defaults):
        self.defaults = defaults
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups = []
        self.state = {}  # id(param) -> {name: array or number}
        seen = {}  # id(param) -> (group index, position in the group)
        for g, group in enumerate(groups):
            if not isinstance(group, dict) or "params" not in group:
                raise TypeError(f"{type(self).__name__}: a parameter group is a dict with 'params'")
            unknown = set(group) - set(defaults) - {"params"}
            if unknown:
                raise ValueError(f"{type(self).__name__}: unknown options {sorted(unknown)}")
            params = group["params"]
            params = [params] if isinstance(params, Tensor) else list(params)
            for k, p in enumerate(params):
                if not isinstance(p, Tensor) or not p.requires_grad:
                    raise ValueError(f"{type(self).__name__}: can only optimize tensors that require "
                                     f"grad, got {type(p).__name__}")
                if id(p) in seen:
                    first_group, first_position = seen[id(p)]
                    if first_group == g:
                        raise ValueError(f"{type(self).__name__}: a parameter appears twice in "
                                         f"parameter group {g} (positions {first_position} and {k})")
                    raise ValueError(f"{type(self).__name__}: a parameter appears in two groups")
                seen[id(p)] = (g, k)
            full = {**defaults, **group, "params": params}
            self._check(full)
            self.param_groups.append(full)

    def _check(self, group):
        if group["lr"] < 0:
            raise ValueError(f"{type(self).__name__}: lr must be >= 0, got {group['lr']}")

    def zero_grad(self):
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self):
        """Update every parameter that has a gradient (those with grad None are skipped)."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._step(params, [self._state(p) for p in params], group)

    def _state(self, p):
        """p's state, moved to p's device if the parameter moved (Module.to) since the last step."""
        state = self.state.setdefault(id(p), {})
        for name, value in state.items():
            if hasattr(value, "shape") and device_of(value) != p.device:
                state[name] = to_device(value, p.device)
        return state

    def _step(self, params, states, group):
        """Give every parameter in `params` (all with a gradient) its new value (a new array)."""
        raise NotImplementedError

    # -- saving and restoring -----------------------------------------------

    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self):
        """{"state": {parameter index: {name: value}}, "param_groups": [options + "params": indices]}."""
        index = {id(p): k for k, p in enumerate(self._params())}
        state = {index[pid]: _copied(s) for pid, s in self.state.items() if pid in index}
        groups, k = [], 0
        for group in self.param_groups:
            n = len(group["params"])
            groups.append({**{o: v for o, v in group.items() if o != "params"},
                           "params": list(range(k, k + n))})
            k += n
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError(f"{type(self).__name__}.load_state_dict: parameter groups of sizes "
                             f"{[len(g['params']) for g in groups]} for an optimizer with groups of sizes "
                             f"{[len(g['params']) for g in self.param_groups]}")
        params = self._params()
        for k, s in state_dict["state"].items():
            for name, value in s.items():
                if hasattr(value, "shape") and value.shape not in ((), params[int(k)].shape):
                    raise ValueError(f"{type(self).__name__}.load_state_dict: state {name!r} of "
                                     f"parameter {k} has shape {value.shape}, the parameter "
                                     f"{params[int(k)].shape}")
        for group, saved in zip(self.param_groups, groups):
            group.update({o: v for o, v in saved.items() if o != "params"})
        self.state = {id(params[int(k)]): _copied(s) for k, s in state_dict["state"].items()}


def _copied(state):
    """One parameter's optimizer state with its arrays copied as NumPy arrays (numbers are
    immutable). Loaded state goes to its parameter's device at the next step."""
    return {name: (to_numpy(v).copy() if hasattr(v, "copy") else v) for name, v in state.items()}


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's formula:

        g = grad + weight_decay * w
        b = g (first step), else momentum * b + g      (when momentum > 0)
        g = g + momentum * b if nesterov else b
        w = w - lr * g
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      nesterov=nesterov))

    def _check(self, group):
        super()._check(group)
        if group["momentum"] < 0 or group["weight_decay"] < 0:
            raise ValueError("SGD: momentum and weight_decay must be >= 0")
        if group["nesterov"] and group["momentum"] <= 0:
            raise ValueError("SGD: nesterov needs momentum > 0")

    def _step(self, params, states, group):
        bufs = None
        if group["momentum"]:  # the buffer starts at 0, so that the first b is g
            bufs = [s.get("momentum_buffer") for s in states]
            bufs = [array_module(p.data).zeros_like(p.data) if b is None else b
                    for p, b in zip(params, bufs)]
        ws, bufs = sgd_step([p.data for p in params], [p.grad for p in params], bufs, group["lr"],
                            group["momentum"], group["weight_decay"], group["nesterov"])
        for k, (p, s) in enumerate(zip(params, states)):
            p.data = ws[k]
            if bufs is not None:
                s["momentum_buffer"] = bufs[k]


class Adam(Optimizer):
    """Adam, PyTorch's formula (t counts the steps from 1):

        g = grad + weight_decay * w
        m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
        w = w - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _check(self, group):
        super()._check(group)
        b1, b2 = group["betas"]
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"Adam: betas must be in [0, 1), got {group['betas']}")
        if group["eps"] < 0 or group["weight_decay"] < 0:
            raise ValueError("Adam: eps and weight_decay must be >= 0")

    def _step(self, params, states, group):
        b1, b2 = group["betas"]
        by_step = {}  # parameters that skipped steps (grad None) have their own t
        for p, s in zip(params, states):
            by_step.setdefault(s.get("step", 0) + 1, []).append((p, s))
        for t, pairs in by_step.items():
            ms, vs = [], []
            for p, s in pairs:  # the averages start at 0 (PyTorch's first step)
                zeros = array_module(p.data).zeros_like
                ms.append(s["exp_avg"] if t > 1 else zeros(p.data))
                vs.append(s["exp_avg_sq"] if t > 1 else zeros(p.data))
            ws, ms, vs = adam_step([p.data for p, _ in pairs], [p.grad for p, _ in pairs], ms, vs, t,
                                   group["lr"], b1, b2, group["eps"], group["weight_decay"])
            for k, (p, s) in enumerate(pairs):
                p.data = ws[k]
                s.update(step=t, exp_avg=ms[k], exp_avg_sq=vs[k])


class Adagrad(Optimizer):
    """Adagrad, PyTorch's formula:

        s = s + grad^2   (s starts at 0)
        w = w - lr * grad / (sqrt(s) + eps)
    """

    def __init__(self, params, lr=1e-2, eps=1e-10):
        super().__init__(params, dict(lr=lr, eps=eps))

    def _check(self, group):
        super()._check(group)
        if group["eps"] < 0:
            raise ValueError(f"Adagrad: eps must be >= 0, got {group['eps']}")

    def _step(self, params, states, group):
        sums = [s["sum"] if "sum" in s else array_module(p.data).zeros_like(p.data)
                for p, s in zip(params, states)]
        ws, sums = adagrad_step([p.data for p in params], [p.grad for p in params], sums,
                                group["lr"], group["eps"])
        for k, (p, s) in enumerate(zip(params, states)):
            p.data = ws[k]
            s["sum"] = sums[k]


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
