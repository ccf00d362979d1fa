"""Every op in minigrad.ops: forward and gradient against values computed by hand or
by slow, obvious NumPy loops, then a float64 gradient check (central differences)."""
import warnings

import numpy as np
import pytest

import minigrad as mg
from minigrad import gradcheck
from helpers import DTYPES, F32, F64, close, leaf, rand_leaf

# Every test runs on every backend: NumPy, the kernels emulated on the CPU, and a GPU.
pytestmark = pytest.mark.usefixtures("on_backend")


def off_zero(rng, *shape, dtype=F64):
    """A leaf with |x| in [0.2, 2): central differences never step across a kink at 0."""
    data = rng.uniform(0.2, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    return mg.tensor(data.astype(dtype), requires_grad=True)


def backprop(out, g, *inputs):
    """Back-propagate upstream gradient g (an array of out's shape) and return the inputs' .grad."""
    out.backward(np.asarray(g, dtype=out.dtype))
    return [t.grad for t in inputs]


# -- slow, obvious references --------------------------------------------------

def linear_vjp(f, x, g):
    """d sum(g * f(x)) / dx for a linear f, one basis vector at a time (only f's forward is used)."""
    grad = np.zeros(x.size)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = 1.0
        grad[i] = np.sum(g * f(e.reshape(x.shape)))
    return grad.reshape(x.shape)


def copy_vjp(f, shapes, g):
    """Gradients of an op whose every output entry is a copy of one input entry (indexing,
    reshapes, joins): run f on arrays of entry ids, then send each entry of g back to the
    id it came from in a Python loop, adding where an entry was copied more than once."""
    sizes = [int(np.prod(s)) for s in shapes]
    starts = np.cumsum([0] + sizes)
    ids = [np.arange(s, s + n).reshape(shape) for s, n, shape in zip(starts, sizes, shapes)]
    source = np.asarray(f(*ids))
    assert source.shape == np.shape(g)
    flat = np.zeros(starts[-1])
    for j, i in enumerate(source.ravel()):
        flat[i] += np.ravel(g)[j]
    return [flat[s:s + n].reshape(shape) for s, n, shape in zip(starts, sizes, shapes)]


def matmul_loop(x, y):
    """numpy.matmul's rules spelled out: 1-D operands get an axis, batch axes broadcast."""
    x2 = x[None, :] if x.ndim == 1 else x
    y2 = y[:, None] if y.ndim == 1 else y
    batch = np.broadcast_shapes(x2.shape[:-2], y2.shape[:-2])
    xb = np.broadcast_to(x2, batch + x2.shape[-2:])
    yb = np.broadcast_to(y2, batch + y2.shape[-2:])
    (n, k), m = x2.shape[-2:], y2.shape[-1]
    out = np.zeros(batch + (n, m))
    for b in np.ndindex(*batch):
        for i in range(n):
            for j in range(m):
                out[b + (i, j)] = sum(xb[b + (i, p)] * yb[b + (p, j)] for p in range(k))
    if x.ndim == 1:
        out = out[..., 0, :]
    if y.ndim == 1:
        out = out[..., 0]
    return out


def max_loop(x, axis, keepdims, g):
    """max over `axis` and its gradient by explicit loops: the first maximum in C order
    of the reduced entries gets the whole upstream gradient."""
    axes = range(x.ndim) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
    axes = sorted(a % x.ndim for a in axes)
    kept = [i for i in range(x.ndim) if i not in axes]
    out = np.zeros([x.shape[i] for i in kept])
    grad = np.zeros(x.shape)
    g = np.reshape(g, out.shape)  # with or without keepdims: only length-1 axes differ
    for k in np.ndindex(*out.shape):
        best = None
        for r in np.ndindex(*[x.shape[i] for i in axes]):
            pos = [0] * x.ndim
            for i, v in zip(kept, k):
                pos[i] = v
            for i, v in zip(axes, r):
                pos[i] = v
            if best is None or x[tuple(pos)] > x[best]:  # strict: ties keep the first
                best = tuple(pos)
        out[k] = x[best]
        grad[best] += g[k]
    if keepdims:
        out = out.reshape([1 if i in axes else n for i, n in enumerate(x.shape)])
    return out, grad


# -- arithmetic ----------------------------------------------------------------

X_HAND, Y_HAND, G_HAND = [1.0, 2.0, 4.0], [2.0, 4.0, 8.0], [1.0, 2.0, 3.0]

# op: (minigrad, forward by hand, (dL/dx, dL/dy) by hand for upstream G_HAND)
BINARY = {
    "add": (lambda a, b: a + b, [3, 6, 12], ([1, 2, 3], [1, 2, 3])),
    "sub": (lambda a, b: a - b, [-1, -2, -4], ([1, 2, 3], [-1, -2, -3])),
    "mul": (lambda a, b: a * b, [2, 8, 32], ([2, 8, 24], [1, 4, 12])),
    "div": (lambda a, b: a / b, [0.5, 0.5, 0.5], ([0.5, 0.5, 0.375], [-0.25, -0.25, -0.1875])),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", BINARY)
def test_binary_by_hand(name, dtype):
    fn, forward, (gx, gy) = BINARY[name]
    x, y = leaf(X_HAND, dtype), leaf(Y_HAND, dtype)
    out = fn(x, y)
    close(out.data, forward, dtype)
    got_x, got_y = backprop(out, G_HAND, x, y)
    close(got_x, gx, dtype)
    close(got_y, gy, dtype)


@pytest.mark.parametrize("name", BINARY)
def test_binary_gradcheck_with_broadcasting(name, rng):
    x, y = rand_leaf(rng, 2, 1, 3), off_zero(rng, 4, 1)  # y: divisors away from 0
    assert gradcheck(BINARY[name][0], [x, y])


def test_mul_broadcast_by_hand():
    x, y = leaf([[1.0], [2.0]]), leaf([10.0, 20.0, 30.0])
    out = x * y
    close(out.data, [[10, 20, 30], [20, 40, 60]])
    gx, gy = backprop(out, [[1, 2, 3], [4, 5, 6]], x, y)
    close(gx, [[140], [320]])        # sum_j g_ij y_j
    close(gy, [9, 12, 15])           # sum_i g_ij x_i


# Python scalars on either side: (minigrad, forward by hand, d out / dx by hand) at x = X_HAND.
SCALAR = {
    "x + 2": (lambda x: x + 2, [3, 4, 6], [1, 1, 1]),
    "2 + x": (lambda x: 2 + x, [3, 4, 6], [1, 1, 1]),
    "x - 2": (lambda x: x - 2, [-1, 0, 2], [1, 1, 1]),
    "2 - x": (lambda x: 2 - x, [1, 0, -2], [-1, -1, -1]),
    "x * 3": (lambda x: x * 3, [3, 6, 12], [3, 3, 3]),
    "3 * x": (lambda x: 3 * x, [3, 6, 12], [3, 3, 3]),
    "x / 2": (lambda x: x / 2, [0.5, 1, 2], [0.5, 0.5, 0.5]),
    "2 / x": (lambda x: 2 / x, [2, 1, 0.5], [-2, -0.5, -0.125]),
    "-x": (lambda x: -x, [-1, -2, -4], [-1, -1, -1]),
    "x ** 2": (lambda x: x ** 2, [1, 4, 16], [2, 4, 8]),
    "x ** 3": (lambda x: x ** 3, [1, 8, 64], [3, 12, 48]),
    "x ** 0.5": (lambda x: x ** 0.5, [1, 2 ** 0.5, 2], [0.5, 0.5 / 2 ** 0.5, 0.25]),
    "x ** -1": (lambda x: x ** -1, [1, 0.5, 0.25], [-1, -0.25, -0.0625]),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", SCALAR)
def test_scalar_operand_by_hand(name, dtype, rng):
    fn, forward, deriv = SCALAR[name]
    x = leaf(X_HAND, dtype)
    out = fn(x)
    assert out.dtype == dtype
    close(out.data, forward, dtype)
    (gx,) = backprop(out, G_HAND, x)
    close(gx, np.multiply(deriv, G_HAND), dtype)
    if dtype == F64:  # positive inputs: x ** 0.5, 2 / x
        assert gradcheck(fn, [rand_leaf(rng, 2, 3, low=0.5, high=2.0)])


# d/dx x^p at x = 0 and at negative bases, worked by hand (PyTorch gives the same numbers).
# minigrad's only power is tensor ** scalar; a tensor exponent is (y * x.log()).exp().
# At x = 0: x^0 = 1 is constant (0, not 0 * 0^-1 = NaN); 1 x^0 = 1; 2 x = 0; 3 x^2 = 0;
# -1 x^-2 and -2 x^-3 are -inf; 0.5 x^-0.5 is +inf. At x = -2: 0; 1; 2(-2) = -4;
# 3(-2)^2 = 12; -1/(-2)^2 = -0.25; -2/(-2)^3 = 0.25; 0.5 (-2)^-0.5 is NaN (no real root).
POWER_AT_ZERO_AND_NEGATIVE = {
    0: [0.0, 0.0],
    1: [1.0, 1.0],
    2: [0.0, -4.0],
    3: [0.0, 12.0],
    -1: [-np.inf, -0.25],
    -2: [-np.inf, 0.25],
    0.5: [np.inf, np.nan],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", POWER_AT_ZERO_AND_NEGATIVE)
def test_power_gradient_at_zero_and_negative_bases(p, dtype):
    x = leaf([0.0, -2.0], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0 ** -2 and (-2) ** -0.5 warn
        (gx,) = backprop(x ** p, [1.0, 1.0], x)
    np.testing.assert_array_equal(np.asarray(gx), np.array(POWER_AT_ZERO_AND_NEGATIVE[p], dtype))


def test_power_zero_has_a_zero_gradient_even_for_infinite_upstream():
    x = leaf([0.0, 3.0])
    (gx,) = backprop(x ** 0, [np.inf, 1.0], x)  # PyTorch: zeros, whatever the upstream gradient
    np.testing.assert_array_equal(np.asarray(gx), [0.0, 0.0])


# -- matmul --------------------------------------------------------------------

def test_matmul_by_hand():
    a, b = leaf([[1.0, 2.0], [3.0, 4.0]]), leaf([[5.0, 6.0], [7.0, 8.0]])
    out = a @ b
    close(out.data, [[19, 22], [43, 50]])
    ga, gb = backprop(out, np.ones((2, 2)), a, b)
    close(ga, [[11, 15], [11, 15]])  # g b^T
    close(gb, [[4, 4], [6, 6]])      # a^T g
    u, v = leaf([1.0, 2.0, 3.0]), leaf([4.0, 5.0, 6.0])
    dot = u @ v
    assert dot.shape == ()
    close(dot.data, 32)
    gu, gv = backprop(dot, 2.0, u, v)
    close(gu, [8, 10, 12])
    close(gv, [2, 4, 6])


MATMUL_SHAPES = [
    ((4,), (4,)), ((4,), (4, 3)), ((2, 4), (4,)), ((2, 4), (4, 3)),
    ((2, 1, 3, 4), (3, 4, 5)), ((3, 4), (2, 4, 5)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sx, sy", MATMUL_SHAPES)
def test_matmul_against_loops(sx, sy, dtype, rng):
    x, y = rand_leaf(rng, *sx, dtype=dtype), rand_leaf(rng, *sy, dtype=dtype)
    X, Y = x.data.astype(F64), y.data.astype(F64)
    out = x @ y
    expected = matmul_loop(X, Y)
    assert out.shape == expected.shape and out.dtype == dtype
    close(out.data, expected, dtype)
    g = rng.standard_normal(out.shape)
    gx, gy = backprop(out, g, x, y)
    g = g.astype(dtype).astype(F64)
    close(gx, linear_vjp(lambda e: e @ Y, X, g), dtype)
    close(gy, linear_vjp(lambda e: X @ e, Y, g), dtype)
    if dtype == F64:
        assert gradcheck(lambda a, b: a @ b, [x, y])


def test_matmul_with_constant_operand(rng):
    w, x = rand_leaf(rng, 3, 2), mg.tensor(rng.standard_normal((4, 3)))  # x is data
    (gw,) = backprop(x @ w, np.ones((4, 2)), w)
    close(gw, x.data.T @ np.ones((4, 2)))
    assert x.grad is None


# -- elementwise functions -----------------------------------------------------

# name: (minigrad, NumPy forward, derivative written independently of the implementation)
UNARY = {
    "exp": (lambda t: t.exp(), np.exp, np.exp),
    "log": (lambda t: t.log(), np.log, lambda x: 1 / x),
    "tanh": (lambda t: t.tanh(), np.tanh, lambda x: 1 / np.cosh(x) ** 2),
    "sigmoid": (lambda t: t.sigmoid(), lambda x: 1 / (1 + np.exp(-x)),
                lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
    "relu": (lambda t: t.relu(), lambda x: np.where(x > 0, x, 0.0), lambda x: (x > 0) * 1.0),
    "sqrt": (lambda t: t.sqrt(), np.sqrt, lambda x: 0.5 / np.sqrt(x)),
    "abs": (lambda t: t.abs(), np.abs, lambda x: np.where(x > 0, 1.0, np.where(x < 0, -1.0, 0.0))),
}
POSITIVE_ONLY = {"log", "sqrt"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", UNARY)
def test_unary_against_reference(name, dtype, rng):
    fn, forward, deriv = UNARY[name]
    x = rand_leaf(rng, 3, 4, dtype=dtype, low=0.1, high=3.0) if name in POSITIVE_ONLY \
        else off_zero(rng, 3, 4, dtype=dtype)
    X = x.data.astype(F64)
    out = fn(x)
    assert out.dtype == dtype
    close(out.data, forward(X), dtype)
    g = rng.standard_normal(X.shape).astype(dtype)
    (gx,) = backprop(out, g, x)
    close(gx, g * deriv(X), dtype)
    if dtype == F64:  # |x| >= 0.2: central differences never cross relu's or abs's kink
        assert gradcheck(fn, [x])


UNARY_HAND = [  # name, x, forward, gradient for upstream ones
    ("exp", [0.0, 1.0, np.log(2)], [1, np.e, 2], [1, np.e, 2]),
    ("log", [1.0, 2.0, 0.25], [0, np.log(2), -np.log(4)], [1, 0.5, 4]),
    ("tanh", [0.0, np.log(2)], [0, 0.6], [1, 0.64]),
    ("sigmoid", [0.0, np.log(3)], [0.5, 0.75], [0.25, 0.1875]),
    ("relu", [-1.0, 0.0, 2.0], [0, 0, 2], [0, 0, 1]),  # NOTE in ops.relu: gradient 0 at 0
    ("sqrt", [4.0, 0.25], [2, 0.5], [0.25, 1]),
    ("abs", [-2.0, 0.0, 3.0], [2, 0, 3], [-1, 0, 1]),   # gradient 0 at 0
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, x, forward, grad", UNARY_HAND, ids=[c[0] for c in UNARY_HAND])
def test_unary_by_hand(name, x, forward, grad, dtype):
    t = leaf(x, dtype)
    out = UNARY[name][0](t)
    close(out.data, forward, dtype)
    close(backprop(out, np.ones(len(x)), t)[0], grad, dtype)


def test_sigmoid_saturates_without_overflow_in_float32():
    x = leaf([-1000.0, -100.0, 0.0, 100.0, 1000.0], F32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            y = x.sigmoid()
            (gx,) = backprop(y, np.ones(5), x)
    assert y.dtype == F32 and gx.dtype == F32
    np.testing.assert_allclose(y.data, [0, 0, 0.5, 1, 1], rtol=0, atol=1e-30)
    np.testing.assert_allclose(gx, [0, 0, 0.25, 0, 0], rtol=0, atol=1e-30)


@pytest.mark.parametrize("dtype, xs", [(F32, [-10.0, -17.0, -80.0]), (F64, [-30.0, -40.0, -700.0])])
def test_sigmoid_keeps_relative_precision_in_the_left_tail(dtype, xs):
    # sigmoid(x) = exp(x) / (1 + exp(x)): tiny but not zero, so log(sigmoid(x)) stays finite
    y = leaf(xs, dtype).sigmoid()
    exact = np.exp(np.array(xs)) / (1 + np.exp(np.array(xs)))
    np.testing.assert_allclose(y.data, exact, rtol=1e-6 if dtype == F32 else 1e-14, atol=0)


# -- clip ----------------------------------------------------------------------

CLIP_X = [-2.0, -1.0, 0.0, 1.0, 2.0]
CLIP_CASES = [  # bounds, forward, gradient (1 inside the bounds, bounds included)
    (dict(min=-1.0, max=1.0), [-1, -1, 0, 1, 1], [0, 1, 1, 1, 0]),
    (dict(min=0.0), [0, 0, 0, 1, 2], [0, 0, 1, 1, 1]),
    (dict(max=0.0), [-2, -1, 0, 0, 0], [1, 1, 1, 0, 0]),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bounds, forward, grad", CLIP_CASES, ids=["both", "min", "max"])
def test_clip_by_hand(bounds, forward, grad, dtype):
    x = leaf(CLIP_X, dtype)
    out = x.clip(**bounds)
    assert out.dtype == dtype
    close(out.data, forward, dtype)
    close(backprop(out, [1, 2, 3, 4, 5], x)[0], np.multiply(grad, [1, 2, 3, 4, 5]), dtype)


@pytest.mark.parametrize("bounds", [c[0] for c in CLIP_CASES], ids=["both", "min", "max"])
def test_clip_gradcheck(bounds, rng):
    x = mg.tensor(rng.choice([-1.7, -0.6, -0.3, 0.4, 0.8, 1.9], (3, 4)), requires_grad=True)
    assert gradcheck(lambda t: t.clip(**bounds), [x])


# -- reductions ----------------------------------------------------------------

AXES = [None, 0, 1, -1, (0, 2), (-1, 0), (0, 1, 2)]


def test_sum_mean_by_hand():
    x = leaf([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    close(x.sum().data, 21)
    close(x.sum(axis=0).data, [5, 7, 9])
    close(x.mean(axis=1).data, [2, 5])
    close(x.mean(axis=-1, keepdims=True).data, [[2], [5]])
    close(backprop(x.sum(axis=1), [1, 2], x)[0], [[1, 1, 1], [2, 2, 2]])
    x.grad = None
    close(backprop(x.mean(axis=0), [3, 6, 9], x)[0], [[1.5, 3, 4.5]] * 2)
    x.grad = None
    close(backprop(x.mean(), 6.0, x)[0], np.ones((2, 3)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("op", ["sum", "mean"])
def test_sum_mean_against_reference(op, axis, keepdims, dtype, rng):
    x = rand_leaf(rng, 2, 3, 4, dtype=dtype)
    X = x.data.astype(F64)
    ref = lambda a: getattr(np, op)(a, axis=axis, keepdims=keepdims)  # noqa: E731
    out = getattr(x, op)(axis=axis, keepdims=keepdims)
    assert out.shape == ref(X).shape and out.dtype == dtype
    close(out.data, ref(X), dtype)
    g = rng.standard_normal(out.shape).astype(dtype)
    close(backprop(out, g, x)[0], linear_vjp(ref, X, g), dtype)


def values(out):
    """The values of max and min: along one axis they come with their indices, as PyTorch's."""
    return out.values if isinstance(out, tuple) else out


def test_max_by_hand_ties_go_to_the_first():
    x = leaf([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    close(x.max().data, 3)
    close(backprop(x.max(), 1.0, x)[0], [[0, 1, 0], [0, 0, 0]])
    x.grad = None
    out = x.max(axis=1).values
    close(out.data, [3, 2])
    close(backprop(out, [5, 7], x)[0], [[0, 5, 0], [7, 0, 0]])
    x.grad = None
    out = x.max(axis=0, keepdims=True).values
    close(out.data, [[2, 3, 3]])
    close(backprop(out, [[1, 2, 3]], x)[0], [[0, 2, 3], [1, 0, 0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES)
def test_max_against_loops_with_ties(axis, keepdims, dtype, rng):
    x = mg.tensor(rng.integers(0, 3, (2, 3, 4)).astype(dtype), requires_grad=True)  # many ties
    out = values(x.max(axis=axis, keepdims=keepdims))
    g = rng.standard_normal(out.shape).astype(dtype)
    expected, grad = max_loop(x.data.astype(F64), axis, keepdims, g.astype(F64))
    assert out.shape == expected.shape and out.dtype == dtype
    close(out.data, expected, dtype)
    close(backprop(out, g, x)[0], grad, dtype)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_reductions_gradcheck(op, axis, keepdims, rng):
    x = rand_leaf(rng, 2, 3, 4)  # distinct entries: max has no ties
    assert gradcheck(lambda t: values(getattr(t, op)(axis=axis, keepdims=keepdims)), [x])


# -- reshape and transpose -----------------------------------------------------

SHAPE_OPS = {  # on a (2, 2, 3) tensor: minigrad, NumPy
    "reshape(2, 6)": (lambda t: t.reshape(2, 6), lambda a: a.reshape(2, 6)),
    "reshape((2, 6))": (lambda t: t.reshape((2, 6)), lambda a: a.reshape(2, 6)),
    "reshape([3, 4])": (lambda t: t.reshape([3, 4]), lambda a: a.reshape(3, 4)),
    "reshape(-1)": (lambda t: t.reshape(-1), lambda a: a.reshape(12)),
    "reshape(3, -1, 2)": (lambda t: t.reshape(3, -1, 2), lambda a: a.reshape(3, 2, 2)),
    "transpose()": (lambda t: t.transpose(), lambda a: a.transpose(2, 1, 0)),
    "T": (lambda t: t.T, lambda a: a.transpose(2, 1, 0)),
    "transpose(1, 2, 0)": (lambda t: t.transpose(1, 2, 0), lambda a: a.transpose(1, 2, 0)),
    "transpose((2, 0, 1))": (lambda t: t.transpose((2, 0, 1)), lambda a: a.transpose(2, 0, 1)),
    "transpose(-1, -3, -2)": (lambda t: t.transpose(-1, -3, -2), lambda a: a.transpose(2, 0, 1)),
    "2-D .T": (lambda t: t.reshape(4, 3).T, lambda a: a.reshape(4, 3).transpose(1, 0)),
}


def test_reshape_and_transpose_by_hand():
    x = leaf(np.arange(6.0).reshape(2, 3))
    close(x.T.data, [[0, 3], [1, 4], [2, 5]])
    close(backprop(x.T, [[1, 2], [3, 4], [5, 6]], x)[0], [[1, 3, 5], [2, 4, 6]])
    x.grad = None
    close(x.reshape(3, 2).data, [[0, 1], [2, 3], [4, 5]])
    close(backprop(x.reshape(3, 2), [[1, 2], [3, 4], [5, 6]], x)[0], [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize("name", SHAPE_OPS)
def test_shape_ops_against_reference(name, rng):
    fn, ref = SHAPE_OPS[name]
    x = rand_leaf(rng, 2, 2, 3)
    out = fn(x)
    close(out.data, ref(x.data))
    g = rng.standard_normal(out.shape)
    close(backprop(out, g, x)[0], copy_vjp(ref, [(2, 2, 3)], g)[0])
    assert gradcheck(fn, [x])


# -- indexing ------------------------------------------------------------------

def test_getitem_by_hand():
    x = leaf([10.0, 20.0, 30.0])
    out = x[[0, 0, 1]]
    close(out.data, [10, 10, 20])
    close(backprop(out, [1, 1, 1], x)[0], [2, 1, 0])   # a repeated index accumulates
    x.grad = None
    close(backprop(x[[2, 0, 2]], [1, 2, 3], x)[0], [2, 0, 4])
    m = leaf(np.arange(6.0).reshape(2, 3))
    close(m[:, ::-1].data, [[2, 1, 0], [5, 4, 3]])
    close(backprop(m[:, ::-1], [[1, 2, 3], [4, 5, 6]], m)[0], [[3, 2, 1], [6, 5, 4]])
    m.grad = None
    close(m[m > 2].data, [3, 4, 5])
    close(backprop(m[m > 2], [1, 2, 3], m)[0], [[0, 0, 0], [1, 2, 3]])


MASK = np.random.default_rng(1).random((3, 4, 5)) > 0.5
INDICES = {
    "int": 1, "negative int": -1, "slice": slice(1, 3), "negative step": slice(None, None, -1),
    "step -2, int": (slice(None, None, -2), 0), "ellipsis": (Ellipsis, 1),
    "None, ellipsis": (None, Ellipsis, slice(None, None, -1)),
    "int, slices": (0, slice(1, None), slice(None, None, 2)), "slice, None, int": (slice(None), None, 2),
    "int array, repeats": np.array([0, 0, 2]), "list, repeats": [2, 0, 2, 2],
    "2-D int array": np.array([[0, 2], [2, 2]]),
    "array pair, repeats": (np.array([0, 0, 1]), np.array([1, 1, 3])),
    "slice, list": (slice(None), [3, 0, 3]), "ellipsis, 2-D array": (Ellipsis, np.array([[0, 4], [4, 4]])),
    "mask on axis 0": np.array([True, False, True]), "full mask": MASK,
    "mask, slice": (slice(None), np.array([True, False, False, True]), slice(1, 3)),
}


@pytest.mark.parametrize("index", INDICES.values(), ids=INDICES.keys())
def test_getitem_against_loops(index, rng):
    x = rand_leaf(rng, 3, 4, 5)
    out = x[index]
    close(out.data, x.data[index])
    g = rng.standard_normal(out.shape)
    close(backprop(out, g, x)[0], copy_vjp(lambda a: a[index], [(3, 4, 5)], g)[0])
    assert gradcheck(lambda t: t[index], [x])


def test_getitem_with_tensor_indices(rng):
    x = rand_leaf(rng, 3, 4)
    idx = mg.tensor(np.array([0, 0, 1]))                  # an integer tensor
    close(backprop(x[idx], np.ones((3, 4)), x)[0], [[2] * 4, [1] * 4, [0] * 4])
    x.grad = None
    out = x[mg.tensor(np.array([2, 2])), 1:]               # inside a tuple
    close(out.data, x.data[[2, 2], 1:])
    close(backprop(out, np.ones((2, 3)), x)[0], [[0, 0, 0, 0], [0, 0, 0, 0], [0, 2, 2, 2]])
    x.grad = None
    out = x[mg.arange(2)]
    close(out.data, x.data[:2])
    x.grad = None
    mask = x > 0                                          # a boolean tensor
    close(x[mask].data, x.data[x.data > 0])
    close(backprop(x[mask], np.ones(int(mask.data.sum())), x)[0], x.data > 0)


# -- concat and stack ----------------------------------------------------------

def test_concat_and_stack_by_hand():
    a, b = leaf([[1.0, 2.0]]), leaf([[3.0, 4.0], [5.0, 6.0]])
    out = mg.concat([a, b])
    close(out.data, [[1, 2], [3, 4], [5, 6]])
    ga, gb = backprop(out, [[1, 2], [3, 4], [5, 6]], a, b)
    close(ga, [[1, 2]])
    close(gb, [[3, 4], [5, 6]])
    u, v = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    out = mg.stack([u, v], axis=-1)
    close(out.data, [[1, 3], [2, 4]])
    gu, gv = backprop(out, [[1, 2], [3, 4]], u, v)
    close(gu, [1, 3])
    close(gv, [2, 4])


JOINS = [("concat", axis) for axis in (0, 1, 2, -1, -3)] + [("stack", axis) for axis in (0, 1, 2, 3, -1, -4)]


@pytest.mark.parametrize("op, axis", JOINS)
def test_concat_and_stack_against_loops(op, axis, rng):
    if op == "concat":  # three inputs, each of a different length on the joined axis
        shapes = [tuple(n if i == axis % 3 else m for i, m in enumerate((2, 3, 4))) for n in (1, 2, 3)]
        reference = lambda *a: np.concatenate(a, axis=axis)  # noqa: E731
    else:
        shapes = [(2, 3, 4)] * 3
        reference = lambda *a: np.stack(a, axis=axis)  # noqa: E731
    fn = lambda *t: getattr(mg, op)(t, axis=axis)  # noqa: E731
    xs = [rand_leaf(rng, *s) for s in shapes]
    out = fn(*xs)
    close(out.data, reference(*[x.data for x in xs]))
    g = rng.standard_normal(out.shape)
    for got, want in zip(backprop(out, g, *xs), copy_vjp(reference, shapes, g)):
        close(got, want)
    assert gradcheck(fn, xs)


def test_concat_with_constants(rng):
    x = rand_leaf(rng, 2, 3)
    out = mg.concat([np.zeros((1, 3)), x, mg.tensor(np.ones((2, 3)))])
    close(out.data, np.concatenate([np.zeros((1, 3)), x.data, np.ones((2, 3))]))
    close(backprop(out, np.arange(15.0).reshape(5, 3), x)[0], np.arange(3.0, 9.0).reshape(2, 3))


# -- where ---------------------------------------------------------------------

def test_where_by_hand():
    x, y = leaf([1.0, 2.0, 3.0]), leaf([10.0, 20.0, 30.0])
    out = mg.where(np.array([True, False, True]), x, y)
    close(out.data, [1, 20, 3])
    gx, gy = backprop(out, [4, 5, 6], x, y)
    close(gx, [4, 0, 6])
    close(gy, [0, 5, 0])


@pytest.mark.parametrize("mask_shape, sx, sy", [
    ((3, 4), (3, 4), (3, 4)), ((3, 1), (1, 4), (3, 4)), ((4,), (3, 4), (3, 1)), ((2, 3, 4), (3, 4), (4,)),
])
def test_where_broadcasting_against_loops(mask_shape, sx, sy, rng):
    mask = rng.random(mask_shape) > 0.5
    x, y = rand_leaf(rng, *sx), rand_leaf(rng, *sy)
    out = mg.where(mask, x, y)
    close(out.data, np.where(mask, x.data, y.data))
    g = rng.standard_normal(out.shape)
    gx, gy = backprop(out, g, x, y)
    close(gx, linear_vjp(lambda e: np.where(mask, e, 0.0), x.data, g))
    close(gy, linear_vjp(lambda e: np.where(mask, 0.0, e), y.data, g))
    assert gradcheck(lambda a, b: mg.where(mask, a, b), [rand_leaf(rng, *sx), rand_leaf(rng, *sy)])


@pytest.mark.parametrize("dtype", DTYPES)
def test_where_scalar_branches(dtype):
    x = leaf([-1.0, 2.0, -3.0], dtype)
    out = mg.where(x > 0, x, 0.5)                 # mask from a comparison, scalar on the right
    assert out.dtype == dtype
    close(out.data, [0.5, 2, 0.5], dtype)
    close(backprop(out, [1, 2, 3], x)[0], [0, 2, 0], dtype)
    x.grad = None
    out = mg.where(x > 0, -1.0, x)                # scalar on the left
    close(out.data, [-1, -1, -3], dtype)
    close(backprop(out, [1, 2, 3], x)[0], [1, 0, 3], dtype)
    if dtype == F64:
        assert gradcheck(lambda t: mg.where(t > 0, 0.5, t), [leaf([-1.5, 0.5, 2.0, -0.3])])
    const = mg.where(np.array([True, False]), 1.0, 0.0)
    close(const.data, [1, 0], F32)
    assert not const.requires_grad


# -- astype --------------------------------------------------------------------

@pytest.mark.parametrize("source, target", [(F32, F64), (F64, F32)])
def test_astype_between_floats(source, target):
    x = leaf([0.1, -2.5, 3.0], source)
    out = x.astype(target)
    assert out.dtype == target and out.requires_grad
    np.testing.assert_array_equal(out.data, x.data.astype(target))
    (local,) = out._record.backward(np.ones(3, target))  # cast back by the op, not by backward()
    assert local.dtype == source
    (gx,) = backprop(out * 2, [1.0, 2.0, 3.0], x)
    assert gx.dtype == source
    close(gx, [2, 4, 6], F32)


def test_astype_gradcheck():
    # Multiples of 1/8 and eps = 2^-10 are exact in float32: the round trip loses nothing.
    x = leaf([0.125, -1.5, 2.75, 3.0])
    assert gradcheck(lambda t: t.astype(F32).astype(F64) * t, [x], eps=2.0 ** -10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_astype_same_dtype_is_the_same_tensor(dtype):
    x = leaf([1.0, 2.0], dtype)
    assert x.astype(dtype) is x
    assert x.astype(np.dtype(dtype).name) is x


@pytest.mark.parametrize("target", [np.int64, np.int32, bool])
def test_astype_to_int_or_bool_leaves_the_graph(target):
    x = leaf([1.7, -1.7, 0.0])
    out = x.astype(target)
    assert out.dtype == target and not out.requires_grad and out.is_leaf
    np.testing.assert_array_equal(out.data, np.array([1.7, -1.7, 0.0]).astype(target))


# -- comparisons ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_comparisons_are_boolean_constants(dtype):
    x, y = leaf([1.0, 2.0, 3.0], dtype), leaf([2.0, 2.0, 2.0], dtype)
    cases = {
        "<": (x < y, [True, False, False]), "<=": (x <= y, [True, True, False]),
        ">": (x > y, [False, False, True]), ">=": (x >= y, [False, True, True]),
        "< 2": (x < 2, [True, False, False]), "2 < x": (2 < x, [False, False, True]),
        ">= 2.0": (x >= 2.0, [False, True, True]), "2.0 >= x": (2.0 >= x, [True, True, False]),
        # a NumPy array, strided (not contiguous), on either side
        "< array": (x < np.array([2.0, 0, 2.0, 0, 2.0], dtype)[::2], [True, False, False]),
        "array > x": (np.array([2.0, 0, 2.0, 0, 2.0], dtype)[::2] > x, [True, False, False]),
    }
    for name, (out, expected) in cases.items():
        assert out.dtype == bool, name
        assert not out.requires_grad and out.is_leaf, name
        np.testing.assert_array_equal(out.data, expected, err_msg=name)


# -- dtypes: float32 in, float32 out and float32 gradients; float64 stays float64 ---

DTYPE_CASES = {  # name: (fn, input shapes); inputs are uniform in [0.5, 2)
    "add": (lambda a, b: a + b, [(2, 3), (3,)]), "sub": (lambda a, b: a - b, [(2, 3), (2, 1)]),
    "mul": (lambda a, b: a * b, [(2, 3), (3,)]), "div": (lambda a, b: a / b, [(2, 3), (2, 3)]),
    "x + 2": (lambda a: a + 2, [(3,)]), "2 + x": (lambda a: 2 + a, [(3,)]),
    "x - 0.5": (lambda a: a - 0.5, [(3,)]), "2 - x": (lambda a: 2 - a, [(3,)]),
    "x * 3": (lambda a: a * 3, [(3,)]), "3.5 * x": (lambda a: 3.5 * a, [(3,)]),
    "x / 2": (lambda a: a / 2, [(3,)]), "2 / x": (lambda a: 2 / a, [(3,)]),
    "x * np.float64(3)": (lambda a: a * np.float64(3), [(3,)]),
    "-x": (lambda a: -a, [(3,)]), "x ** 2": (lambda a: a ** 2, [(3,)]),
    "x ** 0.5": (lambda a: a ** 0.5, [(3,)]), "x ** -1": (lambda a: a ** -1, [(3,)]),
    "x ** np.float64(2)": (lambda a: a ** np.float64(2), [(3,)]),
    "matmul": (lambda a, b: a @ b, [(2, 3), (3, 4)]),
    "batched matmul": (lambda a, b: a @ b, [(2, 1, 3), (3,)]),
    "exp": (lambda a: a.exp(), [(3,)]), "log": (lambda a: a.log(), [(3,)]),
    "tanh": (lambda a: a.tanh(), [(3,)]), "sigmoid": (lambda a: a.sigmoid(), [(3,)]),
    "relu": (lambda a: a.relu(), [(3,)]), "sqrt": (lambda a: a.sqrt(), [(3,)]),
    "abs": (lambda a: a.abs(), [(3,)]), "clip": (lambda a: a.clip(0.8, 1.5), [(3,)]),
    "clip np.float64": (lambda a: a.clip(np.float64(0.8), np.float64(1.5)), [(3,)]),
    "sum": (lambda a: a.sum(axis=1), [(2, 3)]), "mean": (lambda a: a.mean(), [(2, 3)]),
    "max": (lambda a: a.max(axis=0, keepdims=True).values, [(2, 3)]),
    "reshape": (lambda a: a.reshape(-1), [(2, 3)]), "transpose": (lambda a: a.T, [(2, 3)]),
    "getitem basic": (lambda a: a[::-1, 1], [(2, 3)]), "getitem ints": (lambda a: a[[0, 0, 1]], [(2, 3)]),
    "getitem mask": (lambda a: a[a > 1], [(2, 3)]),
    "concat": (lambda a, b: mg.concat([a, b]), [(2, 3), (1, 3)]),
    "stack": (lambda a, b: mg.stack([a, b], axis=1), [(2, 3), (2, 3)]),
    "where": (lambda a, b: mg.where(a > 1, a, b), [(2, 3), (3,)]),
    "where scalar": (lambda a: mg.where(a > 1, a, 0.0), [(2, 3)]),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", DTYPE_CASES)
def test_dtype_is_preserved(name, dtype, rng):
    fn, shapes = DTYPE_CASES[name]
    xs = [rand_leaf(rng, *s, dtype=dtype, low=0.5, high=2.0) for s in shapes]
    out = fn(*xs)
    assert out.dtype == dtype
    g = np.ones(out.shape, dtype)
    # The op's own gradients, before backward() casts them into the leaves' .grad.
    local = out._record.backward(g)
    assert all(d.dtype == dtype for d in local if d is not None)
    out.backward(g)
    assert [x.grad.dtype for x in xs] == [dtype] * len(shapes)
