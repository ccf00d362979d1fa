"""Packaging: the CUDA sources under kernels/ ship inside the wheel as minigrad.kernels."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_the_kernels_folder(tmp_path):
    # Build from a copy, so the checkout gets no build/ or egg-info, and add a probe
    # kernel to prove that every .cu file under kernels/ is picked up.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("minigrad", "kernels"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    (src / "kernels" / "probe.cu").write_text('extern "C" __global__ void probe() {}\n')

    out = tmp_path / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(out), str(src)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob("minigrad-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"minigrad/__init__.py", "minigrad/nn/functional.py", "minigrad/kernels/__init__.py",
            "minigrad/kernels/README.md", "minigrad/kernels/probe.cu"} <= names
    assert not any(n.startswith("kernels/") for n in names)   # only under minigrad/
