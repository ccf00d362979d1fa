"""Bad inputs: each raises a clear exception whose message names the op and what came."""
import re

import numpy as np
import pytest

import minigrad as mg
from minigrad import ops
from minigrad.nn import functional as F


def says(*parts):
    """A pattern for pytest.raises(match=...): these literal parts, in this order."""
    return ".*".join(re.escape(p) for p in parts)


def leaf(*shape, dtype=np.float32):
    """A leaf that requires grad, so that an op on it would be recorded."""
    return mg.tensor(np.arange(1, 1 + np.prod(shape, dtype=int)).reshape(shape),
                     dtype=dtype, requires_grad=True)


def on_cuda(t):
    """t, pretending to live on another device (this machine may have no GPU)."""
    t.device = "cuda:0"
    return t


MASK = np.array([True, False, True])


# -- every op that fails on bad input: (call, exception, message) --------------
# Inputs require grad, so a failed op that still recorded would show on the tape.

OP_ERRORS = [
    # matmul
    pytest.param(lambda: leaf(2, 3) @ leaf(4, 5), ValueError,
                 "^" + re.escape("matmul: (2, 3) @ (4, 5): inner dimensions 3 and 4 differ") + "$",
                 id="matmul-inner"),
    pytest.param(lambda: leaf(3) @ leaf(4), ValueError,
                 says("matmul: (3,) @ (4,): inner dimensions 3 and 4 differ"), id="matmul-inner-1d"),
    pytest.param(lambda: leaf(2, 3, 4) @ leaf(5, 4, 6), ValueError,
                 says("matmul: (2, 3, 4) @ (5, 4, 6): batch dimensions (2,) and (5,) do not broadcast"),
                 id="matmul-batch"),
    pytest.param(lambda: leaf() @ leaf(3), ValueError, says("matmul: () @ (3,)", "0-d"),
                 id="matmul-0d-left"),
    pytest.param(lambda: leaf(3) @ 2.0, ValueError, says("matmul: (3,) @ ()", "0-d"),
                 id="matmul-0d-scalar"),
    # elementwise shapes
    *[pytest.param(fn, ValueError, says(f"{name}: shapes (2, 3) and (4,) do not broadcast"),
                   id=f"{name}-shapes")
      for name, fn in [("add", lambda: leaf(2, 3) + leaf(4)), ("sub", lambda: leaf(2, 3) - leaf(4)),
                       ("mul", lambda: leaf(2, 3) * leaf(4)), ("div", lambda: leaf(2, 3) / leaf(4))]],
    pytest.param(lambda: mg.where(np.ones(2, bool), leaf(3), leaf(4)), ValueError,
                 says("where: shapes (2,), (3,) and (4,) do not broadcast"), id="where-shapes"),
    # float64 NumPy arrays beside float32 tensors
    pytest.param(lambda: leaf(3) + np.ones(3), TypeError,
                 says("add: dtypes float32 and float64 differ"), id="array-right"),
    pytest.param(lambda: np.ones(3) * leaf(3), TypeError,
                 says("mul: dtypes float64 and float32 differ"), id="array-left"),
    pytest.param(lambda: leaf(2, 3) @ np.ones((3, 2)), TypeError,
                 says("matmul: dtypes float32 and float64 differ"), id="array-matmul"),
    # nn.functional
    pytest.param(lambda: F.linear(leaf(2, 3), leaf(4, 5)), ValueError,
                 says("linear: input (2, 3) and weight (4, 5): in_features 3 and 5 differ"),
                 id="linear-in-features"),
    pytest.param(lambda: F.linear(leaf(2, 3), leaf(4, 3), leaf(3)), ValueError,
                 says("linear: bias of shape (3,) for weight (4, 3); expected (4,)"), id="linear-bias"),
    pytest.param(lambda: F.linear(leaf(2, 3), leaf(3)), ValueError,
                 says("linear: weight must be (out, in), got shape (3,)"), id="linear-weight-1d"),
    pytest.param(lambda: F.mse_loss(leaf(3), leaf(3, 1)), ValueError,
                 says("mse_loss: input (3,) and target (3, 1) differ in shape"), id="mse-shapes"),
    pytest.param(lambda: F.cross_entropy(leaf(4, 3), np.array([0, 1, 3, 2])), ValueError,
                 says("cross_entropy: target 3 is out of range for 3 classes"), id="ce-target-high"),
    pytest.param(lambda: F.cross_entropy(leaf(2, 3), np.array([-1, 0])), ValueError,
                 says("cross_entropy: target -1 is out of range for 3 classes"), id="ce-target-low"),
    pytest.param(lambda: F.cross_entropy(leaf(2, 3), np.array([0.0, 1.0])), TypeError,
                 says("cross_entropy: targets must be integer class indices, got dtype float64"),
                 id="ce-float-targets"),
    pytest.param(lambda: F.cross_entropy(leaf(2, 3), mg.tensor([0, 1])), TypeError,
                 says("cross_entropy:", "float32"), id="ce-float-tensor-targets"),
    pytest.param(lambda: F.cross_entropy(leaf(4, 3), np.zeros((4, 1), int)), ValueError,
                 says("cross_entropy: logits (4, 3) need targets of shape (4,), got (4, 1)"),
                 id="ce-target-shape"),
    # shapes
    pytest.param(lambda: leaf(2, 3).reshape(4), ValueError,
                 says("reshape: cannot reshape (2, 3) (6 entries) into (4,)"), id="reshape"),
    pytest.param(lambda: leaf(2, 3).reshape(-1, -1), ValueError,
                 says("reshape: cannot reshape (2, 3)", "(-1, -1)"), id="reshape-two-unknowns"),
    pytest.param(lambda: leaf(2, 3).transpose(0, 0), ValueError,
                 says("transpose: axes (0, 0) are not a permutation", "(2, 3)"), id="transpose-repeat"),
    pytest.param(lambda: leaf(2, 3).transpose(0, 1, 2), ValueError,
                 says("transpose: axes (0, 1, 2) are not a permutation", "(2, 3)"),
                 id="transpose-too-many"),
    pytest.param(lambda: leaf(2, 3).transpose(1, 2), ValueError,
                 says("transpose: axes (1, 2)", "(2, 3)"), id="transpose-out-of-range"),
    pytest.param(lambda: leaf(2, 3).transpose(0, -3), ValueError,
                 says("transpose: axes (0, -3)", "(2, 3)"), id="transpose-negative-out-of-range"),
    # reductions
    *[pytest.param(lambda op=op, axis=axis: getattr(leaf(2, 3), op)(axis=axis), ValueError,
                   says(f"{op}: axis {bad} is out of range for 2 dimensions"), id=f"{op}-axis{axis}")
      for op in ("sum", "mean", "max") for axis, bad in [(2, 2), (-3, -3), ((0, 5), 5)]],
    *[pytest.param(lambda op=op, axis=axis: getattr(leaf(2, 3), op)(axis=axis), ValueError,
                   says(f"{op}: repeated axis in {axis!r}"), id=f"{op}-repeated{axis}")
      for op in ("sum", "mean", "max") for axis in [(0, 0), (1, -1)]],
    # indexing
    pytest.param(lambda: leaf(2, 3)[5], IndexError,
                 says("getitem: index 5 is out of bounds", "(tensor of shape (2, 3))"), id="getitem-int"),
    pytest.param(lambda: leaf(2, 3)[0, 7], IndexError,
                 says("getitem: index 7 is out of bounds", "(tensor of shape (2, 3))"), id="getitem-axis1"),
    pytest.param(lambda: leaf(2, 3)[[0, 9]], IndexError,
                 says("getitem: index 9 is out of bounds", "(tensor of shape (2, 3))"), id="getitem-list"),
    pytest.param(lambda: leaf(2, 3)[0, 0, 0], IndexError,
                 says("getitem:", "(tensor of shape (2, 3))"), id="getitem-too-many"),
    pytest.param(lambda: leaf(2, 3)[MASK], IndexError,
                 says("getitem:", "(tensor of shape (2, 3))"), id="getitem-mask-shape"),
    # elementwise functions
    pytest.param(lambda: leaf(3) ** leaf(3), TypeError, says("pow: the exponent must be a Python number"),
                 id="pow-tensor"),
    pytest.param(lambda: leaf(3) ** np.ones(3), TypeError, says("pow: the exponent"), id="pow-array"),
    pytest.param(lambda: leaf(3).clip(), ValueError, says("clip: give min, max or both"), id="clip"),
    # joining
    pytest.param(lambda: mg.stack([leaf(2), leaf(3)]), ValueError,
                 r"^stack: all shapes must be equal, got (?=.*\(2,\))(?=.*\(3,\))", id="stack-shapes"),
    pytest.param(lambda: mg.stack([leaf(2), leaf(2)], axis=3), ValueError,
                 says("stack: axis 3 is out of range for 2 dimensions"), id="stack-axis"),
    pytest.param(lambda: mg.stack([]), ValueError, says("stack: needs at least one tensor"),
                 id="stack-empty"),
    pytest.param(lambda: mg.concat([leaf(2, 3), leaf(2, 4)]), ValueError,
                 says("concat: shapes (2, 3), (2, 4) do not join along axis 0"), id="concat-shapes"),
    pytest.param(lambda: mg.concat([leaf(2, 3), leaf(2, 3)], axis=2), ValueError,
                 says("concat: shapes (2, 3), (2, 3) do not join along axis 2"), id="concat-axis"),
    pytest.param(lambda: mg.concat([]), ValueError, says("concat: needs at least one tensor"),
                 id="concat-empty"),
    # where's mask
    pytest.param(lambda: mg.where(np.array([1.0, 0.0, 1.0]), leaf(3), leaf(3)), TypeError,
                 says("where: the mask must be boolean, got float64"), id="where-float-mask"),
    pytest.param(lambda: mg.where(np.array([1, 0, 1]), leaf(3), leaf(3)), TypeError,
                 says("where: the mask must be boolean, got int64"), id="where-int-mask"),
    pytest.param(lambda: mg.where(mg.tensor([1.0, 0.0, 1.0]), leaf(3), leaf(3)), TypeError,
                 says("where: the mask must be boolean, got float32"), id="where-tensor-mask"),
]


