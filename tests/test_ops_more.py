"""maximum, minimum, log1p, expm1, sin, cos, square, min, logsumexp, var, std, cumsum, norm,
gather, chunk and split, and PyTorch's dim=/keepdim= on every reduction: values and gradients
against PyTorch's in float32 and float64, float64 gradient checks, the tie rules worked by
hand, and the errors.

PyTorch's results are in torch_reference/ops.npz, written by torch_reference/make_ops.py from
the cases of torch_reference/ops_cases.py (see torch_reference/README.md); PyTorch itself is
never imported here.
"""
import numpy as np
import pytest

import minigrad as mg
from minigrad import gradcheck, ops
from torch_reference import ops_cases
from torch_reference.ops_cases import CASES, DTYPES

# Every test runs on every backend: NumPy, the kernels emulated on the CPU, and a GPU.
pytestmark = pytest.mark.usefixtures("on_backend")


@pytest.fixture(scope="module")
def pytorch():
    """{"<case>/<dtype>": PyTorch's results packed in one vector}, read once."""
    with np.load(ops_cases.FIXTURE) as fixture:
        return {name: fixture[name] for name in fixture.files}


def run(case, dtype):
    """The case run with minigrad: {name: array}, as ops_cases.run names them."""
    if case.warns:
        with pytest.warns(RuntimeWarning, match="no degrees of freedom left"):
            return ops_cases.run(case, mg.tensor, dtype)
    return ops_cases.run(case, mg.tensor, dtype)


# -- against PyTorch ------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_matches_pytorch(case, dtype, pytorch):
    """Outputs and input gradients as PyTorch's (inf and nan where PyTorch has them)."""
    results = run(case, dtype)
    expected = ops_cases.unpack(pytorch[ops_cases.key(case, dtype)], results)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=2e-5, atol=2e-6)
    for name, value in results.items():
        assert value.dtype == np.dtype(dtype), name
        np.testing.assert_allclose(value, expected[name], err_msg=f"{case.name}: {name}", **tol)


@pytest.mark.numpy_only("reads the fixture; computes nothing")
def test_fixture_covers_every_case(pytorch):
    assert len({case.name for case in CASES}) == len(CASES)
    assert sorted(pytorch) == sorted(ops_cases.key(case, dtype) for case in CASES for dtype in DTYPES)


# -- gradient checks, float64 ---------------------------------------------------

def _joined(out):
    """One tensor from a call's output: chunk and split give several, laid end to end."""
    return mg.concat([o.reshape(-1) for o in out]) if isinstance(out, tuple) else out


@pytest.mark.parametrize("case", [c for c in CASES if c.smooth], ids=lambda case: case.name)
def test_gradcheck(case):
    xs, index, _ = ops_cases.arrays(case)
    leaves = [mg.tensor(x, requires_grad=True) for x in xs]
    index = None if index is None else mg.tensor(index)

    def fn(*ts):
        return _joined(case.call(*ts, *[None] * (2 - len(ts)), index))
    assert gradcheck(fn, leaves)


@pytest.mark.parametrize("fn, shapes", [
    (lambda a, b: mg.maximum(a, b), [(5, 1, 4, 1), (1, 3, 1, 2)]),
    (lambda a, b: mg.minimum(a, b), [(4, 1), (4, 5)]),
    (lambda a, b: a.maximum(b).square(), [(3,), (2, 1)]),
    (lambda a: mg.min(a, axis=(0, 2), keepdims=True), [(3, 2, 5)]),
    (lambda a: a.max(1).values[:, None] * a.min(0, keepdim=True).values, [(3, 4)]),
    (lambda a: mg.logsumexp(a, -1, True).sin(), [(2, 5)]),
    (lambda a: mg.var(a, (1, 2), correction=0, keepdim=True), [(2, 3, 3)]),
    (lambda a: mg.std(a, axis=0, keepdims=True), [(5, 1, 2)]),
    (lambda a: mg.norm(a, 2, dim=-1, keepdim=True).cos(), [(3, 5)]),
    (lambda a: mg.norm(a, 1, axis=(0, 1)), [(2, 3, 2)]),
    (lambda a: mg.cumsum(a, dim=1).expm1(), [(2, 5, 1)]),
    (lambda a: mg.log1p(a * a), [(3, 3)]),
], ids=lambda v: "" if callable(v) else str(v))
def test_gradcheck_more(fn, shapes, rng):
    assert gradcheck(fn, [mg.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes])


