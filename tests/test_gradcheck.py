"""gradcheck: it accepts right gradients, rejects wrong ones, and leaves the inputs as they were."""
import warnings

import numpy as np
import pytest

import minigrad as mg
from minigrad.ops import record


def f64(values, requires_grad=True):
    return mg.tensor(np.asarray(values, dtype=np.float64), requires_grad=requires_grad)


def square_with_gradient(factor):
    """x^2 with a backward that says factor * x (right when factor is 2)."""
    def op(t):
        x = t.data

        def backward(g):
            return (g * factor * x,)
        return record("square", x * x, (t,), backward)
    return op


def test_a_right_gradient_passes():
    assert mg.gradcheck(square_with_gradient(2.0), [f64([0.5, -1.5, 2.0])]) is True


def test_a_wrong_gradient_fails_naming_the_worst_entry():
    with pytest.raises(mg.GradcheckError) as info:
        mg.gradcheck(square_with_gradient(2.1), [f64([0.5, -1.5, 3.0])])
    message = str(info.value)
    # the worst entry is the largest |x|: d out[2] / d in[2], analytic 6.3 vs numerical 6
    assert "d output[2] / d input 0[2]" in message
    assert "analytic 6.3" in message and "numerical 6" in message


def test_full_jacobian_of_a_non_scalar_output_with_several_inputs():
    a, b = f64([[1.0, 2.0], [3.0, 4.0]]), f64([0.5, -0.25])
    c = f64([2.0, 3.0], requires_grad=False)    # not checked, still used
    assert mg.gradcheck(lambda a, b, c: (a * b + c).tanh() @ b, [a, b, c])


def test_a_single_tensor_is_accepted_and_grads_are_restored():
    x = f64([1.0, 2.0])
    x.grad = np.array([7.0, 7.0])
    assert mg.gradcheck(lambda x: (x * x).sum(), x)
    np.testing.assert_array_equal(x.grad, [7.0, 7.0])
    np.testing.assert_array_equal(x.data, [1.0, 2.0])


def test_an_output_that_does_not_depend_on_the_input():
    x = f64([1.0, 2.0])
    assert mg.gradcheck(lambda x: mg.tensor([3.0], dtype="float64"), [x])


def test_bad_arguments():
    with pytest.raises(TypeError, match="gradcheck: input 0 is float32"):
        mg.gradcheck(lambda x: x * 2, [mg.tensor([1.0], requires_grad=True)])
    with pytest.raises(ValueError, match="no input requires grad"):
        mg.gradcheck(lambda x: x * 2, [f64([1.0], requires_grad=False)])
    with pytest.raises(TypeError, match="fn must return a Tensor"):
        mg.gradcheck(lambda x: 3.0, [f64([1.0])])


def test_a_nan_analytic_gradient_fails_naming_the_entry():
    def op(t):
        x = t.data

        def backward(g):  # NaN where x is 2, right elsewhere
            return (g * np.where(x == 2.0, np.nan, 2 * x),)
        return record("square", x * x, (t,), backward)
    with pytest.raises(mg.GradcheckError) as info:
        mg.gradcheck(op, [f64([0.5, 2.0])])
    message = str(info.value)
    assert "analytic" in message and "nan" in message
    # the first NaN: the backward of output 0 multiplies its seed's 0 by NaN at input 1
    assert "d output[0] / d input 0[1]" in message


def test_an_infinite_forward_fails_naming_the_numerical_jacobian():
    def op(t):  # x^2, but +inf where x > 1: the differences there are inf - inf = NaN or inf
        x = t.data

        def backward(g):
            return (g * 2 * x,)
        return record("square", np.where(x > 1.0, np.inf, x * x), (t,), backward)
    with pytest.raises(mg.GradcheckError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf
        mg.gradcheck(op, [f64([0.5, 2.0])])
    message = str(info.value)
    assert "numerical" in message and "not finite" in message
    # the first NaN: output 1 stays inf as input 0 moves, and inf - inf is NaN
    assert "d output[1] / d input 0[0]" in message
