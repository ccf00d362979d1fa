"""PyTorch's Tensor methods (size, view, permute, squeeze, expand, repeat, clone, argmax, ==, ...):
values and shapes against NumPy's equivalents and against PyTorch's stored numbers
(torch_reference/make_tensor_methods.py), float64 gradchecks, and the errors."""
import numpy as np
import pytest

import minigrad as mg
from minigrad.gradcheck import gradcheck
from torch_reference import tensor_method_cases


def _x(*shape, seed=0):
    data = np.random.default_rng(seed).standard_normal(shape)
    return data, mg.tensor(data, requires_grad=True, dtype="float64")


# -- what it is ---------------------------------------------------------------

def test_size_dim_numel():
    t = mg.zeros(2, 3, 4)
    assert t.size() == (2, 3, 4) and t.size(0) == 2 and t.size(-1) == 4 and t.size(-3) == 2
    assert t.dim() == 3 and t.numel() == 24 and mg.tensor(1.0).dim() == 0
    assert mg.tensor(1.0).numel() == 1 and isinstance(t.numel(), int)
    with pytest.raises(ValueError, match=r"size: dim 3 is out of range for 3 dimensions"):
        t.size(3)
    with pytest.raises(ValueError, match=r"size: dim -4"):
        t.size(-4)
    with pytest.raises(TypeError, match="size: dim must be an int"):
        t.size(1.0)


def test_tolist_float_int():
    data = np.arange(6.0).reshape(2, 3)
    assert mg.tensor(data).tolist() == data.tolist() and mg.tensor(2.5).tolist() == 2.5
    assert float(mg.tensor([[2.5]])) == 2.5 and isinstance(float(mg.tensor(2)), float)
    assert int(mg.tensor([3.7])) == 3 and int(mg.tensor(-3.7)) == -3
    assert int(mg.tensor(np.array([7]))) == 7
    with pytest.raises(ValueError, match=r"float\(\): only one-element .*shape \(3,\)"):
        float(mg.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"int\(\): only one-element .*shape \(2, 1\)"):
        int(mg.tensor([[1.0], [2.0]]))


# -- reshapes under PyTorch's names --------------------------------------------

def test_view_is_reshape_with_minus_one():
    data, x = _x(2, 3, 4)
    for shape in [(6, 4), (-1, 4), (2, -1), (24,), (-1,)]:
        y = x.view(*shape)
        np.testing.assert_array_equal(y.data, data.reshape(shape))
        assert y.op == "reshape"
    np.testing.assert_array_equal(x.view((4, 6)).data, data.reshape(4, 6))
    assert gradcheck(lambda t: t.view(4, -1) * mg.tensor(np.arange(24.0).reshape(4, 6)), x)
    with pytest.raises(ValueError, match=r"view: cannot reshape \(2, 3, 4\) \(24 entries\) into \(5, -1\)"):
        x.view(5, -1)


@pytest.mark.parametrize("dims", [(0, 1, 2), (2, 0, 1), (1, 2, 0), (-1, 0, -2)])
def test_permute(dims):
    data, x = _x(2, 3, 4)
    np.testing.assert_array_equal(x.permute(*dims).data, np.transpose(data, dims))
    np.testing.assert_array_equal(x.permute(dims).data, np.transpose(data, dims))
    w = mg.tensor(np.random.default_rng(1).standard_normal(np.transpose(data, dims).shape))
    assert gradcheck(lambda t: t.permute(*dims) * w, x)


def test_permute_errors():
    _, x = _x(2, 3, 4)
    with pytest.raises(ValueError, match=r"permute: dims \(0, 1\) are not a permutation .*\(2, 3, 4\)"):
        x.permute(0, 1)
    with pytest.raises(ValueError, match=r"permute: dims \(0, 0, 1\)"):
        x.permute(0, 0, 1)
    with pytest.raises(ValueError, match="permute: dim 3 is out of range"):
        x.permute(0, 1, 3)


