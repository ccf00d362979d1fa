"""Optimizers (SGD, Adam, Adagrad) with PyTorch's update formulas, and gradient clipping.

Every update is out of place: `p.data = p.data - step`, never `p.data -= step`.
Records on the tape hold the arrays their ops saw, so a window of truncated BPTT
that reaches back across an update still back-propagates through the values its
forward pass used.
"""
import math

import numpy as np

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
        seen = set()
        for group in groups:
            if not isinstance(group, dict) or "params" not in group:
                raise TypeError(f"{type(self).__name__}: a parameter group is a dict with 'params'")
            unknown = set(group) - set(defaults) - {"params"}
            if unknown:
                raise ValueError(f"{type(self).__name__}: unknown options {sorted(unknown)}")
            params = group["params"]
            params = [params] if isinstance(params, Tensor) else list(params)
            for p in params:
                if not isinstance(p, Tensor) or not p.requires_grad:
                    raise ValueError(f"{type(self).__name__}: can only optimize tensors that require "
                                     f"grad, got {type(p).__name__}")
                if id(p) in seen:
                    raise ValueError(f"{type(self).__name__}: a parameter appears in two groups")
                seen.add(id(p))
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
            for p in group["params"]:
                if p.grad is not None:
                    state = self.state.setdefault(id(p), {})
                    p.data = self._update(p.data, p.grad, state, group)

    def _update(self, w, g, state, group):
        """The new value of one parameter w with gradient g (a new array)."""
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
    """One parameter's optimizer state with its arrays copied (numbers are immutable)."""
    return {name: (v.copy() if hasattr(v, "copy") else v) for name, v in state.items()}


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

    def _update(self, w, g, state, group):
        if group["weight_decay"]:
            g = g + group["weight_decay"] * w
        momentum = group["momentum"]
        if momentum:
            b = state.get("momentum_buffer")
            # a copy on the first step: g may be the parameter's own .grad, which changes later
            b = g.copy() if b is None else momentum * b + g
            state["momentum_buffer"] = b
            g = g + momentum * b if group["nesterov"] else b
        return w - group["lr"] * g


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

    def _update(self, w, g, state, group):
        b1, b2 = group["betas"]
        if group["weight_decay"]:
            g = g + group["weight_decay"] * w
        t = state.get("step", 0) + 1
        m = (1 - b1) * g if t == 1 else b1 * state["exp_avg"] + (1 - b1) * g
        v = (1 - b2) * (g * g) if t == 1 else b2 * state["exp_avg_sq"] + (1 - b2) * (g * g)
        state.update(step=t, exp_avg=m, exp_avg_sq=v)
        denom = (v / (1 - b2 ** t)) ** 0.5 + group["eps"]
        return w - group["lr"] * (m / (1 - b1 ** t)) / denom


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

    def _update(self, w, g, state, group):
        s = state.get("sum")
        s = g * g if s is None else s + g * g
        state["sum"] = s
        return w - group["lr"] * g / (s ** 0.5 + group["eps"])


def _grads(params):
    params = [params] if isinstance(params, Tensor) else list(params)
    return [p for p in params if p.grad is not None]


def clip_grad_norm_(params, max_norm):
    """Scale the gradients together so that their joint 2-norm is at most max_norm.

    Returns the norm before clipping (a float). As PyTorch: the factor is
    max_norm / (norm + 1e-6), applied only when it is below 1. Changes .grad in place.
    """
    if max_norm < 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0, got {max_norm}")
    with_grad = _grads(params)
    total = math.sqrt(sum(float((p.grad.astype(np.float64) ** 2).sum()) for p in with_grad))
    factor = max_norm / (total + 1e-6)
    if factor < 1:
        for p in with_grad:
            p.grad *= p.grad.dtype.type(factor)
    return total


def clip_grad_value_(params, clip_value):
    """Clip every gradient entry into [-clip_value, clip_value], in place."""
    if clip_value < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be >= 0, got {clip_value}")
    for p in _grads(params):
        np.clip(p.grad, -clip_value, clip_value, out=p.grad)
