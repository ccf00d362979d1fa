"""Broadcasting: every binary op and matmul's batch axes against references that loop."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import backends

# Every test runs on every backend: NumPy, the kernels emulated on the CPU, and a GPU.
pytestmark = pytest.mark.usefixtures("on_backend")

# float32 gradients are sums of up to a few dozen float32 products.
TOLERANCES = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}
DTYPES = st.sampled_from([np.float32, np.float64])
PROPERTY = settings(max_examples=50, deadline=None)
GRADCHECK = settings(max_examples=10, deadline=None)


# -- references: broadcasting undone by looping over every output entry -------

def source_index(out_index, shape):
    """The entry of an input of `shape` that broadcasting copied to `out_index`:
    drop the leading axes broadcasting added, read stretched (length-1) axes at 0."""
    lead = len(out_index) - len(shape)
    return tuple(0 if n == 1 else i for i, n in zip(out_index[lead:], shape))


def reference_unbroadcast(full, shape):
    """Sum a gradient of the broadcast shape back to `shape`, one output entry at a time."""
    out = np.zeros(shape, np.float64)
    for index in np.ndindex(full.shape):
        out[source_index(index, shape)] += full[index]
    return out


# Each binary op: minigrad's version, NumPy's, and its elementwise partial
# derivatives d out / d a and d out / d b on the broadcast arrays.
BINARY = {
    "add": (lambda a, b: a + b, np.add, lambda A, B: (np.ones_like(A), np.ones_like(B))),
    "sub": (lambda a, b: a - b, np.subtract, lambda A, B: (np.ones_like(A), -np.ones_like(B))),
    "mul": (lambda a, b: a * b, np.multiply, lambda A, B: (B, A)),
    "div": (lambda a, b: a / b, np.divide, lambda A, B: (1 / B, -A / (B * B))),
}


def arrays(shape, dtype, seed, away_from_zero=False):
    rng = np.random.default_rng(seed)
    if away_from_zero:  # divisors: |b| in [0.5, 2]
        return (rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


seeds = st.integers(0, 2**32 - 1)
pair_shapes = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4,
                                                min_side=1, max_side=3)
triple_shapes = hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=4,
                                                  min_side=1, max_side=3)


# -- elementwise binary ops ---------------------------------------------------

@pytest.mark.parametrize("name", BINARY)
@PROPERTY
@given(shapes=pair_shapes, dtype=DTYPES, seed=seeds)
def test_binary_op_broadcasts_like_numpy(name, shapes, dtype, seed):
    op, np_op, partials = BINARY[name]
    (a_shape, b_shape), out_shape = shapes
    x = arrays(a_shape, dtype, seed)
    y = arrays(b_shape, dtype, seed + 1, away_from_zero=name == "div")
    w = arrays(out_shape, np.float64, seed + 2)
    a = mg.tensor(x, requires_grad=True)
    b = mg.tensor(y, requires_grad=True)

    out = op(a, b)
    assert out.shape == out_shape and out.dtype == dtype
    np.testing.assert_array_equal(out.data, np_op(x, y))   # forward pass went well

    (out * mg.tensor(w.astype(dtype))).sum().backward()
    assert a.grad.shape == a_shape and b.grad.shape == b_shape
    assert a.grad.dtype == dtype and b.grad.dtype == dtype
    A = np.broadcast_to(x.astype(np.float64), out_shape)
    B = np.broadcast_to(y.astype(np.float64), out_shape)
    dA, dB = partials(A, B)
    np.testing.assert_allclose(a.grad, reference_unbroadcast(w * dA, a_shape), **TOLERANCES[dtype])
    np.testing.assert_allclose(b.grad, reference_unbroadcast(w * dB, b_shape), **TOLERANCES[dtype])


@PROPERTY
@given(shapes=triple_shapes, dtype=DTYPES, seed=seeds)
def test_where_broadcasts_mask_and_both_branches(shapes, dtype, seed):
    (mask_shape, a_shape, b_shape), out_shape = shapes
    rng = np.random.default_rng(seed)
    mask = rng.random(mask_shape) < 0.5
    x, y = arrays(a_shape, dtype, seed + 1), arrays(b_shape, dtype, seed + 2)
    w = arrays(out_shape, np.float64, seed + 3)
    a = mg.tensor(x, requires_grad=True)
    b = mg.tensor(y, requires_grad=True)

    out = mg.where(mask, a, b)
    assert out.shape == out_shape and out.dtype == dtype
    np.testing.assert_array_equal(out.data, np.where(mask, x, y))

    (out * mg.tensor(w.astype(dtype))).sum().backward()
    assert a.grad.shape == a_shape and b.grad.shape == b_shape
    M = np.broadcast_to(mask, out_shape)
    np.testing.assert_allclose(a.grad, reference_unbroadcast(w * M, a_shape), **TOLERANCES[dtype])
    np.testing.assert_allclose(b.grad, reference_unbroadcast(w * ~M, b_shape), **TOLERANCES[dtype])


small_pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=2)


@pytest.mark.parametrize("name", BINARY)
@GRADCHECK
@given(shapes=small_pairs, seed=seeds)
def test_binary_op_gradcheck(name, shapes, seed):
    op = BINARY[name][0]
    (a_shape, b_shape), _ = shapes
    a = mg.tensor(arrays(a_shape, np.float64, seed), requires_grad=True)
    b = mg.tensor(arrays(b_shape, np.float64, seed + 1, away_from_zero=name == "div"),
                  requires_grad=True)
    assert mg.gradcheck(op, [a, b])


@GRADCHECK
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=2), seed=seeds)
def test_where_gradcheck(shapes, seed):
    (mask_shape, a_shape, b_shape), _ = shapes
    mask = np.random.default_rng(seed).random(mask_shape) < 0.5
    a = mg.tensor(arrays(a_shape, np.float64, seed + 1), requires_grad=True)
    b = mg.tensor(arrays(b_shape, np.float64, seed + 2), requires_grad=True)
    assert mg.gradcheck(lambda a, b: mg.where(mask, a, b), [a, b])


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("a_shape, b_shape", [((0, 3), (1, 3)), ((2, 0), ()), ((0,), (4, 1, 1))])
def test_binary_op_with_empty_broadcast(name, a_shape, b_shape):
    op, np_op, _ = BINARY[name]
    a = mg.tensor(np.ones(a_shape), requires_grad=True)
    b = mg.tensor(np.ones(b_shape), requires_grad=True)
    out = op(a, b)
    assert out.shape == np_op(a.data, b.data).shape
    out.sum().backward()
    np.testing.assert_array_equal(a.grad, np.zeros(a_shape))
    np.testing.assert_array_equal(b.grad, np.zeros(b_shape))


# -- matmul's batch axes ------------------------------------------------------

one_in_four = st.integers(0, 3).map(lambda i: i == 0)


@st.composite
def matmul_shapes(draw):
    """Shapes (..., n, k) @ (..., k, m) with broadcastable batch axes; either may be 1-D (k,)."""
    (x_batch, y_batch), _ = draw(hnp.mutually_broadcastable_shapes(
        num_shapes=2, min_dims=0, max_dims=3, max_side=3))
    n, k, m = draw(st.tuples(*[st.integers(1, 3)] * 3))
    x_vector, y_vector = draw(st.tuples(*[one_in_four] * 2))
    x_shape = (k,) if x_vector else x_batch + (n, k)
    y_shape = (k,) if y_vector else y_batch + (k, m)
    return x_shape, y_shape


def as_matrices(x, y, g):
    """x, y and the output gradient g with the axes a 1-D operand leaves out put back:
    x (k,) acts as (1, k), y (k,) as (k, 1)."""
    x2 = x[None, :] if x.ndim == 1 else x
    y2 = y[:, None] if y.ndim == 1 else y
    batch = np.broadcast_shapes(x2.shape[:-2], y2.shape[:-2])
    g2 = g.reshape(batch + (x2.shape[-2], y2.shape[-1]))
    return x2, y2, g2, batch


def reference_matmul(x, y, g):
    """out = x @ y and the gradients of sum(g * out), one 2-D product per batch entry."""
    out_shape = np.matmul(x, y).shape  # only the shape; the entries come from the loop
    x2, y2, g2, batch = as_matrices(x, y, g)
    out2 = np.zeros(g2.shape)
    gx2, gy2 = np.zeros(x2.shape), np.zeros(y2.shape)
    for index in np.ndindex(batch):
        i, j = source_index(index, x2.shape[:-2]), source_index(index, y2.shape[:-2])
        out2[index] = x2[i] @ y2[j]
        gx2[i] += g2[index] @ y2[j].T   # d(X Y) = dX Y + X dY
        gy2[j] += x2[i].T @ g2[index]
    return out2.reshape(out_shape), gx2.reshape(x.shape), gy2.reshape(y.shape)


@PROPERTY
@given(shapes=matmul_shapes(), dtype=DTYPES, seed=seeds)
def test_matmul_broadcasts_batch_axes(shapes, dtype, seed):
    x_shape, y_shape = shapes
    x, y = arrays(x_shape, dtype, seed), arrays(y_shape, dtype, seed + 1)
    out_shape = np.matmul(x, y).shape
    w = arrays(out_shape, np.float64, seed + 2)
    a = mg.tensor(x, requires_grad=True)
    b = mg.tensor(y, requires_grad=True)

    out = a @ b
    assert out.shape == out_shape and out.dtype == dtype
    # NumPy's own product, to the last bit on the NumPy backend; within rounding on the
    # kernels, whose tiled sums round in another order than BLAS.
    if not backends.dispatch.KERNELS_ON_NUMPY:
        np.testing.assert_array_equal(out.data, np.matmul(x, y))
    ref_out, ref_gx, ref_gy = reference_matmul(x.astype(np.float64), y.astype(np.float64), w)
    np.testing.assert_allclose(out.data, ref_out, **TOLERANCES[dtype])

    (out * mg.tensor(w.astype(dtype))).sum().backward()
    assert a.grad.shape == x_shape and b.grad.shape == y_shape
    np.testing.assert_allclose(a.grad, ref_gx, **TOLERANCES[dtype])
    np.testing.assert_allclose(b.grad, ref_gy, **TOLERANCES[dtype])


def test_matmul_example_from_the_docs():
    x, y = arrays((2, 1, 3, 4), np.float64, 0), arrays((5, 4, 6), np.float64, 1)
    g = arrays((2, 5, 3, 6), np.float64, 2)
    a, b = mg.tensor(x, requires_grad=True), mg.tensor(y, requires_grad=True)
    out = a @ b
    assert out.shape == (2, 5, 3, 6)
    out.backward(g)
    ref_out, ref_gx, ref_gy = reference_matmul(x, y, g)
    np.testing.assert_allclose(out.data, ref_out, rtol=1e-12)
    np.testing.assert_allclose(a.grad, ref_gx, rtol=1e-12)
    np.testing.assert_allclose(b.grad, ref_gy, rtol=1e-12)


@GRADCHECK
@given(shapes=matmul_shapes(), seed=seeds)
def test_matmul_gradcheck(shapes, seed):
    x_shape, y_shape = shapes
    a = mg.tensor(arrays(x_shape, np.float64, seed), requires_grad=True)
    b = mg.tensor(arrays(y_shape, np.float64, seed + 1), requires_grad=True)
    assert mg.gradcheck(lambda a, b: a @ b, [a, b])


# -- unbroadcast itself -------------------------------------------------------

@pytest.mark.parametrize("grad_shape, shape, expected", [
    ((5, 13, 24, 16), (5, 1, 24, 1), lambda g: g.sum(axis=(1, 3), keepdims=True)),
    ((4, 5), (4, 1), lambda g: g.sum(axis=1, keepdims=True)),
    ((2, 3), (3,), lambda g: g.sum(axis=0)),
    ((2, 3), (), lambda g: g.sum()),
    ((3, 4, 5), (4, 1), lambda g: g.sum(axis=0).sum(axis=1, keepdims=True)),
    ((2, 3), (1, 1), lambda g: g.sum(keepdims=True)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unbroadcast_sums_added_and_stretched_axes(grad_shape, shape, expected, dtype):
    g = arrays(grad_shape, dtype, 0)
    out = mg.unbroadcast(g, shape)
    assert out.shape == shape and out.dtype == dtype
    np.testing.assert_allclose(out, expected(g), **TOLERANCES[dtype])
    np.testing.assert_allclose(out, reference_unbroadcast(g, shape), **TOLERANCES[dtype])


@pytest.mark.parametrize("shape", [(), (3,), (4, 1), (5, 13, 24, 16)])
def test_unbroadcast_is_the_identity_for_equal_shapes(shape):
    g = np.ones(shape, np.float32)
    assert mg.unbroadcast(g, shape) is g
