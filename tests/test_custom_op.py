"""minigrad.record: an op written by a user, as minigrad's own ops are written.

A user op is a forward in array maths and a backward (the local derivative); record() turns
its output into a Tensor and puts it on the tape. The tests: values and gradients against
hand-computed numbers, a float64 gradcheck, the record on the tape, several outputs, no
record under no_grad(), and the errors a wrong use gets.
"""
import re

import numpy as np
import pytest

import minigrad as mg


def softplus(a):
    """log(1 + exp(x)), written as a user would: forward, then its local derivative."""
    x = a.data
    y = np.logaddexp(0, x)

    def backward(g):  # d softplus(x) = sigmoid(x) dx
        return (g / (1 + np.exp(-x)),)
    return mg.record("softplus", y, (a,), backward)


def scaled_add(a, b, scale):
    """scale * a + b for two tensors of one shape: two inputs, one output."""
    def backward(g):
        return g * scale, g
    return mg.record("scaled_add", scale * a.data + b.data, (a, b), backward)


def split(a):
    """(first half, second half) of a 1-D tensor: one record, two outputs."""
    x = a.data
    n = len(x) // 2

    def backward(g):  # g: one gradient per output (zeros for an output nothing used)
        g_first, g_second = g
        return (np.concatenate([g_first, g_second]),)
    return mg.record("split", (x[:n].copy(), x[n:].copy()), (a,), backward)


def f64(values, requires_grad=True):
    return mg.tensor(np.asarray(values, dtype=np.float64), requires_grad=requires_grad)


def test_values_and_gradient_against_hand_computed_numbers():
    x = f64([0.0, 1.0, -2.0])
    y = softplus(x)
    # softplus(0) = log 2, softplus(1) = log(1 + e), softplus(-2) = log(1 + e^-2)
    np.testing.assert_allclose(y.data, [np.log(2), np.log(1 + np.e), np.log(1 + np.exp(-2))],
                               rtol=1e-15)
    y.sum().backward()
    # the derivative is the sigmoid: 1/2, e/(1+e), 1/(1+e^2)
    np.testing.assert_allclose(x.grad, [0.5, np.e / (1 + np.e), 1 / (1 + np.e ** 2)], rtol=1e-15)


def test_a_user_op_passes_gradcheck_inside_a_larger_graph():
    a, b = f64([[0.3, -1.2], [2.0, 0.1]]), f64([[1.0, -0.5], [0.25, 3.0]])
    assert mg.gradcheck(lambda a, b: (softplus(scaled_add(a, b, 1.5)) * a).sum(), [a, b])


def test_a_wrong_backward_fails_gradcheck():
    def wrong(a):
        return mg.record("wrong", a.data ** 3, (a,), lambda g: (g * 2 * a.data ** 2,))  # 3 x^2
    with pytest.raises(mg.GradcheckError):
        mg.gradcheck(wrong, [f64([0.5, -1.0])])


def test_the_op_is_one_record_on_the_tape_with_its_name_and_shapes():
    a = f64([1.0, 2.0, 3.0])
    before = len(mg.get_tape())
    y = softplus(a)
    assert y.op == "softplus" and y.requires_grad and not y.is_leaf
    assert len(mg.get_tape()) == before + 1
    assert y._record.inputs == (a,)
    listing = mg.tape.wengert_list([y._record])
    assert "v0 = softplus(x0)" in listing and "(3,) -> (3,)  float64" in listing
    y.sum().backward()


def test_several_outputs_one_record_and_zeros_for_an_unused_output():
    a = f64([1.0, 2.0, 3.0, 4.0])
    first, second = split(a)
    assert first._record is second._record and first.op == "split"
    np.testing.assert_array_equal(second.data, [3.0, 4.0])
    (first * 10).sum().backward()  # second is unused: its gradient is zeros
    np.testing.assert_array_equal(a.grad, [10.0, 10.0, 0.0, 0.0])


def test_nothing_is_recorded_under_no_grad_or_without_an_input_that_requires_grad():
    before = len(mg.get_tape())
    with mg.no_grad():
        y = softplus(f64([1.0]))
    z = softplus(f64([1.0], requires_grad=False))
    assert y.is_leaf and not y.requires_grad and z.is_leaf and not z.requires_grad
    assert len(mg.get_tape()) == before


def test_the_ops_of_minigrad_are_written_with_record():
    # The public entry point is the one the core uses: tanh's record is made by record().
    import inspect

    from minigrad import ops
    assert 'record("tanh"' in inspect.getsource(ops.tanh)
    assert mg.record is ops.record


@pytest.mark.parametrize("call, error, message", [
    (lambda a: mg.record("op1", a.data, [a], lambda g: (g,)), TypeError,
     "op1: record() takes the inputs as a tuple of Tensors, got list"),
    (lambda a: mg.record("op2", a.data, (), lambda g: ()), ValueError,
     "op2: record() needs at least one input Tensor"),
    (lambda a: mg.record("op3", a.data, (a, a.data), lambda g: (g, g)), TypeError,
     "op3: every input of record() must be a Tensor, got ndarray"),
    (lambda a: mg.record("op4", a.data, (a,), None), TypeError,
     "op4: record() needs a callable backward, got NoneType"),
])
def test_wrong_uses_raise_naming_the_op(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call(f64([1.0, 2.0]))


def test_a_gradient_of_the_wrong_shape_for_a_leaf_is_an_error_naming_the_op():
    a = f64([1.0, 2.0])
    y = mg.record("bad_shape", a.data * 2, (a,), lambda g: (g[:1],))
    with pytest.raises(RuntimeError, match=r"bad_shape returned a gradient of shape \(1,\) "
                                           r"for an input of shape \(2,\)"):
        y.sum().backward()


def test_the_readme_example_op_runs_and_its_gradient_is_right():
    from pathlib import Path
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = re.search(r"- Your own op.*?```python\n(.*?)```", text, re.S).group(1)
    namespace = {"mg": mg}
    exec(compile("\n".join(line[2:] for line in code.splitlines()), "README.md", "exec"), namespace)
    cube = namespace["cube"]
    x = f64([0.5, -2.0])
    np.testing.assert_array_equal(cube(x).data, [0.125, -8.0])
    assert mg.gradcheck(lambda x: cube(x).sum(), [x])


@pytest.mark.parametrize("returned, got", [
    (lambda g: (g,), "1 gradients"),          # one input forgotten: its gradient would be lost
    (lambda g: g, "a ndarray"),               # an array, not a tuple of them
])
def test_a_backward_that_does_not_return_one_gradient_per_input_is_an_error(returned, got):
    a, b = f64([1.0, 2.0]), f64([3.0, 4.0])
    y = mg.record("forgetful", a.data + b.data, (a, b), returned)
    with pytest.raises(RuntimeError, match=re.escape(
            f"backward: forgetful's backward returned {got} for 2 input(s); it must return a "
            "tuple with one gradient (or None) per input")):
        y.sum().backward()
    assert a.grad is None and b.grad is None


def test_several_outputs_need_a_callable_backward_too():
    with pytest.raises(TypeError, match=re.escape("pair: record() needs a callable backward")):
        mg.record("pair", (np.ones(2), np.ones(2)), (f64([1.0, 2.0]),), None)
