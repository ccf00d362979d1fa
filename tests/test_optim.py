"""minigrad.optim: SGD, Adam and Adagrad against numbers from torch.optim and against a
slow textbook reference written below; parameter groups, state_dict, out-of-place
updates, and gradient clipping."""
import math

import numpy as np
import pytest

import minigrad as mg
from minigrad.nn import Parameter
from minigrad.optim import SGD, Adagrad, Adam, clip_grad_norm_, clip_grad_value_
from helpers import F32, F64, close

# Every test runs on every backend: NumPy, the kernels emulated on the CPU, and a GPU.
pytestmark = pytest.mark.usefixtures("on_backend")

OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "Adagrad": Adagrad}

# One parameter and three steps of gradients, the same in every trajectory below.
W0 = [0.5, -1.25, 2.0]
GRADS = [[0.1, -0.2, 0.3], [-0.4, 0.5, 0.25], [0.05, 0.6, -0.7]]

# (optimizer, options) for each named case.
CASES = {
    "sgd": ("SGD", dict(lr=0.1)),
    "sgd_wd": ("SGD", dict(lr=0.1, weight_decay=0.01)),
    "sgd_momentum": ("SGD", dict(lr=0.1, momentum=0.9)),
    "sgd_momentum_wd": ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    "sgd_nesterov": ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)),
    "adam": ("Adam", dict(lr=0.01)),
    "adam_custom": ("Adam", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "adagrad": ("Adagrad", dict(lr=0.1)),
    "adagrad_eps": ("Adagrad", dict(lr=0.5, eps=1e-3)),
}

# The parameter after each step, produced by torch.optim 2.13 (CPU, float64) from W0 and
# GRADS with the options in CASES (SGD, Adam and Adagrad with their other options at
# PyTorch's defaults), printed with repr.
TORCH = {
    "sgd": [
        [0.49, -1.23, 1.97],
        [0.53, -1.28, 1.945],
        [0.525, -1.34, 2.015],
    ],
    "sgd_wd": [
        [0.4895, -1.22875, 1.968],
        [0.5290105, -1.27752125, 1.9410319999999999],
        [0.5234814895000001, -1.33624372875, 2.0090909679999998],
    ],
    "sgd_momentum": [
        [0.49, -1.23, 1.97],
        [0.521, -1.262, 1.918],
        [0.5439, -1.3508, 1.9411999999999998],
    ],
    "sgd_momentum_wd": [
        [0.4895, -1.22875, 1.968],
        [0.5195605, -1.25839625, 1.912232],
        [0.5410953895, -1.3438194787500002, 1.930128568],
    ],
    "sgd_nesterov": [
        [0.48005, -1.209625, 1.9392],
        [0.546632905, -1.2851142125, 1.86209552],
        [0.5604509619804999, -1.42070144924625, 1.9464087865119999],
    ],
    "adam": [
        [0.4900000009999999, -1.2400000005, 1.9900000003333334],
        [0.4955950357485128, -1.2444221530217234, 1.980088271946428],
        [0.4991190833146187, -1.2514600140972716, 1.9819375725265422],
    ],
    "adam_custom": [
        [0.4500003333311111, -1.2000001538456804, 1.9500000999998],
        [0.4739125427961073, -1.2094240738464563, 1.9003930056307798],
        [0.4820063247082677, -1.2388604122081508, 1.893390127602072],
    ],
    "adagrad": [
        [0.4000000001, -1.15000000005, 1.9000000000333332],
        [0.49701425009100375, -1.2428476691212844, 1.8359815600832787],
        [0.4849756647853254, -1.3172685098655788, 1.9233111606896365],
    ],
    "adagrad_eps": [
        [0.004950495049504955, -0.7524875621890548, 1.5016611295681064],
        [0.4888481209905588, -1.215865436520906, 1.18238650826294],
        [0.42879977387754603, -1.5875086735858193, 1.6184904430284797],
    ],
}


# -- the slow reference: textbook formulas, one entry at a time ----------------

