"""minigrad.optim.lr_scheduler against torch.optim.lr_scheduler: the learning rates (and
OneCycleLR's momentum) of every case of tests/torch_reference/make_optim.py step by step,
with two parameter groups; state_dict round trips in the middle of a schedule; PyTorch's
conventions (initial_lr, base_lrs, the constructor's step); and the errors.

Schedulers hold numbers only, no arrays: these tests run on NumPy alone."""
import os

import numpy as np
import pytest

import minigrad
from minigrad.nn import Parameter
from minigrad.optim import SGD, Adagrad, Adam, lr_scheduler
from minigrad.optim.lr_scheduler import (CosineAnnealingLR, ExponentialLR, LambdaLR, LinearLR,
                                         MultiStepLR, OneCycleLR, ReduceLROnPlateau, StepLR)
from torch_reference.make_optim import (SCHEDULER_CASES, make_scheduler, momentum_of, run_scheduler,
                                        step_scheduler)

TORCH = np.load(os.path.join(os.path.dirname(__file__), "torch_reference", "optim.npz"))


def parameter(a, grad=False):
    return Parameter(np.array(a))


def build(case):
    return make_scheduler(minigrad.optim, lr_scheduler, parameter, case)


def sgd(*lrs):
    return SGD([{"params": [Parameter(np.zeros(1))], "lr": lr} for lr in lrs], momentum=0.9)


@pytest.mark.parametrize("case", sorted(SCHEDULER_CASES))
def test_learning_rates_match_torch(case):
    result = run_scheduler(minigrad.optim, lr_scheduler, parameter, case)
    np.testing.assert_allclose(result["lr"], TORCH[f"sched.{case}.lr"], rtol=1e-13, atol=1e-16)
    if f"sched.{case}.momentum" in TORCH:
        np.testing.assert_allclose(result["momentum"], TORCH[f"sched.{case}.momentum"],
                                   rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("case", sorted(SCHEDULER_CASES))
def test_state_dict_round_trip_mid_schedule(case):
    """Save the optimizer and the scheduler half-way, build both afresh, load (the scheduler
    first, then the optimizer, as PyTorch advises) and go on: PyTorch's lrs to the end."""
    steps = SCHEDULER_CASES[case][4]
    opt, scheduler = build(case)
    half = steps // 2
    for t in range(1, half):
        opt.step()
        step_scheduler(scheduler, t)
    saved_scheduler, saved_optimizer = scheduler.state_dict(), opt.state_dict()
    step_scheduler(scheduler, half)  # the original goes on: the saved state must not follow
    opt, scheduler = build(case)
    scheduler.load_state_dict(saved_scheduler)
    opt.load_state_dict(saved_optimizer)
    lrs = [scheduler.get_last_lr()]
    for t in range(half, steps):
        opt.step()
        step_scheduler(scheduler, t)
        lrs.append(scheduler.get_last_lr())
        if f"sched.{case}.momentum" in TORCH:
            np.testing.assert_allclose([momentum_of(g) for g in opt.param_groups],
                                       TORCH[f"sched.{case}.momentum"][t], rtol=1e-13)
    np.testing.assert_allclose(lrs, TORCH[f"sched.{case}.lr"][half - 1:], rtol=1e-13, atol=1e-16)


# -- PyTorch's conventions ------------------------------------------------------------------

def test_the_constructor_steps_once_and_sets_initial_lr():
    opt = sgd(0.1, 0.05)
    scheduler = LinearLR(opt, start_factor=0.5, total_iters=4)
    assert scheduler.last_epoch == 0 and scheduler.base_lrs == [0.1, 0.05]
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.05]
    assert scheduler.get_last_lr() == [0.05, 0.025] == [g["lr"] for g in opt.param_groups]
    # a second scheduler keeps the first one's initial_lr (setdefault), as PyTorch
    assert ExponentialLR(opt, gamma=0.5).base_lrs == [0.1, 0.05]


def test_get_last_lr_is_a_copy():
    scheduler = StepLR(sgd(0.1), step_size=2)
    scheduler.get_last_lr().append(1.0)
    assert scheduler.get_last_lr() == [0.1]


def test_importable_both_ways():
    import minigrad.optim.lr_scheduler as module
    assert module.StepLR is minigrad.optim.lr_scheduler.StepLR is StepLR


def test_resuming_without_initial_lr_says_so():
    with pytest.raises(ValueError, match=r"StepLR: last_epoch=5 resumes .* param_groups\[0\] "
                                         r"has no 'initial_lr'"):
        StepLR(sgd(0.1), step_size=2, last_epoch=5)


def test_lambda_state_dict_keeps_no_function_but_an_objects_attributes():
    class Warmup:
        def __init__(self):
            self.factor = 2.0

        def __call__(self, epoch):
            return self.factor * epoch

    def half(epoch):
        return 0.5
    warmup = Warmup()
    scheduler = LambdaLR(sgd(0.1, 0.2), [half, warmup])
    warmup.factor = 3.0
    state = scheduler.state_dict()
    assert state["lr_lambdas"] == [None, {"factor": 3.0}]
    assert "optimizer" not in state
    other_warmup = Warmup()
    other = LambdaLR(sgd(0.1, 0.2), [half, other_warmup])
    other.load_state_dict(state)
    assert other_warmup.factor == 3.0 and other.lr_lambdas == [half, other_warmup]
    assert state["lr_lambdas"] == [None, {"factor": 3.0}]  # loading leaves the dict whole


