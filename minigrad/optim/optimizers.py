"""Optimizers (SGD, Adam, AdamW, Adagrad, RMSprop) with PyTorch's update formulas.

Every update is out of place: `p.data = p.data - step`, never `p.data -= step`.
Records on the tape hold the arrays their ops saw, so a window of truncated BPTT
that reaches back across an update still back-propagates through the values its
forward pass used.

Each optimizer updates a whole parameter group in one call of its step function
(backends/primitives.py's sgd_step, adam_step, adagrad_step, where each formula is
written out): a loop over the parameters in NumPy, one fused CUDA kernel that updates
every parameter in one launch on a GPU. Adam's amsgrad is not in the kernel (its wrapper
declines it, and adam_step's NumPy formula runs on the GPU arrays), nor is RMSprop
(rmsprop_step below: array maths that runs on NumPy or CuPy arrays alike). maximize
negates the gradients before anything else, as PyTorch does, for every optimizer.
Optimizers follow their parameters: the state lives on each parameter's device.
"""
import math

import numpy as np

from ..backends.devices import array_module, device_of, read_only, to_device, to_numpy
from ..backends.primitives import adagrad_step, adam_step, sgd_step
from ..tensor import Tensor


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

    # The options that must be >= 0 (NaN is refused too).
    NONNEGATIVE = ("lr",)

    def _check(self, group):
        """Refuse a group's bad options: every number must be finite (a NaN or inf lr, beta or
        eps would turn every weight into NaN at the first step, silently), those in NONNEGATIVE
        >= 0. A ValueError (a TypeError for a non-number) names the option and its value."""
        name = type(self).__name__
        for option in self.NONNEGATIVE:
            value = group[option]
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"{name}: {option} must be a number, got {value!r}")
        for option, value in group.items():
            numbers = value if isinstance(value, tuple) else (value,)  # betas: a pair
            if any(isinstance(v, (float, np.floating)) and not math.isfinite(v) for v in numbers):
                raise ValueError(f"{name}: {option} must be finite, got {value}")
        for option in self.NONNEGATIVE:
            if not group[option] >= 0:
                raise ValueError(f"{name}: {option} must be >= 0, got {group[option]}")

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
                for p in params:
                    read_only(p.data)  # the new weights, read-only as every leaf's

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

    @staticmethod
    def _gradients(params, group):
        """The gradients the formulas see: -grad with maximize (a new array), else grad."""
        return [-p.grad if group["maximize"] else p.grad for p in params]

    @staticmethod
    def _initial(state, name, p, value=0.0):
        """state[name], or, before the first step, an array like p's filled with value."""
        return state[name] if name in state else array_module(p.data).full_like(p.data, value)

    @staticmethod
    def _batches(params, states, key):
        """params and their states split by key(state), in first-seen order: {key: (params,
        states)}. A parameter that skipped steps (grad None) has its own step count, and a
        launch has one t; usually every parameter of a group falls in one batch."""
        batches = {}
        for p, s in zip(params, states):
            batch = batches.setdefault(key(s), ([], []))
            batch[0].append(p)
            batch[1].append(s)
        return batches

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
            # the saved options replace the group's, as PyTorch's (options it lacks, from an
            # older save, take the defaults); the dict stays, so schedulers holding it see them
            options = {**self.defaults, **{o: v for o, v in saved.items() if o != "params"}}
            self._check({**options, "params": group["params"]})  # as when built: no inf lr
            own = group["params"]
            group.clear()
            group.update(options, params=own)
        self.state = {id(params[int(k)]): _copied(s) for k, s in state_dict["state"].items()}