@pytest.mark.parametrize("call, error, message", OP_ERRORS)
def test_bad_op_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("call, error, message", OP_ERRORS)
def test_a_failed_op_leaves_no_record(call, error, message):
    first = leaf(3) * 2   # a live record, so the tape is not empty to begin with
    before = len(mg.get_tape())
    with pytest.raises((ValueError, TypeError, RuntimeError, IndexError)):
        call()
    assert len(mg.get_tape()) == before
    # A record made and then dropped would not stay on the tape, but would use up an index.
    assert (leaf(3) * 2)._record.index == first._record.index + 1


# -- dtypes --------------------------------------------------------------------

# (Comparisons are not here: they carry no gradient, so their dtypes may differ, as in
# PyTorch; tests/test_tensor_methods.py checks that.)
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "where": lambda a, b: mg.where(np.array([True, False]), a, b),
    "matmul": lambda a, b: a.reshape(1, 2) @ b.reshape(2, 1),
    "concat": lambda a, b: mg.concat([a, b]),
    "stack": lambda a, b: mg.stack([a, b]),
    "linear": lambda a, b: F.linear(a.reshape(1, 2), b.reshape(1, 2)),
    "mse_loss": lambda a, b: F.mse_loss(a, b),
}


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("first, second", [("float32", "float64"), ("float64", "float32")])
def test_mixing_float_dtypes_raises(name, first, second):
    a, b = leaf(2, dtype=first), leaf(2, dtype=second)
    with pytest.raises(TypeError, match=says(f"{name}: dtypes {first} and {second} differ")):
        BINARY[name](a, b)


