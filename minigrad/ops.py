"""Every differentiable op: its forward, and right below it, its local derivative.

An op takes Tensors, computes its output array, and defines `backward(g)`: given
g = dL/d(output), it returns dL/d(input) for each input (the vector-Jacobian
product), in the inputs' order. The arrays backward needs are captured in its closure
when the forward runs, so later changes to a tensor's .data (an optimizer's update)
never reach them. `record` wraps the output as a Tensor and, when a gradient is
wanted, puts the op on the tape; it is public, so that you can write your own op the
same way (see its docstring). Gradients never mutate arrays in place: one array may be
the gradient of several tensors at once.

Names: `g` is the gradient arriving from the output, dL/d(out); `g_x` is the gradient
of the loss with respect to `x` (so `g_x = g * (1 - y * y)` for y = tanh(x)). The same
convention runs through nn/ and the optimizers.

Arrays are NumPy arrays on the CPU and GPU arrays on a GPU (see minigrad/backends); `xp`,
from `array_module`, is the NumPy-like module that owns them.
The few hot array primitives whose speed on a GPU comes from a fused kernel of ours (a
2-D matmul, a broadcasting binary op, a reduction) are called by what they compute,
`primitives.matmul(x, y)`; everything else is plain array maths.
"""
import math
import warnings
from typing import NamedTuple

import numpy as np

from . import anomaly
from .backends import primitives
from .backends.devices import CPU, array_module, own_copy, parse_device, read_only, to_device
from .tape import PER_THREAD
from .tensor import FLOAT_DTYPES, Tensor, _make


# -- plumbing shared by every op ----------------------------------------------

def record(op, out, inputs, backward):
    """The output of an op as Tensor(s), recorded on the tape when a gradient is wanted.

    This is how every op in minigrad ends, and how you write your own:

        def cube(a):                          # a: a Tensor
            x = a.data
            def backward(g):                  # g = dL/dy, of y's shape
                return (g * 3 * x * x,)       # one gradient per input: dL/dx
            return minigrad.record("cube", x ** 3, (a,), backward)

    op:       the op's name, shown on the tape and in errors
    out:      the forward's result, an array (a GPU array on a GPU), or a tuple of
              arrays for an op with several outputs (then a tuple of Tensors comes back)
    inputs:   a tuple of the input Tensors (constants included), in the order in which
              backward returns their gradients; outputs live on inputs[0]'s device
    backward: g -> a tuple with one gradient per input (an array of that input's shape,
              or None where there is none); for several outputs g is a tuple with one
              array per output (zeros for outputs nothing used). It must not modify g.

    The op is recorded only while recording is on (not under no_grad()) and when some
    input requires grad; otherwise the output is a plain constant.
    """
    if type(inputs) is not tuple:
        raise TypeError(f"{op}: record() takes the inputs as a tuple of Tensors, "
                        f"got {type(inputs).__name__}")
    if not inputs:
        raise ValueError(f"{op}: record() needs at least one input Tensor")
    if type(out) is tuple:
        return _record_several(op, out, inputs, backward)
    if isinstance(out, np.generic):  # NumPy's ufuncs turn 0-d arrays into scalars
        out = np.asarray(out)
    t = _make(out, inputs[0].device)
    tape = PER_THREAD.tape  # the calling thread's
    if tape.enabled and _to_record(op, inputs, backward):
        t._record = tape.record(op, inputs, backward, (out.shape,), (out.dtype,))
        t.requires_grad = True
        read_only(out)  # a later backward may read it: see devices.read_only
    if tape.anomaly:  # inside detect_anomaly(): a NaN or inf output raises here
        anomaly.check_output(op, (out,), inputs, t._record)
    return t


def _record_several(op, outs, inputs, backward):
    """record() for an op with several outputs: one record, one Tensor per output."""
    outs = tuple(np.asarray(o) if isinstance(o, np.generic) else o for o in outs)
    tensors = tuple(_make(o, inputs[0].device) for o in outs)
    tape = PER_THREAD.tape
    if tape.enabled and _to_record(op, inputs, backward):
        rec = tape.record(op, inputs, backward,
                          tuple(o.shape for o in outs), tuple(o.dtype for o in outs))
        for slot, t in enumerate(tensors):
            t._record, t._slot, t.requires_grad = rec, slot, True
            read_only(t.data)
    if tape.anomaly:
        anomaly.check_output(op, outs, inputs, tensors[0]._record)
    return tensors


