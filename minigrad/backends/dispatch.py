"""The one place that decides, call by call, whether a CUDA kernel or its NumPy reference runs.

Every array-level primitive that a kernel of ours implements (kernels/*.cu) is written
once in NumPy, in primitives.py, under the name of its kernel, and marked there with
`@primitive(family)`. The mark makes the function decide where it runs:

    NumPy array                                   -> the NumPy reference
    CuPy array, float32/64, family's path "auto"  -> our kernel (matmul: cuBLAS's GEMM,
                                                     unless ours measured clearly faster
                                                     for the shape: cuda._matmul_path)
    CuPy array, path "kernel"                     -> our kernel
    CuPy array, path "numpy"                      -> the reference, run by CuPy's NumPy-like
                                                     functions (cuBLAS for matmul)

The kernel's launch wrapper is `minigrad.backends.cuda.<same name>`, with the same
signature and results. `use(family, path)` and `with using(family=path): ...` force a
path per family of primitives, for the tests and for comparisons.
"""
import contextlib
import functools

import numpy as np

# Families whose path can be forced. "numpy" runs the reference on any array; "kernel" runs
# our CUDA kernel on GPU arrays; "auto" is our kernel, except that matmul measures.
# "cells" holds the LSTM's and GRU's pointwise steps; the Elman cell's is an activation
# ("elementwise"). "window" is the recurrence of a whole window of an Elman or LSTM layer
# (kernels/window.cu, where the weights fit on chip); its reference is the step loop, whose
# matmuls and pointwise parts follow "matmul", "cells" and "elementwise". Forcing "cells" to
# "numpy" turns the window kernel off too.
FAMILIES = ("matmul", "elementwise", "reduce", "loss", "cells", "optim", "window")
PATHS = ("auto", "kernel", "numpy")
_paths = dict.fromkeys(FAMILIES, "auto")

# Every primitive, by name: name -> (family, the NumPy reference). The kernel tests check
# that each has a launch wrapper of the same name in minigrad.backends.cuda.
PRIMITIVES = {}

# Tests only: send NumPy arrays down the kernel path too (tests/conftest.py's `on_backend`:
# through a CPU emulator of the kernels' C source, or copied to a GPU and back).
KERNELS_ON_NUMPY = False

_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# -- which implementation runs ------------------------------------------------------

def use(family, path):
    """Force `family`'s ops onto `path` ("auto", "kernel" or "numpy"); returns the previous path."""
    if family not in _paths:
        raise ValueError(f"backends.use: unknown op family {family!r}; expected one of {', '.join(FAMILIES)}")
    if path not in PATHS:
        raise ValueError(f"backends.use: unknown path {path!r} for {family}; "
                         f"expected one of {', '.join(PATHS)}")
    previous, _paths[family] = _paths[family], path
    return previous


@contextlib.contextmanager
def using(**paths):
    """with using(matmul="numpy", cells="kernel"): ... forces paths inside the block only."""
    previous = {family: use(family, path) for family, path in paths.items()}
    try:
        yield
    finally:
        for family, path in previous.items():
            _paths[family] = path


def path(family):
    """The path `family` is set to ("auto", "kernel" or "numpy")."""
    return _paths[family]


def for_array(fn, array):
    """What a call of the primitive `fn` on `array` would run, decided once for a loop of such
    calls: its NumPy reference for a NumPy array, else `fn`, which decides call by call. The
    window references call a matmul and a cell step per time step; on the CPU each call
    through the wrapper cost about 0.3 us, some 8% of a batch-1 Elman window (W3)."""
    return fn.numpy if _references_only(array) else fn


def feature_major(array):
    """Whether the sequence ops store their per-step arrays (gates, states, (B, n) at each
    step) feature-major for arrays like `array`: each step's memory is its transpose, (n, B),
    so that each gate is one contiguous block and the recurrent product is computed as
    W_hh h^T, the weights read as stored. On the CPU that is faster (nn/recurrent.py says
    which arrays; benchmarks/results/2026-12-04-feature-major.md, how much). The CUDA kernels
    read batch rows, so GPU arrays, and NumPy arrays sent through the kernels in the tests,
    stay batch-major. The code indexes both layouts alike: only the strides differ."""
    return _references_only(array)


def _references_only(array):
    """Whether every primitive called on `array` runs its NumPy reference: a NumPy array,
    unless the tests send NumPy arrays through the kernels. (The same test opens each
    primitive's call, written out there: it is the hottest line of the CPU path.)"""
    return type(array) is np.ndarray and not KERNELS_ON_NUMPY


def primitive(family):
    """Mark a NumPy function as the reference of the CUDA kernel wrapper of the same name
    (`minigrad.backends.cuda.<name>`), in op family `family`.

    The decorated function runs the reference on NumPy arrays, and our kernel on GPU arrays
    of float32 or float64 (unless the family is forced to "numpy"). The first argument
    decides (for a list of arrays, its first array). A wrapper that cannot handle a case
    (too many broadcast axes, say) returns NotImplemented, and the reference runs instead.
    """
    if family not in _paths:
        raise ValueError(f"primitive: unknown op family {family!r}")

    def decorate(numpy_fn):
        name = numpy_fn.__name__

        @functools.wraps(numpy_fn)
        def dispatch(*args, **kwargs):
            a = args[0]
            if type(a) is list:
                a = a[0]
            if type(a) is np.ndarray and not KERNELS_ON_NUMPY:  # the CPU: the common case, decided first
                return numpy_fn(*args, **kwargs)
            if isinstance(a, np.generic) or a.dtype not in _KERNEL_DTYPES or _paths[family] == "numpy":
                return numpy_fn(*args, **kwargs)
            from . import cuda
            out = getattr(cuda, name)(*args, **kwargs)
            return numpy_fn(*args, **kwargs) if out is NotImplemented else out
        dispatch.numpy = numpy_fn
        dispatch.family = family
        PRIMITIVES[name] = (family, numpy_fn)
        return dispatch
    return decorate