@pytest.mark.parametrize("x, w, b", [("float32", "float32", "float64"), ("float32", "float64", "float64")])
def test_linear_with_a_float64_bias_or_weight_raises(x, w, b):
    with pytest.raises(TypeError, match=says("linear: dtypes", "float32", "float64")):
        F.linear(leaf(2, 3, dtype=x), leaf(4, 3, dtype=w), leaf(4, dtype=b))


@pytest.mark.parametrize("expr", [
    lambda t: t + 2.5, lambda t: 2.5 - t, lambda t: t * 3, lambda t: 1 / t,
    lambda t: t / np.float64(2.0), lambda t: np.float64(2.0) * t, lambda t: t ** 2.0,
    lambda t: mg.where(MASK, t, 0.0), lambda t: mg.where(MASK, 1, t),
])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_scalar_operand_takes_the_tensors_dtype(expr, dtype):
    t = leaf(3, dtype=dtype)
    out = expr(t)
    assert out.dtype == dtype
    out.sum().backward()
    assert t.grad.dtype == dtype


@pytest.mark.parametrize("data", [np.arange(3), np.array([True, False]), np.arange(3, dtype=np.uint8)])
def test_requires_grad_on_integer_or_boolean_data_raises(data):
    with pytest.raises(TypeError, match=says("tensor: only float32 and float64", f"got {data.dtype}")):
        mg.tensor(data, requires_grad=True)


