"""The GPU check (benchmarks/gpu_check.sh and the programs it runs) keeps working without a GPU to run it on.

The check runs on a GPU machine now and then; here its self-tests run on every machine,
through the fake CuPy (test_fake_gpu.py) and the CPU emulator of the kernels (emulator.py):
the kernel exerciser must launch every entry point of kernels/*.cu and match every
reference, and the script must get through all its steps. So a renamed kernel, wrapper,
test or benchmark fails here, not on the day someone has a GPU for an hour.
"""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import emulator
import minigrad  # noqa: F401  (registers every primitive)
from benchmarks import gpu_check, gpu_exercise
from minigrad.backends import cuda, dispatch

ROOT = Path(__file__).resolve().parent.parent

needs_emulator = pytest.mark.skipif(bool(emulator.UNAVAILABLE), reason=str(emulator.UNAVAILABLE))


def exercise():
    """The exerciser's self-test, in this process: its Report, and what it printed."""
    printed = io.StringIO()
    with gpu_exercise.fake_gpu() as fake:
        return gpu_exercise.exercise(fake, out=printed), printed.getvalue()


@needs_emulator
def test_the_exerciser_launches_every_entry_point_and_matches_every_reference():
    report, printed = exercise()
    assert report.problems == [], "\n".join(report.problems)
    every = {f"{name}_{precision}" for names in cuda.KERNELS.values() for name in names
             for precision in ("f32", "f64")}
    assert report.entry_points == every  # what the sources define is what the loader lists
    assert every <= set(report.launched) and report.missing == []
    assert report.exercised == set(dispatch.PRIMITIVES)
    assert report.ok and "missing: none; problems: 0" in report.summary()
    assert sum(line.startswith("ok ") for line in printed.splitlines()) == 2 * len(cuda.KERNELS)  # each file, twice


@needs_emulator
def test_the_exerciser_reports_a_wrong_result_a_declined_call_and_a_primitive_left_out(monkeypatch):
    family, binary = dispatch.PRIMITIVES["binary"]
    monkeypatch.setitem(dispatch.PRIMITIVES, "binary", (family, lambda x, y, op: binary(x, y, op) + 1))
    monkeypatch.setattr(cuda, "sum_axes", lambda *args, **kwargs: NotImplemented)
    monkeypatch.setitem(dispatch.PRIMITIVES, "new_op", ("elementwise", None))
    report, printed = exercise()
    assert not report.ok
    assert any(p.startswith("binary add (3, 5, 4, 6) (3, 1, 4, 1) float32: differs") for p in report.problems)
    assert any("cuda.sum_axes returned NotImplemented" in p for p in report.problems)
    assert "primitive new_op: its wrapper cuda.new_op was not exercised" in report.problems
    assert report.missing == ["sum_axes_cols_f32", "sum_axes_cols_f64", "sum_axes_rows_f32", "sum_axes_rows_f64"]
    assert "PROBLEM reduce.cu       float32" in printed


def test_the_exerciser_says_where_the_loaders_table_and_the_sources_disagree(monkeypatch):
    found = gpu_exercise.entry_points()
    found["extra.cu"] = ["extra_f32", "extra_f64"]
    monkeypatch.setitem(cuda.KERNELS, "gone.cu", ("gone",))
    assert gpu_exercise.table_problems(found) == [
        "kernels/extra.cu defines ['extra'], which cuda.KERNELS does not list: launch() cannot find them",
        "cuda.KERNELS lists ['gone'] in gone.cu, which does not exist"]


def test_a_pytest_run_stops_starting_tests_at_the_checks_deadline(tmp_path):
    """The script's pytest steps stop before their timeout and still write their reports;
    the script reads the message to call the step PARTIAL."""
    (tmp_path / "test_three.py").write_text("def test_1(): pass\ndef test_2(): pass\ndef test_3(): pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                           "-p", "benchmarks.gpu_check", str(tmp_path / "test_three.py"),
                           f"--junitxml={tmp_path / 'junit.xml'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, gpu_check.STOP_AT: "1"})  # long past
    assert done.returncode == 2, done.stdout + done.stderr  # pytest's "interrupted"
    assert "Interrupted: the GPU check's time for this step ran out" in done.stdout
    assert "1 passed" in done.stdout and (tmp_path / "junit.xml").exists()


STEPS = ["3 every kernel entry point against its reference", "4 pytest: the tests that need a GPU",
         "5 GPU benchmarks to gpu-bench.json", "5 the report's GPU table to gpu-bench.md",
         "6a sanitizer memcheck", "6b sanitizer racecheck", "6c sanitizer synccheck",
         "7 micro-measurements to micro.json", "6d sanitizer initcheck",
         "8 pytest: the on_backend suites' cuda cases"]


@needs_emulator
def test_the_scripts_self_test_gets_through_every_step(tmp_path):
    """bash benchmarks/gpu_check.sh --self-test: every step that can run without a GPU runs
    and succeeds (about 15 s on two cores, 7 more the first time the emulator builds the
    kernels); the pytest steps collect tests (the selections name some)."""
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--self-test"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OUT": str(out), "PYTHON": sys.executable})
    summary = (out / "summary.txt").read_text()
    assert done.returncode == 0, summary + done.stderr[-3000:]
    lines = summary.splitlines()
    for name in STEPS:
        assert any(line.startswith("ok ") and name in line for line in lines), f"step {name!r} not ok:\n{summary}"
    assert "SKIP    1 install (the self-test installs nothing)" in lines
    assert "EXERCISE: " in summary and "missing: none; problems: 0" in summary
    collected = [line for line in lines if line.startswith(("   pytest-gpu.log", "   pytest-suites.log"))]
    assert len(collected) == 2 and all("tests collected" in line for line in collected), summary
    assert "On the GPU (no GPU: the tests' fake CuPy" in (out / "gpu-bench.md").read_text()
    micro = json.loads((out / "micro.json").read_text())
    sections = [title for title in micro if title != "device"]
    assert len(sections) == 4 and not [t for t in sections if "error" in micro[t]], micro
    assert sorted(p.name for p in out.iterdir()) == ["gpu-bench.json", "gpu-bench.md", "logs.tar.gz",
                                                     "micro.json", "summary.txt"]
