"""minigrad.optim's other options against torch.optim: AdamW, RMSprop, Adam's amsgrad, SGD's
dampening, Adagrad's lr_decay, weight_decay and initial_accumulator_value, and maximize for
every optimizer. Each case runs 50 steps with two parameter groups whose options differ and
is compared with PyTorch's trajectory (tests/torch_reference/optim.npz, written by
make_optim.py, which defines the cases). Then: state_dict round trips of the new state,
out-of-place updates, float32, and the errors for bad options."""
import os

import numpy as np
import pytest

import minigrad as mg
from minigrad import optim
from minigrad.nn import Parameter
from minigrad.optim import SGD, Adagrad, Adam, AdamW, RMSprop
from helpers import F32, close
from torch_reference.make_optim import OPTIMIZER_CASES, START, STEPS, gradient, run_optimizer

# Every test runs on every backend: NumPy, the kernels emulated on the CPU, and a GPU.
pytestmark = pytest.mark.usefixtures("on_backend")

TORCH = np.load(os.path.join(os.path.dirname(__file__), "torch_reference", "optim.npz"))


def parameter(a, grad=False):
    """make_optim's `tensor` for minigrad: a gradient is a plain array."""
    return np.array(a) if grad else Parameter(np.array(a))


def values(p):
    return np.asarray(p.data).copy()


def build(case, params):
    """OPTIMIZER_CASES[case]'s optimizer on params (three parameters, in two groups)."""
    name, options, second = OPTIMIZER_CASES[case]
    return getattr(optim, name)([{"params": params[:2]}, {"params": params[2:], **second}], **options)


def set_grads(opt, params):
    for group in opt.param_groups:
        for p in group["params"]:
            k = next(i for i, q in enumerate(params) if q is p)
            p.grad = gradient(values(p), k, group["maximize"])


# -- trajectories --------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(OPTIMIZER_CASES))
def test_trajectory_matches_torch(case):
    path = run_optimizer(optim, parameter, case, values)
    np.testing.assert_allclose(path, TORCH[f"optim.{case}"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", sorted(OPTIMIZER_CASES))
def test_state_dict_round_trip_continues_torch_trajectory(case):
    """Save after 20 steps, load into a fresh optimizer (default options) on copies of the
    parameters, and go on: the same trajectory, bitwise, as the optimizer never stopped."""
    params = [Parameter(np.array(w)) for w in START]
    opt = build(case, params)
    for _ in range(20):
        set_grads(opt, params)
        opt.step()
    saved = opt.state_dict()
    clone = [Parameter(p.data.copy()) for p in params]
    name = OPTIMIZER_CASES[case][0]
    other = getattr(optim, name)([{"params": clone[:2]}, {"params": clone[2:]}], lr=7.0)
    other.load_state_dict(saved)
    for step in range(20, STEPS):
        for ps, o in ((params, opt), (clone, other)):
            set_grads(o, ps)
            o.step()
        for p, q in zip(params, clone):
            np.testing.assert_array_equal(p.data, q.data)
    np.testing.assert_allclose(np.concatenate([q.data.ravel() for q in clone]),
                               TORCH[f"optim.{case}"][-1], rtol=1e-10, atol=1e-12)


# The state each optimizer keeps per parameter, by PyTorch's names.
STATE_NAMES = [
    (SGD, dict(momentum=0.9, dampening=0.5), {"momentum_buffer"}),
    (Adam, dict(amsgrad=True), {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}),
    (AdamW, {}, {"step", "exp_avg", "exp_avg_sq"}),
    (Adagrad, dict(lr_decay=0.1), {"step", "sum"}),
    (RMSprop, {}, {"step", "square_avg"}),
    (RMSprop, dict(momentum=0.9, centered=True), {"step", "square_avg", "momentum_buffer", "grad_avg"}),
]


@pytest.mark.parametrize("cls, options, names", STATE_NAMES)
def test_state_names_and_float32(cls, options, names):
    p = Parameter(np.array(START[0], dtype=F32))
    opt = cls([p], **options)
    for _ in range(3):
        p.grad = gradient(values(p), 0, False)
        opt.step()
    state = opt.state[id(p)]
    assert set(state) == names
    assert p.dtype == F32 and all(v.dtype == F32 for v in state.values() if hasattr(v, "dtype"))
    saved = opt.state_dict()["state"][0]
    assert set(saved) == names and all(type(v) is np.ndarray for k, v in saved.items() if k != "step")


def test_maximize_is_minimize_of_the_negated_gradient():
    """Bitwise: maximize negates the gradient first, and -(-g) is g exactly."""
    for cls, options in [(SGD, dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.1)),
                         (Adam, dict(amsgrad=True, weight_decay=0.1)), (AdamW, {}),
                         (Adagrad, dict(lr_decay=0.1, weight_decay=0.1)),
                         (RMSprop, dict(momentum=0.5, centered=True, weight_decay=0.1))]:
        a, b = Parameter(np.array(START[0])), Parameter(np.array(START[0]))
        up, down = cls([a], maximize=True, **options), cls([b], **options)
        for _ in range(5):
            a.grad = gradient(values(a), 0, True)
            b.grad = -gradient(values(b), 0, True)
            up.step()
            down.step()
            np.testing.assert_array_equal(a.data, b.data)


def test_sgd_dampening_spares_the_first_step():
    """PyTorch: the first buffer is g itself; from the second, momentum b + (1 - dampening) g."""
    p = Parameter(np.array([1.0]))
    opt = SGD([p], lr=1.0, momentum=0.5, dampening=0.75)
    p.grad = np.array([2.0])
    opt.step()
    assert p.data.tolist() == [-1.0]                    # b = 2
    opt.step()
    assert p.data.tolist() == [-1.0 - (0.5 * 2 + 0.25 * 2)]  # b = 1 + 0.5


@pytest.mark.parametrize("cls", [RMSprop, AdamW, Adagrad])
def test_new_updates_are_out_of_place(cls):
    p = Parameter(np.array(START[0]))
    opt = cls([p], weight_decay=0.1)
    old = p.data
    p.grad = np.ones(3)
    opt.step()
    assert p.data is not old
    np.testing.assert_array_equal(old, START[0])


def test_parameters_without_grad_are_skipped_by_rmsprop():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(3))
    opt = RMSprop([a, b], momentum=0.9, centered=True)
    a.grad = np.array([0.5, -0.5])
    opt.step()
    assert b.data.tolist() == [1.0] * 3 and id(b) not in opt.state