@pytest.mark.parametrize("make, dtype", [
    (lambda: mg.zeros(3, dtype="int32", requires_grad=True), "int32"),
    (lambda: mg.arange(3, requires_grad=True), "int64"),
    (lambda: mg.tensor([1, 2], dtype=bool, requires_grad=True), "bool"),
])
def test_creation_helpers_refuse_grad_on_integers(make, dtype):
    with pytest.raises(TypeError, match=says("only float32 and float64", dtype)):
        make()


@pytest.mark.parametrize("make, dtype", [
    (lambda: mg.tensor(np.zeros(2, np.float16)), "float16"),
    (lambda: mg.tensor([1.0, 2.0], dtype="float16"), "float16"),
    (lambda: mg.tensor(np.zeros(2, np.complex64)), "complex64"),
    (lambda: mg.tensor(1 + 2j), "complex128"),
    (lambda: mg.tensor([1.0], dtype=complex), "complex128"),
])
def test_unsupported_dtypes_raise(make, dtype):
    with pytest.raises(TypeError, match=says(f"tensor: dtype {dtype} is not supported")):
        make()


@pytest.mark.parametrize("dtype", ["float16", "complex64"])
def test_astype_to_an_unsupported_dtype_raises(dtype):
    with pytest.raises(TypeError, match=says("astype", dtype)):
        leaf(3).astype(dtype)


# -- devices -------------------------------------------------------------------

@pytest.mark.parametrize("name", BINARY)
def test_mixing_devices_raises(name):
    a, b = leaf(2), on_cuda(leaf(2))
    with pytest.raises(RuntimeError, match=says(f"{name}: inputs on different devices (cpu, cuda:0)")):
        BINARY[name](a, b)
    with pytest.raises(RuntimeError, match=says(f"{name}: inputs on different devices (cuda:0, cpu)")):
        BINARY[name](b, a)


def test_a_numpy_array_beside_a_tensor_on_another_device_raises():
    with pytest.raises(RuntimeError, match=says("add: inputs on different devices (cuda:0, cpu)")):
        on_cuda(leaf(3)) + np.ones(3, np.float32)