def reference(name, w0, grads, lr, momentum=0.0, weight_decay=0.0, nesterov=False,
              betas=(0.9, 0.999), eps=None):
    """The parameter (flat list of floats) after each step of `grads`, by PyTorch's formulas."""
    w = [float(v) for v in np.ravel(w0)]
    n = len(w)
    buf, m, v, s = [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
    b1, b2 = betas
    path = []
    for t, grad in enumerate(grads, start=1):
        grad = [float(x) for x in np.ravel(grad)]
        for i in range(n):
            if name == "SGD":
                g = grad[i] + weight_decay * w[i]
                if momentum:
                    buf[i] = g if t == 1 else momentum * buf[i] + g  # velocity
                    g = g + momentum * buf[i] if nesterov else buf[i]
                w[i] -= lr * g
            elif name == "Adam":
                g = grad[i] + weight_decay * w[i]
                m[i] = b1 * m[i] + (1 - b1) * g          # first moment
                v[i] = b2 * v[i] + (1 - b2) * g * g      # second moment
                m_hat, v_hat = m[i] / (1 - b1 ** t), v[i] / (1 - b2 ** t)  # bias-corrected
                w[i] -= lr * m_hat / (math.sqrt(v_hat) + (1e-8 if eps is None else eps))
            elif name == "Adagrad":
                s[i] += grad[i] * grad[i]                # sum of squared gradients
                w[i] -= lr * grad[i] / (math.sqrt(s[i]) + (1e-10 if eps is None else eps))
        path.append(list(w))
    return path


def run(name, options, w0, grads, dtype=F64):
    """minigrad's trajectory: the parameter's array after each step (and the optimizer)."""
    p = Parameter(np.array(w0, dtype=dtype))
    opt = OPTIMIZERS[name]([p], **options)
    path = []
    for g in grads:
        p.grad = np.array(g, dtype=dtype)
        opt.step()
        path.append(p.data)
    return path, opt, p


def random_case(rng, name, shape):
    """Options, a start and four steps of gradients, all drawn from rng."""
    options = {"SGD": dict(lr=rng.uniform(0.01, 0.5), momentum=rng.choice([0.0, rng.uniform(0.1, 0.99)]),
                           weight_decay=rng.choice([0.0, rng.uniform(0, 0.1)])),
               "Adam": dict(lr=rng.uniform(1e-3, 0.1), betas=tuple(rng.uniform(0.5, 0.999, 2)),
                            eps=rng.uniform(1e-8, 1e-4), weight_decay=rng.choice([0.0, 0.05])),
               "Adagrad": dict(lr=rng.uniform(0.01, 0.5), eps=rng.uniform(1e-10, 1e-3))}[name]
    if name == "SGD" and options["momentum"] and rng.uniform() < 0.5:
        options["nesterov"] = True
    return options, rng.standard_normal(shape), [rng.standard_normal(shape) for _ in range(4)]


# -- trajectories --------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_trajectory_matches_torch(case):
    name, options = CASES[case]
    path, _, _ = run(name, options, W0, GRADS)
    np.testing.assert_allclose(path, TORCH[case], rtol=1e-12, atol=0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_matches_torch(case):
    """The slow reference itself is right: it reproduces PyTorch's numbers."""
    name, options = CASES[case]
    np.testing.assert_allclose(reference(name, W0, GRADS, **options), TORCH[case], rtol=1e-12, atol=0)


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 1, 3)])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_trajectory_matches_reference_on_random_cases(rng, name, shape):
    for _ in range(5):
        options, w0, grads = random_case(rng, name, shape)
        path, _, p = run(name, options, w0, grads)
        assert p.shape == shape
        close([a.ravel() for a in path], reference(name, w0, grads, **options))


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_parameters_stay_float32(case):
    name, options = CASES[case]
    path, opt, p = run(name, options, W0, GRADS, dtype=F32)
    assert all(a.dtype == F32 for a in path)
    assert p.dtype == F32
    assert all(v.dtype == F32 for v in opt.state[id(p)].values() if isinstance(v, np.ndarray))
    close(path, TORCH[case], dtype=F32)


def test_parameters_without_grad_are_skipped():
    a, b = Parameter(np.array([1.0, 2.0])), Parameter(np.array([3.0]))
    for cls, options in [(SGD, dict(lr=0.1, momentum=0.9)), (Adam, {}), (Adagrad, {})]:
        opt = cls([a, b], **options)
        a.grad, b.grad = np.array([0.5, -0.5]), None
        before = b.data
        opt.step()
        assert b.data is before and b.grad is None
        assert id(b) not in opt.state and id(a) in opt.state
        assert list(opt.state_dict()["state"]) == [0]


