"""PyTorch's answers for tests/test_optim_more.py and tests/test_lr_scheduler.py, saved to
tests/torch_reference/optim.npz.

Regenerate from the repository root (PyTorch is needed here only; minigrad never imports it):

    PYTHONPATH=. /path/to/python-with-torch tests/torch_reference/make_optim.py

The cases are defined here, once, and the tests import them (this module imports torch only
in main()):
- OPTIMIZER_CASES: an optimizer and its options, with two parameter groups (the second
  overrides some options), run for STEPS steps in float64 from START with the gradients of
  gradient() below, computed in NumPy on both sides from the parameters' current values.
  Saved: "optim.<case>", the parameters after each step, flattened: (STEPS, 8).
- SCHEDULER_CASES: a scheduler on an optimizer with two groups (lrs LRS). Saved:
  "sched.<case>.lr", the lrs after the constructor and after each step: (steps + 1, 2), and
  for OneCycleLR "sched.<case>.momentum", the momentum (or beta1) the same way.
  ReduceLROnPlateau steps with the metrics of metric(t).
The file is written by make_modules.save: atomically, and the same bytes on every run with
the same PyTorch.
"""
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim.npz")

STEPS = 50
# The parameters: two in the first group, one in the second (8 numbers in all).
START = [[0.5, -1.2, 2.0], [1.5, -0.7], [-0.3, 0.8, 1.1]]


def gradient(w, k, maximize):
    """The gradient of parameter k at w, of f = sum((1 + k/2) w^2 / 2 + w^4 / 20 - (0.3 - k/5) w);
    for a group that maximizes, the gradient of -f (so that both climb to the same point)."""
    g = (1 + 0.5 * k) * w + 0.2 * w ** 3 - (0.3 - 0.2 * k)
    return -g if maximize else g


# name -> (optimizer, options, the second group's own options)
OPTIMIZER_CASES = {
    "sgd_dampening": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3),
                      dict(lr=0.02, dampening=0.0, weight_decay=0.1)),
    "sgd_dampening_maximize": ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.5, maximize=True),
                               dict(maximize=False, weight_decay=0.01)),
    "sgd_nesterov_maximize": ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01,
                                          maximize=True), dict(lr=0.1, momentum=0.5)),
    "sgd_maximize": ("SGD", dict(lr=0.05, maximize=True), dict(maximize=False, momentum=0.5)),
    "adam_amsgrad": ("Adam", dict(lr=0.05, amsgrad=True),
                     dict(amsgrad=False, betas=(0.8, 0.99), weight_decay=0.1)),
    "adam_maximize": ("Adam", dict(lr=0.05, weight_decay=0.05, maximize=True),
                      dict(amsgrad=True, eps=1e-6)),
    "adamw": ("AdamW", dict(lr=0.05), dict(lr=0.02, weight_decay=0.1)),
    "adamw_amsgrad_maximize": ("AdamW", dict(lr=0.05, amsgrad=True, weight_decay=0.1, maximize=True),
                               dict(amsgrad=False, maximize=False, betas=(0.5, 0.9))),
    "adagrad_options": ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.05,
                                        initial_accumulator_value=0.1),
                        dict(lr_decay=0.0, weight_decay=0.0, eps=1e-6)),
    # (not initial_accumulator_value in a group: PyTorch takes the constructor's for every group)
    "adagrad_maximize": ("Adagrad", dict(lr=0.1, maximize=True), dict(maximize=False, weight_decay=0.1)),
    "rmsprop": ("RMSprop", dict(), dict(alpha=0.9, eps=1e-6)),
    "rmsprop_momentum": ("RMSprop", dict(lr=0.01, momentum=0.9), dict(weight_decay=0.1, momentum=0.5)),
    "rmsprop_centered": ("RMSprop", dict(lr=0.01, centered=True),
                         dict(momentum=0.9, weight_decay=0.05, alpha=0.8)),
    "rmsprop_maximize": ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, maximize=True),
                         dict(maximize=False)),
}


def run_optimizer(optim, tensor, case, numpy_of):
    """The parameters (flattened, one row per step) of OPTIMIZER_CASES[case], with optim =
    torch.optim or minigrad.optim, tensor = a function making a parameter from a float64
    array, numpy_of = the parameter's values as a NumPy array."""
    name, options, second = OPTIMIZER_CASES[case]
    params = [tensor(np.array(w, dtype=np.float64)) for w in START]
    extra = dict(foreach=False) if optim.__name__.startswith("torch") else {}
    opt = getattr(optim, name)([{"params": params[:2]}, {"params": params[2:], **second}],
                               **options, **extra)
    path = []
    for _ in range(STEPS):
        for group in opt.param_groups:
            for p in group["params"]:
                k = next(i for i, q in enumerate(params) if q is p)
                p.grad = tensor(gradient(numpy_of(p), k, group["maximize"]), grad=True)
        opt.step()
        path.append(np.concatenate([numpy_of(p).ravel() for p in params]))
    return np.array(path)


# -- schedulers ------------------------------------------------------------------------------

LRS = (0.1, 0.05)  # the two groups' lrs


def decay(epoch):
    return 0.95 ** epoch