@pytest.mark.parametrize("make", [
    lambda: mg.tensor([1.0], device="cuda"),
    lambda: mg.tensor([1.0], device="cuda:0"),
    lambda: mg.zeros(2, device="cuda:1"),
    lambda: mg.randn(2, device="cuda"),
])
def test_asking_for_cuda_without_cupy_says_how_to_install_it(make, no_cupy):
    with pytest.raises(RuntimeError, match=r"device 'cuda': CuPy is not installed .*"
                                           r"pip install \"minigrad\[gpu\]\""):
        make()


@pytest.mark.parametrize("make", [
    lambda: mg.tensor([1.0], device="cuda"),
    lambda: mg.zeros(2, device="cuda:1"),
    lambda: mg.tensor([1.0]).to("cuda"),
])
def test_asking_for_cuda_without_a_gpu_says_so(make, no_gpu):
    with pytest.raises(RuntimeError, match="device 'cuda': CuPy is installed but no GPU is usable: "
                                           "cudaErrorNoDevice"):
        make()


@pytest.mark.parametrize("device", ["cuda:x", "cuda:-1", "cuda:"])
def test_a_malformed_cuda_device_raises(device):
    with pytest.raises(ValueError, match="device: expected 'cuda' or 'cuda:N'"):
        mg.tensor([1.0], device=device)


@pytest.mark.parametrize("device, error", [("tpu", ValueError), (0, TypeError), ("gpu", ValueError)])
def test_an_unknown_device_raises(device, error):
    with pytest.raises(error, match="device: expected"):
        mg.tensor([1.0], device=device)


# -- backward ------------------------------------------------------------------

def with_grad(t, value):
    """t with .grad already holding `value` (as after an earlier backward)."""
    t.grad = np.full(t.shape, value, t.dtype)
    return t


BACKWARD_ERRORS = [
    pytest.param(lambda y: y.backward(), RuntimeError,
                 says("backward: a gradient can be implied only for a one-entry output, got shape (2, 3)"),
                 id="non-scalar"),
    pytest.param(lambda y: y.backward(np.ones(3, np.float32)), ValueError,
                 says("backward: grad of shape (3,) for a tensor of shape (2, 3)"), id="grad-shape"),
    pytest.param(lambda y: y.backward(np.ones((3, 2), np.float32)), ValueError,
                 says("backward: grad of shape (3, 2) for a tensor of shape (2, 3)"), id="grad-transposed"),
    pytest.param(lambda y: y.backward(np.ones((2, 3))), TypeError,
                 says("backward: grad has dtype float64, the tensor float32"), id="grad-dtype"),
    pytest.param(lambda y: y.backward(mg.ones(2, 3, dtype="float64")), TypeError,
                 says("backward: grad has dtype float64, the tensor float32"), id="grad-tensor-dtype"),
]


@pytest.mark.parametrize("call, error, message", BACKWARD_ERRORS)
def test_bad_backward_raises_and_leaves_grads_alone(call, error, message):
    x = with_grad(leaf(2, 3), 7.0)
    y = x * 2
    with pytest.raises(error, match=message):
        call(y)
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 7.0))
    y.backward(np.ones((2, 3), np.float32))   # the graph is still usable
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 9.0))


@pytest.mark.parametrize("make", [
    lambda: mg.tensor([1.0, 2.0]).sum(),
    lambda: mg.tensor(3.0),
    lambda: (leaf(2) * 2).detach().sum(),
])
def test_backward_on_a_tensor_that_does_not_require_grad_raises(make):
    with pytest.raises(RuntimeError, match=says("backward: this tensor does not require grad")):
        make().backward()


def test_backward_under_no_grad_result_raises():
    x = leaf(2)
    with mg.no_grad():
        y = (x * 2).sum()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()
    assert x.grad is None


def test_a_second_backward_through_freed_records_raises():
    x = leaf(3)
    y = (x * x).sum()
    y.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0, 6.0])
    with pytest.raises(RuntimeError, match=says("backward:", "already freed", "retain_graph=True")):
        y.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0, 6.0])


def test_retain_graph_allows_a_second_backward():
    x = leaf(3)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad, [4.0, 8.0, 12.0])   # gradients accumulate


