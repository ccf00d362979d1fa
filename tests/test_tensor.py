"""Tensor: construction, dtype rules, attributes, methods, and the creation helpers."""
import numpy as np
import pytest

import minigrad as mg


# -- dtype rules --------------------------------------------------------------

@pytest.mark.parametrize("data, dtype", [
    (np.zeros(3, np.float32), np.float32),
    (np.zeros(3, np.float64), np.float64),
    (np.float64(1.5), np.float64),
    (np.float32(1.5), np.float32),
    (1.5, np.float32),
    (2, np.float32),
    ([1, 2, 3], np.float32),
    ([[1.0, 2.0], [3.0, 4.0]], np.float32),
    (np.arange(3), np.int64),
    (np.array([True, False]), np.bool_),
])
def test_dtype_rules(data, dtype):
    assert mg.tensor(data).dtype == dtype


@pytest.mark.parametrize("spec", ["float64", np.float64, np.dtype("float64"), "f8"])
def test_dtype_argument_takes_what_numpy_dtype_takes(spec):
    t = mg.tensor([1, 2], dtype=spec)
    assert t.dtype == np.float64
    np.testing.assert_array_equal(t.data, [1.0, 2.0])


def test_tensor_copies_its_data():
    source = np.ones(3, np.float32)
    t = mg.tensor(source)
    source[0] = 7
    assert t.data[0] == 1


def test_tensor_of_a_tensor_is_a_new_leaf():
    a = mg.tensor([1.0], requires_grad=True)
    b = mg.tensor(a * 2)
    assert b.is_leaf and not b.requires_grad and b.data[0] == 2


def test_a_list_of_tensors_is_refused_with_the_way_out():
    with pytest.raises(TypeError, match=r"minigrad\.stack"):
        mg.tensor([mg.tensor(1.0), mg.tensor(2.0)])


def test_tensor_class_takes_the_same_arguments():
    t = mg.Tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    assert isinstance(t, mg.Tensor) and t.requires_grad and t.dtype == np.float64


# -- attributes and methods ---------------------------------------------------

def test_attributes():
    t = mg.tensor(np.zeros((2, 3), np.float64), requires_grad=True)
    assert t.shape == (2, 3) and t.ndim == 2 and t.dtype == np.float64
    assert t.device == "cpu" and t.grad is None and t.requires_grad and t.is_leaf
    assert isinstance(t.data, np.ndarray) and t.op is None


def test_numpy_item_and_len():
    t = mg.tensor([[1.0, 2.0, 3.0]])
    assert isinstance(t.numpy(), np.ndarray) and t.numpy().shape == (1, 3)
    assert mg.tensor([[4.5]]).item() == 4.5 and isinstance(mg.tensor(2.0).item(), float)
    assert len(t) == 1
    with pytest.raises(ValueError, match=r"item: .*shape \(1, 3\)"):
        t.item()
    with pytest.raises(TypeError, match="0-d"):
        len(mg.tensor(1.0))


def test_detach_shares_data_and_leaves_the_graph():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    d = y.detach()
    assert d.data is y.data and not d.requires_grad and d.is_leaf
    (d * 3).sum()   # no record: nothing requires grad
    assert not (d * 3).requires_grad


def test_zero_grad_clears_the_gradient():
    x = mg.tensor([1.0], requires_grad=True)
    (x * 2).sum().backward()
    assert x.grad is not None
    x.zero_grad()
    assert x.grad is None


def test_bool_follows_numpy():
    assert bool(mg.tensor(1.0)) and not bool(mg.tensor(0.0))
    with pytest.raises(ValueError):
        bool(mg.tensor([1.0, 2.0]))


def test_repr():
    assert repr(mg.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(mg.tensor([1.0], dtype="float64")) == "tensor([1.], dtype=float64)"
    x = mg.tensor([1.0], requires_grad=True)
    assert repr(x) == "tensor([1.], requires_grad=True)"
    assert repr(x.exp()).endswith("op=exp)")


def test_numpy_array_on_the_left_defers_to_the_tensor():
    x = mg.tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    y = np.array([3.0, 4.0], np.float32) * x
    assert isinstance(y, mg.Tensor) and y.op == "mul"
    np.testing.assert_array_equal(y.data, [3.0, 8.0])


def test_tensors_hash_by_identity():
    a, b = mg.tensor([1.0]), mg.tensor([1.0])
    assert len({a, b}) == 2 and a in {a}


# -- creation helpers ---------------------------------------------------------

@pytest.mark.parametrize("make, value", [(mg.zeros, 0.0), (mg.ones, 1.0)])
def test_zeros_and_ones(make, value):
    for t in (make(2, 3), make((2, 3))):
        assert t.shape == (2, 3) and t.dtype == np.float32
        assert np.all(t.data == value)
    assert make(4, dtype="float64").dtype == np.float64
    assert make(2, requires_grad=True).requires_grad
    assert make().shape == ()


def test_zeros_like_and_ones_like_keep_shape_and_dtype():
    base = mg.tensor(np.empty((3, 1), np.float64))
    z, o = mg.zeros_like(base), mg.ones_like(base)
    assert z.shape == o.shape == (3, 1) and z.dtype == o.dtype == np.float64
    assert np.all(z.data == 0) and np.all(o.data == 1)
    assert mg.zeros_like(base, dtype="float32").dtype == np.float32


def test_arange():
    np.testing.assert_array_equal(mg.arange(4).data, [0, 1, 2, 3])
    assert mg.arange(4).dtype == np.int64
    np.testing.assert_allclose(mg.arange(0.0, 1.0, 0.25).data, [0, 0.25, 0.5, 0.75])
    assert mg.arange(0.0, 1.0, 0.25).dtype == np.float32
    assert mg.arange(1, 7, 2).data.tolist() == [1, 3, 5]
    assert mg.arange(3, dtype="float64").dtype == np.float64


@pytest.mark.parametrize("make", [mg.randn, mg.rand])
def test_random_helpers_are_reproducible_from_a_seed_or_a_generator(make):
    a, b = make(3, 4, rng=7), make(3, 4, rng=7)
    np.testing.assert_array_equal(a.data, b.data)
    assert a.shape == (3, 4) and a.dtype == np.float32
    gen = np.random.default_rng(7)
    first, second = make(5, rng=gen), make(5, rng=gen)
    assert not np.array_equal(first.data, second.data)        # the generator advanced
    np.testing.assert_array_equal(first.data, make(5, rng=np.random.default_rng(7)).data)
    assert make((2, 2), rng=0, dtype="float64").dtype == np.float64
    assert make(2, rng=0, requires_grad=True).requires_grad


def test_rand_is_in_the_unit_interval_and_randn_is_standard_normal():
    u = mg.rand(10000, rng=1, dtype="float64").data
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.02
    n = mg.randn(10000, rng=1, dtype="float64").data
    assert abs(n.mean()) < 0.05 and abs(n.std() - 1) < 0.05


def test_random_helpers_reject_bad_arguments():
    with pytest.raises(TypeError, match="rng"):
        mg.randn(2, rng="seed")
    with pytest.raises(TypeError, match="randn: dtype must be float32 or float64, got int64"):
        mg.randn(2, dtype="int64")
    with pytest.raises(ValueError, match="zeros: a shape"):
        mg.zeros(-1)