def test_cosine_follows_a_changed_lr():
    """The recursive form goes on from group["lr"] as it finds it (PyTorch's chainable form)."""
    opt = sgd(1.0)
    scheduler = CosineAnnealingLR(opt, T_max=10)
    scheduler.step()
    opt.param_groups[0]["lr"] = 0.5
    scheduler.step()
    ratio = (1 + np.cos(np.pi * 2 / 10)) / (1 + np.cos(np.pi / 10))
    assert scheduler.get_last_lr() == pytest.approx([0.5 * ratio], rel=1e-15)


def test_one_cycle_drives_adams_beta1_and_keeps_beta2():
    opt = Adam([Parameter(np.zeros(1))], betas=(0.9, 0.99))
    OneCycleLR(opt, max_lr=0.1, total_steps=10).step()
    beta1, beta2 = opt.param_groups[0]["betas"]
    assert 0.85 < beta1 < 0.95 and beta2 == 0.99


def test_plateau_counts_bad_epochs_and_cools_down():
    opt = sgd(1.0)
    scheduler = ReduceLROnPlateau(opt, patience=1, cooldown=1, factor=0.5)
    lrs = []
    for metric in [5, 5, 5, 5, 5, 5, 4, 4, 4]:
        scheduler.step(metric)
        lrs.append(scheduler.get_last_lr()[0])
    # bad epochs 1, 2 -> cut; cooldown 1 epoch; bad 1, 2 -> cut; ...; 4 is better: reset
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]
    assert scheduler.last_epoch == 9


# -- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make, error, message", [
    (lambda o: StepLR("sgd", step_size=2), TypeError, "StepLR: expected an Optimizer, got str"),
    (lambda o: StepLR(o, step_size=0), ValueError, "StepLR: step_size must be a positive integer, got 0"),
    (lambda o: StepLR(o, step_size=2.5), ValueError, "step_size must be a positive integer, got 2.5"),
    (lambda o: CosineAnnealingLR(o, T_max=0), ValueError, "CosineAnnealingLR: T_max must be a positive"),
    (lambda o: LinearLR(o, start_factor=0.0), ValueError, r"LinearLR: start_factor must be in \(0, 1\]"),
    (lambda o: LinearLR(o, end_factor=1.5), ValueError, r"LinearLR: end_factor must be in \[0, 1\], got 1.5"),
    (lambda o: LambdaLR(o, [lambda e: 1.0]), ValueError,
     "LambdaLR: expected 2 values of lr_lambda .one per parameter group., got 1"),
    (lambda o: OneCycleLR(o, max_lr=0.1), ValueError,
     "OneCycleLR: give total_steps, or epochs and steps_per_epoch"),
    (lambda o: OneCycleLR(o, max_lr=0.1, total_steps=-3), ValueError,
     "OneCycleLR: total_steps must be a positive integer, got -3"),
    (lambda o: OneCycleLR(o, max_lr=0.1, epochs=2, steps_per_epoch=0), ValueError,
     "OneCycleLR: steps_per_epoch must be a positive integer, got 0"),
    (lambda o: OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=1.5), ValueError,
     r"OneCycleLR: pct_start must be in \[0, 1\], got 1.5"),
    (lambda o: OneCycleLR(o, max_lr=0.1, total_steps=10, anneal_strategy="exp"), ValueError,
     "OneCycleLR: anneal_strategy must be 'cos' or 'linear', got 'exp'"),
    (lambda o: OneCycleLR(o, max_lr=[0.1, 0.2, 0.3], total_steps=10), ValueError,
     "OneCycleLR: expected 2 values of max_lr"),
    (lambda o: OneCycleLR(Adagrad([Parameter(np.zeros(1))]), max_lr=0.1, total_steps=10), ValueError,
     "OneCycleLR: cycle_momentum needs an optimizer with momentum or betas, got Adagrad"),
    (lambda o: ReduceLROnPlateau(o, factor=1.0), ValueError, "ReduceLROnPlateau: factor must be < 1, got 1.0"),
    (lambda o: ReduceLROnPlateau(o, mode="up"), ValueError,
     "ReduceLROnPlateau: mode must be 'min' or 'max', got 'up'"),
    (lambda o: ReduceLROnPlateau(o, threshold_mode="pct"), ValueError,
     "ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got 'pct'"),
    (lambda o: ReduceLROnPlateau(o, min_lr=[0.1]), ValueError,
     "ReduceLROnPlateau: expected 2 values of min_lr"),
    (lambda o: ReduceLROnPlateau(None), TypeError, "ReduceLROnPlateau: expected an Optimizer, got NoneType"),
])
def test_bad_arguments_say_what_is_wrong(make, error, message):
    with pytest.raises(error, match=message):
        make(sgd(0.1, 0.05))


def test_one_cycle_past_its_total_steps_raises():
    scheduler = OneCycleLR(sgd(0.1), max_lr=0.1, total_steps=3)
    for _ in range(3):
        scheduler.step()
    with pytest.raises(ValueError, match="OneCycleLR: stepped 4 times, past total_steps=3"):
        scheduler.step()


def test_load_state_dict_needs_a_dict():
    with pytest.raises(TypeError, match="StepLR.load_state_dict: expected a dict, got list"):
        StepLR(sgd(0.1), step_size=2).load_state_dict([])


def test_multistep_milestone_listed_twice_scales_twice():
    scheduler = MultiStepLR(sgd(1.0), milestones=[2, 2], gamma=0.5)
    scheduler.step()
    scheduler.step()
    assert scheduler.get_last_lr() == [0.25]
