"""Where arrays live: the one place that maps a device name to its array module.

Every op asks this module for `xp`, the NumPy-like module that owns its arrays,
so no other file decides between backends. Today the only backend is NumPy on
the CPU; the CUDA backend (CuPy plus minigrad's own kernels) plugs in here.
"""
import numpy as np

CPU = "cpu"


def parse_device(device):
    """Normalize a device name: None or "cpu" -> "cpu"; "cuda" and "cuda:N" are not built yet."""
    if device is None or device == CPU:
        return CPU
    if not isinstance(device, str):
        raise TypeError(f"device: expected a string such as 'cpu', got {type(device).__name__}")
    if device == "cuda" or device.startswith("cuda:"):
        raise RuntimeError(
            f"device {device!r}: minigrad's CUDA backend is not available in this version; "
            "use device='cpu'"
        )
    raise ValueError(f"device: expected 'cpu' or 'cuda[:N]', got {device!r}")


def array_module(array):
    """The array module (`xp`) that owns `array`: numpy for the CPU."""
    return np

