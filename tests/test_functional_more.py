"""minigrad.nn.functional's activations (softplus, gelu, silu, leaky_relu, elu), losses
(cross_entropy's weight, ignore_index and label_smoothing, nll_loss,
binary_cross_entropy_with_logits, huber_loss), one_hot and pad: each against PyTorch's values
and gradients in float32 and float64, then a float64 gradient check on both sides of every
kink and threshold, then their errors.

PyTorch's results are in torch_reference/functional.npz, written by
torch_reference/make_functional.py from the cases of torch_reference/functional_cases.py
(see torch_reference/README.md); PyTorch itself is never imported here.
"""
import re
import warnings

import numpy as np
import pytest

import minigrad as mg
from minigrad import gradcheck
from minigrad.backends import primitives
from minigrad.backends.devices import to_numpy
from minigrad.nn import functional as F
from helpers import F64, leaf
from test_fake_gpu import fake_gpu, on_fake  # noqa: F401 (fake_gpu: a fixture, used by name)
from torch_reference import functional_cases
from torch_reference.functional_cases import DTYPES, cases, pack, run

CASES = {case.name: case for case in cases()}
BCE = F.binary_cross_entropy_with_logits
# float64 agrees with PyTorch to rounding; float32 to what a few float32 roundings allow
PARITY_TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-5, atol=2e-6)}


@pytest.fixture(scope="module")
def torch_results():
    return functional_cases.load_fixture()


def call(fn, args, kwargs):
    return getattr(F, fn)(*args, **kwargs)


def tensor(array, requires_grad):
    return mg.tensor(array, requires_grad=requires_grad)


def numpy(value):
    return to_numpy(value.data if isinstance(value, mg.Tensor) else value)


# -- PyTorch's values and gradients -------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_against_pytorch(name, dtype, torch_results):
    case = CASES[name]
    with warnings.catch_warnings():
        # a mean over no targets (every one ignored) is 0 / 0 = NaN, as PyTorch's
        warnings.simplefilter("ignore", RuntimeWarning)
        results = run(case, dtype, call, tensor, numpy)
    want_dtype = np.int64 if case.fn == "one_hot" else np.dtype(dtype)
    assert results["out"].dtype == want_dtype
    assert all(g.dtype == np.dtype(dtype) for k, g in results.items() if k.startswith("grad/"))
    got, expected = pack(results), torch_results[dtype][name].astype(F64)
    assert got.shape == expected.shape, "forward or backward gave shapes other than PyTorch's"
    np.testing.assert_allclose(got, expected, **PARITY_TOL[dtype])  # NaN where PyTorch has NaN


@pytest.mark.usefixtures("fake_gpu")
@pytest.mark.parametrize("dtype", DTYPES)
def test_against_pytorch_on_a_fake_gpu(dtype, torch_results):
    # Every case again, its tensors on "cuda" (test_fake_gpu's strict fake CuPy): the same NumPy
    # code runs on device arrays, through the kernels (emulated) or CuPy's library.
    def on_device(array, requires_grad):
        return mg.tensor(array, requires_grad=requires_grad, device="cuda")

    def numpy(value):
        assert on_fake(value.data if isinstance(value, mg.Tensor) else value)
        return to_numpy(value.data if isinstance(value, mg.Tensor) else value)
    for name, case in CASES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            got = pack(run(case, dtype, call, on_device, numpy))
        np.testing.assert_allclose(got, torch_results[dtype][name].astype(F64), **PARITY_TOL[dtype],
                                   err_msg=name)


def test_the_fixture_covers_every_case(torch_results):
    for dtype in DTYPES:
        assert sorted(torch_results[dtype]) == sorted(CASES)


# -- gradient checks, float64, on both sides of every kink and threshold -----------------

NEAR_ZERO = [-2.0, -1e-3, 1e-3, 2.0, -0.7, 0.4]


def points(*values):
    return leaf(np.array(values))


