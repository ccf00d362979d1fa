"""Every kernel source compiles: with NVRTC, as the GPU backend will compile it, and as C++ for
the emulator that the kernel tests run it on. Needs CuPy (for NVRTC), not a GPU. And the
kernel loader's table (minigrad.backends.cuda.KERNELS) names the entry points the sources have.

A kernel that does not compile would otherwise only show on a machine with a GPU.
"""
import re
from pathlib import Path

import pytest

import emulator
from minigrad import backends
from minigrad.backends import cuda

KERNELS = Path(__file__).resolve().parent.parent / "kernels"
SOURCES = sorted(KERNELS.glob("*.cu"))
HEADERS = sorted(KERNELS.glob("*.cuh"))
ARCHS = ["sm_80", "sm_90"]  # A100, H100
# minigrad.backends.cuda.compiler's options. Not --device-as-default-execution-space: with it, a helper
# that lacks __device__ compiles here, and then fails in cupy.RawModule on the GPU.
OPTIONS = ["-std=c++17"]
_ENTRY = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(')


def entry_points(source):
    """The names of the `extern "C" __global__` kernels in a source, comments left out."""
    source = re.sub(r"/\*.*?\*/", " ", source, flags=re.S)
    source = re.sub(r"//[^\n]*", " ", source)
    return _ENTRY.findall(source)


def test_there_are_kernels():
    assert SOURCES, f"no kernel sources (*.cu) in {KERNELS}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_every_entry_point_comes_in_both_precisions(path):
    source = path.read_text()
    assert source.lstrip().startswith('#include "common.cuh"'), \
        f'{path.name}: expected to start with #include "common.cuh"'
    names = entry_points(source)
    assert names, f'{path.name}: no extern "C" __global__ entry point'
    for name in names:
        assert name.endswith(("_f32", "_f64")), \
            f"{path.name}: entry point {name} ends in neither _f32 nor _f64"
        twin = name[:-3] + ("f64" if name.endswith("f32") else "f32")
        assert twin in names, f"{path.name}: {name} has no {twin}"
    assert len(set(names)) == len(names), f"{path.name}: an entry point is defined twice"


def test_the_loaders_table_lists_every_entry_point_in_its_file():
    """minigrad.backends.cuda.KERNELS (each entry point without _f32/_f64, by file) is what
    the sources define: launch() finds a kernel's file there."""
    found = {path.name: sorted({name[:-4] for name in entry_points(path.read_text())})
             for path in SOURCES}
    assert found == {file: sorted(names) for file, names in cuda.KERNELS.items()}


def test_a_primitive_and_its_kernel_share_a_name():
    """grep -rn lstm_step finds the NumPy reference, the launch wrapper and the kernel.
    matmul_add launches matmul (accumulating); sum_axes launches sum_axes_rows or _cols."""
    kernels = {name for names in cuda.KERNELS.values() for name in names}
    assert backends.PRIMITIVES, "no primitive registered"
    for name in backends.PRIMITIVES:
        if name != "matmul_add":
            assert name in kernels or any(k.startswith(name + "_") for k in kernels), \
                f"primitive {name} has no kernel named {name} or {name}_... in kernels/*.cu"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_compiles_with_nvrtc(path, arch):
    pytest.importorskip("cupy", reason='needs CuPy for NVRTC (no GPU needed): pip install -e ".[dev]"')
    from cupy.cuda import nvrtc

    source = path.read_text()
    program = nvrtc.createProgram(source, path.name, [h.read_bytes() for h in HEADERS],
                                  [h.name.encode() for h in HEADERS])
    try:
        try:
            nvrtc.compileProgram(program, [f"-arch={arch}", *OPTIONS])
            failure = None
        except nvrtc.NVRTCError as e:
            failure = (f"NVRTC could not compile {path.name} for {arch} ({e}):\n"
                       f"{nvrtc.getProgramLog(program)}")
        ptx = None if failure else nvrtc.getPTX(program).decode()
    finally:
        nvrtc.destroyProgram(program)
    if failure:
        pytest.fail(failure, pytrace=False)
    entries = set(re.findall(r"\.entry\s+(\w+)\s*\(", ptx))
    missing = [name for name in entry_points(source) if name not in entries]
    assert not missing, f"{path.name} ({arch}): {missing} missing from the PTX, which has {sorted(entries)}"


@pytest.mark.skipif(bool(emulator.UNAVAILABLE), reason=str(emulator.UNAVAILABLE))
@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_compiles_for_the_emulator(path):
    """g++ compiles the source under the emulator's prelude and finds the same entry points."""
    source = path.read_text()
    module = emulator.compile(source, str(path))
    assert sorted(module.names) == sorted(entry_points(source))
    for name in module.names:  # and can pass every parameter
        module.get_function(name)
