"""minigrad.nn.functional: each fused op against values computed by hand or by slow,
obvious NumPy loops (forward and gradient), then a float64 gradient check."""
import warnings

import numpy as np
import pytest

import minigrad as mg
from minigrad import gradcheck
from minigrad.nn import functional as F
from helpers import DTYPES, F64, close, leaf, rand_leaf

# Every test runs on every backend: NumPy, the kernels emulated on the CPU, and a GPU.
pytestmark = pytest.mark.usefixtures("on_backend")

LN2, LN3, LN6 = np.log(2), np.log(3), np.log(6)


def backprop(out, g, *inputs):
    """Back-propagate upstream gradient g (an array of out's shape) and return the inputs' .grad."""
    out.backward(np.asarray(g, dtype=out.dtype))
    return [t.grad for t in inputs]


def rows(a, axis):
    """The 1-D slices of `a` along `axis`, as the rows of a 2-D array (a copy)."""
    moved = np.moveaxis(a, axis, -1)
    return moved.reshape(-1, moved.shape[-1])


def unrows(r, like, axis):
    """Inverse of rows(): put the rows back into `like`'s shape."""
    return np.moveaxis(r.reshape(np.moveaxis(like, axis, -1).shape), -1, axis)


# -- linear ---------------------------------------------------------------------

def linear_loop(X, W, b, g):
    """y[n, o] = sum_i x[n, i] W[o, i] + b[o] and its gradients, by explicit loops over a
    (N, in) view of x; g is the upstream gradient of y."""
    lead = X.shape[:-1]
    x2, g2 = X.reshape(-1, X.shape[-1]), g.reshape(-1, W.shape[0])
    y, gx = np.zeros((x2.shape[0], W.shape[0])), np.zeros(x2.shape)
    gw, gb = np.zeros(W.shape), np.zeros(W.shape[0])
    for n in range(x2.shape[0]):
        for o in range(W.shape[0]):
            y[n, o] = (0.0 if b is None else b[o]) + sum(x2[n, i] * W[o, i] for i in range(W.shape[1]))
            gb[o] += g2[n, o]
            for i in range(W.shape[1]):
                gx[n, i] += g2[n, o] * W[o, i]
                gw[o, i] += g2[n, o] * x2[n, i]
    return y.reshape(lead + (W.shape[0],)), gx.reshape(X.shape), gw, gb


