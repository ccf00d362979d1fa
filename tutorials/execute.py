"""Run the tutorials top to bottom and save them with their outputs.

    python tutorials/execute.py                   # every notebook
    python tutorials/execute.py 3-truncated-bptt  # some of them (names with or without .ipynb)

Run it after editing a notebook: the test suite (tests/test_tutorials.py) executes every
notebook again, and fails when a notebook's saved outputs do not come from its current cells
(a fingerprint of the cells is saved in the notebook's metadata).

Each notebook runs in a fresh kernel of this Python (so with the minigrad installed here), in
an empty temporary directory: a notebook must not depend on, or write into, the folder it
lives in. The notebooks keep themselves small: their first cell asks for PNG figures at a
modest resolution, and the tests bound each saved notebook's size.
"""
import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from minigrad.io import atomic_file

HERE = Path(__file__).resolve().parent
NOTEBOOKS = sorted(HERE.glob("[0-9]-*.ipynb"))
KERNEL = "minigrad-tutorials"
CELL_TIMEOUT = 600  # seconds: a guard against a cell that hangs, not a speed target


def fingerprint(nb):
    """A hash of the notebook's cells (kind and text): what its outputs must come from."""
    cells = [[cell.cell_type, cell.source] for cell in nb.cells]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()[:16]


@contextlib.contextmanager
def kernel_of_this_python():
    """A Jupyter kernel spec named KERNEL that starts this very Python, found first.

    The usual "python3" kernel may be another installation's Python; this one is the Python
    running us, whose minigrad is the one under test.
    """
    with tempfile.TemporaryDirectory(prefix="minigrad-kernel-") as root:
        spec = Path(root) / "kernels" / KERNEL
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "minigrad tutorials", "language": "python"}))
        saved = {name: os.environ.get(name) for name in ("JUPYTER_PATH", "MPLBACKEND")}
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [root, saved["JUPYTER_PATH"]]))
        os.environ.pop("MPLBACKEND", None)  # a non-interactive backend would hide the figures
        try:
            yield KERNEL
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def execute(path):
    """Run the notebook at `path` in a fresh kernel; return (the executed notebook, seconds).
    A cell that raises stops the run with nbclient's CellExecutionError, which shows it."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    with kernel_of_this_python() as kernel, tempfile.TemporaryDirectory(prefix="minigrad-nb-") as cwd:
        client = nbclient.NotebookClient(nb, kernel_name=kernel, timeout=CELL_TIMEOUT,
                                         resources={"metadata": {"path": cwd}})
        start = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - start
    return nb, seconds


def save(path):
    """Execute the notebook at `path` and write it back with its outputs, atomically."""
    import nbformat

    nb, seconds = execute(path)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # timestamps: noise in every diff
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["minigrad"] = {"fingerprint": fingerprint(nb), "seconds": round(seconds, 1)}
    with atomic_file(path, "w") as f:  # a failed write leaves the old notebook whole
        nbformat.write(nb, f)
    return seconds


def main(argv):
    if argv:
        wanted = [HERE / (name if name.endswith(".ipynb") else name + ".ipynb") for name in argv]
        missing = [p.name for p in wanted if not p.exists()]
        if missing:
            print(f"execute: no such notebook in {HERE}: {', '.join(missing)}", file=sys.stderr)
            return 2
    else:
        wanted = NOTEBOOKS
    try:
        from nbclient.exceptions import CellExecutionError
        import ipykernel  # noqa: F401  (the kernel the notebooks run in)
    except ImportError as e:
        print(f"execute: {e.name} is not installed; pip install -e \".[tutorials]\"", file=sys.stderr)
        return 2
    for path in wanted:
        try:
            seconds = save(path)
        except CellExecutionError as e:  # the cell's own traceback is in e; one line here
            print(f"execute: {path.name}: a cell raised {e.ename}: {e.evalue}", file=sys.stderr)
            return 1
        print(f"{path.name}: {seconds:.1f} s, {path.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