def _copied(state):
    """One parameter's optimizer state with its arrays copied as NumPy arrays (numbers are
    immutable). Loaded state goes to its parameter's device at the next step."""
    return {name: (to_numpy(v).copy() if hasattr(v, "copy") else v) for name, v in state.items()}


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's formula:

        g = -grad if maximize else grad
        g = g + weight_decay * w
        b = g (first step), else momentum * b + (1 - dampening) * g      (when momentum > 0)
        g = g + momentum * b if nesterov else b
        w = w - lr * g
    """

    NONNEGATIVE = ("lr", "momentum", "weight_decay")

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    def _check(self, group):
        super()._check(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"SGD: nesterov needs momentum > 0 and dampening 0, got momentum "
                             f"{group['momentum']} and dampening {group['dampening']}")

    def _step(self, params, states, group):
        momentum = group["momentum"]
        # a new buffer starts at 0 and takes g undamped (PyTorch's first b is g itself)
        for new, (ps, ss) in self._batches(params, states, lambda s: "momentum_buffer" not in s).items():
            bufs = [self._initial(s, "momentum_buffer", p) for p, s in zip(ps, ss)] if momentum else None
            ws, bufs = sgd_step([p.data for p in ps], self._gradients(ps, group), bufs, group["lr"],
                                momentum, group["weight_decay"], group["nesterov"],
                                0.0 if new else group["dampening"])
            for k, (p, s) in enumerate(zip(ps, ss)):
                p.data = ws[k]
                if bufs is not None:
                    s["momentum_buffer"] = bufs[k]


class Adam(Optimizer):
    """Adam, PyTorch's formula (t counts the steps from 1):

        g = -grad if maximize else grad
        g = g + weight_decay * w
        m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
        v_max = max(v_max, v) and v = v_max below       (amsgrad; v_max starts at 0)
        w = w - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
    """

    NONNEGATIVE = ("lr", "eps", "weight_decay")
    DECOUPLED = False  # AdamW: the weight decay scales w instead of joining g

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _check(self, group):
        super()._check(group)
        for k, beta in enumerate(group["betas"]):
            if not 0 <= beta < 1:
                raise ValueError(f"{type(self).__name__}: betas[{k}] must be in [0, 1), got {beta} "
                                 f"(betas {group['betas']})")

    def _step(self, params, states, group):
        b1, b2 = group["betas"]
        lr, weight_decay, amsgrad = group["lr"], group["weight_decay"], group["amsgrad"]
        for t, (ps, ss) in self._batches(params, states, lambda s: s.get("step", 0) + 1).items():
            def average(name):  # the averages start at 0 (PyTorch's first step)
                return [self._initial(s, name, p) for p, s in zip(ps, ss)]
            ws = [p.data for p in ps]
            if self.DECOUPLED and weight_decay:  # AdamW: w shrinks first, out of place
                ws = [w * (1 - lr * weight_decay) for w in ws]
            max_vs = [self._initial(s, "max_exp_avg_sq", p) for p, s in zip(ps, ss)] if amsgrad else None
            ws, ms, vs, max_vs = adam_step(ws, self._gradients(ps, group), average("exp_avg"),
                                           average("exp_avg_sq"), t, lr, b1, b2, group["eps"],
                                           0.0 if self.DECOUPLED else weight_decay, max_vs)
            for k, (p, s) in enumerate(zip(ps, ss)):
                p.data = ws[k]
                s.update(step=t, exp_avg=ms[k], exp_avg_sq=vs[k])
                if amsgrad:
                    s["max_exp_avg_sq"] = max_vs[k]


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter), PyTorch's formula: first

        w = w * (1 - lr * weight_decay)

    then Adam's step on w with the gradient alone (no weight_decay term in g).
    """

    DECOUPLED = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)


class Adagrad(Optimizer):
    """Adagrad, PyTorch's formula (t counts the steps from 1):

        g = -grad if maximize else grad
        g = g + weight_decay * w
        s = s + g^2                    (s starts at initial_accumulator_value)
        w = w - lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps)
    """

    NONNEGATIVE = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10, *, maximize=False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize))

    def _step(self, params, states, group):
        for t, (ps, ss) in self._batches(params, states, lambda s: s.get("step", 0) + 1).items():
            sums = [self._initial(s, "sum", p, group["initial_accumulator_value"]) for p, s in zip(ps, ss)]
            lr = group["lr"] / (1 + (t - 1) * group["lr_decay"])
            ws, sums = adagrad_step([p.data for p in ps], self._gradients(ps, group), sums, lr,
                                    group["eps"], group["weight_decay"])
            for k, (p, s) in enumerate(zip(ps, ss)):
                p.data = ws[k]
                s.update(step=t, sum=sums[k])


class RMSprop(Optimizer):
    """RMSprop, PyTorch's formula (see rmsprop_step); its state: square_avg, and momentum_buffer
    (momentum > 0) and grad_avg (centered), each starting at 0."""

    NONNEGATIVE = ("lr", "eps", "momentum", "weight_decay")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize))

    def _check(self, group):
        super()._check(group)
        if not 0 <= group["alpha"] <= 1:
            raise ValueError(f"RMSprop: alpha must be in [0, 1], got {group['alpha']}")

    def _step(self, params, states, group):
        for p, g, s in zip(params, self._gradients(params, group), states):
            grad_avg = self._initial(s, "grad_avg", p) if group["centered"] else None
            buf = self._initial(s, "momentum_buffer", p) if group["momentum"] > 0 else None
            p.data, square_avg, grad_avg, buf = rmsprop_step(
                p.data, g, self._initial(s, "square_avg", p), grad_avg, buf,
                group["lr"], group["alpha"], group["eps"], group["weight_decay"], group["momentum"])
            s.update(step=s.get("step", 0) + 1, square_avg=square_avg)
            if grad_avg is not None:
                s["grad_avg"] = grad_avg
            if buf is not None:
                s["momentum_buffer"] = buf


def rmsprop_step(w, g, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum):
    """One parameter's RMSprop step, PyTorch's formula; array maths, on NumPy or CuPy arrays
    (no kernel). grad_avg: None unless centered; buf: None unless momentum > 0.

        g = g + weight_decay * w
        square_avg = alpha square_avg + (1 - alpha) g^2
        grad_avg = grad_avg + (1 - alpha) (g - grad_avg)                      (centered)
        avg = sqrt(square_avg - grad_avg^2) if centered else sqrt(square_avg), + eps
        buf = momentum buf + g / avg;  w = w - lr buf        (momentum > 0)
        w = w - lr g / avg                                   (otherwise)

    Returns (new w, square_avg, grad_avg, buf), all new arrays (or None where given None).
    """
    xp = array_module(w)
    if weight_decay:
        g = g + weight_decay * w
    square_avg = alpha * square_avg + (1 - alpha) * (g * g)
    if grad_avg is not None:
        grad_avg = grad_avg + (1 - alpha) * (g - grad_avg)  # PyTorch's lerp
        avg = xp.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        avg = xp.sqrt(square_avg) + eps
    if buf is not None:
        buf = momentum * buf + g / avg
        return w - lr * buf, square_avg, grad_avg, buf
    return w - lr * (g / avg), square_avg, grad_avg, buf