ACTIVATIONS = {
    "softplus": (lambda x: F.softplus(x), points(-3, -1e-3, 1e-3, 19.99, 20.01, 25)),
    "softplus beta=2": (lambda x: F.softplus(x, beta=2), points(-3, 0.5, 9.995, 10.005, 12)),
    "softplus beta=-1 threshold=2": (lambda x: F.softplus(x, beta=-1, threshold=2),
                                     points(-2.01, -1.99, 0, 3)),
    "gelu": (lambda x: F.gelu(x), points(-9, -3, -0.5, 0, 1e-3, 0.7, 4)),
    "gelu tanh": (lambda x: F.gelu(x, approximate="tanh"), points(-9, -3, -0.5, 0, 1e-3, 0.7, 4)),
    "silu": (lambda x: F.silu(x), points(-30, -3, -1e-3, 0, 0.5, 4, 30)),
    "leaky_relu": (lambda x: F.leaky_relu(x), points(*NEAR_ZERO)),
    "leaky_relu 0.3": (lambda x: F.leaky_relu(x, 0.3), points(*NEAR_ZERO)),
    "elu": (lambda x: F.elu(x), points(*NEAR_ZERO, -20)),
    "elu alpha=2.5": (lambda x: F.elu(x, alpha=2.5), points(*NEAR_ZERO, -20)),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_gradcheck(name):
    fn, x = ACTIVATIONS[name]
    assert gradcheck(fn, [x])


@pytest.mark.parametrize("fn, x, expected", [
    (F.leaky_relu, 0.0, 0.01), (lambda x: F.leaky_relu(x, 0.3), 0.0, 0.3),
    (F.elu, 0.0, 1.0), (lambda x: F.elu(x, alpha=2.5), 0.0, 2.5),
    (lambda x: F.softplus(x, beta=2), 10.0, 1 / (1 + np.exp(-20.0))),   # at the threshold: the formula
    (lambda x: F.softplus(x, beta=2), 10.0 + 1e-9, 1.0),               # above it: linear
], ids=["leaky_relu", "leaky_relu 0.3", "elu", "elu alpha=2.5", "softplus at threshold", "softplus above"])
def test_derivative_at_the_kink_is_pytorchs(fn, x, expected):
    t = points(x)
    fn(t).sum().backward()
    np.testing.assert_allclose(t.grad, [expected], rtol=1e-15)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_far_out(approximate):
    # x Phi(x) is 0 or x far out, its derivative 0 or 1: never NaN, nor a warning, up to 1e300
    x = points(-40.0, -10.0, 10.0, 40.0, 1e300, -1e300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = F.gelu(x, approximate=approximate)
        y.sum().backward()
    np.testing.assert_array_equal(y.data[[0, 2, 3, 4, 5]], [-0.0, 10.0, 40.0, 1e300, -0.0])
    np.testing.assert_array_equal(x.grad[[0, 3, 4, 5]], [0, 1, 1, 0])
    if approximate == "none":  # erfc keeps Phi's digits in the left tail: Phi(-10) = 7.62e-24
        np.testing.assert_allclose(y.data[1], -10 * 7.619853024160527e-24, rtol=1e-12)


def class_inputs(rng, shape, ignore=True):
    """(logits or log-probabilities (..., C) that require grad, targets with some ignored, weight)."""
    x = leaf(2 * rng.standard_normal(shape))
    t = rng.integers(0, shape[-1], shape[:-1])
    if ignore:
        t.reshape(-1)[::3] = -100
    return x, t, rng.uniform(0.2, 2, shape[-1])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4), (4,)], ids=["(N, C)", "(N, T, C)", "(C,)"])
def test_class_losses_gradcheck(shape, reduction, rng):
    x, t, w = class_inputs(rng, shape, ignore=len(shape) > 1)
    for opts in [dict(), dict(weight=w), dict(label_smoothing=0.2), dict(weight=w, label_smoothing=0.2)]:
        assert gradcheck(lambda x: F.cross_entropy(x, t, reduction=reduction, **opts), [x])
    assert gradcheck(lambda x: F.nll_loss(x, t, weight=w, reduction=reduction), [x])
    assert gradcheck(lambda x: F.nll_loss(x, t, reduction=reduction), [x])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_gradcheck(reduction, rng):
    x, t = leaf(3 * rng.standard_normal((3, 4))), leaf(rng.uniform(0, 1, (3, 4)))
    w, pw = rng.uniform(0.5, 2, (3, 4)), rng.uniform(0.5, 3, 4)
    for opts in [dict(), dict(weight=w), dict(pos_weight=pw), dict(weight=w[0], pos_weight=pw)]:
        assert gradcheck(lambda x, t: BCE(x, t, reduction=reduction, **opts), [x, t])


