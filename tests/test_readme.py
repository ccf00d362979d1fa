"""The README's example runs and prints what the README says it prints."""
import contextlib
import gc
import io
import re
from pathlib import Path

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


def test_ci_runs_the_readme_commands():
    text = README.read_text()
    install, tests = re.findall(r"```sh\n(.*?)\n```", text, re.S)[:2]
    ci = (README.parent / ".ci" / "run").read_text().splitlines()
    assert install in ci and tests in ci
