"""What the op tests share: dtypes, dtype-aware tolerances, and leaves to differentiate."""
import numpy as np

import minigrad as mg

F32, F64 = np.float32, np.float64
DTYPES = [F32, F64]


def tol(dtype):
    """float64: tight; float32: what a handful of float32 roundings allows."""
    return dict(rtol=1e-12, atol=1e-12) if np.dtype(dtype) == F64 else dict(rtol=1e-5, atol=1e-6)


def close(actual, expected, dtype=F64):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected, dtype=F64), **tol(dtype))


def leaf(values, dtype=F64):
    """A leaf that requires grad, holding `values` (hand-written numbers)."""
    return mg.tensor(np.array(values, dtype=dtype), requires_grad=True)


def rand_leaf(rng, *shape, dtype=F64, scale=1.0, low=None, high=None):
    """A leaf that requires grad: normal with standard deviation `scale`, or uniform in [low, high)."""
    data = scale * rng.standard_normal(shape) if low is None else rng.uniform(low, high, shape)
    return mg.tensor(data.astype(dtype), requires_grad=True)