def _to_record(op, inputs, backward):
    """Whether the op goes on the tape: some input requires grad (the tape is on). TypeError
    if an input is not a Tensor, or if it must be recorded and backward is not callable."""
    wanted = False
    for x in inputs:
        if not isinstance(x, Tensor):
            raise TypeError(f"{op}: every input of record() must be a Tensor, got "
                            f"{type(x).__name__}")
        wanted = wanted or x.requires_grad
    if wanted and not callable(backward):
        raise TypeError(f"{op}: record() needs a callable backward, got {type(backward).__name__}")
    return wanted


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`: the adjoint of NumPy broadcasting.

    Broadcasting an input of `shape` to the output's shape (a) adds leading axes
    and (b) stretches axes of length 1; each copy of an input entry sends its
    gradient back, so we sum over (a) the added leading axes, then (b) the
    stretched axes, keeping them. (5, 13, 24, 16) -> (5, 1, 24, 1): sum axes 1, 3.
    """
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    if lead:
        grad = primitives.sum_axes(grad, tuple(range(lead)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = primitives.sum_axes(grad, stretched, keepdims=True)
    return grad


# -- arithmetic ---------------------------------------------------------------

def add(a, b):
    a, b = _operands("add", a, b)
    x, y = a.data, b.data
    try:
        out = primitives.binary(x, y, "add")
    except ValueError:
        raise _broadcast_error("add", x, y) from None
    x_shape, y_shape = x.shape, y.shape  # all that backward needs

    def backward(g):  # d(x + y) = dx + dy
        return unbroadcast(g, x_shape), unbroadcast(g, y_shape)
    return record("add", out, (a, b), backward)


def sub(a, b):
    a, b = _operands("sub", a, b)
    x, y = a.data, b.data
    try:
        out = primitives.binary(x, y, "sub")
    except ValueError:
        raise _broadcast_error("sub", x, y) from None
    x_shape, y_shape = x.shape, y.shape

    def backward(g):  # d(x - y) = dx - dy
        return unbroadcast(g, x_shape), unbroadcast(-g, y_shape)
    return record("sub", out, (a, b), backward)


def mul(a, b):
    a, b = _operands("mul", a, b)
    x, y = a.data, b.data
    try:
        out = primitives.binary(x, y, "mul")
    except ValueError:
        raise _broadcast_error("mul", x, y) from None

    def backward(g):  # d(x y) = y dx + x dy
        return unbroadcast(g * y, x.shape), unbroadcast(g * x, y.shape)
    return record("mul", out, (a, b), backward)


def div(a, b):
    a, b = _operands("div", a, b)
    x, y = a.data, b.data
    try:
        out = primitives.binary(x, y, "div")
    except ValueError:
        raise _broadcast_error("div", x, y) from None
    x_shape = x.shape

    def backward(g):  # d(x / y) = dx / y - (x / y) dy / y
        g_x = g / y
        return unbroadcast(g_x, x_shape), unbroadcast(-g_x * out, y.shape)
    return record("div", out, (a, b), backward)


def neg(a):
    def backward(g):  # d(-x) = -dx
        return (-g,)
    return record("neg", -a.data, (a,), backward)


def pow(a, exponent):
    """x ** p for a Python (or NumPy) scalar exponent p."""
    if isinstance(exponent, Tensor) or np.ndim(exponent) != 0:
        raise TypeError("pow: the exponent must be a Python number; for a tensor "
                        "exponent write (y * x.log()).exp()")
    x = a.data
    p = _python_number(exponent)

    def backward(g):  # d(x^p) = p x^(p-1) dx
        # NOTE: for p = 0, x^0 = 1 is a constant and its derivative is 0 everywhere; the
        # formula would give 0 * 0^-1 = 0 * inf = NaN at x = 0, so that case is written
        # out (as PyTorch does). For p < 1 otherwise the derivative is infinite at x = 0,
        # and so is this; at a negative x it is real only for an integer p, as x^p is.
        if p == 0:
            return (array_module(g).zeros_like(g),)
        return (g * (p * x ** (p - 1)),)
    return record("pow", x ** p, (a,), backward)


def matmul(a, b):
    """Matrix product as numpy.matmul: 1-D, 2-D, and batched N-D with broadcast batch axes.

    (..., n, k) @ (..., k, m) -> (..., n, m); a 1-D left operand (k,) acts as (1, k)
    and a 1-D right operand (k,) as (k, 1), the added axis removed from the result.
    """
    a, b = _operands("matmul", a, b)
    x, y = a.data, b.data
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"matmul: {x.shape} @ {y.shape}: 0-d operands are not allowed; use *")
    kx, ky = x.shape[-1], (y.shape[0] if y.ndim == 1 else y.shape[-2])
    if kx != ky:
        raise ValueError(f"matmul: {x.shape} @ {y.shape}: inner dimensions {kx} and {ky} differ")
    plain = x.ndim == 2 and y.ndim == 2  # two matrices: through primitives.matmul (BLAS)
    try:
        out = primitives.matmul(x, y) if plain else x @ y
    except ValueError:
        raise ValueError(f"matmul: {x.shape} @ {y.shape}: batch dimensions {x.shape[:-2]} "
                         f"and {y.shape[:-2]} do not broadcast") from None
    # Skip the gradient matmul of an operand that needs none (x_t @ W: x_t is data).
    need_x, need_y = a.requires_grad, b.requires_grad

    def backward(g):  # d(X Y) = dX Y + X dY  ->  g_X = g Y^T, g_Y = X^T g
        if plain:
            return (primitives.matmul(g, y.T) if need_x else None), (primitives.matmul(x.T, g) if need_y else None)
        # Give 1-D operands their implied axis back, so one pair of formulas covers all cases.
        x2 = x[None, :] if x.ndim == 1 else x
        y2 = y[:, None] if y.ndim == 1 else y
        if y.ndim == 1:
            g = g[..., None]
        if x.ndim == 1:
            g = g[..., None, :]
        g_x = unbroadcast(g @ y2.swapaxes(-1, -2), x2.shape).reshape(x.shape) if need_x else None
        g_y = unbroadcast(x2.swapaxes(-1, -2) @ g, y2.shape).reshape(y.shape) if need_y else None
        return g_x, g_y
    return record("matmul", out, (a, b), backward)


def compare(op, a, b):
    """a < b, a == b and friends: a boolean tensor, outside the graph (no gradient).

    Two tensors must be on one device. A real number beside a float tensor (a Python or
    NumPy scalar, a 0-d array) takes the tensor's dtype, as in every op, so a float32
    x <= 0.1 compares with float32(0.1), as PyTorch's does (float64's 0.1 is larger).
    Otherwise values compare exactly, as NumPy's: two tensors of different dtypes (no gradient
    flows back, so nothing is promoted that one would see), an integer tensor and a float
    (PyTorch compares those in float32, where 16777217 == 16777216.0), arrays and lists.
    """
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.device != b.device:
        _check_same(op, (a, b))  # raises, naming both devices
    like = a if isinstance(a, Tensor) else b
    xp = array_module(like.data)

    def array(v):  # (not getattr(v, "data", v): an ndarray's .data is its raw buffer)
        if isinstance(v, Tensor):
            return v.data
        v = np.asarray(v)
        if v.ndim == 0 and v.dtype.kind in "biuf" and like.data.dtype.kind == "f":
            with np.errstate(over="ignore"):  # 1e300 as float32 is inf, and compares as inf
                v = v.astype(like.data.dtype)
        return to_device(v, like.device)
    x, y = array(a), array(b)
    fn = {"lt": xp.less, "le": xp.less_equal, "gt": xp.greater, "ge": xp.greater_equal,
          "eq": xp.equal, "ne": xp.not_equal}[op]
    try:
        out = fn(x, y)
    except ValueError:
        raise _broadcast_error(op, x, y) from None
    return _make(xp.asarray(out), like.device)


# -- elementwise functions ----------------------------------------------------

def exp(a):
    y = array_module(a.data).exp(a.data)

    def backward(g):  # d exp(x) = exp(x) dx, read off the output
        return (g * y,)
    return record("exp", y, (a,), backward)


def log(a):
    xp = array_module(a.data)
    x = a.data

    def backward(g):  # d log(x) = dx / x
        return (g / x,)
    return record("log", xp.log(x), (a,), backward)


def tanh(a):
    y = array_module(a.data).tanh(a.data)

    def backward(g):  # d tanh(x) = (1 - tanh(x)^2) dx, read off the output
        return (g * (1 - y * y),)
    return record("tanh", y, (a,), backward)


def sigmoid(a):
    """1 / (1 + exp(-x)), computed so that it never overflows: with e = exp(-|x|) <= 1,
    1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0 (full relative precision in the far
    left tail too: sigmoid(-40) = 4.2e-18, not 0)."""
    xp = array_module(a.data)
    x = a.data
    e = xp.exp(-xp.abs(x))
    y = xp.where(x >= 0, 1, e) / (1 + e)

    def backward(g):  # d sigmoid(x) = s (1 - s) dx, read off the output
        return (g * y * (1 - y),)
    return record("sigmoid", y, (a,), backward)


def relu(a):
    x = a.data

    def backward(g):  # d relu(x) = [x > 0] dx
        # NOTE: relu has no derivative at 0; we use 0 there, as PyTorch does.
        return (g * (x > 0),)
    return record("relu", array_module(x).maximum(x, 0), (a,), backward)


def sqrt(a):
    xp = array_module(a.data)
    y = xp.sqrt(a.data)

    def backward(g):  # d sqrt(x) = dx / (2 sqrt(x))
        # NOTE: infinite at x = 0, as the derivative is.
        return (g / (2 * y),)
    return record("sqrt", y, (a,), backward)


def abs(a):
    xp = array_module(a.data)
    x = a.data

    def backward(g):  # d|x| = sign(x) dx
        # NOTE: |x| has no derivative at 0; sign(0) = 0 gives it 0, as PyTorch does.
        return (g * xp.sign(x),)
    return record("abs", xp.abs(x), (a,), backward)


def clip(a, min=None, max=None):
    """Values limited to [min, max]; either bound may be None."""
    if min is None and max is None:
        raise ValueError("clip: give min, max or both")
    min, max = _python_number(min), _python_number(max)
    xp = array_module(a.data)
    x = a.data

    def backward(g):  # 1 inside the bounds, 0 outside
        # NOTE: at a bound itself the gradient passes (as PyTorch's clamp), so a value
        # sitting exactly on the bound can still move back inside.
        inside = xp.ones(x.shape, dtype=bool)
        if min is not None:
            inside &= x >= min
        if max is not None:
            inside &= x <= max
        return (g * inside,)
    return record("clip", xp.clip(x, min, max), (a,), backward)


def log1p(a):
    """log(1 + x), accurate where x is small (1 + x would round x away)."""
    x = a.data

    def backward(g):  # d log(1 + x) = dx / (1 + x)
        return (g / (1 + x),)
    return record("log1p", array_module(x).log1p(x), (a,), backward)


def expm1(a):
    """exp(x) - 1, accurate where x is small."""
    y = array_module(a.data).expm1(a.data)

    def backward(g):  # d(exp(x) - 1) = exp(x) dx = (y + 1) dx, read off the output
        return (g * (y + 1),)
    return record("expm1", y, (a,), backward)


def sin(a):
    xp = array_module(a.data)
    x = a.data

    def backward(g):  # d sin(x) = cos(x) dx
        return (g * xp.cos(x),)
    return record("sin", xp.sin(x), (a,), backward)


def cos(a):
    xp = array_module(a.data)
    x = a.data

    def backward(g):  # d cos(x) = -sin(x) dx
        return (g * -xp.sin(x),)
    return record("cos", xp.cos(x), (a,), backward)


def square(a):
    x = a.data

    def backward(g):  # d x^2 = 2 x dx
        return (g * 2 * x,)
    return record("square", x * x, (a,), backward)


def maximum(a, b):
    """The larger of a and b, entry by entry (a and b broadcast), as torch.maximum."""
    return _pick("maximum", a, b)


def minimum(a, b):
    """The smaller of a and b, entry by entry (a and b broadcast), as torch.minimum."""
    return _pick("minimum", a, b)


def _pick(op, a, b):
    """maximum or minimum (op): each output entry is a copy of x's or of y's, which gets its gradient."""
    a, b = _operands(op, a, b)
    x, y = a.data, b.data
    xp = array_module(x)
    try:
        out = (xp.maximum if op == "maximum" else xp.minimum)(x, y)
    except ValueError:
        raise _broadcast_error(op, x, y) from None

    def backward(g):  # d max(x, y) = dx where x is the larger, dy where y is (min: the smaller)
        # NOTE: at x == y there is no derivative; the gradient is split half and half there,
        # as PyTorch's (so that the two sides stay symmetric). Where a NaN takes part neither
        # side lost (every comparison is False), and both get the whole gradient, as in PyTorch.
        x_lost, y_lost = (x < y, x > y) if op == "maximum" else (x > y, x < y)
        tie = 0.5 * (x == y)
        x_part = (1 - x_lost - tie).astype(g.dtype)  # 1 won (or NaN), 1/2 tied, 0 lost
        y_part = (1 - y_lost - tie).astype(g.dtype)
        return unbroadcast(g * x_part, x.shape), unbroadcast(g * y_part, y.shape)
    return record(op, out, (a, b), backward)


def astype(a, dtype):
    """Cast to another dtype; differentiable between float dtypes.

    A cast to the tensor's own dtype returns the tensor itself. A cast to an
    integer or boolean dtype leaves the graph (no gradient flows through it).
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "fiub" or (dtype.kind == "f" and dtype not in FLOAT_DTYPES):
        raise TypeError(f"astype: dtype {dtype} is not supported; use float32, float64, "
                        "an integer or a boolean dtype")
    if a.data.dtype == dtype:
        return a
    out = a.data.astype(dtype)
    if dtype not in FLOAT_DTYPES:
        return _make(out, a.device)
    source = a.data.dtype

    def backward(g):  # the identity, cast back
        return (g.astype(source),)
    return record("astype", out, (a,), backward)


def to(a, device):
    """The tensor on `device` ("cpu", "cuda", "cuda:N"): itself if it is there, else a copy.

    Differentiable, as PyTorch's .to: the gradient travels back to the source device.
    """
    device = parse_device(device)
    if device == a.device:
        return a
    source = a.device

    def backward(g):  # the identity, moved back
        return (to_device(g, source),)
    out = record("to", to_device(a.data, device), (a,), backward)
    out.device = device
    return out


# -- reductions ---------------------------------------------------------------

def _axes(op, axis, ndim):
    """axis (None, int or tuple) as a sorted tuple of non-negative axes. A 0-d tensor takes
    axis 0 and -1, as PyTorch's does, meaning its one entry: no axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    normal = []
    for ax in axes:
        if not isinstance(ax, (int, np.integer)) or isinstance(ax, bool):
            raise TypeError(f"{op}: axis must be an int or a tuple of ints, got {axis!r}")
        if ndim == 0 and ax in (0, -1):
            continue
        if not -ndim <= ax < ndim:
            raise ValueError(f"{op}: axis {ax} is out of range for {ndim} dimensions")
        normal.append(int(ax) % ndim)
    if len(set(normal)) != len(normal):
        raise ValueError(f"{op}: repeated axis in {axis!r}")
    return tuple(sorted(normal))


def _spread(g, axes, keepdims, shape):
    """Send a reduced gradient back over the reduced axes (the adjoint of a sum)."""
    xp = array_module(g)
    if not keepdims:
        g = xp.expand_dims(g, axes)
    return xp.broadcast_to(g, shape)


def _dims(op, dim, keepdim, axis, keepdims):
    """(axis, keepdims) from PyTorch's names (dim, keepdim) or NumPy's (axis, keepdims):
    each pair is one argument under two names, so a reduction takes either, never both.
    A list of dims is taken as a tuple, and, PyTorch's rule, an empty one (dim=()) means
    every axis, where NumPy's axis=() reduces none; keepdims is False unless given."""
    if axis is not None and dim is not None:
        raise TypeError(f"{op}: got both axis={axis!r} and dim={dim!r}; they are one argument "
                        "(NumPy's and PyTorch's name for it), give one")
    if keepdims is not None and keepdim is not None:
        raise TypeError(f"{op}: got both keepdims={keepdims!r} and keepdim={keepdim!r}; they are "
                        "one argument (NumPy's and PyTorch's name for it), give one")
    if dim is not None:
        axis = None if isinstance(dim, (tuple, list)) and not dim else dim
    return (tuple(axis) if isinstance(axis, list) else axis), bool(keepdim if keepdims is None else keepdims)


def _count(shape, axes):
    """N, the number of entries each output entry of a reduction over `axes` gathers."""
    n = 1
    for ax in axes:
        n *= shape[ax]
    return n


# Every reduction takes (dim, keepdim) positionally, as PyTorch's (an int or a tuple of axes;
# NumPy's axis and keepdims mean the same), and NumPy's names as keywords; see _dims.

def sum(a, dim=None, keepdim=None, *, axis=None, keepdims=None):
    """Sum over dim (None: all axes; an int or a tuple)."""
    axis, keepdims = _dims("sum", dim, keepdim, axis, keepdims)
    x = a.data
    axes = _axes("sum", axis, x.ndim)
    shape = x.shape

    def backward(g):  # every summed entry gets the gradient of its sum
        return (_spread(g, axes, keepdims, shape),)
    return record("sum", primitives.sum_axes(x, axes, keepdims), (a,), backward)


def mean(a, dim=None, keepdim=None, *, axis=None, keepdims=None):
    axis, keepdims = _dims("mean", dim, keepdim, axis, keepdims)
    x = a.data
    axes = _axes("mean", axis, x.ndim)
    shape = x.shape
    count = _count(shape, axes)

    def backward(g):  # every entry gets 1/count of the gradient of its mean
        return (_spread(g / count, axes, keepdims, shape),)
    return record("mean", x.mean(axis=axes, keepdims=keepdims), (a,), backward)


class ValuesIndices(NamedTuple):
    """What max and min along one dim return, as PyTorch's: the values, and where they are."""
    values: Tensor
    indices: Tensor


def max(a, dim=None, keepdim=None, *, axis=None, keepdims=None):
    """The largest entries: over everything, x.max(), a tensor; along one dim (or axis, which
    PyTorch also takes), x.max(1), the pair (values, indices), as torch.max; over several axes,
    x.max(axis=(0, 2)), NumPy's values (PyTorch's max refuses a tuple). The gradient goes to
    the entry that is the maximum, the one argmax names."""
    return _extreme("max", a, dim, keepdim, axis, keepdims)


def min(a, dim=None, keepdim=None, *, axis=None, keepdims=None):
    """The smallest entries, as max: min() and min(axis=(...)) values, min(dim) (values, indices)."""
    return _extreme("min", a, dim, keepdim, axis, keepdims)


def _extreme(op, a, dim, keepdim, axis, keepdims):
    """max or min (op): one entry of each group, which gets the gradient; along one dim,
    PyTorch's (values, indices), the indices being argmax's (argmin's)."""
    if isinstance(dim, Tensor) or isinstance(axis, Tensor):  # torch.max(x, y) is the entrywise max
        raise TypeError(f"{op}: dim must be an int, got a Tensor; for the entrywise {op}imum of "
                        f"two tensors use minigrad.{op}imum(x, y)")
    axis, keepdims = _dims(op, dim, keepdim, axis, keepdims)
    xp = array_module(a.data)
    x = a.data
    axes = _axes(op, axis, x.ndim)
    if x.size == 0:
        raise ValueError(f"{op}: empty tensor of shape {x.shape} has no {op}imum")

    def backward(g):  # d max(x) = dx at the arg-max, 0 elsewhere (min: at the arg-min)
        # NOTE: with ties the whole gradient goes to the first maximum (numpy.argmax's
        # choice; the first minimum for min), so the gradient of a max is always a single
        # entry per group. PyTorch does so for max(dim); its max() over all entries splits
        # the gradient evenly among the ties instead.
        kept = [i for i in range(x.ndim) if i not in axes]
        order = kept + list(axes)                      # reduced axes last ...
        moved = x.transpose(order)
        flat = moved.reshape(moved.shape[:len(kept)] + (-1,))  # ... and flattened
        winner = (flat.argmax if op == "max" else flat.argmin)(axis=-1)[..., None]
        mask = xp.zeros(flat.shape, dtype=bool)
        xp.put_along_axis(mask, winner, True, axis=-1)
        mask = mask.reshape(moved.shape).transpose(tuple(int(i) for i in np.argsort(order)))
        return (_spread(g, axes, keepdims, x.shape) * mask,)
    out = x.max(axis=axes, keepdims=keepdims) if op == "max" else x.min(axis=axes, keepdims=keepdims)
    values = record(op, out, (a,), backward)
    if not isinstance(axis, (int, np.integer)):  # everything, or several axes: the values
        return values
    if axes:  # along one dim: where the values are too, as PyTorch's
        pick = x.argmax if op == "max" else x.argmin
        indices = xp.asarray(pick(axis=axes[0], keepdims=keepdims), dtype=xp.int64)
    else:     # a 0-d tensor's one entry is at 0
        indices = xp.zeros((), dtype=xp.int64)
    return ValuesIndices(values, _make(indices, a.device))


def logsumexp(a, dim=None, keepdim=None, *, axis=None, keepdims=None):
    """log(sum(exp(x))) over dim (None: all axes), as m + log(sum(exp(x - m))) with m the
    largest x of each group, so that no exp overflows.

    d logsumexp(x) = sum_i exp(x_i - logsumexp(x)) dx_i: the gradient is softmax(x).
    """
    axis, keepdims = _dims("logsumexp", dim, keepdim, axis, keepdims)
    xp = array_module(a.data)
    x = a.data
    axes = _axes("logsumexp", axis, x.ndim)
    if x.size == 0:
        raise ValueError(f"logsumexp: empty tensor of shape {x.shape}")
    m = x.max(axis=axes, keepdims=True)
    m = xp.where(xp.isinf(m), 0, m)  # a group all -inf (or with +inf): shifting would give inf - inf
    with np.errstate(divide="ignore"):  # log(0) = -inf for an all -inf group, as PyTorch gives
        y = xp.log(primitives.sum_axes(xp.exp(x - m), axes, keepdims=True)) + m
    shape = x.shape

    def backward(g):  # softmax(x) = exp(x - logsumexp(x)), read off the output
        # NOTE: a group all -inf has logsumexp -inf and no softmax: -inf - (-inf) gives nan
        # there, as PyTorch's gradient.
        with np.errstate(invalid="ignore"):
            return (_spread(g, axes, keepdims, shape) * xp.exp(x - y),)
    return record("logsumexp", y if keepdims else y.reshape(_reduced(shape, axes)), (a,), backward)


def _reduced(shape, axes):
    """The shape of a reduction over `axes` without keepdims."""
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def var(a, dim=None, unbiased=None, keepdim=None, *, correction=None, axis=None, keepdims=None):
    """Variance over dim (None: all axes), as PyTorch's:

        var(x) = sum((x - mean(x))^2) / (N - correction)

    N the number of entries reduced; correction=1 (the default) is the unbiased estimate,
    0 the population variance; PyTorch's older unbiased=True/False is correction 1/0.
    d var(x) = 2 (x - mean(x)) / (N - correction) dx (the change of the mean itself sums to
    zero against x - mean(x)).
    """
    dim, correction = _correction("var", dim, unbiased, correction)
    axis, keepdims = _dims("var", dim, keepdim, axis, keepdims)
    axes, d, dof, v = _variance("var", a, axis, correction, keepdims)
    scale = _dof_scale(dof)

    def backward(g):  # 2 (x - mean) / (N - correction) times the gradient of the group's var
        with np.errstate(invalid="ignore"):  # inf * 0 = nan where x is the mean, as PyTorch's
            return (scale * _spread(g, axes, keepdims, d.shape) * d,)
    return record("var", v, (a,), backward)


def std(a, dim=None, unbiased=None, keepdim=None, *, correction=None, axis=None, keepdims=None):
    """Standard deviation over dim: y = sqrt(var(x)), with var's correction (default 1).

    d std(x) = d var(x) / (2 y) = (x - mean(x)) / ((N - correction) y) dx.
    """
    dim, correction = _correction("std", dim, unbiased, correction)
    axis, keepdims = _dims("std", dim, keepdim, axis, keepdims)
    axes, d, dof, v = _variance("std", a, axis, correction, keepdims)
    xp = array_module(v)
    y = xp.sqrt(v)
    scale = _dof_scale(dof)

    def backward(g):
        # NOTE: where std is 0 (a group of equal entries) the derivative is infinite, as the
        # square root's at 0; we give 0 there, as PyTorch does.
        with np.errstate(divide="ignore", invalid="ignore"):
            g_var = xp.where(y == 0, 0, g / (2 * y))  # dL/dvar = dL/dstd / (2 std)
            return (scale * _spread(g_var, axes, keepdims, d.shape) * d,)
    return record("std", y, (a,), backward)


def _correction(op, dim, unbiased, correction):
    """(dim, correction) for var and std: the correction from correction= (a number, default 1)
    or PyTorch's older unbiased= (True: 1, False: 0), never both. A bool where dim goes is
    PyTorch's var(unbiased), over every entry."""
    if isinstance(dim, (bool, np.bool_)) and unbiased is None:
        dim, unbiased = None, dim
    if unbiased is not None and correction is not None:
        raise TypeError(f"{op}: got both unbiased={unbiased!r} and correction={correction!r}; give one "
                        "(unbiased=True is correction=1, unbiased=False correction=0)")
    if unbiased is not None:
        if not isinstance(unbiased, (bool, np.bool_)):
            raise TypeError(f"{op}: unbiased must be True or False, got {unbiased!r}")
        return dim, int(unbiased)
    if correction is None:
        return dim, 1
    if not isinstance(correction, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: correction must be a number, got {correction!r}")
    return dim, (int(correction) if isinstance(correction, bool) else _python_number(correction))


def _variance(op, a, axis, correction, keepdims):
    """var's forward, shared by std: (axes, x - mean(x), N - correction, the variance)."""
    x = a.data
    axes = _axes(op, axis, x.ndim)
    n = _count(x.shape, axes)
    dof = n - correction
    d = x - x.mean(axis=axes, keepdims=True)
    ss = primitives.sum_axes(d * d, axes, keepdims)
    if dof > 0:
        return axes, d, dof, ss / dof
    # NOTE: N - correction <= 0 leaves no degrees of freedom. As PyTorch, we warn and divide
    # by max(0, N - correction) = 0: inf where the entries differ, nan (0 / 0) where they
    # are all equal.
    warnings.warn(f"{op}: N - correction = {n} - {correction} <= 0 over the reduced entries "
                  f"of {x.shape}: no degrees of freedom left, the result is inf or nan",
                  RuntimeWarning, stacklevel=3)
    with np.errstate(divide="ignore", invalid="ignore"):
        return axes, d, dof, ss / 0


def _dof_scale(dof):
    """2 / (N - correction), var's derivative's factor.

    NOTE: with N - correction <= 0 the factor is PyTorch's, 2 / (N - correction) itself (its
    forward divides by max(0, N - correction), its backward by N - correction): at 0 the
    gradient is +-inf (nan where x equals the mean), below 0 finite and negative.
    """
    return 2.0 / dof if dof != 0 else math.inf


def norm(a, p=2, dim=None, keepdim=None, *, axis=None, keepdims=None):
    """The vector p-norm over dim (None: all entries), as torch.linalg.vector_norm (and
    Tensor.norm with a number p), for p = 2, 1 and inf:

        ||x||_2 = sqrt(sum x^2)      d||x||_2 = x / ||x||_2 dx
        ||x||_1 = sum |x|            d||x||_1 = sign(x) dx
        ||x||_inf = max |x|          d||x||_inf = sign(x) dx at the largest |x|
    """
    if isinstance(p, bool) or not (p in (1, 2) or p == math.inf):
        raise ValueError(f"norm: p={p!r} is not supported; minigrad has the vector norms "
                         "p = 2, 1 and inf (float('inf'))")
    axis, keepdims = _dims("norm", dim, keepdim, axis, keepdims)
    xp = array_module(a.data)
    x = a.data
    axes = _axes("norm", axis, x.ndim)
    shape = x.shape
    if p == 2:
        y = xp.sqrt(primitives.sum_axes(x * x, axes, keepdims))

        def backward(g):  # x / ||x|| times the gradient of the norm
            # NOTE: at ||x|| = 0 (all of the group 0) the norm has no derivative; we give 0
            # there, as PyTorch does (0 / 0 would be nan).
            with np.errstate(divide="ignore", invalid="ignore"):
                g_n = xp.where(y == 0, 0, g / y)
            return (x * _spread(g_n, axes, keepdims, shape),)
    elif p == 1:
        y = primitives.sum_axes(xp.abs(x), axes, keepdims)

        def backward(g):  # sign(x) times the gradient of the norm
            # NOTE: |x| has no derivative at 0; sign(0) = 0 gives it 0, as abs (and PyTorch).
            return (xp.sign(x) * _spread(g, axes, keepdims, shape),)
    else:
        if x.size == 0:
            raise ValueError(f"norm: empty tensor of shape {shape} has no inf-norm (a maximum)")
        y = xp.abs(x).max(axis=axes, keepdims=keepdims)

        def backward(g):  # the gradient goes to the largest |x|, with its sign
            # NOTE: with ties among the largest |x| the gradient is split evenly between
            # them, as PyTorch's (max, by contrast, gives it all to the first); at a norm
            # of 0, sign(0) = 0 gives every entry 0.
            # A group with a NaN has a NaN norm that no entry equals: none of them gets a
            # gradient (PyTorch's 0); `ties` counts at least 1, so that 0 / 0 never comes.
            top = xp.abs(x) == _spread(y, axes, keepdims, shape)
            ties = xp.maximum(top.sum(axis=axes, keepdims=True), 1).astype(x.dtype)  # how many share the top
            return (xp.where(top, xp.sign(x) * _spread(g, axes, keepdims, shape) / ties, 0),)
    return record("norm", y, (a,), backward)


def cumsum(a, dim=None, *, axis=None):
    """Running sums along dim (one int, required, as PyTorch's): out_i = sum_{j <= i} x_j.

    Each x_j feeds every out_i with i >= j, so g_x_j = sum_{i >= j} g_i: the cumsum of g
    run from the end.
    """
    axis, _ = _dims("cumsum", dim, None, axis, None)
    if axis is None:
        raise TypeError("cumsum: give dim, the one axis to sum along (an int)")
    x = a.data
    ax = _dim_of("cumsum", axis, x.ndim)
    xp = array_module(x)

    def backward(g):  # reverse, cumsum, reverse back
        return (xp.flip(xp.flip(g, ax).cumsum(axis=ax), ax),)
    return record("cumsum", x.cumsum(axis=ax), (a,), backward)


# -- shapes and indexing ------------------------------------------------------

def reshape(a, *shape):
    return _reshape("reshape", a, shape)


def _reshape(op, a, shape):
    """reshape, with errors naming `op` (view, unsqueeze, squeeze, flatten are reshapes)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    x = a.data
    try:
        out = x.reshape(shape)
    except (ValueError, TypeError):
        raise ValueError(f"{op}: cannot reshape {x.shape} ({x.size} entries) into {shape}") from None
    old_shape = x.shape

    def backward(g):  # the same entries, in the old shape
        return (g.reshape(old_shape),)
    return record("reshape", out, (a,), backward)


def transpose(a, *axes):
    """Permute the axes (reverse them when none are given), as numpy.transpose."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    x = a.data
    axes = tuple(range(x.ndim))[::-1] if not axes else tuple(axes)
    if (len(axes) != x.ndim or not all(-x.ndim <= ax < x.ndim for ax in axes)
            or sorted(ax % x.ndim for ax in axes) != list(range(x.ndim))):
        raise ValueError(f"transpose: axes {axes} are not a permutation of the {x.ndim} axes of {x.shape}")
    inverse = tuple(int(i) for i in np.argsort([ax % x.ndim for ax in axes]))

    def backward(g):  # the inverse permutation
        return (g.transpose(inverse),)
    return record("transpose", x.transpose(axes), (a,), backward)


def _dim_of(op, dim, ndim):
    """A PyTorch dim in [-ndim, ndim) as a non-negative int; an error naming op otherwise."""
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    if not -ndim <= dim < ndim:
        raise ValueError(f"{op}: dim {dim} is out of range for {ndim} dimensions "
                         f"(expected {-ndim} to {ndim - 1})")
    return int(dim) % ndim


def clone(a):
    """A copy of a's data that stays in the graph, as torch.clone."""
    def backward(g):  # the identity: d(copy of x) = dx
        return (g,)
    return record("clone", a.data.copy(), (a,), backward)


def _sizes(op, sizes):
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in sizes):
        raise TypeError(f"{op}: sizes must be ints, got {sizes!r}")
    return tuple(int(n) for n in sizes)


def expand(a, *sizes):
    """a broadcast to `sizes`, as torch.Tensor.expand: new axes may be added in front, axes
    of length 1 stretched; -1 keeps an axis's size."""
    sizes = _sizes("expand", sizes)
    x = a.data
    lead = len(sizes) - x.ndim
    shape = []
    for i, n in enumerate(sizes):
        old = x.shape[i - lead] if i >= lead else None
        if n == -1 and old is not None:
            n = old
        if n < 0 or (old is not None and old != 1 and old != n):
            raise ValueError(f"expand: cannot expand {x.shape} to {sizes}: each size must be "
                             f"the old one, -1 (keep it), or any size where the old one is 1 "
                             f"(new leading axes cannot be -1)")
        shape.append(n)
    if lead < 0:
        raise ValueError(f"expand: cannot expand {x.shape} to {sizes}: fewer sizes than dimensions")
    # broadcast_to gives a read-only view; nothing in minigrad writes into an array
    out = array_module(x).broadcast_to(x, tuple(shape))
    x_shape = x.shape

    def backward(g):  # each input entry was copied along the stretched axes: sum them back
        return (unbroadcast(g, x_shape),)
    return record("expand", out, (a,), backward)


def repeat(a, *sizes):
    """a tiled sizes[i] times along axis i, as torch.Tensor.repeat (numpy.tile); more sizes
    than dimensions add leading axes."""
    sizes = _sizes("repeat", sizes)
    x = a.data
    if len(sizes) < x.ndim or any(n < 0 for n in sizes):
        raise ValueError(f"repeat: sizes {sizes} must be non-negative and at least one per "
                         f"dimension of {x.shape}")
    shape = (1,) * (len(sizes) - x.ndim) + x.shape  # x with the leading axes added
    out = array_module(x).tile(x.reshape(shape), sizes)
    x_shape = x.shape

    def backward(g):
        # out[r * s + j] = x[j] along each axis (s the old size, r the repeat): split each
        # axis of g into (r, s) and sum over the r axes, every copy's gradient to its entry
        g = g.reshape(tuple(n for pair in zip(sizes, shape) for n in pair))
        g = primitives.sum_axes(g, tuple(range(0, 2 * len(sizes), 2)))
        return (g.reshape(x_shape),)
    return record("repeat", out, (a,), backward)


def arg(op, a, dim=None, keepdim=False):
    """argmax / argmin as PyTorch's: int64 indices (into the flattened tensor when dim is
    None), outside the graph (no gradient)."""
    x = a.data
    xp = array_module(x)
    axis = None if dim is None else _dim_of(op, dim, x.ndim)
    fn = xp.argmax if op == "argmax" else xp.argmin
    if x.size == 0:
        raise ValueError(f"{op}: the tensor of shape {x.shape} is empty")
    out = fn(x, axis=axis, keepdims=bool(keepdim))
    return _make(xp.asarray(out, dtype=xp.int64), a.device)


def _is_basic(index):
    """Whether index uses only ints, slices, None and Ellipsis (NumPy's basic indexing)."""
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis
               for i in items if not isinstance(i, bool))


def getitem(a, index):
    """x[index]: basic slicing (a view) or integer/boolean array indexing (a copy)."""
    # Integer tensors used as indices: index with their arrays. A raw array is copied: the
    # backward keeps the index, and the caller may reuse the array.
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else own_copy(i) for i in index)
    elif isinstance(index, list):
        index = np.asarray(index)
    else:
        index = own_copy(index)
    if a.device != CPU:  # index arrays go where the data is
        index = (tuple(to_device(i, a.device) if isinstance(i, np.ndarray) else i for i in index)
                 if isinstance(index, tuple) else to_device(index, a.device) if isinstance(index, np.ndarray)
                 else index)
    x = a.data
    try:
        out = x[index]
    except IndexError as e:
        raise IndexError(f"getitem: {e} (tensor of shape {x.shape})") from None
    basic = _is_basic(index)
    shape = x.shape

    def backward(g):  # each selected entry gets its gradient back, at its place
        xp = array_module(g)
        g_x = xp.zeros(shape, dtype=g.dtype)
        if basic:
            g_x[index] = g
        else:
            # An index may repeat (x[[0, 0]]): add.at accumulates where += would not.
            xp.add.at(g_x, index, g)
        return (g_x,)
    return record("getitem", out, (a,), backward)


def concat(tensors, axis=None, *, dim=None):
    """Join tensors along an existing axis (0 unless given), as numpy.concatenate and
    torch.cat (minigrad.cat): axis, or PyTorch's name for it, dim."""
    axis = _one_axis("concat", axis, dim)
    tensors = _tensors("concat", list(tensors))
    arrays = [t.data for t in tensors]
    xp = array_module(arrays[0])
    try:
        out = xp.concatenate(arrays, axis=axis)
    except (ValueError, np.exceptions.AxisError):
        shapes = ", ".join(str(x.shape) for x in arrays)
        raise ValueError(f"concat: shapes {shapes} do not join along axis {axis}") from None
    ax = axis % out.ndim
    ends = np.cumsum([x.shape[ax] for x in arrays])

    def backward(g):  # each input gets its own slice of the gradient
        starts = np.concatenate([[0], ends[:-1]])
        lead = (slice(None),) * ax
        return tuple(g[lead + (slice(s, e),)] for s, e in zip(starts, ends))
    return record("concat", out, tuple(tensors), backward)


def stack(tensors, axis=None, *, dim=None):
    """Join tensors of one shape along a new axis (0 unless given), as numpy.stack and
    torch.stack: axis, or PyTorch's name for it, dim."""
    axis = _one_axis("stack", axis, dim)
    tensors = _tensors("stack", list(tensors))
    arrays = [t.data for t in tensors]
    shapes = {x.shape for x in arrays}
    if len(shapes) != 1:
        raise ValueError(f"stack: all shapes must be equal, got {', '.join(str(s) for s in shapes)}")
    xp = array_module(arrays[0])
    try:
        out = xp.stack(arrays, axis=axis)
    except np.exceptions.AxisError:
        raise ValueError(f"stack: axis {axis} is out of range for {arrays[0].ndim + 1} dimensions") from None
    ax = axis % out.ndim

    def backward(g):  # each input gets its own slice of the gradient
        lead = (slice(None),) * ax
        return tuple(g[lead + (i,)] for i in range(len(arrays)))
    return record("stack", out, tuple(tensors), backward)


cat = concat  # PyTorch's name


def _one_axis(op, axis, dim, default=0):
    """The one axis an op works along, from axis or dim (see _dims); `default` if neither."""
    axis, _ = _dims(op, dim, None, axis, None)
    return default if axis is None else axis


def gather(a, dim, index):
    """Entries of a picked along dim by index, as torch.gather; for a 3-D a and dim = 1:

        out[i, j, k] = a[i, index[i, j, k], k]

    index: an integer Tensor or array with as many dimensions as a, no longer than a in any
    dimension but dim (along dim, any length); out has index's shape. Each entry of a gets
    the gradient of every output entry that picked it: a scatter-add of g.
    """
    x = a.data
    xp = array_module(x)
    d = _dim_of("gather", dim, x.ndim)
    index = index.data if isinstance(index, Tensor) else own_copy(index)  # backward keeps it
    if isinstance(index, (list, tuple)):
        index = np.asarray(index)
    if getattr(index, "dtype", np.dtype(object)).kind not in "iu":
        raise TypeError(f"gather: index must be an integer Tensor or array, got "
                        f"{getattr(index, 'dtype', type(index).__name__)}")
    index = to_device(index, a.device)
    if index.ndim != x.ndim:
        raise ValueError(f"gather: index of shape {index.shape} must have as many dimensions as "
                         f"the input of shape {x.shape} ({x.ndim})")
    longer = [k for k in range(x.ndim) if k != d and index.shape[k] > x.shape[k]]
    if longer:
        raise ValueError(f"gather: index of shape {index.shape} is longer than the input of shape "
                         f"{x.shape} in dimension {longer[0]}; only along dim {d} may it be longer")
    if index.size and (int(index.min()) < 0 or int(index.max()) >= x.shape[d]):
        raise ValueError(f"gather: index values {int(index.min())} to {int(index.max())} are out of "
                         f"range for dim {d} of size {x.shape[d]} (expected 0 to {x.shape[d] - 1})")
    # Where each output entry comes from: its own position, but along dim the index's value.
    where = tuple(index if k == d else xp.arange(n).reshape((n,) + (1,) * (x.ndim - 1 - k))
                  for k, n in enumerate(index.shape))
    shape = x.shape

    def backward(g):  # each picked entry gets its gradient back, at its place
        g_x = xp.zeros(shape, dtype=g.dtype)
        xp.add.at(g_x, where, g)  # an entry picked twice gets both: add.at accumulates, += would not
        return (g_x,)
    return record("gather", x[where], (a,), backward)


def chunk(a, chunks, dim=0):
    """a cut along dim into pieces of ceil(n / chunks) entries, as torch.chunk: the last
    may be shorter, and there may be fewer than `chunks` (6 entries in 4 chunks: 2, 2, 2).

    A tuple of tensors, each a slice of a (one getitem record each).
    """
    if not isinstance(chunks, (int, np.integer)) or isinstance(chunks, bool) or chunks <= 0:
        raise ValueError(f"chunk: chunks must be a positive int, got {chunks!r}")
    d = _dim_of("chunk", dim, a.data.ndim)
    n = a.data.shape[d]
    if n == 0:  # nothing to cut: `chunks` empty pieces, as PyTorch gives
        return _pieces(a, d, [0] * int(chunks))
    size = -(-n // int(chunks))  # ceil(n / chunks)
    return _pieces(a, d, [size] * (n // size) + ([n % size] if n % size else []))


def split(a, split_size_or_sections, dim=0):
    """a cut along dim, as torch.split: an int s gives pieces of s entries (the last may be
    shorter); a list of sizes gives pieces of those sizes, which must add up to the length.

    A tuple of tensors, each a slice of a (one getitem record each).
    """
    d = _dim_of("split", dim, a.data.ndim)
    n = a.data.shape[d]
    s = split_size_or_sections
    if isinstance(s, (list, tuple)):
        sizes = _sizes("split", (tuple(s),))
        if any(k < 0 for k in sizes) or int(np.sum(sizes)) != n:
            raise ValueError(f"split: sizes {list(sizes)} must be non-negative and add up to {n}, "
                             f"the length of dim {d} of {a.data.shape}")
        return _pieces(a, d, sizes)
    if not isinstance(s, (int, np.integer)) or isinstance(s, bool):
        raise TypeError(f"split: split_size_or_sections must be an int or a list of ints, got {s!r}")
    if s < 0 or (s == 0 and n > 0):
        raise ValueError(f"split: split size {s} must be positive (0 only for an empty dim); "
                         f"dim {d} of {a.data.shape} has length {n}")
    if n == 0:  # one empty piece, as PyTorch gives
        return _pieces(a, d, [0])
    return _pieces(a, d, [s] * (n // s) + ([n % s] if n % s else []))


def _pieces(a, d, sizes):
    """a cut along axis d into consecutive slices of the given sizes, each through getitem."""
    lead = (slice(None),) * d
    ends = np.cumsum(sizes)
    return tuple(getitem(a, lead + (slice(int(e - k), int(e)),)) for k, e in zip(sizes, ends))


def where(mask, a, b):
    """a where mask is true, b elsewhere (mask, a and b broadcast together)."""
    if isinstance(mask, Tensor):
        mask = mask.data
    else:
        mask = own_copy(np.asarray(mask) if not hasattr(mask, "dtype") else mask)  # backward keeps it
    if mask.dtype != bool:
        raise TypeError(f"where: the mask must be boolean, got {mask.dtype}")
    a, b = _operands("where", a, b)
    x, y = a.data, b.data
    xp = array_module(x)
    mask = to_device(mask, a.device)  # a NumPy mask with GPU tensors goes to the GPU
    try:
        out = xp.where(mask, x, y)
    except ValueError:
        raise ValueError(f"where: shapes {mask.shape}, {x.shape} and {y.shape} do not broadcast") from None
    x_shape, y_shape = x.shape, y.shape

    def backward(g):  # the gradient goes to whichever side was chosen
        zero = xp.zeros((), dtype=g.dtype)
        return (unbroadcast(xp.where(mask, g, zero), x_shape),
                unbroadcast(xp.where(mask, zero, g), y_shape))
    return record("where", out, (a, b), backward)


# -- operands: what every op checks and converts before its forward ---------------------

def _check_same(op, tensors):
    """Raise unless all tensors share one dtype and one device (no silent promotion)."""
    first = tensors[0]
    for t in tensors[1:]:
        if t.device != first.device:
            raise RuntimeError(
                f"{op}: inputs on different devices ({first.device}, {t.device}); use .to(...)"
            )
        if t.data.dtype is not first.data.dtype and t.data.dtype != first.data.dtype:
            raise TypeError(
                f"{op}: dtypes {first.data.dtype} and {t.data.dtype} differ; minigrad does not "
                "promote silently: cast one with .astype()"
            )


def _constant(op, value, like):
    """A non-Tensor operand as a constant Tensor. A Python or NumPy scalar takes the
    dtype of the tensor beside it (`like`); an array keeps its own (and is checked)."""
    if isinstance(value, (float, int, np.generic)):
        if like is None:  # no tensor to follow: the rules of minigrad.tensor()
            return Tensor(value)
        dtype = like.data.dtype
        if dtype.kind in "iu" and not isinstance(value, (int, np.integer)):
            raise TypeError(f"{op}: a float scalar ({value!r}) with an {dtype} tensor; "
                            "cast the tensor first, e.g. .astype('float32')")
        value = np.asarray(value, dtype=dtype if dtype.kind in "fiu" else None)
        return _make(to_device(value, like.device), like.device)
    if isinstance(value, np.ndarray):  # a copy: the op's backward may keep it (W * c, then c[:] = 0)
        return _make(own_copy(value))
    raise TypeError(f"{op}: unsupported operand of type {type(value).__name__}; "
                    "expected a Tensor, a NumPy array or a Python number")


def _operands(op, a, b):
    """Two operands as Tensors of one dtype and device."""
    if not isinstance(a, Tensor):
        a = _constant(op, a, b if isinstance(b, Tensor) else None)
    if not isinstance(b, Tensor):
        b = _constant(op, b, a)
    if a.data.dtype is not b.data.dtype or a.device != b.device:
        _check_same(op, (a, b))
    return a, b


def _tensors(op, items):
    """Many operands as Tensors of one dtype and device (for concat, stack, losses, cells)."""
    if not items:
        raise ValueError(f"{op}: needs at least one tensor")
    first = items[0]
    if isinstance(first, Tensor):  # the common case, checked in one pass: all Tensors, all alike
        dtype, device = first.data.dtype, first.device
        for t in items:
            if not isinstance(t, Tensor) or t.data.dtype != dtype or t.device != device:
                break
        else:
            return list(items)
    like = next((t for t in items if isinstance(t, Tensor)), None)
    tensors = [t if isinstance(t, Tensor) else _constant(op, t, like) for t in items]
    _check_same(op, tensors)
    return tensors


def _python_number(value):
    """A NumPy scalar as a Python number, which (NEP 50) never changes an array's dtype."""
    return value.item() if isinstance(value, np.generic) else value


def _broadcast_error(op, x, y):
    return ValueError(f"{op}: shapes {x.shape} and {y.shape} do not broadcast")