def test_gradcheck_gather_chunk_split(rng):
    x = mg.tensor(rng.standard_normal((3, 5)), requires_grad=True)
    index = np.array([[4, 4, 0], [1, 1, 1]])
    assert gradcheck(lambda t: mg.gather(t, 0, index[:, :2] % 3), [x])
    assert gradcheck(lambda t: mg.gather(t, 1, mg.tensor(index)) * mg.chunk(t, 2)[1][:2, :3], [x])
    assert gradcheck(lambda t: _joined(mg.split(t, [2, 1], dim=0)) * 2, [x])


# -- the rules, worked by hand ----------------------------------------------------

def test_maximum_minimum_split_ties_half_half():
    a = mg.tensor([1.0, 2.0, 3.0], requires_grad=True, dtype="float64")
    b = mg.tensor([1.0, 5.0, 0.0], requires_grad=True, dtype="float64")
    mg.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [0.5, 0.0, 1.0])
    np.testing.assert_array_equal(b.grad, [0.5, 1.0, 0.0])
    a.grad = b.grad = None
    a.minimum(b).sum().backward()
    np.testing.assert_array_equal(a.grad, [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(b.grad, [0.5, 0.0, 1.0])
    np.testing.assert_array_equal(mg.maximum(a, 2.0).data, [2.0, 2.0, 3.0])  # a number is a constant
    assert mg.minimum(np.float32(1.0), mg.tensor([0.5, 2.0])).dtype == np.float32


def test_maximum_minimum_with_a_nan_give_both_sides_the_gradient():
    """Where a NaN takes part, neither side lost: each gets all of g, as in PyTorch."""
    a = mg.tensor([np.nan, 1.0, 2.0, 3.0], requires_grad=True, dtype="float64")
    b = mg.tensor([0.0, np.nan, 3.0, 3.0], requires_grad=True, dtype="float64")
    mg.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [1.0, 1.0, 0.0, 0.5])
    np.testing.assert_array_equal(b.grad, [1.0, 1.0, 1.0, 0.5])
    a.grad = b.grad = None
    mg.minimum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [1.0, 1.0, 1.0, 0.5])
    np.testing.assert_array_equal(b.grad, [1.0, 1.0, 0.0, 0.5])