@pytest.mark.parametrize("delta", [1.0, 0.3])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_huber_gradcheck(reduction, delta, rng):
    # differences on both sides of -delta, 0 and delta
    d = np.array([-3, -delta - 1e-3, -delta + 1e-3, -1e-3, 1e-3, delta - 1e-3, delta + 1e-3, 2.5])
    t = leaf(rng.standard_normal(8))
    x = leaf(t.data + d)
    assert gradcheck(lambda x, t: F.huber_loss(x, t, reduction=reduction, delta=delta), [x, t])


@pytest.mark.parametrize("pads", [(1, 2), (1, 1, 2, 0), (0, 1, 1, 0, 2, 1), (-1, 2), (-2, -1, 1, -1)])
def test_pad_gradcheck(pads, rng):
    x = leaf(rng.standard_normal((2, 3, 4)))
    assert gradcheck(lambda x: F.pad(x, pads, value=0.5), [x])


# -- what the parity cases do not show ----------------------------------------------

def test_cross_entropy_weighted_mean_by_hand():
    # log-probabilities log(1/6), log(1/3), log(1/2); weights 1, 2, 3; the second target ignored
    logits = leaf([[0.0, np.log(2), np.log(3)]] * 3)
    w = np.array([1.0, 2.0, 3.0])
    loss = F.cross_entropy(logits, np.array([2, -100, 0]), weight=w)
    np.testing.assert_allclose(loss.data, (3 * np.log(2) + 1 * np.log(6)) / (3 + 1), rtol=1e-14)
    loss.backward()
    np.testing.assert_array_equal(logits.grad[1], 0)   # the ignored row: no gradient
    p = np.array([1 / 6, 1 / 3, 1 / 2])
    np.testing.assert_allclose(logits.grad[0], 3 * (p - [0, 0, 1]) / 4, rtol=1e-14)


def test_label_smoothing_is_the_cross_entropy_against_the_mixed_distribution(rng):
    x, t, _ = class_inputs(rng, (5, 4), ignore=False)
    e = 0.3
    q = (1 - e) * np.eye(4)[t] + e / 4
    log_p = x.data - np.log(np.exp(x.data).sum(-1, keepdims=True))
    loss = F.cross_entropy(x, t, label_smoothing=e, reduction="none")
    np.testing.assert_allclose(loss.data, -(q * log_p).sum(-1), rtol=1e-13)