def test_step_leaves_grad_untouched():
    for cls, options in [(SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.1)), (Adam, dict(weight_decay=0.1)),
                         (Adagrad, {})]:
        p = Parameter(np.array(W0))
        opt = cls([p], **options)
        p.grad = g = np.array(GRADS[0])
        opt.step()
        assert p.grad is g
        np.testing.assert_array_equal(g, GRADS[0])


def test_zero_grad_sets_grads_to_none():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(3))
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    a.grad, b.grad = np.ones(2), np.ones(3)
    opt.zero_grad()
    assert a.grad is None and b.grad is None


# -- out-of-place updates -------------------------------------------------------

@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_step_replaces_the_array_instead_of_writing_into_it(name):
    p = Parameter(np.array(W0))
    opt = OPTIMIZERS[name]([p], lr=0.1)
    old = p.data
    p.grad = np.array(GRADS[0])
    opt.step()
    assert p.data is not old
    np.testing.assert_array_equal(old, W0)
    assert not np.array_equal(p.data, W0)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_record_made_before_the_step_backpropagates_the_old_values(name):
    """The tape keeps the arrays its ops saw: the step must not change them under it."""
    x = mg.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    w = Parameter(np.array(W0))
    y = (w * x).sum()
    opt = OPTIMIZERS[name]([w], lr=0.5)
    w.grad = np.array([1.0, 1.0, 1.0])
    opt.step()
    y.backward()
    np.testing.assert_array_equal(x.grad, W0)  # d(sum w*x)/dx = w as it was in the forward pass


def test_momentum_buffer_does_not_alias_the_grad():
    p = Parameter(np.array(W0))
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = np.array(GRADS[0])
    opt.step()
    buf = opt.state[id(p)]["momentum_buffer"]
    assert buf is not p.grad
    p.grad[:] = 100.0  # e.g. a later backward accumulating into the same array
    np.testing.assert_array_equal(opt.state[id(p)]["momentum_buffer"], GRADS[0])
    # ... so the next step uses 0.9 * GRADS[0] + new grad, as PyTorch does
    p.grad = np.array(GRADS[1])
    opt.step()
    np.testing.assert_allclose(p.data, TORCH["sgd_momentum"][1], rtol=1e-12, atol=0)


# -- parameter groups -------------------------------------------------------------