def test_reusing_a_freed_intermediate_raises_and_leaves_grads_alone():
    x = leaf(3)
    h = x * 2
    h.sum().backward()                # frees h's record
    before = x.grad.copy()
    loss = (h * 3 + x).sum()          # x gets its gradient before the walk reaches h
    with pytest.raises(RuntimeError, match="retain_graph"):
        loss.backward()
    np.testing.assert_array_equal(x.grad, before)


def exploding(t):
    """An op whose backward fails (a bug in a hand-written gradient)."""
    def backward(g):
        raise FloatingPointError("exploding: backward failed")
    return ops.record("exploding", t.data * 1, (t,), backward)


def test_a_backward_that_raises_leaves_grads_alone():
    a, b = with_grad(leaf(3), 1.0), with_grad(leaf(3), 1.0)
    loss = exploding(b).sum() + (a * 2).sum()   # the walk reaches a's gradient first
    with pytest.raises(FloatingPointError):
        loss.backward()
    np.testing.assert_array_equal(a.grad, np.ones(3))
    np.testing.assert_array_equal(b.grad, np.ones(3))


def badly_shaped_gradient(a, b):
    """An op whose backward gives b a gradient of the wrong shape."""
    return ops.record("badly_shaped", a.data + b.data, (a, b), lambda g: (g, g[:1]))


def test_a_wrongly_shaped_op_gradient_raises_and_leaves_every_grad_alone():
    a, b = with_grad(leaf(2), 10.0), with_grad(leaf(2), 10.0)
    with pytest.raises(RuntimeError, match=says("backward:", "shape (1,)", "shape (2,)")):
        badly_shaped_gradient(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [10.0, 10.0])
    np.testing.assert_array_equal(b.grad, [10.0, 10.0])


# -- gradcheck -----------------------------------------------------------------

def wrong_square(a):
    """x * x with the derivative 3x instead of 2x."""
    x = a.data
    return ops.record("wrong_square", x * x, (a,), lambda g: (g * 3 * x,))


def wrong_mul(a, b):
    """a * b whose gradient for b is twice too large."""
    x, y = a.data, b.data
    return ops.record("wrong_mul", x * y, (a, b), lambda g: (g * y, 2 * g * x))


def test_gradcheck_refuses_float32():
    with pytest.raises(TypeError, match=says("gradcheck: input 0 is float32", "float64")):
        mg.gradcheck(lambda t: t * 2, [leaf(3)])


def test_gradcheck_refuses_float32_among_float64():
    inputs = [leaf(3, dtype="float64"), leaf(3)]
    with pytest.raises(TypeError, match=says("gradcheck: input 1 is float32")):
        mg.gradcheck(lambda a, b: a * b.astype("float64"), inputs)


def test_gradcheck_needs_an_input_that_requires_grad():
    x = mg.tensor([1.0, 2.0], dtype="float64")
    with pytest.raises(ValueError, match=says("gradcheck: no input requires grad")):
        mg.gradcheck(lambda t: t * 2, [x])


def test_gradcheck_names_the_worst_entry():
    x = mg.tensor([1.0, 2.0, 3.0], dtype="float64", requires_grad=True)
    with pytest.raises(mg.GradcheckError,
                       match=says("gradcheck: d output[2] / d input 0[2]: analytic 9 vs numerical 6")):
        mg.gradcheck(wrong_square, [x])
    assert x.grad is None


def test_gradcheck_names_the_wrong_input():
    a = with_grad(mg.tensor([1.0, 2.0], dtype="float64", requires_grad=True), 5.0)
    b = mg.tensor([3.0, 4.0], dtype="float64", requires_grad=True)
    with pytest.raises(mg.GradcheckError,
                       match=says("d output[1] / d input 1[1]: analytic 4 vs numerical 2")):
        mg.gradcheck(wrong_mul, [a, b])
    np.testing.assert_array_equal(a.grad, [5.0, 5.0])
    assert b.grad is None
