"""Where arrays live and which code computes on them: the one place that decides between backends.

A device is "cpu" (NumPy arrays) or "cuda:N" (CuPy arrays on GPU N; "cuda" means
GPU 0). Ops get `xp`, the NumPy-like module that owns their arrays, from
`array_module`, and the arithmetic that most of minigrad writes once (`x * y`,
`xp.tanh(x)`) runs on either.

The hot primitives have two implementations side by side: a NumPy *twin*, written
with `xp` in minigrad's own files, and a CUDA kernel of ours (kernels/*.cu, launched
by minigrad/cuda.py, a function of the same name and signature). The twin is marked
with `@twin(family, name)`, and this module decides, call by call, which one runs:

    NumPy array                                   -> the twin (NumPy)
    CuPy array, float32/64, family's path "auto"  -> our kernel (matmul: the faster of
                                                     ours and cuBLAS, measured per shape)
    CuPy array, path "kernel"                     -> our kernel
    CuPy array, path "numpy"                      -> the twin, run by CuPy's NumPy-like
                                                     functions (cuBLAS for matmul)

`use(family, path)` and `with using(family=path): ...` force a path per op family,
for the tests and for comparisons.

CuPy is imported here, lazily (`cupy()`), and nowhere else but the kernel loader.
"""
import contextlib
import functools

import numpy as np

CPU = "cpu"
INSTALL = 'pip install "minigrad[gpu]"'

# Op families whose path can be forced. "numpy" runs the twin on any array; "kernel"
# runs our CUDA kernel on GPU arrays; "auto" is our kernel, except that matmul measures.
# "window" is the recurrence of a whole window of an Elman or LSTM layer (kernels/window.cu,
# where the weights fit on chip); its twin is the step loop, whose matmuls and pointwise
# parts follow "matmul" and "cells". Forcing "cells" to "numpy" turns the window kernel off too.
FAMILIES = ("matmul", "elementwise", "reduce", "loss", "cells", "optim", "window")
PATHS = ("auto", "kernel", "numpy")
_paths = dict.fromkeys(FAMILIES, "auto")

# Every twin, by kernel name: name -> (family, the NumPy function). The kernel tests
# check that each has a CUDA wrapper of the same name in minigrad.cuda.
TWINS = {}

# Tests only: send NumPy arrays down the kernel path too (tests/conftest.py's `on_backend`:
# through a CPU emulator of the kernels' C source, or copied to a GPU and back).
KERNELS_ON_NUMPY = False

_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_cupy = None


# -- CuPy, imported on first use -------------------------------------------------

def cupy():
    """The cupy module. RuntimeError saying what is missing when CuPy or a GPU is not usable."""
    global _cupy
    if _cupy is None:
        try:
            import cupy as cp
        except ImportError as e:
            raise RuntimeError(f"device 'cuda': CuPy is not installed ({e}); install the GPU "
                               f"backend with {INSTALL} (CUDA 13 drivers) or "
                               '"minigrad[gpu-cuda12]" (CUDA 12)') from None
        try:
            count = cp.cuda.runtime.getDeviceCount()
        except Exception as e:  # CUDARuntimeError: no driver, a driver too old, no device
            raise RuntimeError(f"device 'cuda': CuPy is installed but no GPU is usable: {e}") from None
        if count == 0:
            raise RuntimeError("device 'cuda': CuPy is installed but it sees no GPU")
        _cupy = cp
    return _cupy


def cuda_available():
    """Whether device "cuda" works here: CuPy installed and at least one GPU usable."""
    try:
        cupy()
    except RuntimeError:
        return False
    return True


# -- devices ---------------------------------------------------------------------

def parse_device(device):
    """Normalize a device name: None or "cpu" -> "cpu"; "cuda" -> "cuda:0"; "cuda:N" checked.

    Asking for a GPU imports CuPy and raises RuntimeError if it is missing or no GPU is usable.
    """
    if device is None or device == CPU:
        return CPU
    if not isinstance(device, str):
        raise TypeError(f"device: expected a string such as 'cpu' or 'cuda', got {type(device).__name__}")
    if device == "cuda" or device.startswith("cuda:"):
        number = device[5:] if device != "cuda" else "0"
        if not number.isdigit():
            raise ValueError(f"device: expected 'cuda' or 'cuda:N' with N a GPU number, got {device!r}")
        count = cupy().cuda.runtime.getDeviceCount()
        if int(number) >= count:
            raise RuntimeError(f"device {device!r}: this machine has {count} GPU(s), numbered from 0")
        return f"cuda:{int(number)}"
    raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def device_of(array):
    """The device that holds `array`: "cuda:N" for a CuPy array, "cpu" for anything else."""
    if type(array) is np.ndarray or not hasattr(array, "__cuda_array_interface__"):
        return CPU
    return f"cuda:{array.device.id}"


def array_module(array):
    """The array module (`xp`) that owns `array`: numpy on the CPU, cupy on a GPU."""
    if type(array) is np.ndarray or isinstance(array, (np.ndarray, np.generic)):
        return np
    return cupy()


def to_device(array, device):
    """`array` on `device` (a parsed name): the array itself if it is there already, else a copy."""
    if device == CPU:  # a NumPy array, the common case, passes without a look at CuPy
        return array if type(array) is np.ndarray else to_numpy(array)
    if device_of(array) == device:
        return array
    cp = cupy()
    with cp.cuda.Device(int(device[5:])):
        return cp.asarray(array)


def as_array(value):
    """value as an array where it is: a CuPy array itself, anything else through numpy.asarray
    (for arguments that are data, not Tensors: class targets, indices)."""
    return value if hasattr(value, "__cuda_array_interface__") else np.asarray(value)


def to_numpy(array):
    """A NumPy array of `array`'s values (a copy from a GPU; the array itself on the CPU;
    anything else through numpy.asarray)."""
    if hasattr(array, "__cuda_array_interface__"):
        return cupy().asnumpy(array)
    return np.asarray(array)


# -- which implementation runs ------------------------------------------------------

def use(family, path):
    """Force `family`'s ops onto `path` ("auto", "kernel" or "numpy"); returns the previous path."""
    if family not in _paths:
        raise ValueError(f"backend.use: unknown op family {family!r}; expected one of {', '.join(FAMILIES)}")
    if path not in PATHS:
        raise ValueError(f"backend.use: unknown path {path!r} for {family}; "
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


def twin(family, name):
    """Mark a NumPy function as the twin of the CUDA kernel wrapper `minigrad.cuda.<name>`.

    The decorated function runs the twin on NumPy arrays, and our kernel on GPU arrays of
    float32 or float64 (unless the family is forced to "numpy"). The first argument decides
    (for a list of arrays, its first array). A wrapper that cannot handle a case (too many
    broadcast axes, say) returns NotImplemented, and the twin runs instead.
    """
    if family not in _paths:
        raise ValueError(f"twin: unknown op family {family!r}")

    def decorate(numpy_fn):
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
        dispatch.kernel = name
        TWINS[name] = (family, numpy_fn)
        return dispatch
    return decorate