@pytest.mark.parametrize("dim", [0, 1, 2, 3, -1, -2, -4])
def test_unsqueeze(dim):
    data, x = _x(2, 3, 4)
    y = x.unsqueeze(dim)
    np.testing.assert_array_equal(y.data, np.expand_dims(data, dim))
    assert y.shape == np.expand_dims(data, dim).shape
    assert gradcheck(lambda t: t.unsqueeze(dim) * 2.0, x)


def test_unsqueeze_errors():
    _, x = _x(2, 3)
    with pytest.raises(ValueError, match="unsqueeze: dim 3 is out of range for 3 dimensions"):
        x.unsqueeze(3)
    with pytest.raises(ValueError, match="unsqueeze: dim -4"):
        x.unsqueeze(-4)


def test_squeeze_as_pytorch():
    data, x = _x(1, 3, 1, 2)
    np.testing.assert_array_equal(x.squeeze().data, np.squeeze(data))
    assert x.squeeze(0).shape == np.squeeze(data, 0).shape == (3, 1, 2)
    assert x.squeeze(-2).shape == (1, 3, 2)
    assert x.squeeze((0, 2)).shape == np.squeeze(data, (0, 2)).shape
    assert x.squeeze(1).shape == (1, 3, 1, 2)   # not of length 1: left, where np.squeeze raises
    assert mg.tensor(1.0).squeeze().shape == () and mg.tensor(1.0).squeeze(0).shape == ()
    assert gradcheck(lambda t: t.squeeze() * 3.0, x)
    with pytest.raises(ValueError, match="squeeze: dim 4 is out of range for 4 dimensions"):
        x.squeeze(4)


@pytest.mark.parametrize("start, end, shape", [
    (0, -1, (120,)), (1, -1, (2, 60)), (0, 1, (6, 4, 5)), (1, 2, (2, 12, 5)),
    (-2, -1, (2, 3, 20)), (2, 2, (2, 3, 4, 5)),
])
def test_flatten(start, end, shape):
    data, x = _x(2, 3, 4, 5)
    y = x.flatten(start, end)
    assert y.shape == shape
    np.testing.assert_array_equal(y.data, data.reshape(shape))
    assert gradcheck(lambda t: t.flatten(start, end) * 0.5, x)


def test_flatten_edge_cases_and_errors():
    assert mg.tensor(2.0).flatten().shape == (1,)
    _, x = _x(2, 3, 4)
    with pytest.raises(ValueError, match=r"flatten: start_dim 2 comes after end_dim 1 for shape \(2, 3, 4\)"):
        x.flatten(2, 1)
    with pytest.raises(ValueError, match="flatten: dim 3 is out of range"):
        x.flatten(3)


# -- recorded copies: clone, expand, repeat --------------------------------------

def test_clone_is_a_recorded_copy():
    data, x = _x(2, 3)
    y = x.clone()
    assert y.op == "clone" and y.data is not x.data and y.dtype == x.dtype
    np.testing.assert_array_equal(y.data, data)
    assert gradcheck(lambda t: t.clone() * t, x)
    (y * 2).sum().backward()
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 2.0))
    c = mg.tensor([1.0]).clone()
    assert c.is_leaf and not c.requires_grad


@pytest.mark.parametrize("shape, sizes", [
    ((3, 1), (3, 4)), ((3, 1), (-1, 4)), ((1, 3), (2, 5, 3)), ((3,), (2, 3)),
    ((2, 1, 3), (4, 2, 5, -1)), ((), (2, 2)), ((2, 3), (2, 3)),
])
def test_expand(shape, sizes):
    data, x = _x(*shape)
    target = tuple(o if n == -1 else n
                   for n, o in zip(sizes, (None,) * (len(sizes) - len(shape)) + shape))
    y = x.expand(*sizes)
    assert y.shape == target and y.op == "expand"
    np.testing.assert_array_equal(y.data, np.broadcast_to(data, target))
    np.testing.assert_array_equal(x.expand(sizes).data, np.broadcast_to(data, target))
    w = mg.tensor(np.random.default_rng(2).standard_normal(target))
    assert gradcheck(lambda t: t.expand(*sizes) * w, x)