def test_inf_norm_of_a_group_with_a_nan_gives_it_no_gradient():
    x = mg.tensor([[1.0, np.nan, 3.0], [1.0, -2.0, 0.0]], requires_grad=True, dtype="float64")
    n = x.norm(float("inf"), 1)
    n.sum().backward()
    assert np.isnan(n.data[0]) and n.data[1] == 2.0
    np.testing.assert_array_equal(x.grad, [[0.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # PyTorch's


def test_var_std_take_pytorchs_unbiased_too(rng):
    data = rng.standard_normal((3, 5))
    x = mg.tensor(data, dtype="float64")
    np.testing.assert_allclose(x.var(1, True).data, data.var(axis=1, ddof=1), rtol=1e-14)
    np.testing.assert_allclose(x.var(1, False, True).data, data.var(axis=1, ddof=0, keepdims=True),
                               rtol=1e-14)
    np.testing.assert_allclose(mg.std(x, 0, unbiased=False).data, data.std(axis=0), rtol=1e-14)
    np.testing.assert_allclose(x.std(correction=True).data, data.std(ddof=1), rtol=1e-14)
    np.testing.assert_allclose(x.var(False).data, data.var(), rtol=1e-14)  # PyTorch's var(unbiased)
    np.testing.assert_allclose(mg.std(x, True).data, data.std(ddof=1), rtol=1e-14)


def test_max_min_send_ties_to_the_first():
    """Unlike PyTorch's max() over all entries, which splits among ties (see max's NOTE)."""
    x = mg.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], requires_grad=True, dtype="float64")
    x.max().backward()
    np.testing.assert_array_equal(x.grad, [[0, 1, 0], [0, 0, 0]])
    x.grad = None
    x.min(1).values.sum().backward()
    np.testing.assert_array_equal(x.grad, [[1, 0, 0], [0, 0, 1]])
    assert mg.min(x).item() == 0.0 and x.min(dim=0, keepdim=True).values.shape == (1, 3)
    assert x.max(axis=(1,), keepdims=True).shape == (2, 1)


def test_max_min_along_a_dim_give_values_and_indices_as_pytorch():
    """x.max(dim) is PyTorch's (values, indices), so `v, i = x.max(1)` and `x.max(1)[1]` mean
    what they mean in PyTorch, whether the dim is named dim or axis (PyTorch takes both);
    over several axes (NumPy's, which PyTorch's max refuses) the values alone."""
    data = np.array([[1.0, 5.0, 5.0], [7.0, 0.0, 3.0]])
    x = mg.tensor(data, requires_grad=True, dtype="float64")
    values, indices = x.max(1)
    np.testing.assert_array_equal(values.data, [5.0, 7.0])
    np.testing.assert_array_equal(indices.data, [1, 0])  # the first of the ties, as argmax
    assert indices.dtype == np.int64 and not indices.requires_grad and values.requires_grad
    result = mg.min(x, dim=-1, keepdim=True)
    assert result.values.shape == result.indices.shape == (2, 1)
    np.testing.assert_array_equal(result.indices.data, [[0], [1]])
    np.testing.assert_array_equal(x.max(1)[1].data, x.argmax(1).data)
    np.testing.assert_array_equal(x.max(axis=1).indices.data, [1, 0])
    assert isinstance(x.max(axis=(0, 1)), mg.Tensor) and isinstance(x.max(), mg.Tensor)
    assert x.max((0, 1)).item() == 7.0
    z = mg.tensor(2.5)                                  # a 0-d tensor takes dim 0, as PyTorch's
    assert z.max(0).values.item() == 2.5 and z.max(-1).indices.item() == 0 and z.sum(0).item() == 2.5


def test_norm_at_zero_and_inf_ties():
    x = mg.tensor([[0.0, 0.0], [3.0, -4.0]], requires_grad=True, dtype="float64")
    n = x.norm(dim=1)
    n.sum().backward()
    np.testing.assert_array_equal(n.data, [0.0, 5.0])
    np.testing.assert_allclose(x.grad, [[0.0, 0.0], [0.6, -0.8]], rtol=1e-15)  # 0 at the norm of 0
    y = mg.tensor([[0.0, 0.0], [4.0, -4.0]], requires_grad=True, dtype="float64")
    y.norm(float("inf"), 1).sum().backward()
    np.testing.assert_array_equal(y.grad, [[0.0, 0.0], [0.5, -0.5]])


def test_var_std_without_degrees_of_freedom():
    x = mg.tensor([[1.0, 2.0], [3.0, 3.0]], requires_grad=True, dtype="float64")
    with pytest.warns(RuntimeWarning, match=r"var: N - correction = 2 - 2 <= 0"):
        v = x.var(1, correction=2)
    np.testing.assert_array_equal(v.data, [np.inf, np.nan])
    v.sum().backward()
    np.testing.assert_array_equal(x.grad, [[-np.inf, np.inf], [np.nan, np.nan]])
    with pytest.warns(RuntimeWarning, match=r"std: N - correction = 4 - 5 <= 0"):
        s = mg.std(mg.tensor([1.0, 2.0, 3.0, 4.0]), correction=5)
    assert s.item() == np.inf
    z = mg.tensor([2.0, 2.0, 2.0], requires_grad=True)
    z.std().backward()
    np.testing.assert_array_equal(z.grad, [0.0, 0.0, 0.0])  # 0 where std is 0


def test_logsumexp_is_stable():
    x = mg.tensor([[1000.0, 1000.0], [-1000.0, -np.inf]], requires_grad=True, dtype="float64")
    out = x.logsumexp(dim=1)  # exp(1000) overflows even in float64
    np.testing.assert_allclose(out.data, [1000.0 + np.log(2.0), -1000.0])
    out.sum().backward()
    np.testing.assert_allclose(x.grad, [[0.5, 0.5], [1.0, 0.0]], rtol=1e-12)  # y rounds at 1000


def test_cumsum_and_pieces():
    x = mg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    np.testing.assert_array_equal(mg.cumsum(x, 1).data, [[0, 1, 3], [3, 7, 12]])
    np.testing.assert_array_equal(x.cumsum(axis=0).data, [[0, 1, 2], [3, 5, 7]])
    x.cumsum(1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[3, 2, 1], [3, 2, 1]])  # reversed cumsum of ones
    assert [p.shape for p in mg.chunk(mg.zeros(6), 4)] == [(2,), (2,), (2,)]  # fewer than asked
    assert [p.shape for p in mg.chunk(mg.zeros(0, 2), 3)] == [(0, 2)] * 3
    assert [p.shape for p in mg.split(mg.zeros(5, 2), 2)] == [(2, 2), (2, 2), (1, 2)]
    assert [p.shape for p in mg.split(mg.zeros(0), 2)] == [(0,)]
    pieces = x.split((1, 2), dim=1)
    assert [p.op for p in pieces] == ["getitem", "getitem"]  # one record each


