"""The backends: everything between the autodiff core and the hardware.

  devices.py     where arrays live ("cpu", "cuda:N"), `array_module`, CuPy's lazy import
  primitives.py  the NumPy reference of every array-level primitive a CUDA kernel implements
  cuda.py        the kernel loader (kernels/*.cu through NVRTC) and one launch per primitive
  dispatch.py    the one place that picks, call by call, the kernel or the NumPy reference

A primitive, its launch wrapper and its kernel's entry point share one name
(`grep -rn lstm_step` finds all three).
"""
from .devices import (CPU, array_module, as_array, cuda_available, cupy, device_of, parse_device,
                      to_device, to_numpy)
from .dispatch import FAMILIES, PATHS, PRIMITIVES, path, use, using

__all__ = ["CPU", "array_module", "as_array", "cuda_available", "cupy", "device_of",
           "parse_device", "to_device", "to_numpy", "FAMILIES", "PATHS", "PRIMITIVES", "path",
           "use", "using"]