def test_expand_errors():
    _, x = _x(3, 1)
    with pytest.raises(ValueError, match=r"expand: cannot expand \(3, 1\) to \(4, 4\)"):
        x.expand(4, 4)
    with pytest.raises(ValueError, match=r"expand: cannot expand \(3, 1\) to \(3,\)"):
        x.expand(3)
    with pytest.raises(ValueError, match=r"expand: cannot expand \(3, 1\) to \(-1, 3, 1\)"):
        x.expand(-1, 3, 1)
    with pytest.raises(TypeError, match="expand: sizes must be ints"):
        x.expand(3, 1.5)


@pytest.mark.parametrize("shape, sizes", [
    ((2, 3), (1, 1)), ((2, 3), (2, 1)), ((2, 3), (3, 2)), ((3,), (2, 2)),
    ((2, 1, 3), (2, 1, 3, 2)), ((2,), (0,)), ((), (3,)),
])
def test_repeat(shape, sizes):
    data, x = _x(*shape)
    y = x.repeat(*sizes)
    expected = np.tile(data, sizes)
    assert y.shape == expected.shape and y.op == "repeat"
    np.testing.assert_array_equal(y.data, expected)
    np.testing.assert_array_equal(x.repeat(sizes).data, expected)
    w = mg.tensor(np.random.default_rng(3).standard_normal(expected.shape))
    assert gradcheck(lambda t: t.repeat(*sizes) * w, x)


def test_repeat_gradient_sums_the_copies():
    x = mg.tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    x.repeat(3, 2).sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0, 6.0])


def test_repeat_errors():
    _, x = _x(2, 3)
    with pytest.raises(ValueError, match=r"repeat: sizes \(2,\) must be .* of \(2, 3\)"):
        x.repeat(2)
    with pytest.raises(ValueError, match=r"repeat: sizes \(2, -1\)"):
        x.repeat(2, -1)


# -- argmax / argmin -------------------------------------------------------------

@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("dim, keepdim", [(None, False), (0, False), (1, True), (-1, False), (2, True)])
def test_argmax_argmin(name, dim, keepdim):
    data, x = _x(3, 4, 5)
    y = getattr(x, name)(dim, keepdim=keepdim)
    expected = getattr(np, name)(data, axis=dim, keepdims=keepdim)
    assert y.dtype == np.int64 and not y.requires_grad and y.is_leaf
    assert y.shape == expected.shape
    np.testing.assert_array_equal(y.data, expected)


def test_argmax_errors():
    _, x = _x(3, 4)
    with pytest.raises(ValueError, match="argmax: dim 2 is out of range for 2 dimensions"):
        x.argmax(2)
    with pytest.raises(ValueError, match=r"argmin: the tensor of shape \(0,\) is empty"):
        mg.zeros(0).argmin()


# -- == and != ----------------------------------------------------------------

def test_eq_ne_compare_entry_by_entry_with_no_gradient():
    data = np.array([[1.0, 2.0, np.nan], [4.0, 2.0, 0.0]])
    t = mg.tensor(data, requires_grad=True, dtype="float64")
    other = np.array([1.0, 2.0, np.nan])               # broadcast along the rows
    for result, expected in [(t == 2, data == 2), (t != 2, data != 2),
                             (t == other, data == other), (t != other, data != other),
                             (other == t, other == data),  # NumPy hands the work to the tensor
                             (t == mg.tensor(other, dtype="float64"), data == other)]:
        assert isinstance(result, mg.Tensor) and result.dtype == bool
        assert not result.requires_grad and result.is_leaf
        np.testing.assert_array_equal(result.numpy(), expected)
    assert not (t == t).numpy()[0, 2]                   # NaN != NaN, as IEEE and PyTorch
    assert bool(mg.tensor(3.0) == 3) and not bool(mg.tensor(3.0) != 3)