def test_groups_have_their_own_options_and_missing_ones_take_the_defaults():
    a, b = Parameter(np.array(W0)), Parameter(np.array(W0))
    opt = SGD([{"params": [a]}, {"params": b, "lr": 0.5, "momentum": 0.0}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert [g["momentum"] for g in opt.param_groups] == [0.9, 0.0]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 0.0]
    assert opt.param_groups[1]["params"] == [b]  # a single tensor becomes a list
    for g in GRADS:
        a.grad, b.grad = np.array(g), np.array(g)
        opt.step()
    close(a.data, reference("SGD", W0, GRADS, lr=0.1, momentum=0.9)[-1])
    close(b.data, reference("SGD", W0, GRADS, lr=0.5)[-1])


def test_adam_groups_with_their_own_betas():
    a, b = Parameter(np.array(W0)), Parameter(np.array(W0))
    opt = Adam([{"params": [a], "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1, "lr": 0.05},
                {"params": [b]}], lr=0.01)
    for g in GRADS:
        a.grad, b.grad = np.array(g), np.array(g)
        opt.step()
    np.testing.assert_allclose(a.data, TORCH["adam_custom"][-1], rtol=1e-12, atol=0)
    np.testing.assert_allclose(b.data, TORCH["adam"][-1], rtol=1e-12, atol=0)


def test_a_parameter_in_two_groups_raises():
    p = Parameter(np.ones(2))
    with pytest.raises(ValueError, match="SGD.*two groups"):
        SGD([{"params": [p]}, {"params": [p], "lr": 1.0}], lr=0.1)
    with pytest.raises(ValueError, match="Adam.*two groups"):
        Adam([{"params": [p]}, {"params": [Parameter(np.ones(2)), p]}])


def test_a_parameter_twice_in_one_group_says_so():
    p, q = Parameter(np.ones(2)), Parameter(np.ones(2))
    with pytest.raises(ValueError, match=r"SGD: a parameter appears twice in parameter group 0 "
                                         r"\(positions 0 and 1\)"):
        SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match=r"Adam: a parameter appears twice in parameter group 1 "
                                         r"\(positions 0 and 2\)"):
        Adam([{"params": [q]}, {"params": [p, Parameter(np.ones(2)), p]}])


def test_unknown_option_raises():
    p = Parameter(np.ones(2))
    with pytest.raises(ValueError, match="Adam.*unknown options.*momentum"):
        Adam([{"params": [p], "momentum": 0.9}])
    with pytest.raises(ValueError, match="Adagrad.*unknown options.*betas"):
        Adagrad([{"params": [p], "betas": (0.9, 0.999)}])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_empty_parameter_list_raises(name):
    with pytest.raises(ValueError, match=f"{name}.*empty"):
        OPTIMIZERS[name]([], lr=0.1)
    with pytest.raises(ValueError, match=f"{name}.*empty"):
        OPTIMIZERS[name](iter([]), lr=0.1)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_only_tensors_that_require_grad(name):
    with pytest.raises(ValueError, match=f"{name}.*require grad"):
        OPTIMIZERS[name]([mg.tensor(np.ones(2))], lr=0.1)
    with pytest.raises(ValueError, match=f"{name}.*require grad.*ndarray"):
        OPTIMIZERS[name]([np.ones(2)], lr=0.1)


@pytest.mark.parametrize("name, options", [
    ("SGD", dict(lr=-0.1)),
    ("SGD", dict(lr=0.1, momentum=-0.5)),
    ("SGD", dict(lr=0.1, weight_decay=-1e-4)),
    ("SGD", dict(lr=0.1, nesterov=True)),              # nesterov without momentum
    ("SGD", dict(lr=0.1, momentum=0.0, nesterov=True)),
    ("Adam", dict(lr=-1e-3)),
    ("Adam", dict(betas=(1.0, 0.999))),
    ("Adam", dict(betas=(0.9, 1.0))),
    ("Adam", dict(betas=(-0.1, 0.999))),
    ("Adam", dict(betas=(0.9, -0.5))),
    ("Adam", dict(eps=-1e-8)),
    ("Adam", dict(weight_decay=-0.1)),
    ("Adagrad", dict(lr=-0.01)),
    ("Adagrad", dict(eps=-1e-10)),
])
def test_invalid_options_raise_naming_the_optimizer(name, options):
    p = Parameter(np.ones(2))
    with pytest.raises(ValueError, match=name):
        OPTIMIZERS[name]([p], **options)
    with pytest.raises(ValueError, match=name):  # the same option given in a group
        OPTIMIZERS[name]([{"params": [p], **options}], **({"lr": 0.1} if name == "SGD" else {}))


# -- state_dict / load_state_dict ------------------------------------------------

# Optimizers with state (and two groups) to save and restore.
STATEFUL = [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.1)),
    ("Adagrad", dict(lr=0.1)),
]


def two_groups(name, options, values):
    """Three parameters holding copies of `values`, in groups of 2 and 1 (second with lr 0.02)."""
    params = [Parameter(np.array(v)) for v in values]
    return params, OPTIMIZERS[name]([{"params": params[:2]}, {"params": params[2:], "lr": 0.02}], **options)


@pytest.mark.parametrize("name, options", STATEFUL)
def test_loaded_optimizer_continues_the_same_trajectory(rng, name, options):
    values = [rng.standard_normal(3), rng.standard_normal((2, 2)), rng.standard_normal(4)]
    grads = [[rng.standard_normal(v.shape) for v in values] for _ in range(5)]

    def step(params, opt, gs):
        for p, g in zip(params, gs):
            p.grad = g.copy()
        opt.step()

    params, opt = two_groups(name, options, values)
    for gs in grads[:2]:
        step(params, opt, gs)
    saved = opt.state_dict()

    # a fresh optimizer with the default options, on parameters holding the same values:
    # loading brings back every group's options (lr, momentum, betas...) and the state
    clone = [Parameter(p.data.copy()) for p in params]
    other = OPTIMIZERS[name]([{"params": clone[:2]}, {"params": clone[2:]}], lr=9.0)
    other.load_state_dict(saved)
    assert [g["lr"] for g in other.param_groups] == [options["lr"], 0.02]
    for g in other.param_groups:
        assert {o: g[o] for o in options if o != "lr"} == {o: v for o, v in options.items() if o != "lr"}
    for gs in grads[2:]:
        step(params, opt, gs)
        step(clone, other, gs)
        for p, q in zip(params, clone):
            np.testing.assert_array_equal(p.data, q.data)  # bitwise