def harmonic(epoch):
    return 1.0 / (1.0 + epoch)


def metric(t):
    """ReduceLROnPlateau's metric at step t: falls in stairs, with flat stretches and noise."""
    return 5.0 * 0.7 ** (t // 9) + 0.01 * ((t * 7) % 5)


# name -> (scheduler, options, optimizer, its options, steps)
SCHEDULER_CASES = {
    "step": ("StepLR", dict(step_size=7, gamma=0.5), "SGD", {}, 40),
    "multistep": ("MultiStepLR", dict(milestones=[5, 12, 12, 30], gamma=0.3), "SGD", {}, 40),
    "exponential": ("ExponentialLR", dict(gamma=0.95), "SGD", {}, 40),
    "cosine": ("CosineAnnealingLR", dict(T_max=15, eta_min=0.001), "SGD", {}, 70),
    "lambda": ("LambdaLR", dict(lr_lambda=[decay, harmonic]), "SGD", {}, 40),
    "lambda_one": ("LambdaLR", dict(lr_lambda=decay), "Adam", {}, 20),
    "linear": ("LinearLR", dict(start_factor=0.25, end_factor=0.9, total_iters=10), "SGD", {}, 30),
    "onecycle_cos": ("OneCycleLR", dict(max_lr=[1.0, 0.5], total_steps=60), "SGD",
                     dict(momentum=0.9), 60),
    "onecycle_linear_three_phase": ("OneCycleLR", dict(max_lr=0.3, total_steps=50, pct_start=0.25,
                                                       anneal_strategy="linear", three_phase=True,
                                                       div_factor=10.0, final_div_factor=100.0,
                                                       base_momentum=0.8, max_momentum=[0.9, 0.95]),
                                    "Adam", {}, 50),
    "onecycle_epochs_rmsprop": ("OneCycleLR", dict(max_lr=0.2, epochs=6, steps_per_epoch=10,
                                                   pct_start=0.4), "RMSprop", dict(momentum=0.9), 60),
    "onecycle_no_momentum": ("OneCycleLR", dict(max_lr=0.2, total_steps=30, cycle_momentum=False),
                             "Adagrad", {}, 30),
    "plateau_min_rel": ("ReduceLROnPlateau", dict(factor=0.5, patience=3, threshold=0.01, cooldown=2,
                                                  min_lr=[0.01, 0.001]), "SGD", {}, 80),
    "plateau_max_abs": ("ReduceLROnPlateau", dict(mode="max", threshold_mode="abs", threshold=0.1,
                                                  patience=2, factor=0.3, min_lr=0.004, eps=1e-3),
                        "SGD", {}, 80),
}


def make_scheduler(optim, scheduler_module, tensor, case):
    """(optimizer, scheduler) of SCHEDULER_CASES[case] on two one-number parameters."""
    name, options, optimizer, optimizer_options, _ = SCHEDULER_CASES[case]
    groups = [{"params": [tensor(np.zeros(1))], "lr": lr} for lr in LRS]
    opt = getattr(optim, optimizer)(groups, **optimizer_options)
    return opt, getattr(scheduler_module, name)(opt, **options)


def step_scheduler(scheduler, t):
    """Step t (from 1) of a case: ReduceLROnPlateau takes metric(t)."""
    if type(scheduler).__name__ == "ReduceLROnPlateau":
        scheduler.step(metric(t) if scheduler.mode == "min" else -metric(t))
    else:
        scheduler.step()


def momentum_of(group):
    return group["betas"][0] if "betas" in group else group.get("momentum", 0.0)


def run_scheduler(optim, scheduler_module, tensor, case):
    """{"lr": (steps + 1, 2), "momentum": (steps + 1, 2)} for SCHEDULER_CASES[case]."""
    opt, scheduler = make_scheduler(optim, scheduler_module, tensor, case)
    lrs, momenta = [scheduler.get_last_lr()], [[momentum_of(g) for g in opt.param_groups]]
    for t in range(1, SCHEDULER_CASES[case][4]):
        opt.step()
        step_scheduler(scheduler, t)
        lrs.append(scheduler.get_last_lr())
        momenta.append([momentum_of(g) for g in opt.param_groups])
    return {"lr": np.array(lrs, dtype=np.float64), "momentum": np.array(momenta, dtype=np.float64)}


def main():
    import torch

    from make_modules import save

    def tensor(a, grad=False):
        t = torch.from_numpy(np.array(a, dtype=np.float64))
        return t if grad else torch.nn.Parameter(t)

    def numpy_of(p):
        return p.detach().numpy().copy()

    arrays = {}
    for case in OPTIMIZER_CASES:
        arrays[f"optim.{case}"] = run_optimizer(torch.optim, tensor, case, numpy_of)
    for case in SCHEDULER_CASES:
        result = run_scheduler(torch.optim, torch.optim.lr_scheduler, tensor, case)
        arrays[f"sched.{case}.lr"] = result["lr"]
        if SCHEDULER_CASES[case][0] == "OneCycleLR":
            arrays[f"sched.{case}.momentum"] = result["momentum"]
    save(arrays, OUT)
    print(f"wrote {OUT}: {len(arrays)} arrays, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
