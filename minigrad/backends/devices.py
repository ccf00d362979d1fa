"""Devices: where arrays live ("cpu": NumPy; "cuda:N": CuPy on GPU N), and CuPy's lazy import.

The core (tensor.py, ops.py) imports this module to place arrays and to get `xp`, the
NumPy-like module that owns an array (`array_module`); it pulls in no kernel. CuPy is
imported here, lazily (`cupy()`), and nowhere else but the kernel loader (cuda.py).
"""
import numpy as np

CPU = "cpu"
INSTALL = 'pip install "minigrad[gpu]"'

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
    """The array module (`xp`) that owns `array`: numpy on the CPU, cupy on a GPU.

    For a GPU array, its GPU becomes CuPy's current device (in this thread), if it is not
    already: CuPy allocates and computes on its current device only, so that the ops that
    follow, which take `xp` from their first array, run where their arrays are. Ops follow
    their arrays' GPU through this function alone (to_device makes its target current the
    same way; the reverse walk calls this for each record's gradients; cuda.py's launches
    and cuBLAS calls enter the arrays' device themselves), so that a model on "cuda:1"
    runs there without `with cupy.cuda.Device(1):` around it.
    The device stays current after the op, as after cupy.cuda.Device(n).use(); a scope per
    op (`with Device(n):`) would cost its entry and exit on every op.
    """
    if type(array) is np.ndarray or isinstance(array, (np.ndarray, np.generic)):
        return np
    return _current(cupy(), array.device.id)


def _current(cp, n):
    """cp, with GPU n made CuPy's current device."""
    if cp.cuda.runtime.getDevice() != n:
        cp.cuda.Device(n).use()
    return cp


def to_device(array, device):
    """`array` on `device` (a parsed name): the array itself if it is there already, else a
    copy. A GPU `device` becomes CuPy's current device (see array_module)."""
    if device == CPU:  # a NumPy array, the common case, passes without a look at CuPy
        return array if type(array) is np.ndarray else to_numpy(array)
    cp = _current(cupy(), int(device[5:]))
    return array if device_of(array) == device else cp.asarray(array)


def as_array(value):
    """value as an array where it is: a CuPy array itself, anything else through numpy.asarray
    (for arguments that are data, not Tensors: class targets, indices)."""
    return value if hasattr(value, "__cuda_array_interface__") else np.asarray(value)


def own_copy(value):
    """value copied where it is, if it is an array (NumPy or CuPy), else value itself: for raw
    arrays handed to an op whose backward keeps them, so that the caller changing its array
    afterwards cannot change what the backward computes (as minigrad.tensor copies)."""
    if isinstance(value, np.ndarray) or hasattr(value, "__cuda_array_interface__"):
        return array_module(value).array(value, copy=True)
    return value


def read_only(array):
    """array, made read-only if it is a NumPy array, and returned.

    minigrad does this to every array a pending backward may read: a tensor's array (made by
    minigrad.tensor, an optimizer's step or a load) and the output of every recorded op.
    Writing into one (w.data[...] = ...) would change a gradient silently; it raises NumPy's
    "assignment destination is read-only" instead. Replace .data (w.data = new) rather than
    write into it: the records keep the old array, as optimizers do. CuPy arrays have no such
    flag: on a GPU, never write into .data.
    """
    if type(array) is np.ndarray:
        array.setflags(write=False)  # half the cost of array.flags.writeable = False
    return array


def to_numpy(array):
    """A NumPy array of `array`'s values (a copy from a GPU; the array itself on the CPU;
    anything else through numpy.asarray)."""
    if hasattr(array, "__cuda_array_interface__"):
        return cupy().asnumpy(array)
    return np.asarray(array)