@pytest.mark.parametrize("name, options", STATEFUL)
def test_state_dict_is_a_copy(name, options):
    params, opt = two_groups(name, options, [W0, W0, W0])
    for p in params:
        p.grad = np.array(GRADS[0])
    opt.step()
    saved = opt.state_dict()
    before = {k: {n: np.copy(v) for n, v in s.items()} for k, s in opt.state.items()}
    assert sorted(saved["state"]) == [0, 1, 2]
    assert [g["params"] for g in saved["param_groups"]] == [[0, 1], [2]]
    for s in saved["state"].values():   # scribble on everything the state_dict holds
        for v in s.values():
            if isinstance(v, np.ndarray):
                v[...] = 123.0
    saved["param_groups"][0]["lr"] = 123.0
    saved["param_groups"][0]["params"].append(7)
    assert opt.param_groups[0]["lr"] == options["lr"]
    assert opt.param_groups[0]["params"] == params[:2]
    for k, s in opt.state.items():
        for n, v in s.items():
            np.testing.assert_array_equal(v, before[k][n])


def test_load_state_dict_copies_too():
    p = Parameter(np.array(W0))
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = np.array(GRADS[0])
    opt.step()
    saved = opt.state_dict()
    q = Parameter(np.array(W0))
    other = SGD([q], lr=0.1, momentum=0.9)
    other.load_state_dict(saved)
    saved["state"][0]["momentum_buffer"][...] = 123.0
    np.testing.assert_array_equal(other.state[id(q)]["momentum_buffer"], GRADS[0])


def test_load_state_dict_with_other_group_sizes_raises():
    params, opt = two_groups("SGD", dict(lr=0.1, momentum=0.9), [W0, W0, W0])
    saved = opt.state_dict()
    ps = [Parameter(np.array(W0)) for _ in range(3)]
    for groups in ([{"params": ps}], [{"params": ps[:1]}, {"params": ps[1:]}], [{"params": ps[:2]}]):
        other = SGD(groups, lr=0.1, momentum=0.9)
        with pytest.raises(ValueError, match="SGD.load_state_dict.*sizes"):
            other.load_state_dict(saved)


def test_load_state_dict_with_a_wrong_state_shape_raises_and_changes_nothing():
    p = Parameter(np.array(W0))
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = np.array(GRADS[0])
    opt.step()
    saved = opt.state_dict()
    saved["param_groups"][0]["lr"] = 0.5
    q = Parameter(np.ones(4))
    other = SGD([q], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="SGD.load_state_dict.*momentum_buffer.*shape"):
        other.load_state_dict(saved)
    assert other.param_groups[0]["lr"] == 0.1 and other.state == {}


# -- clipping --------------------------------------------------------------------

# Produced by torch.nn.utils.clip_grad_norm_(..., 2.0) / clip_grad_value_(..., 1.5)
# (torch 2.13, float64) on the gradients CLIP_A, CLIP_B below.
CLIP_A, CLIP_B = [3.0, -4.0], [[1.0, 2.0], [-2.0, 0.5]]
TORCH_NORM = 5.852349955359813
TORCH_NORM_A = [1.0252290140776612, -1.366972018770215]
TORCH_NORM_B = [[0.34174300469255375, 0.6834860093851075], [-0.6834860093851075, 0.17087150234627688]]
TORCH_VALUE_A, TORCH_VALUE_B = [1.5, -1.5], [[1.0, 1.5], [-1.5, 0.5]]


def with_grads(*grads, dtype=F64):
    """Parameters (zeros) whose .grad are the given arrays; None stays None."""
    params = []
    for g in grads:
        p = Parameter(np.zeros(np.shape(g) if g is not None else 2, dtype=dtype))
        p.grad = None if g is None else np.array(g, dtype=dtype)
        params.append(p)
    return params


def test_clip_grad_norm_matches_torch():
    a, b = with_grads(CLIP_A, CLIP_B)
    total = clip_grad_norm_([a, b], 2.0)
    assert type(total) is float
    assert total == pytest.approx(TORCH_NORM, rel=1e-15)
    np.testing.assert_allclose(a.grad, TORCH_NORM_A, rtol=1e-14, atol=0)
    np.testing.assert_allclose(b.grad, TORCH_NORM_B, rtol=1e-14, atol=0)


