"""The Python side of benchmarks/gpu_check.sh: what it asks of the machine, and a pytest plugin for its pytest runs.

    python -m benchmarks.gpu_check environment   # Python, the libraries, the GPU as CuPy and PyTorch see it
    python -m benchmarks.gpu_check sanitizer     # the path of compute-sanitizer (exit status 1: none found)

As a pytest plugin (`pytest -p benchmarks.gpu_check ...`):
  - with GPU_CHECK_STOP_AT set (seconds since the epoch), no test starts after that time: the
    run ends as interrupted, and still writes its reports (pytest-benchmark's JSON, JUnit XML).
    The script sets it some seconds before a step's timeout, because a run killed in the
    middle of a benchmark writes no JSON at all;
  - --fake-gpu: device "cuda" on the CPU for the whole run, through the tests' fake CuPy and
    the kernels' emulator (gpu_exercise.fake_gpu), so that the script's self-test runs the GPU
    benchmarks and the report's GPU table end to end (at --smoke sizes; the times mean nothing).
"""
import argparse
import contextlib
import glob
import importlib
import os
import shutil
import sys
import time

import pytest

STOP_AT = "GPU_CHECK_STOP_AT"
LIBRARIES = ("numpy", "cupy", "torch", "pytest", "pytest_benchmark", "threadpoolctl", "setuptools", "tqdm",
             "safetensors", "xdist")


# -- python -m benchmarks.gpu_check ... ----------------------------------------------------------

def environment():
    """Print what the check runs with: Python, each library's version (or MISSING), where
    minigrad and its kernels are imported from, and the GPU as CuPy and PyTorch see it."""
    print("python", sys.version.split()[0], sys.executable)
    for name in LIBRARIES:
        try:
            module = importlib.import_module(name)
            print(f"{name} {getattr(module, '__version__', '?')}")
        except Exception as e:  # ImportError, or a library that breaks on import
            print(f"{name} MISSING ({type(e).__name__}: {e})")
    try:
        import minigrad
        from minigrad.backends import cuda
        print(f"minigrad from {os.path.dirname(minigrad.__file__)}; kernels from {cuda.KERNELS_DIR}")
    except Exception as e:
        print(f"minigrad: cannot import: {type(e).__name__}: {e}")
    try:
        import cupy as cp
        runtime = cp.cuda.runtime
        print(f"cupy: {runtime.getDeviceCount()} device(s), CUDA runtime {runtime.runtimeGetVersion()}, "
              f"driver {runtime.driverGetVersion()}")
    except Exception as e:
        print(f"cupy: no GPU: {type(e).__name__}: {e}")
    try:
        import torch
        print(f"torch: cuda available {torch.cuda.is_available()}, CUDA {torch.version.cuda}, "
              f"cuDNN {torch.backends.cudnn.version()}; cudnn.allow_tf32 {torch.backends.cudnn.allow_tf32}, "
              f"matmul.allow_tf32 {torch.backends.cuda.matmul.allow_tf32}")
    except Exception as e:
        print(f"torch: {type(e).__name__}: {e}")
    return 0


def sanitizer():
    """Print the path of compute-sanitizer: on PATH, in a CUDA toolkit's or Nsight's folder,
    or in an NVIDIA wheel. Exit status 1 when there is none."""
    import site
    found = shutil.which("compute-sanitizer")
    patterns = ["/usr/local/cuda*/bin/compute-sanitizer", "/usr/local/cuda*/compute-sanitizer/compute-sanitizer",
                "/opt/nvidia/**/compute-sanitizer"]
    patterns += [f"{base}/nvidia/**/compute-sanitizer" for base in site.getsitepackages()]
    for pattern in ([] if found else patterns):
        hits = [p for p in sorted(glob.glob(pattern, recursive=True)) if os.path.isfile(p) and os.access(p, os.X_OK)]
        if hits:
            found = hits[0]
            break
    if found:
        print(found)
    return 0 if found else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("environment", "sanitizer"))
    args = parser.parse_args(argv)
    return {"environment": environment, "sanitizer": sanitizer}[args.what]()


# -- the pytest plugin ---------------------------------------------------------------------------

_fake = contextlib.ExitStack()  # the fake GPU of a --fake-gpu run, undone when pytest ends


def pytest_addoption(parser):
    parser.getgroup("minigrad GPU check").addoption(
        "--fake-gpu", action="store_true",
        help="device 'cuda' on the CPU: the tests' fake CuPy and the kernels' emulator (a self-test)")


def pytest_configure(config):
    if config.getoption("--fake-gpu"):
        from . import gpu_exercise
        fake = _fake.enter_context(gpu_exercise.fake_gpu())
        # The benchmarks name the GPU in their JSON (benchmarks/conftest.py's gpu_name), which
        # the fake does not know: it gets a name that says what it is.
        patch = _fake.enter_context(pytest.MonkeyPatch.context())
        patch.setattr(fake.cuda.runtime, "getDeviceProperties",
                      lambda device: {"name": "no GPU: the tests' fake CuPy and the kernels' CPU emulator"},
                      raising=False)


def pytest_unconfigure(config):
    _fake.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    yield
    stop_at = os.environ.get(STOP_AT)
    if stop_at and nextitem is not None and time.time() > float(stop_at):
        item.session.shouldstop = (f"the GPU check's time for this step ran out ({STOP_AT}): "
                                   f"tests from {nextitem.nodeid} on were not run")


if __name__ == "__main__":
    sys.exit(main())