@pytest.mark.parametrize("fn", [F.cross_entropy, F.nll_loss], ids=["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("opts", [dict(), dict(weight=np.ones(3)), dict(label_smoothing=0.1)],
                         ids=["plain", "weight", "smoothing"])
def test_every_target_ignored(fn, opts):
    if fn is F.nll_loss and "label_smoothing" in opts:
        pytest.skip("nll_loss has no label smoothing")
    x = leaf(np.zeros((2, 3)))
    targets = np.array([-100, -100])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # 0 / 0
        mean = fn(x, targets, **opts)
        assert np.isnan(float(mean.data))   # PyTorch's NaN: a mean over nothing
        mean.backward()
    np.testing.assert_array_equal(x.grad, 0)   # as PyTorch's: the ignored rows send nothing
    assert float(fn(x, targets, reduction="sum", **opts).data) == 0
    np.testing.assert_array_equal(fn(x, targets, reduction="none", **opts).data, [0, 0])


def test_ignore_index_may_be_a_class():
    x = leaf(np.log([[0.2, 0.3, 0.5]] * 3))
    loss = F.nll_loss(x, np.array([0, 1, 2]), ignore_index=1, reduction="none")
    np.testing.assert_allclose(loss.data, [-np.log(0.2), 0, -np.log(0.5)], rtol=1e-14)


EMPTY_MEAN_LOSSES = {
    "nll_loss": (lambda x: F.nll_loss(x, np.zeros(0, np.int64)), (0, 3)),
    "cross_entropy weight": (lambda x: F.cross_entropy(x, np.zeros((2, 0), int), weight=np.ones(3)),
                             (2, 0, 3)),
    "cross_entropy smoothing": (lambda x: F.cross_entropy(x, np.zeros(0, int), label_smoothing=0.1), (0, 3)),
    "bce_with_logits": (lambda x: BCE(x, np.zeros((0, 2))), (0, 2)),
    "huber_loss": (lambda x: F.huber_loss(x, np.zeros(0)), (0,)),
}


@pytest.mark.parametrize("name", EMPTY_MEAN_LOSSES)
def test_mean_of_an_empty_input_is_nan(name):
    fn, shape = EMPTY_MEAN_LOSSES[name]
    x = leaf(np.zeros(shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        loss = fn(x)
        assert loss.shape == () and np.isnan(float(loss.data))
        loss.backward()
    assert x.grad.shape == shape


def test_cross_entropy_keeps_its_fused_path_without_options(monkeypatch, rng):
    calls = []
    fused = primitives.softmax_xent
    monkeypatch.setattr(primitives, "softmax_xent", lambda *a: calls.append(1) or fused(*a))
    x, t, w = class_inputs(rng, (5, 4), ignore=False)
    F.cross_entropy(x, t)
    F.cross_entropy(x, t, ignore_index=-1)          # an ignore_index that no target holds
    assert len(calls) == 2
    F.cross_entropy(x, t, weight=w)
    F.cross_entropy(x, t, label_smoothing=0.1)
    F.cross_entropy(x, np.where(t == 0, -100, t))
    assert len(calls) == 2


FUNCTIONS = {
    "softplus": lambda x, t: F.softplus(x), "gelu": lambda x, t: F.gelu(x),
    "gelu tanh": lambda x, t: F.gelu(x, approximate="tanh"), "silu": lambda x, t: F.silu(x),
    "leaky_relu": lambda x, t: F.leaky_relu(x), "elu": lambda x, t: F.elu(x),
    "cross_entropy": lambda x, t: F.cross_entropy(x, t, weight=np.ones(4), label_smoothing=0.1),
    "nll_loss": lambda x, t: F.nll_loss(x, t),
    "bce_with_logits": lambda x, t: BCE(x, np.ones((3, 4), x.dtype), pos_weight=np.ones(4)),
    "huber_loss": lambda x, t: F.huber_loss(x, np.ones((3, 4), x.dtype)),
    "pad": lambda x, t: F.pad(x, (1, -1, 2, 0)),
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_one_record_per_call(name, rng):
    x, t = leaf(rng.standard_normal((3, 4))), np.array([0, 3, -100])
    tape = mg.get_tape()
    before = len(tape)
    out = FUNCTIONS[name](x, t)  # (the tape holds a record only while its output lives)
    assert len(tape) == before + 1 and out.requires_grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_dtype_is_preserved(name, dtype, rng):
    x = mg.tensor(rng.standard_normal((3, 4)).astype(dtype), requires_grad=True)
    out = FUNCTIONS[name](x, np.array([0, 3, -100]))
    out.sum().backward()
    assert out.dtype == dtype and x.grad.dtype == dtype


def test_one_hot():
    out = F.one_hot(np.array([[0, 2], [1, 0]]))
    assert out.dtype == np.int64 and not out.requires_grad and out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out.data, [[[1, 0, 0], [0, 0, 1]], [[0, 1, 0], [1, 0, 0]]])
    np.testing.assert_array_equal(F.one_hot(mg.tensor(np.int32(2)), 4).data, [0, 0, 1, 0])
    assert F.one_hot(np.zeros(0, np.int64), 3).shape == (0, 3)


# -- errors -------------------------------------------------------------------------

def says(*parts):
    """A pattern for pytest.raises(match=...): these literal parts, in this order."""
    return ".*".join(re.escape(p) for p in parts)


X = np.zeros((4, 3))
T = np.array([0, 1, 2, 0])


def error(id, call, kind, *message):
    """A case of test_errors: call() raises `kind` whose message holds the parts of `message`."""
    return pytest.param(call, kind, says(*message), id=id)


ERRORS = [
    *[error(f"{name}-reduction", lambda fn=fn: fn("avg"), ValueError,
            f"{name}: reduction must be one of mean, sum, none, got 'avg'")
      for name, fn in [("cross_entropy", lambda r: F.cross_entropy(leaf(X), T, reduction=r)),
                       ("nll_loss", lambda r: F.nll_loss(leaf(X), T, reduction=r)),
                       ("binary_cross_entropy_with_logits", lambda r: BCE(leaf(X), X, reduction=r)),
                       ("huber_loss", lambda r: F.huber_loss(leaf(X), X, reduction=r))]],
    error("gelu-approximate", lambda: F.gelu(leaf(X), approximate="erf"), ValueError,
          "gelu: approximate must be 'none' or 'tanh', got 'erf'"),
    error("softplus-beta", lambda: F.softplus(leaf(X), beta=0), ValueError,
          "softplus: beta must be a nonzero number, got 0"),
    error("leaky-slope", lambda: F.leaky_relu(leaf(X), negative_slope="0.1"), ValueError,
          "leaky_relu: negative_slope must be a real number, got '0.1'"),
    error("elu-int", lambda: F.elu(mg.tensor(np.arange(3))), TypeError,
          "elu: expected float32 or float64 input, got int64"),
    error("huber-delta", lambda: F.huber_loss(leaf(X), X, delta=0), ValueError,
          "huber_loss: delta must be a number > 0, got 0"),
    error("huber-shape", lambda: F.huber_loss(leaf(X), X[:, :1]), ValueError,
          "huber_loss: input (4, 3) and target (4, 1) differ in shape"),
    error("bce-shape", lambda: BCE(leaf(X), X[0]), ValueError,
          "binary_cross_entropy_with_logits: target (3,) must have input's shape (4, 3)"),
    error("bce-weight", lambda: BCE(leaf(X), X, weight=np.ones(4)), ValueError,
          "binary_cross_entropy_with_logits: weight of shape (4,)", "does not broadcast to input's shape (4, 3)"),
    error("bce-pos_weight", lambda: BCE(leaf(X), X, pos_weight=np.ones((2, 4, 3))), ValueError,
          "binary_cross_entropy_with_logits: pos_weight of shape (2, 4, 3) does not broadcast"),
    error("bce-pos_weight-requires-grad", lambda: BCE(leaf(X), X, pos_weight=leaf(np.ones(3))), ValueError,
          "binary_cross_entropy_with_logits: pos_weight gets no gradient"),
    error("nll-float-targets", lambda: F.nll_loss(leaf(X), T.astype(float)), TypeError,
          "nll_loss: targets must be integer class indices, got dtype float64"),
    error("nll-shape", lambda: F.nll_loss(leaf(X), T[:3]), ValueError,
          "nll_loss: log-probabilities (4, 3) need targets of shape (4,), got (3,)"),
    error("nll-target-high", lambda: F.nll_loss(leaf(X), np.array([0, 3, -100, 1])), ValueError,
          "nll_loss: target 3 is out of range for 3 classes"),
    error("nll-target-not-ignored", lambda: F.nll_loss(leaf(X), np.array([0, -100, 1, 1]), ignore_index=-1),
          ValueError, "nll_loss: target -100 is out of range for 3 classes"),
    error("ce-target-low", lambda: F.cross_entropy(leaf(X), np.array([0, -1, -100, 1])), ValueError,
          "cross_entropy: target -1 is out of range for 3 classes"),
    error("ce-ignore_index", lambda: F.cross_entropy(leaf(X), T, ignore_index=1.0), TypeError,
          "cross_entropy: ignore_index must be an integer, got 1.0"),
    error("nll-weight", lambda: F.nll_loss(leaf(X), T, weight=np.ones(4)), ValueError,
          "nll_loss: weight must hold a number for each of the 3 classes, shape (3,), got shape (4,)"),
    error("ce-weight", lambda: F.cross_entropy(leaf(X), T, weight=np.ones((1, 3))), ValueError,
          "cross_entropy: weight must hold a number for each of the 3 classes, shape (3,), got shape (1, 3)"),
    error("ce-weight-requires-grad", lambda: F.cross_entropy(leaf(X), T, weight=leaf(np.ones(3))), ValueError,
          "cross_entropy: weight gets no gradient, but it requires grad; pass weight.detach()"),
    error("nll-weight-dtype", lambda: F.nll_loss(leaf(X), T, weight=np.array(["a", "b", "c"])), TypeError,
          "nll_loss: weight must hold numbers, got dtype <U1"),
    error("ce-smoothing", lambda: F.cross_entropy(leaf(X), T, label_smoothing=1.5), ValueError,
          "cross_entropy: label_smoothing must be a number in [0, 1], got 1.5"),
    # the third argument is weight, as PyTorch's; the rest are keyword-only (PyTorch's fourth
    # is its deprecated size_average), so a reduction given there cannot be misread
    error("ce-reduction-positional", lambda: F.cross_entropy(leaf(X), T, None, "sum"), TypeError,
          "cross_entropy() takes from 2 to 3 positional arguments but 4 were given"),
    error("ce-reduction-as-weight", lambda: F.cross_entropy(leaf(X), T, "sum"), TypeError,
          "cross_entropy: weight must be an array of numbers, got 'sum'; reduction is keyword-only: "
          "cross_entropy(..., reduction='sum')"),
    error("pad-mode-reflect", lambda: F.pad(leaf(X), (1, 1), mode="reflect"), ValueError,
          "pad: only mode 'constant' is implemented, got 'reflect'"),
    error("pad-mode", lambda: F.pad(leaf(X), (1, 1), mode="mirror"), ValueError,
          "pad: mode must be one of constant, reflect, replicate, circular, got 'mirror'"),
    error("pad-odd", lambda: F.pad(leaf(X), (1,)), ValueError,
          "pad: pad needs an even length of at most 2 * x.ndim = 4", "got 1: (1,)"),
    error("pad-long", lambda: F.pad(leaf(X), (1, 1) * 3), ValueError,
          "pad: pad needs an even length of at most 2 * x.ndim = 4", "got 6"),
    error("pad-float", lambda: F.pad(leaf(X), (1.5, 1)), TypeError,
          "pad: pad must be a tuple of integers, got (1.5, 1)"),
    error("pad-crop", lambda: F.pad(leaf(X), (-3, -1)), ValueError,
          "pad: pads (-3, -1) crop axis 1 of size 3 below 0, for x of shape (4, 3)"),
    error("one_hot-float", lambda: F.one_hot(np.array([0.0, 1.0])), TypeError,
          "one_hot: tensor must hold integer class indices, got dtype float64"),
    error("one_hot-negative", lambda: F.one_hot(np.array([0, -1])), ValueError,
          "one_hot: class values must be non-negative, got -1"),
    error("one_hot-high", lambda: F.one_hot(np.array([0, 3]), 3), ValueError,
          "one_hot: class values must be smaller than num_classes 3, got 3"),
    error("one_hot-empty", lambda: F.one_hot(np.zeros(0, np.int64)), ValueError,
          "one_hot: cannot infer the number of classes from an empty tensor (0,)"),
    error("one_hot-num_classes", lambda: F.one_hot(np.array([0]), -2), ValueError,
          "one_hot: num_classes must be -1 (max + 1) or an integer >= 0, got -2"),
]


@pytest.mark.parametrize("fn, error, message", ERRORS)
def test_errors(fn, error, message):
    tape = mg.get_tape()
    before = len(tape)
    with pytest.raises(error, match=message):
        fn()
    assert len(tape) == before   # nothing recorded by a call that failed


def test_a_mean_over_a_total_weight_of_zero_is_nan_even_with_smoothing():
    """PyTorch's mean divides its NLL part, 0 / 0 here, on its own: NaN, not the inf that the
    smoothing part alone (nonzero / 0) would give; the gradient is NaN too."""
    x = leaf([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # quietly, as PyTorch's
        loss = F.cross_entropy(x, np.array([0, 0]), weight=np.array([0.0, 1.0, 1.0]),
                               label_smoothing=0.1)
        loss.backward()
        every_one_ignored = F.cross_entropy(leaf([[1.0, 2.0]]), np.array([1]), ignore_index=1,
                                            label_smoothing=0.1)
        nll = F.nll_loss(leaf([[-1.0, -2.0]]), np.array([0]), weight=np.array([0.0, 1.0]))
        nll.backward()
    assert np.isnan(loss.item()) and np.isnan(x.grad).all()
    assert np.isnan(every_one_ignored.item()) and np.isnan(nll.item())
