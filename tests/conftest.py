"""Fixtures shared by the test suite."""
import numpy as np
import pytest


@pytest.fixture
def rng():
    """A seeded generator: every test sees the same random numbers on every run."""
    return np.random.default_rng(0)


# -- the GPU backend's absence, simulated so that its errors are tested on every machine --

@pytest.fixture
def no_cupy(monkeypatch):
    """As on a machine where CuPy is not installed."""
    import sys

    from minigrad import backends
    monkeypatch.setattr(backends.devices, "_cupy", None)
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` raises ImportError


@pytest.fixture
def no_gpu(monkeypatch):
    """As on a machine with CuPy but no usable GPU (its runtime raises, as without a driver)."""
    import sys
    import types

    from minigrad import backends

    def device_count():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=device_count))
    monkeypatch.setattr(backends.devices, "_cupy", None)
    monkeypatch.setitem(sys.modules, "cupy", fake)


# -- one fixture, every backend --------------------------------------------------------
#
# The op, cell, layer, optimizer and truncation suites use `on_backend` for every test:
#   numpy:    the NumPy references (minigrad/backends/primitives.py), as on a machine without a GPU;
#   emulated: every primitive's call goes to its CUDA kernel, whose C source runs on the CPU
#             (tests/emulator.py), so the suites check the kernels on any machine;
#   cuda:     every primitive's call goes to its CUDA kernel on a real GPU (the arrays are copied
#             there and back around each call); skipped, saying so, without a usable GPU.
# Device handling (tensors living on a GPU) is tested in tests/test_cuda.py.

BACKENDS = ["numpy", "emulated", "cuda"]


def _round_trip(kernel):
    """A CUDA wrapper taking NumPy arrays: copies them to the GPU, runs `kernel`, writes every
    array argument back (the kernels write into some in place) and returns NumPy results."""
    import numpy as np

    from minigrad import backends

    def call(*args, **kwargs):
        cp = backends.cupy()
        moved = {}

        def there(v):
            if isinstance(v, np.ndarray):
                moved[id(v)] = (v, cp.asarray(v))
                return moved[id(v)][1]
            if isinstance(v, (list, tuple)):
                return type(v)(there(u) for u in v)
            return v
        out = kernel(*[there(a) for a in args], **{k: there(v) for k, v in kwargs.items()})
        if out is NotImplemented:
            return out
        originals = {id(d): a for a, d in moved.values()}
        for a, d in moved.values():
            if a.flags.writeable:
                a[...] = cp.asnumpy(d)

        def back(v):
            if isinstance(v, (list, tuple)):
                return type(v)(back(u) for u in v)
            if id(v) in originals:
                return originals[id(v)]
            return cp.asnumpy(v) if hasattr(v, "__cuda_array_interface__") else v
        return back(out)
    return call


@pytest.fixture
def emulated_kernels(monkeypatch):
    """minigrad.backends.cuda with its kernels built for the CPU by tests/emulator.py (skipped, saying
    why, where the emulator cannot build them)."""
    import emulator

    from minigrad.backends import cuda
    if emulator.UNAVAILABLE:
        pytest.skip(emulator.UNAVAILABLE)
    monkeypatch.setattr(cuda, "compiler", emulator.compile)
    cuda.clear_cache()
    yield
    cuda.clear_cache()


@pytest.fixture(params=BACKENDS)
def on_backend(request, monkeypatch):
    """Run the test on each backend (see above); yields the backend's name."""
    from minigrad import backends
    from minigrad.backends import cuda
    name = request.param
    only = request.node.get_closest_marker("numpy_only")
    if only and name != "numpy":
        pytest.skip(f"runs on NumPy only: {only.args[0]}")
    if name == "emulated":
        request.getfixturevalue("emulated_kernels")
    elif name == "cuda":
        if not backends.cuda_available():
            pytest.skip("needs a usable CUDA GPU (CuPy and a driver); this machine has none")
        for kernel in backends.PRIMITIVES:
            monkeypatch.setattr(cuda, kernel, _round_trip(getattr(cuda, kernel)))
    if name != "numpy":
        monkeypatch.setattr(backends.dispatch, "KERNELS_ON_NUMPY", True)
    yield name