# -- bad options ---------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("cls, options, message", [
    (SGD, dict(lr=-0.1), "SGD: lr must be >= 0, got -0.1"),
    (SGD, dict(lr=NAN), "SGD: lr must be finite, got nan"),
    (SGD, dict(lr=INF), "SGD: lr must be finite, got inf"),
    (SGD, dict(momentum=0.9, dampening=-INF), "SGD: dampening must be finite, got -inf"),
    (SGD, dict(momentum=-0.5), "SGD: momentum must be >= 0, got -0.5"),
    (SGD, dict(weight_decay=NAN), "SGD: weight_decay must be finite, got nan"),
    (SGD, dict(momentum=0.9, dampening=0.1, nesterov=True),
     "SGD: nesterov needs momentum > 0 and dampening 0, got momentum 0.9 and dampening 0.1"),
    (SGD, dict(nesterov=True), "SGD: nesterov needs momentum > 0"),
    (Adam, dict(eps=-1e-8), "Adam: eps must be >= 0, got -1e-08"),
    (Adam, dict(betas=(1.0, 0.999)), r"Adam: betas\[0\] must be in \[0, 1\), got 1.0"),
    (Adam, dict(betas=(0.9, NAN)), r"Adam: betas must be finite, got \(0.9, nan\)"),
    (Adam, dict(eps=INF), "Adam: eps must be finite, got inf"),
    (AdamW, dict(weight_decay=-0.01), "AdamW: weight_decay must be >= 0, got -0.01"),
    (AdamW, dict(betas=(0.9, -0.1)), r"AdamW: betas\[1\] must be in \[0, 1\), got -0.1"),
    (AdamW, dict(lr=NAN), "AdamW: lr must be finite, got nan"),
    (AdamW, dict(weight_decay=INF), "AdamW: weight_decay must be finite, got inf"),
    (Adagrad, dict(lr_decay=-0.1), "Adagrad: lr_decay must be >= 0, got -0.1"),
    (Adagrad, dict(weight_decay=-1.0), "Adagrad: weight_decay must be >= 0, got -1.0"),
    (Adagrad, dict(initial_accumulator_value=-1.0),
     "Adagrad: initial_accumulator_value must be >= 0, got -1.0"),
    (Adagrad, dict(eps=NAN), "Adagrad: eps must be finite, got nan"),
    (Adagrad, dict(lr_decay=INF), "Adagrad: lr_decay must be finite, got inf"),
    (RMSprop, dict(lr=-0.01), "RMSprop: lr must be >= 0, got -0.01"),
    (RMSprop, dict(alpha=1.5), r"RMSprop: alpha must be in \[0, 1\], got 1.5"),
    (RMSprop, dict(alpha=NAN), r"RMSprop: alpha must be finite, got nan"),
    (RMSprop, dict(momentum=INF), "RMSprop: momentum must be finite, got inf"),
    (RMSprop, dict(eps=-1.0), "RMSprop: eps must be >= 0, got -1.0"),
    (RMSprop, dict(momentum=-0.9), "RMSprop: momentum must be >= 0, got -0.9"),
    (RMSprop, dict(weight_decay=-0.1), "RMSprop: weight_decay must be >= 0, got -0.1"),
])
def test_bad_options_raise_naming_the_optimizer_option_and_value(cls, options, message):
    p = Parameter(np.ones(2))
    with pytest.raises(ValueError, match=message):
        cls([p], **options)
    with pytest.raises(ValueError, match=message):  # the same option given in a group
        cls([{"params": [p], **options}])