@pytest.mark.parametrize("max_norm", [1.0, 4.0])
def test_clip_grad_norm_by_hand(max_norm):
    a, b = with_grads([3.0], [4.0])      # norm 5
    grads = a.grad, b.grad
    assert clip_grad_norm_([a, b], max_norm) == 5.0
    assert a.grad is grads[0] and b.grad is grads[1]  # in place
    np.testing.assert_allclose(np.concatenate([a.grad, b.grad]),
                               np.array([3.0, 4.0]) * max_norm / (5 + 1e-6), rtol=1e-15, atol=0)


@pytest.mark.parametrize("max_norm", [0.6, 1.0, 10.0])
def test_clip_grad_norm_leaves_grads_under_the_limit(max_norm):
    (a,) = with_grads([0.3, -0.4])       # norm 0.5
    grad = a.grad
    assert clip_grad_norm_([a], max_norm) == pytest.approx(0.5, rel=1e-15)
    assert a.grad is grad
    np.testing.assert_array_equal(a.grad, [0.3, -0.4])


def test_clip_grad_norm_of_zero_zeroes_the_grads():
    a, b = with_grads(CLIP_A, CLIP_B)
    assert clip_grad_norm_([a, b], 0.0) == pytest.approx(TORCH_NORM, rel=1e-15)
    assert not a.grad.any() and not b.grad.any()


def test_clip_grad_norm_skips_params_without_grad():
    a, none, b = with_grads(CLIP_A, None, CLIP_B)
    total = clip_grad_norm_(iter([a, none, b]), 2.0)   # any iterable
    assert total == pytest.approx(TORCH_NORM, rel=1e-15) and none.grad is None
    np.testing.assert_allclose(a.grad, TORCH_NORM_A, rtol=1e-14, atol=0)
    (only,) = with_grads(None)
    assert clip_grad_norm_([only], 1.0) == 0.0 and only.grad is None


def test_clip_grad_norm_accepts_a_single_tensor():
    (a,) = with_grads([3.0, 4.0])
    assert clip_grad_norm_(a, 1.0) == 5.0
    np.testing.assert_allclose(a.grad, np.array([3.0, 4.0]) / (5 + 1e-6), rtol=1e-15, atol=0)


def test_clip_grad_norm_keeps_float32():
    a, b = with_grads(CLIP_A, CLIP_B, dtype=F32)
    total = clip_grad_norm_([a, b], 2.0)
    assert a.grad.dtype == F32 and b.grad.dtype == F32
    close(total, TORCH_NORM, dtype=F32)
    close(a.grad, TORCH_NORM_A, dtype=F32)
    close(b.grad, TORCH_NORM_B, dtype=F32)


def test_clip_grad_norm_negative_raises():
    (a,) = with_grads(CLIP_A)
    with pytest.raises(ValueError, match="clip_grad_norm_.*max_norm"):
        clip_grad_norm_([a], -1.0)
    np.testing.assert_array_equal(a.grad, CLIP_A)


def test_clip_grad_value_matches_torch_in_place():
    a, none, b = with_grads(CLIP_A, None, CLIP_B)
    grads = a.grad, b.grad
    assert clip_grad_value_([a, none, b], 1.5) is None
    assert a.grad is grads[0] and b.grad is grads[1] and none.grad is None
    np.testing.assert_array_equal(a.grad, TORCH_VALUE_A)
    np.testing.assert_array_equal(b.grad, TORCH_VALUE_B)


def test_clip_grad_value_single_tensor_float32_and_negative():
    (a,) = with_grads([0.25, -3.0, 7.0], dtype=F32)
    clip_grad_value_(a, 0.5)
    assert a.grad.dtype == F32
    np.testing.assert_array_equal(a.grad, np.array([0.25, -0.5, 0.5], dtype=F32))
    with pytest.raises(ValueError, match="clip_grad_value_.*clip_value"):
        clip_grad_value_(a, -0.5)


def test_clipping_after_backward_then_step():
    """End to end: backward fills .grad, clipping scales it, the step uses the clipped grad."""
    w = Parameter(np.array([3.0, 4.0]))
    (w * w).sum().backward()              # grad 2w = [6, 8], norm 10
    assert clip_grad_norm_([w], 1.0) == 10.0
    SGD([w], lr=1.0).step()
    close(w.data, np.array([3.0, 4.0]) - np.array([6.0, 8.0]) / (10 + 1e-6))


