"""minigrad's CUDA sources (`*.cu`, shared helpers in `*.cuh`), shipped as package data.

Installed, this folder is the package `minigrad.kernels`; the kernel loader reads
the sources with `importlib.resources.files("minigrad.kernels")` and compiles them
at run time with NVRTC (through CuPy), so no CUDA compiler is needed to install.
"""