def test_an_option_that_is_not_a_number_is_a_type_error():
    with pytest.raises(TypeError, match="SGD: lr must be a number, got '0.1'"):
        SGD([Parameter(np.ones(2))], lr="0.1")


def test_unknown_option_names_it():
    with pytest.raises(ValueError, match=r"RMSprop: unknown options \['betas'\]"):
        RMSprop([{"params": [Parameter(np.ones(2))], "betas": (0.9, 0.99)}])


def test_adamw_defaults_to_weight_decay_0_01():
    opt = AdamW([Parameter(np.ones(2))])
    assert opt.param_groups[0]["weight_decay"] == 0.01 and opt.param_groups[0]["amsgrad"] is False
    close(RMSprop([Parameter(np.ones(2))]).param_groups[0]["lr"], 0.01)


def test_adagrad_takes_each_groups_initial_accumulator_value():
    """NOTE: PyTorch fills every group's sums with the constructor's initial_accumulator_value
    (its __init__ reads the argument, not the group); minigrad gives a group its own."""
    a, b = Parameter(np.array([1.0])), Parameter(np.array([1.0]))
    opt = Adagrad([{"params": [a]}, {"params": [b], "initial_accumulator_value": 3.0}], lr=1.0, eps=0.0)
    a.grad, b.grad = np.array([1.0]), np.array([1.0])
    opt.step()
    assert a.data.tolist() == [0.0] and b.data.tolist() == [0.5]  # 1 - 1/sqrt(1), 1 - 1/sqrt(4)


def test_load_state_dict_replaces_the_groups_options():
    """As PyTorch's: the saved options replace the group's (one the save lacks, as from an
    older minigrad, takes the default); the group dict itself stays, for schedulers."""
    w = mg.tensor(np.ones(2), requires_grad=True)
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    group = opt.param_groups[0]
    group["initial_lr"] = 0.1  # as a scheduler sets it
    saved = {"state": {}, "param_groups": [{"lr": 0.5, "momentum": 0.0, "weight_decay": 0.0,
                                             "nesterov": False, "params": [0]}]}
    opt.load_state_dict(saved)
    assert opt.param_groups[0] is group and group["params"] == [w]
    assert group["lr"] == 0.5 and group["momentum"] == 0.0
    assert group["dampening"] == 0.0 and group["maximize"] is False  # the defaults
    assert "initial_lr" not in group
    with pytest.raises(ValueError, match="SGD: lr must be finite, got inf"):  # checked as when built
        opt.load_state_dict({**saved, "param_groups": [{**saved["param_groups"][0], "lr": float("inf")}]})
