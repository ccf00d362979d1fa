"""The at-shape limit of a recurrent workload: the time of exactly the matrix products the
window floor makes (floor.numpy_recurrent_window), at their shapes and memory layouts, on
this machine's BLAS, with nothing else.

No implementation of the same maths can do fewer or smaller products than the window
floor, so no amount of framework work takes minigrad's layer below this line; what
separates it from the line is the pointwise work, the framework, and the layout of the
products themselves (a transposed operand is slower in OpenBLAS: the limit keeps the
floor's layouts, so a faster layout can beat it).

    calls = record_products(run)     # every np.dot the floor made in one run
    seconds = replay(calls)          # the same products again, on fresh operands, timed
"""
import time

import numpy as np


def record_products(run):
    """Run `run()` once with np.dot watched; returns one (a-layout, b-layout) per call, each
    (shape, dtype, transposed): transposed when the operand is a transposed view of a
    C-contiguous array (W.T), as the floor's weights are."""
    calls, dot = [], np.dot

    def watched(a, b, *rest, **kwargs):
        calls.append((_layout(a), _layout(b)))
        return dot(a, b, *rest, **kwargs)
    np.dot = watched  # floor.py looks np.dot up at every call
    try:
        run()
    finally:
        np.dot = dot
    return calls


def _layout(x):
    x = np.asarray(x)
    transposed = x.ndim == 2 and not x.flags.c_contiguous and x.T.flags.c_contiguous
    return x.shape, x.dtype.str, transposed


def _operand(layout, rng):
    shape, dtype, transposed = layout
    if transposed:
        return rng.standard_normal(shape[::-1]).astype(dtype).T
    return rng.standard_normal(shape).astype(dtype)


def prepare(calls, seed=0):
    """The operands of every recorded product, made once (not timed): a run of replay."""
    rng = np.random.default_rng(seed)
    made = {}
    operands = []
    for a, b in calls:  # one pair per distinct layout: the products reuse them, as the floor does
        if (a, b) not in made:
            made[(a, b)] = (_operand(a, rng), _operand(b, rng))
        operands.append(made[(a, b)])
    return operands


def replay(operands):
    """The seconds the products take, one after another, as the floor makes them."""
    dot = np.dot
    start = time.perf_counter()
    for a, b in operands:
        dot(a, b)
    return time.perf_counter() - start
