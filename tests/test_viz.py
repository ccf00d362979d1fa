"""Drawing the graph: DOT text, and rendering through Graphviz's dot when it is installed."""
import os
import stat

import numpy as np
import pytest

import minigrad as mg
from minigrad import viz
from minigrad.ops import record


def small_graph():
    x = mg.tensor(np.ones((2, 3)), requires_grad=True)
    w = mg.tensor(np.ones((3, 1)), requires_grad=True)
    c = mg.tensor(np.full((2, 1), 2.0))
    return ((x @ w) * c).tanh().sum()


def test_to_dot_draws_ops_leaves_and_edges():
    dot = viz.to_dot(small_graph())
    assert dot.startswith("digraph minigrad {") and dot.rstrip().endswith("}")
    assert 'op0 [label="sum\\n()", shape=box, penwidth=2];' in dot      # the output, in bold
    for line in ['op1 [label="tanh\\n(2, 1)", shape=box];', "op1 -> op0;",
                 'op2 [label="mul\\n(2, 1)", shape=box];', "op2 -> op1;",
                 'op3 [label="matmul\\n(2, 1)", shape=box];', "op3 -> op2;",
                 'c0 [label="c0\\n(2, 1) float64", shape=ellipse];', "c0 -> op2;",
                 "x0 -> op3;", "x1 -> op3;"]:
        assert line in dot, line
    assert dot.count("fillcolor") == 2                                   # x0, x1 require grad


def test_to_dot_of_a_leaf_is_one_node():
    dot = viz.to_dot(mg.tensor([1.0], requires_grad=True))
    assert 'x0 [label="x0\\n(1,) float32"' in dot and "->" not in dot


def test_to_dot_marks_time_steps_freed_records_and_output_slots():
    tape = mg.get_tape()
    x = mg.tensor(np.arange(4.0), requires_grad=True)
    with tape.at_step(1):
        a = x * 2
    with tape.at_step(2):
        b = a.exp()

    def backward(g):
        return (np.concatenate(g),)
    first, second = record("halves", (b.data[:2], b.data[2:]), (b,), backward)
    tape.free(before_step=2)
    dot = viz.to_dot(second)
    assert "step 2" in dot
    assert 'label="mul\\n(4,)\\nstep 1\\n(freed)", shape=box, style=dashed' in dot
    assert "halves" in dot and 'penwidth=2' in dot
    assert first.op == "halves"


def test_render_needs_graphviz(monkeypatch, tmp_path):
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="'dot' is not installed"):
        viz.render(small_graph(), str(tmp_path / "g.svg"))
    with pytest.raises(ValueError, match=r"\.svg, \.png or \.pdf"):
        viz.render(small_graph(), str(tmp_path / "g.txt"))


def fake_dot(tmp_path, script):
    """A stand-in for Graphviz's dot on PATH: the test checks our plumbing, not Graphviz."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    path = bindir / "dot"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(bindir)


def test_render_writes_the_file_through_dot(monkeypatch, tmp_path):
    # the fake dot copies its input (the DOT text) to the file named after -o
    bindir = fake_dot(tmp_path, 'cat > "$3"\n')
    monkeypatch.setenv("PATH", bindir + os.pathsep + os.environ["PATH"])
    out = tmp_path / "graph.svg"
    viz.render(small_graph(), str(out))
    assert out.read_text().startswith("digraph minigrad {")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".minigrad-")] == []


def test_a_failed_render_leaves_no_file(monkeypatch, tmp_path):
    bindir = fake_dot(tmp_path, 'echo "syntax error" >&2\necho partial > "$3"\nexit 1\n')
    monkeypatch.setenv("PATH", bindir + os.pathsep + os.environ["PATH"])
    out = tmp_path / "graph.png"
    with pytest.raises(RuntimeError, match="dot failed: syntax error"):
        viz.render(small_graph(), str(out))
    assert list(p.name for p in tmp_path.iterdir()) == ["bin"]