def test_gather_repeats_add_up():
    x = mg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    out = x.gather(1, mg.tensor(np.array([[2, 2, 0, 2]])))
    np.testing.assert_array_equal(out.data, [[3.0, 3.0, 1.0, 3.0]])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [[1.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(mg.gather(x, 0, [[1, 0]]).data, [[4.0, 2.0]])


def test_unary_methods_and_functions_agree(rng):
    data = rng.uniform(-0.5, 2.0, (3, 4))
    x = mg.tensor(data, dtype="float64")
    for name, ref in [("log1p", np.log1p), ("expm1", np.expm1), ("sin", np.sin), ("cos", np.cos),
                      ("square", np.square)]:
        np.testing.assert_array_equal(getattr(x, name)().data, getattr(mg, name)(x).data)
        np.testing.assert_allclose(getattr(mg, name)(x).data, ref(data), rtol=1e-15)
    np.testing.assert_allclose(mg.var(x, 0).data, data.var(axis=0, ddof=1))
    np.testing.assert_allclose(x.std(correction=0).data, data.std())
    np.testing.assert_allclose(mg.norm(x, 1).data, np.abs(data).sum())


def test_numpy_names_still_work(rng):
    """axis/keepdims positionally and by name, as every caller wrote them before dim= came."""
    data = rng.standard_normal((2, 3, 4))
    x = mg.tensor(data)
    assert x.sum(0).shape == (3, 4) and x.sum(axis=1, keepdims=True).shape == (2, 1, 4)
    assert ops.sum(x, (0, 2), True).shape == (1, 3, 1) and ops.mean(x, 1, False).shape == (2, 4)
    assert x.max(axis=(2,), keepdims=True).shape == (2, 3, 1) and x.mean(dim=[0, 1]).shape == (4,)
    assert x.sum(dim=()).shape == () and x.sum(axis=()).shape == (2, 3, 4)  # PyTorch's and NumPy's ()
    np.testing.assert_allclose(x.sum(dim=(0, 2)).data, data.sum(axis=(0, 2)), rtol=1e-6)


def test_joins_and_softmax_take_dim_too(rng):
    """concat (and its PyTorch name cat), stack, softmax, log_softmax: axis or dim, as one argument."""
    from minigrad.nn import functional as F
    data = rng.standard_normal((2, 3))
    x = mg.tensor(data, dtype="float64")
    np.testing.assert_array_equal(mg.cat([x, x], dim=1).data, np.concatenate([data, data], axis=1))
    np.testing.assert_array_equal(mg.concat([x, x]).data, np.concatenate([data, data]))
    np.testing.assert_array_equal(mg.stack([x, x], dim=-1).data, np.stack([data, data], axis=-1))
    e = np.exp(data - data.max(axis=0))
    np.testing.assert_allclose(F.softmax(x, dim=0).data, e / e.sum(axis=0), rtol=1e-14)
    np.testing.assert_allclose(F.log_softmax(x, dim=0).data, np.log(e / e.sum(axis=0)), rtol=1e-14)
    np.testing.assert_array_equal(F.softmax(x).data, F.softmax(x, dim=-1).data)  # the last axis
    for fn in (mg.cat, mg.stack, F.softmax, F.log_softmax):
        arg = [x, x] if fn in (mg.cat, mg.stack) else x
        with pytest.raises(TypeError, match="got both axis=0 and dim=1; they are one argument"):
            fn(arg, axis=0, dim=1)


def test_functions_are_the_methods(rng):
    """minigrad.X(t, ...) is t.X(...) for the ops PyTorch also has as torch.X."""
    x = mg.tensor(rng.uniform(0.5, 2.0, (2, 3)), dtype="float64")
    for name, args in [("exp", ()), ("log", ()), ("tanh", ()), ("sigmoid", ()), ("relu", ()),
                       ("sqrt", ()), ("abs", ()), ("sum", (1,)), ("mean", (0,)), ("max", ()),
                       ("clip", (0.6, 1.5)), ("reshape", (3, 2)), ("transpose", ())]:
        np.testing.assert_array_equal(getattr(mg, name)(x, *args).data, getattr(x, name)(*args).data)
    np.testing.assert_array_equal(mg.matmul(x, x.T).data, (x @ x.T).data)


def test_max_of_two_tensors_points_to_maximum():
    x = mg.zeros(2)
    with pytest.raises(TypeError, match=r"max: .*got a Tensor; for the entrywise maximum of two "
                                        r"tensors use minigrad.maximum\(x, y\)"):
        x.max(x)
    with pytest.raises(TypeError, match=r"max: .*got a Tensor; .*minigrad.maximum\(x, y\)"):
        x.max(axis=x)
    with pytest.raises(TypeError, match=r"min: .*minigrad.minimum\(x, y\)"):
        x.min(x)


# -- errors ----------------------------------------------------------------------

@pytest.mark.parametrize("op", ["sum", "mean", "max", "min", "var", "std", "logsumexp", "norm"])
def test_axis_and_dim_together_is_a_type_error(op):
    x = mg.zeros(2, 3)
    with pytest.raises(TypeError, match=rf"^{op}: got both axis=0 and dim=1; they are one argument"):
        getattr(x, op)(axis=0, dim=1)
    with pytest.raises(TypeError, match=rf"^{op}: got both keepdims=True and keepdim=False"):
        getattr(ops, op)(x, keepdims=True, keepdim=False)
    with pytest.raises(ValueError, match=rf"^{op}: axis 2 is out of range for 2 dimensions"):
        getattr(x, op)(dim=2)
    with pytest.raises(TypeError, match=rf"^{op}: (axis|dim) must be an int"):  # dim: max, min
        getattr(x, op)(dim=1.0)


def test_cumsum_errors():
    x = mg.zeros(2, 3)
    with pytest.raises(TypeError, match="cumsum: got both axis=0 and dim=0"):
        mg.cumsum(x, 0, axis=0)
    with pytest.raises(TypeError, match="cumsum: give dim, the one axis to sum along"):
        x.cumsum()
    with pytest.raises(ValueError, match=r"cumsum: dim -3 is out of range for 2 dimensions \(expected -2 to 1\)"):
        x.cumsum(-3)
    with pytest.raises(TypeError, match=r"cumsum: dim must be an int, got \(0, 1\)"):
        x.cumsum((0, 1))


def test_norm_var_errors():
    x = mg.zeros(2, 3)
    for p in [3, 0, "fro", "nuc", True]:
        with pytest.raises(ValueError, match=rf"norm: p={p!r} is not supported; minigrad has the "
                                             r"vector norms p = 2, 1 and inf"):
            x.norm(p)
    with pytest.raises(ValueError, match=r"norm: empty tensor of shape \(0, 3\) has no inf-norm"):
        mg.zeros(0, 3).norm(float("inf"))
    with pytest.raises(TypeError, match="var: correction must be a number, got '1'"):
        x.var(correction="1")
    with pytest.raises(TypeError, match="std: got both unbiased=True and correction=0; give one"):
        mg.std(x, unbiased=True, correction=0)
    with pytest.raises(TypeError, match="var: unbiased must be True or False, got 1"):
        x.var(0, 1)
    with pytest.raises(ValueError, match=r"min: empty tensor of shape \(0,\) has no minimum"):
        mg.zeros(0).min()
    with pytest.raises(ValueError, match=r"logsumexp: empty tensor of shape \(2, 0\)"):
        mg.zeros(2, 0).logsumexp(1)


def test_maximum_errors():
    with pytest.raises(ValueError, match=r"maximum: shapes \(2,\) and \(3,\) do not broadcast"):
        mg.maximum(mg.zeros(2), mg.zeros(3))
    with pytest.raises(TypeError, match="minimum: dtypes float32 and float64 differ"):
        mg.zeros(2).minimum(mg.zeros(2, dtype="float64"))


def test_gather_errors():
    x = mg.zeros(2, 3)
    with pytest.raises(ValueError, match=r"gather: index of shape \(3,\) must have as many dimensions "
                                         r"as the input of shape \(2, 3\) \(2\)"):
        x.gather(1, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"gather: index of shape \(3, 1\) is longer than the input of "
                                         r"shape \(2, 3\) in dimension 0; only along dim 1"):
        x.gather(1, np.zeros((3, 1), dtype=np.int64))
    with pytest.raises(ValueError, match=r"gather: index values -1 to 2 are out of range for dim 1 "
                                         r"of size 3 \(expected 0 to 2\)"):
        x.gather(-1, np.array([[-1, 2]]))
    with pytest.raises(ValueError, match=r"gather: index values 0 to 2 are out of range for dim 0 of size 2"):
        x.gather(0, np.array([[0, 2]]))
    with pytest.raises(TypeError, match="gather: index must be an integer Tensor or array, got float32"):
        x.gather(0, mg.zeros(1, 1))
    with pytest.raises(ValueError, match="gather: dim 2 is out of range for 2 dimensions"):
        x.gather(2, np.zeros((1, 1), dtype=np.int64))


def test_chunk_split_errors():
    x = mg.zeros(5, 2)
    for bad in [0, -1, 2.0, True]:
        with pytest.raises(ValueError, match=rf"chunk: chunks must be a positive int, got {bad!r}"):
            x.chunk(bad)
    with pytest.raises(ValueError, match="chunk: dim 2 is out of range for 2 dimensions"):
        mg.chunk(x, 2, dim=2)
    with pytest.raises(ValueError, match=r"split: sizes \[2, 2\] must be non-negative and add up to 5, "
                                         r"the length of dim 0 of \(5, 2\)"):
        x.split([2, 2])
    with pytest.raises(ValueError, match=r"split: sizes \[-1, 3\] must be non-negative and add up to 2"):
        mg.split(x, [-1, 3], dim=1)
    with pytest.raises(ValueError, match=r"split: split size 0 must be positive \(0 only for an empty "
                                         r"dim\); dim 0 of \(5, 2\) has length 5"):
        x.split(0)
    with pytest.raises(ValueError, match="split: split size -2 must be positive"):
        x.split(-2, 1)
    with pytest.raises(TypeError, match="split: split_size_or_sections must be an int or a list of ints, got 2.5"):
        x.split(2.5)
    with pytest.raises(TypeError, match=r"split: sizes must be ints, got \(1.0, 4\)"):
        x.split([1.0, 4])
    with pytest.raises(TypeError, match="split: dim must be an int, got None"):
        x.split(2, None)