# -- clipping non-finite and huge norms --------------------------------------------
# torch 2.13 (float64): a NaN gradient gives the norm NaN and makes every gradient NaN
# (the factor min(max_norm / (nan + 1e-6), 1) is NaN); an inf gradient gives the norm inf,
# the factor 0, so finite entries become 0 and the inf entry 0 * inf = NaN.

def test_clip_grad_norm_nan_makes_every_grad_nan():
    a, b = with_grads([1.0, float("nan")], [3.0, 4.0])
    total = clip_grad_norm_([a, b], 1.0)
    assert type(total) is float and math.isnan(total)
    assert np.isnan(a.grad).all() and np.isnan(b.grad).all()


def test_clip_grad_norm_nan_float32_stays_float32():
    (a,) = with_grads([1.0, float("nan")], dtype=F32)
    assert math.isnan(clip_grad_norm_([a], 1.0))
    assert a.grad.dtype == F32 and np.isnan(a.grad).all()


def test_clip_grad_norm_inf_as_torch():
    a, b = with_grads([1.0, float("inf"), 3.0], [-2.0])
    assert clip_grad_norm_([a, b], 1.0) == math.inf
    np.testing.assert_array_equal(a.grad, [0.0, np.nan, 0.0])
    np.testing.assert_array_equal(b.grad, [0.0])


@pytest.mark.parametrize("grad", [float("nan"), float("inf"), -float("inf")])
def test_clip_grad_norm_error_if_nonfinite(grad):
    (a,) = with_grads([1.0, grad])
    with pytest.raises(RuntimeError, match=r"total norm of order 2\.0 .* is non-finite"):
        clip_grad_norm_([a], 1.0, 2.0, True)         # PyTorch's positional order
    np.testing.assert_array_equal(a.grad, [1.0, grad])  # untouched
    (b,) = with_grads([3.0, 4.0])
    assert clip_grad_norm_([b], 1.0, error_if_nonfinite=True) == 5.0


def test_clip_grad_norm_huge_float64_grads_do_not_overflow():
    """(1e200)^2 overflows float64; the norm must not: by hand, |[3e200, 4e200]| = 5e200."""
    a, b = with_grads([3e200], [-4e200])
    total = clip_grad_norm_([a, b], 1.0)
    assert total / 5e200 == pytest.approx(1.0, rel=1e-15)
    factor = 1.0 / (5e200 + 1e-6)
    np.testing.assert_allclose(np.concatenate([a.grad, b.grad]), [3e200 * factor, -4e200 * factor],
                               rtol=1e-15, atol=0)
    np.testing.assert_allclose(np.hypot(a.grad, b.grad), [1.0], rtol=1e-15)


def test_clip_grad_norm_tiny_float64_grads_do_not_underflow():
    (a,) = with_grads([3e-200, 4e-200])              # squares underflow to 0
    assert clip_grad_norm_([a], 1.0) / 5e-200 == pytest.approx(1.0, rel=1e-15)
    np.testing.assert_array_equal(a.grad, [3e-200, 4e-200])


@pytest.mark.parametrize("norm_type, expected, factor", [(1.0, 7.0, 1.0 / (7 + 1e-6)),
                                                         (math.inf, 4.0, 1.0 / (4 + 1e-6)),
                                                         (3.0, 91.0 ** (1 / 3), 1.0 / (91.0 ** (1 / 3) + 1e-6))])
def test_clip_grad_norm_norm_type(norm_type, expected, factor):
    """By hand on [3, -4]; torch 2.13 gives the same (inf: norm 4, grads [0.75, -1])."""
    (a,) = with_grads([3.0, -4.0])
    assert clip_grad_norm_([a], 1.0, norm_type) == pytest.approx(expected, rel=1e-15)
    np.testing.assert_allclose(a.grad, np.array([3.0, -4.0]) * factor, rtol=1e-15, atol=0)


def test_clip_grad_norm_bad_norm_type_raises():
    (a,) = with_grads([3.0, -4.0])
    with pytest.raises(ValueError, match="clip_grad_norm_.*norm_type"):
        clip_grad_norm_([a], 1.0, norm_type=-1.0)
