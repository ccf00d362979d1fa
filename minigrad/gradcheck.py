"""gradcheck: analytic gradients (backward) against central differences, in float64."""
import numpy as np

from .tape import no_grad
from .tensor import Tensor


class GradcheckError(RuntimeError):
    """The analytic and the numerical gradient disagree."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3):
    """Check every gradient of fn at `inputs` against central differences.

    fn:     a function of the inputs returning a Tensor (any shape)
    inputs: a Tensor or a sequence of Tensors; those with requires_grad are checked
            and must be float64 (in float32, differences of nearby values are noise)

    For every output entry o and checked input entry i, the analytic derivative
    d out_o / d in_i (one backward per output entry) must match the numerical one,
    (f(in + eps e_i) - f(in - eps e_i))_o / (2 eps), within atol + rtol * |numerical|.
    Returns True, or raises GradcheckError naming the worst entry. The inputs'
    .grad are left as they were.
    """
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if not all(isinstance(t, Tensor) for t in inputs):
        raise TypeError("gradcheck: inputs must be Tensors")
    checked = [k for k, t in enumerate(inputs) if t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")
    for k in checked:
        if inputs[k].dtype != np.float64:
            raise TypeError(f"gradcheck: input {k} is {inputs[k].dtype}; use float64 "
                            "(x.astype('float64')) for meaningful finite differences")

    analytic = _analytic_jacobians(fn, inputs, checked)
    numeric = _numeric_jacobians(fn, inputs, checked, eps)

    # A NaN compares False with everything, so the tolerance test below would let it
    # pass: any non-finite entry in either Jacobian fails first, naming where it is.
    for k in checked:
        for which, jac, other in (("analytic", analytic[k], numeric[k]),
                                  ("numerical", numeric[k], analytic[k])):
            bad = np.argwhere(~np.isfinite(jac))
            if bad.size:
                o, i = bad[0]
                raise GradcheckError(
                    f"gradcheck: the {which} Jacobian is not finite at "
                    f"{_where(fn, inputs, k, o, i)}: {which} {jac[o, i]} "
                    f"(the other one says {other[o, i]:.10g})")

    worst = None
    for k in checked:
        a, n = analytic[k], numeric[k]
        excess = np.abs(a - n) - (atol + rtol * np.abs(n))
        if excess.size and excess.max() > 0:
            o, i = np.unravel_index(excess.argmax(), excess.shape)
            if worst is None or excess[o, i] > worst[0]:
                worst = (excess[o, i], k, o, i, a[o, i], n[o, i])
    if worst is not None:
        _, k, o, i, a, n = worst
        raise GradcheckError(
            f"gradcheck: {_where(fn, inputs, k, o, i)}: analytic {a:.10g} "
            f"vs numerical {n:.10g} (difference {abs(a - n):.3g} > atol + rtol * |numerical| "
            f"= {atol + rtol * abs(n):.3g})"
        )
    return True


def _where(fn, inputs, k, o, i):
    """'d output[..] / d input k[..]' for row o, column i of input k's Jacobian."""
    with no_grad():
        out_shape = fn(*inputs).shape
    out_idx = [int(j) for j in np.unravel_index(o, out_shape)]
    in_idx = [int(j) for j in np.unravel_index(i, inputs[k].shape)]
    return f"d output{out_idx} / d input {k}{in_idx}"


def _analytic_jacobians(fn, inputs, checked):
    """{input index: (output size, input size) Jacobian} by one backward per output entry."""
    saved_grads = [t.grad for t in inputs]
    try:
        out = fn(*inputs)
        if not isinstance(out, Tensor):
            raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
        if out.dtype != np.float64:
            raise TypeError(f"gradcheck: fn returned {out.dtype}; every value must be float64")
        jac = {k: np.zeros((out.data.size, inputs[k].data.size)) for k in checked}
        if not out.requires_grad:  # no path from the inputs to the output: all zeros
            return jac
        for o in range(out.data.size):
            for t in inputs:
                t.grad = None
            seed = np.zeros(out.data.size)
            seed[o] = 1.0
            out.backward(seed.reshape(out.shape), retain_graph=o < out.data.size - 1)
            for k in checked:
                g = inputs[k].grad
                if g is not None:
                    jac[k][o] = g.ravel()
        return jac
    finally:
        for t, g in zip(inputs, saved_grads):
            t.grad = g


@no_grad()
def _numeric_jacobians(fn, inputs, checked, eps):
    """{input index: Jacobian} by central differences, one input entry at a time."""
    out_size = fn(*inputs).data.size
    jac = {}
    for k in checked:
        t = inputs[k]
        original = t.data
        jac[k] = np.zeros((out_size, original.size))
        try:
            for i in range(original.size):
                # Replace, never mutate, t.data: records may hold the original array.
                plus, minus = original.copy(), original.copy()
                plus.flat[i] += eps
                minus.flat[i] -= eps
                t.data = plus
                f_plus = fn(*inputs).data.ravel()
                t.data = minus
                f_minus = fn(*inputs).data.ravel()
                jac[k][:, i] = (f_plus - f_minus) / (2 * eps)
        finally:
            t.data = original
    return jac
