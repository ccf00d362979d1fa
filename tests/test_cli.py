"""The `minigrad` command: the demo runs, writes its graph, and fails in one line."""
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "minigrad", *args], capture_output=True, text=True)


def test_demo_differentiates_and_gradchecks_an_rnn(tmp_path):
    dot = tmp_path / "graph.dot"
    done = run("demo", "--dot", str(dot))
    assert done.returncode == 0, done.stderr
    assert "Tape: 17 records" in done.stdout
    assert "v16 = add(v10, v15)" in done.stdout
    assert "gradcheck: every entry matches central differences" in done.stdout
    assert dot.read_text().startswith("digraph minigrad {")
    assert [p.name for p in tmp_path.iterdir()] == ["graph.dot"]   # no temporary left behind


def test_errors_are_one_line_and_a_non_zero_exit(tmp_path):
    done = run("demo", "--dot", str(tmp_path / "missing" / "g.dot"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"minigrad demo: error: cannot write {tmp_path / 'missing' / 'g.dot'}: No such file or directory"]
    done = run("bogus")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "invalid choice: 'bogus'" in done.stderr
    done = run("demo", "--seed", "x")
    assert done.returncode == 2 and "invalid int value: 'x'" in done.stderr
    assert "Traceback" not in done.stderr
