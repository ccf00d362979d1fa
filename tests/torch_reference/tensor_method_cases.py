"""The cases that hold minigrad's PyTorch-named Tensor methods to PyTorch's, in NumPy alone.

Each case calls one method by the same name on both sides, `getattr(x, method)(*args)`, on
an input drawn from a generator seeded by the case's name (integer-valued where ties
matter: argmax, argmin, ==, !=). make_tensor_methods.py stores what PyTorch returns and,
for the differentiable methods, the gradient of loss = sum(output * R) with R drawn the
same way; tests/test_tensor_methods.py compares minigrad's.
"""
import os
import zlib

import numpy as np

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tensor_methods.npz")

# (method, input shape, positional args, differentiable, integer-valued input)
CASES = [
    ("view", (2, 3, 4), ((-1, 4),), True, False),
    ("view", (6, 4), (2, -1, 3), True, False),
    ("permute", (2, 3, 4), ((2, 0, 1),), True, False),
    ("permute", (2, 3, 4), (1, -1, 0), True, False),
    ("unsqueeze", (2, 3), (0,), True, False),
    ("unsqueeze", (2, 3), (2,), True, False),
    ("unsqueeze", (2, 3), (-1,), True, False),
    ("squeeze", (1, 3, 1, 2), (), True, False),
    ("squeeze", (1, 3, 1, 2), (1,), True, False),     # not of length 1: left as it is
    ("squeeze", (1, 3, 1, 2), (-2,), True, False),
    ("squeeze", (1, 3, 1, 2), ((0, 1, 2),), True, False),
    ("flatten", (2, 3, 4, 5), (), True, False),
    ("flatten", (2, 3, 4, 5), (1, 2), True, False),
    ("flatten", (2, 3, 4, 5), (-2, -1), True, False),
    ("flatten", (2, 3, 4, 5), (2, 2), True, False),
    ("expand", (3, 1), (2, 3, 4), True, False),
    ("expand", (3, 1), (-1, 5), True, False),
    ("expand", (1, 2), ((4, 1, -1),), True, False),
    ("repeat", (2, 3), (2, 1, 3), True, False),
    ("repeat", (3,), (2, 2), True, False),
    ("repeat", (2, 1, 2), (1, 3, 2), True, False),
    ("clone", (2, 3), (), True, False),
    ("argmax", (3, 4), (), False, True),
    ("argmax", (3, 4), (0,), False, True),
    ("argmax", (3, 4), (1, True), False, True),
    ("argmin", (3, 4, 2), (), False, True),
    ("argmin", (3, 4, 2), (-1,), False, True),
    ("argmin", (3, 4, 2), (1, True), False, True),
    ("__eq__", (3, 4), (1.0,), False, True),
    ("__ne__", (3, 4), (0.0,), False, True),
]


def name(case):
    method, shape, args = case[:3]
    return f"{method}-{'x'.join(map(str, shape))}-{args}"


def _rng(key):
    return np.random.default_rng(zlib.crc32(key.encode()))


def inputs(case):
    """The case's input, float64: integers in [-1, 1] where ties matter, else U(-1, 1)."""
    _, shape, _, _, integer = case
    rng = _rng(name(case))
    return rng.integers(-1, 2, shape).astype(np.float64) if integer else rng.uniform(-1, 1, shape)


def weights(case, out_shape):
    """R in loss = sum(output * R): one weight per output entry."""
    return _rng(name(case) + "/R").uniform(-1, 1, out_shape)
