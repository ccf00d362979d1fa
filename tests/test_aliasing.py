"""No aliasing (issue 19): an array handed to an op is copied, so changing it afterwards cannot
change what backward computes; the arrays of tensors minigrad makes are read-only, so writing
into one (w.data[...] = ...) raises instead of changing a pending gradient; from_numpy shares
memory on purpose."""
import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim
from minigrad.nn import functional as F


def leaf(values):
    return mg.tensor(np.array(values, dtype=np.float64), requires_grad=True)


# Each case: (build(w, a) -> a scalar loss from the leaf w and the raw array a, a's values).
# a goes into the op as it is (of its own dtype), so a backward that kept it would see the
# change. The gradient must be the one computed with a as it was, whatever is written after.
F64, I64 = np.float64, np.int64
CASES = {
    "mul by an array": (lambda w, a: (w * a).sum(), [3.0, 4.0], F64),
    "div by an array": (lambda w, a: (w / a).sum(), [3.0, 4.0], F64),
    "where's mask": (lambda w, a: mg.where(a, w * 2, w * w).sum(), [True, False], bool),
    "an index array": (lambda w, a: (w[a] ** 2).sum(), [1, 1], I64),
    "gather's index": (lambda w, a: (mg.gather(w, 0, a) ** 2).sum(), [1, 1], I64),
    "cross_entropy's targets": (lambda w, a: F.cross_entropy(w.reshape(1, 2), a, reduction="sum"), [1], I64),
    "cross_entropy's weight": (lambda w, a: F.cross_entropy(w.reshape(1, 2), np.array([0]), weight=a,
                                                            label_smoothing=0.1), [2.0, 1.0], F64),
    "nll_loss's targets": (lambda w, a: F.nll_loss(w.reshape(1, 2), a), [1], I64),
    "embedding's indices": (lambda w, a: (F.embedding(a, w.reshape(2, 1)) ** 2).sum(), [1, 1], I64),
    "mse_loss's target": (lambda w, a: F.mse_loss(w, a), [3.0, 4.0], F64),
}


@pytest.mark.parametrize("name", CASES)
def test_an_array_changed_after_the_op_does_not_change_the_gradient(name):
    build, values, dtype = CASES[name]
    w = leaf([0.5, 2.0])
    build(w, np.array(values, dtype)).backward()      # the reference: nothing changed
    expected = w.grad.copy()
    w.grad = None
    a = np.array(values, dtype)
    loss = build(w, a)
    a[...] = 0                                        # the caller reuses its array
    loss.backward()
    np.testing.assert_array_equal(w.grad, expected)


@pytest.mark.parametrize("make", [
    lambda: mg.tensor([1.0, 2.0], requires_grad=True), lambda: mg.zeros(2, requires_grad=True),
    lambda: mg.randn(2, rng=0, requires_grad=True), lambda: nn.Parameter(np.ones(2)),
    lambda: nn.Linear(2, 2, rng=0).weight], ids=["tensor", "zeros", "randn", "Parameter", "Linear"])
def test_writing_into_a_tensors_array_raises_rather_than_change_a_gradient(make):
    w = make()
    loss = (w * w).sum()
    with pytest.raises(ValueError, match="assignment destination is read-only"):
        w.data[...] = 5.0
    loss.backward()                                   # with the values the forward used
    np.testing.assert_array_equal(w.grad, 2 * w.data)


# Each case: (the op, as y = op(h) on a recorded h, then a loss that a backward can only get
# right with y's values as the forward made them). Families: an op that keeps its output for
# its backward (tanh, sigmoid, exp, softmax), a later op that keeps its input (mul, log,
# matmul), several outputs (chunk), a view (reshape, indexing), a reduction, the layers.
def _lstm_out(h):
    layer = nn.LSTM(2, 2, dtype="float64", rng=0)
    return layer(h.reshape(1, 1, 2))[0]


