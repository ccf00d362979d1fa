"""The README's example runs and prints what the README says it prints."""
import contextlib
import gc
import io
import re
from pathlib import Path

import pytest

import minigrad as mg

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_prints_what_the_readme_shows():
    text = README.read_text()
    code = re.search(r"## An example\n\n```python\n(.*?)```", text, re.S).group(1)
    shown = re.search(r"prints\n\n```\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 16
    gc.collect()
    mg.get_tape().clear()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    assert out.getvalue() == shown


def test_readme_tbptt_example_learns():
    text = README.read_text()
    code = re.search(r"## Training a recurrent network.*?```python\n(.*?)```", text, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 20
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    lines = out.getvalue().splitlines()
    losses = [float(line.rsplit(" ", 1)[1]) for line in lines]
    assert len(losses) == 4 and all("100 updates" in line for line in lines)
    assert losses[-1] < losses[0] / 10  # it learns the delay


def test_readme_layer_example_gives_the_cell_examples_losses():
    text = README.read_text()
    cells = re.search(r"## Training a recurrent network.*?```python\n(.*?)```", text, re.S).group(1)
    layer = re.search(r"### Faster: a sequence layer.*?```python\n(.*?)```", text, re.S).group(1)
    printed = []
    namespace = {}
    for code in (cells, layer):  # the layer example reuses the data of the cell example
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(README), "exec"), namespace)
        printed.append([float(line.rsplit(" ", 1)[1]) for line in out.getvalue().splitlines()])
    assert len(printed[1]) == 4 and printed[1][-1] < printed[1][0] / 10
    for a, b in zip(*printed):  # float32 and three printed digits
        assert abs(a - b) <= 0.002 + 0.01 * a


def test_readme_states_the_semantics_of_bptt_py():
    """The seven rules in the README are the ones in train_sequence's docstring, word for word."""
    from minigrad.bptt import train_sequence

    def words(text):
        return " ".join(text.replace("\\*", "*").replace("`", "").split())

    readme = re.search(r"steps\nnumbered 1..n:\n\n(.*?)\n\nWhen to use", README.read_text(), re.S).group(1)
    doc = train_sequence.__doc__.split("steps numbered 1..n:")[1]
    rules = lambda text: [words(r) for r in re.split(r"\n *\d\. ", "\n" + text.strip())[1:]]  # noqa: E731
    assert len(rules(readme)) == 7
    assert rules(readme) == rules(doc)


def test_ci_runs_the_readme_commands():
    text = README.read_text()
    install, tests = re.findall(r"```sh\n(.*?)\n```", text, re.S)[:2]
    ci = (README.parent / ".ci" / "run").read_text().splitlines()
    assert install in ci and tests in ci


def _gpu_examples():
    text = README.read_text()
    section = re.search(r"## On a GPU\n(.*?)\n## ", text, re.S).group(1)
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_gpu_examples_run_on_the_cpu_with_cpu_for_cuda():
    """The GPU section's Python, with "cuda" read as "cpu": the API it shows exists and runs
    on any machine (on a GPU the next test runs it as written)."""
    move, switch = _gpu_examples()
    exec(compile(move.replace('"cuda"', '"cpu"'), str(README), "exec"), {})
    from minigrad import backends
    try:
        exec(compile(switch, str(README), "exec"), {})
    finally:
        for family in backends.FAMILIES:
            backends.use(family, "auto")


def test_the_gpu_example_runs_on_a_gpu():
    from minigrad import backends
    if not backends.cuda_available():
        pytest.skip("needs a usable CUDA GPU (CuPy and a driver); this machine has none")
    move, _ = _gpu_examples()
    namespace = {}
    exec(compile(move, str(README), "exec"), namespace)
    assert namespace["hs"].device == "cuda:0" and namespace["lstm"].weight_hh.grad is not None
