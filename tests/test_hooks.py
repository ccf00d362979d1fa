"""Tensor.register_hook and Tensor.retain_grad, against hand-derived gradients.

The numbers are PyTorch's behaviour worked out by hand (checked with PyTorch 2.13 when the
tests were written): a hook sees dL/dt once the gradient of t is complete, its return
replaces it downstream, a kept gradient (retain_grad) is the one after the hooks whatever
the order they were set in, and kept gradients add up over backwards as a leaf's do.
"""
import numpy as np
import pytest

import minigrad as mg


def leaf(values, dtype="float64"):
    return mg.tensor(np.array(values, dtype=dtype), requires_grad=True)


def test_a_hook_on_a_non_leaf_replaces_the_gradient_it_passes_on():
    x = leaf([1.0, 2.0])
    y = x * 3                                       # L = sum(y^2): dL/dy = 2y = [6, 12]
    seen = []
    y.register_hook(lambda g: seen.append(g.copy()))  # returns None: g goes on as it is
    y.register_hook(lambda g: g * 10)                 # then [60, 120]
    (y * y).sum().backward()
    np.testing.assert_array_equal(seen[0], [6.0, 12.0])
    np.testing.assert_array_equal(x.grad, [180.0, 360.0])  # dy/dx = 3
    assert y.grad is None                           # not kept without retain_grad


@pytest.mark.parametrize("retain_first", [True, False])
def test_retain_grad_keeps_the_gradient_after_the_hooks_whatever_the_order(retain_first):
    x = leaf([1.0, 2.0])
    y = x * 3
    if retain_first:
        y.retain_grad()
    y.register_hook(lambda g: g * 10)
    if not retain_first:
        y.retain_grad()
    assert y.retains_grad and not x.retains_grad
    loss = (y * y).sum()
    loss.backward(retain_graph=True)
    np.testing.assert_array_equal(y.grad, [60.0, 120.0])
    np.testing.assert_array_equal(x.grad, [180.0, 360.0])
    loss.backward()                                  # kept gradients add up, as leaves' do
    np.testing.assert_array_equal(y.grad, [120.0, 240.0])
    np.testing.assert_array_equal(x.grad, [360.0, 720.0])


def test_the_root_can_keep_its_gradient():
    x = leaf([1.0, 2.0])
    loss = (x * x).sum()
    loss.retain_grad()
    loss.backward()
    assert loss.grad == 1.0
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])


def test_a_leaf_hook_runs_once_on_the_sum_of_its_gradients():
    x = leaf([1.0, 2.0])
    seen = []

    def hook(g):
        seen.append(g.copy())
        return g + 1
    x.register_hook(hook)
    (x * 2 + x * 3).sum().backward()                 # 2 + 3 = 5 per entry, then + 1
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], [5.0, 5.0])
    np.testing.assert_array_equal(x.grad, [6.0, 6.0])
    (x * 2).sum().backward()                         # the hook sees this backward's 2, not .grad
    np.testing.assert_array_equal(seen[1], [2.0, 2.0])
    np.testing.assert_array_equal(x.grad, [9.0, 9.0])


def test_a_hook_on_a_leaf_root():
    x = leaf([1.0, 2.0])
    x.register_hook(lambda g: g * 2)
    x.backward(np.array([1.0, 3.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 6.0])


def test_hooks_chain_in_the_order_registered():
    x = leaf([1.0])
    x.register_hook(lambda g: g * 2)
    x.register_hook(lambda g: g + 1)
    (x * 4).sum().backward()
    np.testing.assert_array_equal(x.grad, [9.0])     # (4 * 2) + 1, not (4 + 1) * 2


def test_a_hook_may_return_a_tensor():
    x = leaf([1.0, 2.0])
    x.register_hook(lambda g: mg.tensor(g * 0.5, dtype="float64"))
    (x * 4).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_remove_takes_the_hook_off():
    x = leaf([1.0])
    calls = []
    handle = x.register_hook(lambda g: calls.append(1) or g * 100)
    handle.remove()
    handle.remove()                                  # a second remove does nothing
    (x * 4).sum().backward()
    assert calls == [] and x.grad[0] == 4.0


def test_a_hook_on_one_output_of_a_several_output_op():
    x = leaf([1.0, 2.0])

    def split(a):  # (x, x^2): two outputs of one record
        def backward(g):
            return (g[0] + 2 * a.data * g[1],)
        return mg.record("split", (a.data.copy(), a.data ** 2), (a,), backward)
    u, v = split(x)
    v.register_hook(lambda g: g * 10)
    v.retain_grad()
    (u + v).sum().backward()                         # dL/du = 1, dL/dv = 1 -> 10
    np.testing.assert_array_equal(v.grad, [10.0, 10.0])
    np.testing.assert_array_equal(x.grad, [1 + 20 * 1.0, 1 + 20 * 2.0])
    assert u.grad is None


def test_a_hook_that_raises_leaves_every_grad_as_it_was():
    a, b = leaf([1.0]), leaf([2.0])
    a.grad = np.array([7.0])

    def bad(g):
        raise KeyError("from the hook")
    b.register_hook(bad)
    with pytest.raises(KeyError, match="from the hook"):
        (a * b).sum().backward()
    np.testing.assert_array_equal(a.grad, [7.0])
    assert b.grad is None


def test_a_replacement_of_the_wrong_shape_or_dtype_is_an_error():
    x = leaf([1.0, 2.0])
    y = x * 2
    y.register_hook(lambda g: g[:1])
    with pytest.raises(RuntimeError, match=r"register_hook: a hook on a tensor of shape \(2,\).*"
                                           r"shape \(1,\)"):
        y.sum().backward()
    x = leaf([1.0, 2.0])
    x.register_hook(lambda g: g.astype(np.float32))
    with pytest.raises(RuntimeError, match="dtype float64 returned .* dtype float32"):
        (x * 2).sum().backward()


def test_errors_name_the_method():
    c = mg.tensor([1.0])
    with pytest.raises(RuntimeError, match="register_hook: .* does not require grad"):
        c.register_hook(lambda g: g)
    with pytest.raises(RuntimeError, match="retain_grad: .* does not require grad"):
        c.retain_grad()
    with pytest.raises(TypeError, match="register_hook: the hook must be callable, got int"):
        leaf([1.0]).register_hook(3)


def test_retain_grad_on_a_leaf_does_nothing():
    x = leaf([1.0])
    x.retain_grad()
    assert not x.retains_grad and x._hooks is None
    (x * 2).sum().backward()
    assert x.grad[0] == 2.0


def test_a_hook_registered_during_the_walk_on_a_leaf_that_already_has_a_gradient_runs():
    """A non-leaf's hook registers a hook on a leaf whose first gradient has already arrived
    (through w * 1, which comes later on the tape, so is walked first): it still runs, once."""
    w = leaf([0.5, 2.0])
    h = (w * 3.0).tanh()
    calls = []

    def on_h(g):
        w.register_hook(lambda g_w: calls.append(1) or g_w * 10)
        return None
    h.register_hook(on_h)
    ((h * 2).sum() + (w * 1).sum()).backward()
    assert calls == [1]
    np.testing.assert_allclose(w.grad, 10 * (6 * (1 - np.tanh(3 * w.data) ** 2) + 1), rtol=1e-14)