OUTPUTS = {
    "tanh keeps its output": (lambda h: h.tanh(), lambda y: y.sum()),
    "sigmoid keeps its output": (lambda h: h.sigmoid(), lambda y: y.sum()),
    "exp keeps its output": (lambda h: h.exp(), lambda y: y.sum()),
    "softmax keeps its output": (lambda h: F.softmax(h, dim=0), lambda y: (y * y).sum()),
    "mul keeps its input": (lambda h: h * 3.0, lambda y: (y * y).sum()),
    "log keeps its input": (lambda h: h.exp(), lambda y: y.log().sum()),
    "matmul keeps its input": (lambda h: h.reshape(1, 2) * 1.0,
                               lambda y: (y @ y.reshape(2, 1)).sum()),
    "chunk's outputs": (lambda h: mg.chunk(h * 1.0, 2)[0], lambda y: (y * y).sum()),
    "a view: reshape": (lambda h: (h * 1.0).reshape(2, 1), lambda y: (y * y).sum()),
    "a view: indexing": (lambda h: (h * 1.0)[::-1], lambda y: (y * y).sum()),
    "a reduction": (lambda h: (h * 1.0).sum(), lambda y: y * y),
    "an LSTM layer's output": (_lstm_out, lambda y: (y * y).sum()),
}


@pytest.mark.parametrize("name", OUTPUTS)
def test_writing_into_an_op_output_that_a_backward_reads_raises(name):
    op, loss_of = OUTPUTS[name]
    w = leaf([0.5, 2.0])
    loss_of(op(w * 1.0)).backward()                   # the reference: nothing written
    expected = w.grad.copy()
    w.grad = None
    y = op(w * 1.0)
    loss = loss_of(y)
    with pytest.raises(ValueError, match="assignment destination is read-only"):
        y.data[...] = 0.0
    loss.backward()
    np.testing.assert_array_equal(w.grad, expected)


def test_an_op_output_under_no_grad_is_a_plain_writable_array():
    # nothing is recorded, so nothing can read it later: NumPy's usual arrays
    with mg.no_grad():
        y = leaf([1.0, 2.0]) * 2.0
    y.data[0] = 5.0
    assert y.data[0] == 5.0
    z = mg.tensor([1.0, 2.0]) * 2.0                   # no input requires grad: not recorded
    z.data[0] = 5.0
    assert z.data[0] == 5.0


def test_replacing_an_array_is_the_way_and_records_keep_the_old_one():
    w = leaf([1.0, 2.0])
    loss = (w * w).sum()
    w.data = np.array([10.0, 20.0])                   # replaced, as optimizers do
    loss.backward()
    np.testing.assert_array_equal(w.grad, [2.0, 4.0])  # d(w^2) at the old values


def test_arrays_after_an_optimizer_step_and_a_load_are_read_only_too():
    layer = nn.Linear(2, 1, dtype="float64", rng=0)
    opt = optim.SGD(layer.parameters(), lr=0.1)
    (layer(mg.tensor(np.ones((1, 2)))) ** 2).sum().backward()
    opt.step()
    layer.load_state_dict({"weight": np.ones((1, 2)), "bias": np.zeros(1)}, strict=False)
    for p in layer.parameters():
        assert not p.data.flags.writeable
    opt.zero_grad()
    (layer(mg.tensor(np.ones((1, 2)))) ** 2).sum().backward()
    opt.step()
    assert not layer.bias.data.flags.writeable


def test_from_numpy_shares_memory_as_torch_from_numpy():
    a = np.array([1.0, 2.0])
    t = mg.from_numpy(a)
    assert not t.requires_grad and t.dtype == np.float64 and a.flags.writeable
    a[0] = 7.0
    assert t.data[0] == 7.0 and np.shares_memory(t.data, a)
    with pytest.raises(TypeError, match="from_numpy: expected a numpy.ndarray, got list"):
        mg.from_numpy([1.0])
    with pytest.raises(TypeError, match="from_numpy: dtype float16 is not supported"):
        mg.from_numpy(np.zeros(2, np.float16))