def test_linear_by_hand():
    x, w, b = leaf([1.0, 2.0]), leaf([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), leaf([0.5, -1.0, 2.0])
    y = F.linear(x, w, b)
    close(y.data, [1.5, 1, 5])
    gx, gw, gb = backprop(y, [1, 2, 3], x, w, b)
    close(gx, [4, 5])                        # g W
    close(gw, [[1, 2], [2, 4], [3, 6]])      # outer(g, x)
    close(gb, [1, 2, 3])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_shape", [(3,), (4, 3), (2, 5, 3)], ids=["(in,)", "(N, in)", "(B, T, in)"])
def test_linear_against_loops(x_shape, bias, dtype, rng):
    x, w = rand_leaf(rng, *x_shape, dtype=dtype), rand_leaf(rng, 2, 3, dtype=dtype)
    b = rand_leaf(rng, 2, dtype=dtype) if bias else None
    y = F.linear(x, w, b)
    assert y.shape == x_shape[:-1] + (2,) and y.dtype == dtype
    g = rng.standard_normal(y.shape).astype(dtype)
    ref_y, ref_gx, ref_gw, ref_gb = linear_loop(x.data.astype(F64), w.data.astype(F64),
                                                None if b is None else b.data.astype(F64), g.astype(F64))
    close(y.data, ref_y, dtype)
    grads = backprop(y, g, x, w, *([b] if bias else []))
    assert all(gr.dtype == dtype for gr in grads)
    for got, want in zip(grads, [ref_gx, ref_gw, ref_gb]):
        close(got, want, dtype)
    if dtype == F64:
        assert gradcheck(lambda *t: F.linear(*t), [x, w] + ([b] if bias else []))


def test_linear_with_data_input(rng):
    x = rng.standard_normal((4, 3))                  # a NumPy array: data, no gradient
    w, b = rand_leaf(rng, 2, 3), rand_leaf(rng, 2)
    y = F.linear(x, w, b)
    close(y.data, x @ w.data.T + b.data)
    gw, gb = backprop(y, np.ones((4, 2)), w, b)
    close(gw, np.ones((4, 2)).T @ x)
    close(gb, [4, 4])
    assert gradcheck(lambda w, b: F.linear(mg.tensor(x), w, b), [w, b])


# -- softmax and log_softmax ----------------------------------------------------

def softmax_rows(r):
    """softmax of each row, the obvious way (shifted by the row max so exp stays finite)."""
    out = np.zeros_like(r)
    for k, v in enumerate(r):
        e = np.exp(v - v.max())
        out[k] = e / e.sum()
    return out


def softmax_vjp_rows(r, g, log):
    """Each row's gradient through its full Jacobian: softmax J = diag(s) - s s^T,
    log_softmax J = I - 1 s^T; the gradient is J^T g."""
    out = np.zeros_like(r)
    for k, (v, gk) in enumerate(zip(r, g)):
        s = softmax_rows(v[None])[0]
        jac = np.eye(len(v)) - np.outer(np.ones(len(v)), s) if log else np.diag(s) - np.outer(s, s)
        out[k] = jac.T @ gk
    return out


def test_softmax_by_hand():
    x = leaf([[0.0, LN2, LN3], [5.0, 5.0, 5.0]])          # exp: (1, 2, 3) and (1, 1, 1) times e^5
    y = F.softmax(x, axis=1)
    close(y.data, [[1 / 6, 1 / 3, 1 / 2], [1 / 3, 1 / 3, 1 / 3]])
    # g = onehot(0): gradient s_0 (e_0 - s)
    close(backprop(y, [[1, 0, 0], [0, 0, 0]], x)[0], [[5 / 36, -1 / 18, -1 / 12], [0, 0, 0]])
    x.grad = None
    ls = F.log_softmax(x)
    close(ls.data, [[-LN6, LN2 - LN6, LN3 - LN6], [-LN3] * 3])
    close(backprop(ls, [[1, 0, 0], [0, 0, 0]], x)[0], [[5 / 6, -1 / 3, -1 / 2], [0, 0, 0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_against_loops(log, axis, dtype, rng):
    fn = F.log_softmax if log else F.softmax
    x = rand_leaf(rng, 2, 3, 4, dtype=dtype, scale=3.0)
    X = x.data.astype(F64)
    s = unrows(softmax_rows(rows(X, axis)), X, axis)
    y = fn(x, axis=axis)
    assert y.shape == X.shape and y.dtype == dtype
    close(y.data, np.log(s) if log else s, dtype)
    g = rng.standard_normal(X.shape).astype(dtype)
    expected = unrows(softmax_vjp_rows(rows(X, axis), rows(g.astype(F64), axis), log), X, axis)
    close(backprop(y, g, x)[0], expected, dtype)
    if dtype == F64:
        assert gradcheck(lambda t: fn(t, axis=axis), [x])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_rows_sum_to_one_and_log_softmax_is_its_log(axis, dtype, rng):
    x = mg.tensor((5 * rng.standard_normal((3, 4))).astype(dtype))
    s, ls = F.softmax(x, axis=axis), F.log_softmax(x, axis=axis)
    close(s.data.sum(axis=axis), np.ones(4 if axis == 0 else 3), dtype)
    close(np.log(s.data), ls.data, dtype)
    assert s.dtype == ls.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_is_stable_for_large_logits(dtype):
    x = leaf([[1000.0, 0.0, -1000.0], [-1000.0, -1000.0, -1000.0]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s, ls = F.softmax(x), F.log_softmax(x)
        close(s.data, [[1, 0, 0], [1 / 3] * 3], dtype)
        close(ls.data, [[0, -1000, -2000], [-np.log(3)] * 3], dtype)
        (gx,) = backprop(ls, [[1, 1, 1], [1, 0, 0]], x)
    close(gx, [[-2, 1, 1], [2 / 3, -1 / 3, -1 / 3]], dtype)   # g - s sum(g)


# -- mse_loss -------------------------------------------------------------------

MSE_HAND = {  # pred (1, 2, 3), target (0, 2, 5): d = (1, 0, -2); upstream g, forward, dL/dpred
    "mean": (1.0, 5 / 3, [2 / 3, 0, -4 / 3]),
    "sum": (2.0, 5, [4, 0, -8]),
    "none": ([1, 2, 3], [1, 0, 4], [2, 0, -12]),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", MSE_HAND)
def test_mse_loss_by_hand(reduction, dtype):
    g, forward, grad = MSE_HAND[reduction]
    pred, target = leaf([1.0, 2.0, 3.0], dtype), leaf([0.0, 2.0, 5.0], dtype)
    loss = F.mse_loss(pred, target, reduction=reduction)
    assert loss.dtype == dtype
    close(loss.data, forward, dtype)
    gp, gt = backprop(loss, g, pred, target)
    close(gp, grad, dtype)
    close(gt, -np.asarray(grad), dtype)      # differentiable in the target too


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2)])
def test_mse_loss_against_loops(shape, reduction, rng):
    pred, target = rand_leaf(rng, *shape), rand_leaf(rng, *shape)
    P, T = pred.data.ravel(), target.data.ravel()
    sq = np.array([(p - t) ** 2 for p, t in zip(P, T)])
    loss = F.mse_loss(pred, target, reduction=reduction)
    expected = {"mean": sq.sum() / sq.size, "sum": sq.sum(), "none": sq.reshape(shape)}[reduction]
    close(loss.data, expected)
    g = rng.standard_normal(loss.shape)
    scale = {"mean": g / sq.size, "sum": g, "none": g}[reduction]
    gp, gt = backprop(loss, g, pred, target)
    close(gp, 2 * (pred.data - target.data) * scale)
    close(gt, -2 * (pred.data - target.data) * scale)
    assert gradcheck(lambda p, t: F.mse_loss(p, t, reduction=reduction), [pred, target])


def test_mse_loss_with_data_target(rng):
    pred, target = rand_leaf(rng, 4), rng.standard_normal(4)
    (gp,) = backprop(F.mse_loss(pred, target), 1.0, pred)
    close(gp, (pred.data - target) / 2)


# -- cross_entropy --------------------------------------------------------------

def cross_entropy_loops(X, t, reduction, g):
    """Per-position losses log sum_c exp(x_c) - x_t (shifted by the max) and the gradient
    (softmax - onehot) times the upstream g, by loops over the positions of a (..., C) array."""
    x2, t2 = X.reshape(-1, X.shape[-1]), np.ravel(t)
    losses, grad = np.zeros(len(x2)), np.zeros(x2.shape)
    g2 = np.broadcast_to(np.asarray(g, F64).reshape(-1) if reduction == "none" else g, len(x2))
    scale = 1 / len(x2) if reduction == "mean" else 1.0
    for k, (v, c) in enumerate(zip(x2, t2)):
        m = v.max()
        lse = m + np.log(sum(np.exp(vj - m) for vj in v))
        losses[k] = lse - v[c]
        for j in range(len(v)):
            grad[k, j] = (np.exp(v[j] - lse) - (j == c)) * g2[k] * scale
    out = {"mean": losses.mean(), "sum": losses.sum(), "none": losses.reshape(np.shape(t))}[reduction]
    return out, grad.reshape(X.shape)


def test_cross_entropy_by_hand():
    logits = leaf([[0.0, LN2, LN3], [0.0, LN2, LN3]])   # softmax (1/6, 1/3, 1/2)
    loss = F.cross_entropy(logits, np.array([2, 0]))
    close(loss.data, (LN2 + LN6) / 2)                  # -log(1/2), -log(1/6), averaged
    (g,) = backprop(loss, 1.0, logits)
    close(g, [[1 / 12, 1 / 6, -1 / 4], [-5 / 12, 1 / 6, 1 / 4]])   # (softmax - onehot) / N


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4), (5,)], ids=["(N, C)", "(B, T, C)", "(C,)"])
def test_cross_entropy_against_loops(shape, reduction, dtype, rng):
    logits = rand_leaf(rng, *shape, dtype=dtype, scale=2.0)
    targets = rng.integers(0, shape[-1], shape[:-1])
    loss = F.cross_entropy(logits, targets, reduction=reduction)
    assert loss.dtype == dtype and loss.shape == (shape[:-1] if reduction == "none" else ())
    g = rng.standard_normal(loss.shape).astype(dtype)
    expected, grad = cross_entropy_loops(logits.data.astype(F64), targets, reduction, g.astype(F64))
    close(loss.data, expected, dtype)
    close(backprop(loss, g, logits)[0], grad, dtype)
    if dtype == F64:
        assert gradcheck(lambda x: F.cross_entropy(x, targets, reduction=reduction), [logits])


@pytest.mark.parametrize("make_targets", [
    lambda t: t, lambda t: t.astype(np.int32), lambda t: t.astype(np.uint8), lambda t: t.tolist(),
    lambda t: mg.tensor(t), lambda t: mg.tensor(t.astype(np.int32)),
], ids=["int64 array", "int32 array", "uint8 array", "list", "int64 tensor", "int32 tensor"])
def test_cross_entropy_target_kinds(make_targets, rng):
    logits, targets = rand_leaf(rng, 4, 3), np.array([2, 0, 1, 2])
    targets_in = make_targets(targets)
    expected, grad = cross_entropy_loops(logits.data, targets, "sum", 1.0)
    loss = F.cross_entropy(logits, targets_in, reduction="sum")
    close(loss.data, expected)
    close(backprop(loss, 1.0, logits)[0], grad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_is_stable_for_large_logits(dtype):
    logits = leaf([[1000.0, 0.0, -1000.0]] * 3, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = F.cross_entropy(logits, np.array([0, 1, 2]), reduction="none")
        close(loss.data, [0, 1000, 2000], dtype)
        (g,) = backprop(loss, [1, 1, 1], logits)
    assert np.isfinite(g).all()
    close(g, [[0, 0, 0], [1, -1, 0], [1, 0, -1]], dtype)   # softmax (1, 0, 0) - onehot
    mean = F.cross_entropy(leaf([[1000.0, 0.0, -1000.0]], dtype), np.array([2]))
    close(mean.data, 2000, dtype)


EMPTY_MEAN_LOSSES = {
    "mse_loss (0,)": (lambda x: F.mse_loss(x, np.zeros(0, x.dtype)), (0,)),
    "mse_loss (0, 3)": (lambda x: F.mse_loss(x, np.zeros((0, 3), x.dtype)), (0, 3)),
    "cross_entropy (0, 3)": (lambda x: F.cross_entropy(x, np.zeros(0, np.int64)), (0, 3)),
    "cross_entropy (2, 0, 3)": (lambda x: F.cross_entropy(x, np.zeros((2, 0), np.int64)), (2, 0, 3)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", EMPTY_MEAN_LOSSES)
def test_mean_of_an_empty_input_is_nan(name, dtype):
    # The mean of no losses is 0 / 0 = NaN, as numpy.mean and PyTorch say (not 0.0);
    # NumPy's RuntimeWarning about it is fine. The gradient of an empty input is empty.
    fn, shape = EMPTY_MEAN_LOSSES[name]
    x = leaf(np.zeros(shape), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        loss = fn(x)
        assert loss.dtype == dtype and loss.shape == ()
        assert np.isnan(float(loss.data))
        (g,) = backprop(loss, 1.0, x)
    assert g.shape == shape and g.dtype == dtype


# -- float32 in, float32 out and float32 gradients ------------------------------

FUSED = {
    "linear": (lambda x, w, b: F.linear(x, w, b), [(4, 3), (2, 3), (2,)]),
    "softmax": (lambda x: F.softmax(x, axis=0), [(4, 3)]),
    "log_softmax": (lambda x: F.log_softmax(x), [(4, 3)]),
    "mse_loss": (lambda p, t: F.mse_loss(p, t), [(4, 3), (4, 3)]),
    "mse_loss none": (lambda p, t: F.mse_loss(p, t, reduction="none"), [(4, 3), (4, 3)]),
    "cross_entropy": (lambda x: F.cross_entropy(x, np.array([0, 2, 1, 1])), [(4, 3)]),
    "cross_entropy none": (lambda x: F.cross_entropy(x, np.array([0, 2]), reduction="none"), [(2, 3)]),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FUSED)
def test_dtype_is_preserved(name, dtype, rng):
    fn, shapes = FUSED[name]
    xs = [rand_leaf(rng, *s, dtype=dtype) for s in shapes]
    out = fn(*xs)
    assert out.dtype == dtype
    g = np.ones(out.shape, dtype)
    # The op's own gradients, before backward() casts them into the leaves' .grad.
    assert all(d.dtype == dtype for d in out._record.backward(g) if d is not None)
    out.backward(g)
    assert [x.grad.dtype for x in xs] == [dtype] * len(shapes)


def cross_entropy_grad_f64(x, t):
    """The mean cross-entropy's gradient in float64, slowly: (softmax(x_k) - onehot(t_k)) / N,
    softmax(v) = exp(v - max v) / sum exp(v - max v), one row at a time."""
    x = np.asarray(x, F64)
    grad = np.zeros(x.shape)
    for k, (v, c) in enumerate(zip(x, t)):
        e = np.exp(v - v.max())
        grad[k] = e / e.sum()
        grad[k, c] -= 1
    return grad / len(x)


@pytest.mark.parametrize("base", [1e3, -1e3, 1e5, -1e5])
def test_cross_entropy_gradient_keeps_float32_precision_for_large_logits(base, rng):
    # Logits near `base` differ by a few units: softmax is moderate, but a float32 lse near 1e5
    # is rounded by up to 0.004, so exp(x - lse) would be off by that much relative, and the
    # row would not sum to 0. The backward must shift by the row maximum and normalize.
    N, C = 8, 5
    x = (base + rng.uniform(-3, 3, (N, C))).astype(np.float32)
    t = rng.integers(0, C, N)
    logits = leaf(x, np.float32)
    (g,) = backprop(F.cross_entropy(logits, t), 1.0, logits)
    assert g.dtype == np.float32
    expected = cross_entropy_grad_f64(x, t)  # from the same float32 logits, exactly
    eps, largest = np.finfo(np.float32).eps, np.abs(expected).max()
    np.testing.assert_allclose(g, expected, rtol=0, atol=8 * eps * largest)  # ~1e-6 of the largest
    # softmax sums to 1 and onehot to 1: each row's gradient sums to 0, within C roundings
    np.testing.assert_allclose(g.astype(F64).sum(axis=1), 0, rtol=0, atol=C * eps * largest)