def test_eq_with_something_that_is_not_a_number_is_identity():
    t = mg.tensor([1.0, 2.0])
    assert (t == None) is False and (t != None) is True  # noqa: E711 (PyTorch gives the same)
    assert (t == "a") is False
    assert (t == [1.0, 2.0]) is False and (t != [1.0, 2.0]) is True  # a list too, as PyTorch


@pytest.mark.parametrize("compare", [lambda t, v: t < v, lambda t, v: t <= v, lambda t, v: t > v,
                                     lambda t, v: t >= v, lambda t, v: v < t])
def test_an_ordering_with_a_list_is_a_type_error_as_pytorchs(compare):
    """It compared entry by entry while == with the same list said False: now neither reads the
    list as values; < raises, as PyTorch's (and Python's for unrelated types)."""
    t = mg.tensor([1.0, 2.0])
    for other in ([1.0, 3.0], (1.0, 3.0), None, "a"):
        with pytest.raises(TypeError, match="not supported between instances of"):
            compare(t, other)


def test_a_scalar_compares_in_the_tensors_dtype():
    """float32(0.1) < float64(0.1): the scalar is taken as float32, as PyTorch takes it."""
    x = mg.tensor(np.array([0.1, 0.3], dtype=np.float32))
    for result, expected in [(x == 0.1, [True, False]), (x <= 0.1, [True, False]),
                             (x > 0.1, [False, True]), (x != np.float64(0.3), [True, False]),
                             (0.1 >= x, [True, False]), (x < 1e300, [True, True])]:
        np.testing.assert_array_equal(result.numpy(), expected)
    i = mg.tensor(np.array([1, 2]))
    np.testing.assert_array_equal((i == 1.5).numpy(), [False, False])  # an int tensor keeps 1.5


def test_mixed_dtypes_compare_by_value():
    """No gradient flows from a comparison, so its dtypes may differ, as in PyTorch."""
    i, f = mg.tensor(np.array([1, 2])), mg.tensor(np.array([1.0, 2.5]))
    np.testing.assert_array_equal((i == f).numpy(), [True, False])
    np.testing.assert_array_equal((f > mg.tensor([0.5, 3.0])).numpy(), [True, False])  # f64 > f32


def test_tensors_stay_hashable_by_identity():
    a, b = mg.tensor([1.0, 2.0]), mg.tensor([1.0, 2.0])
    d = {a: "a", b: "b"}                                # equal values, two keys
    assert d[a] == "a" and d[b] == "b" and len({a, b, a}) == 2
    assert hash(a) != hash(b) and a in [a]


def test_eq_errors_name_the_op():
    with pytest.raises(ValueError, match=r"ne: shapes \(2,\) and \(3,\) do not broadcast"):
        mg.tensor([1.0, 2.0]) != np.ones(3, dtype=np.float32)


# -- against PyTorch's numbers (tests/torch_reference/make_tensor_methods.py) ---------

_CASES, _TORCH = tensor_method_cases, np.load(tensor_method_cases.FIXTURE)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", _CASES.CASES, ids=_CASES.name)
def test_methods_match_pytorch(case, dtype):
    method, _, args, differentiable, _ = case
    key = _CASES.name(case)
    x = mg.tensor(_CASES.inputs(case), dtype=dtype, requires_grad=differentiable)
    out = getattr(x, method)(*args)
    expected = _TORCH[key + "/out"]
    assert out.shape == expected.shape
    assert out.dtype == (np.dtype(dtype) if expected.dtype.kind == "f" else expected.dtype)
    np.testing.assert_array_equal(out.numpy(), expected.astype(out.dtype))  # moves and picks: exact
    if differentiable:
        (out * mg.tensor(_CASES.weights(case, out.shape), dtype=dtype)).sum().backward()
        tol = 1e-12 if dtype == "float64" else 1e-5  # repeat and expand sum several weights
        np.testing.assert_allclose(x.grad, _TORCH[key + "/grad"], rtol=tol, atol=tol)
