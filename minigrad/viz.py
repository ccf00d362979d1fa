"""Drawing the graph behind a tensor: Graphviz DOT text, rendered if `dot` is installed."""
import os
import shutil
import subprocess
import tempfile

from .tape import _fmt_shape


def to_dot(tensor):
    """The graph that computed `tensor`, as Graphviz DOT text.

    Ops are boxes (name, output shape, time step if any); leaves are ellipses:
    x0, x1, ... require grad (filled), c0, c1, ... are constants. Edges run from
    inputs to the op that used them; the box of the op that made `tensor` is bold.
    Freed records are dashed and end the drawing there.
    """
    lines = ["digraph minigrad {", '  rankdir=LR;',
             '  node [fontname="Helvetica", fontsize=10];']
    op_ids = {}      # id(record) -> node id
    leaf_ids = {}    # id(tensor) -> node id
    counters = {"x": 0, "c": 0}

    def leaf_node(t):
        if id(t) not in leaf_ids:
            kind = "x" if t.requires_grad else "c"
            name = f"{kind}{counters[kind]}"
            counters[kind] += 1
            leaf_ids[id(t)] = name
            style = ', style=filled, fillcolor="#cfe2f3"' if t.requires_grad else ""
            lines.append(f'  {name} [label="{name}\\n{_fmt_shape(t.shape)} {t.dtype}", '
                         f'shape=ellipse{style}];')
        return leaf_ids[id(t)]

    def op_node(rec, bold=False):
        if id(rec) not in op_ids:
            name = f"op{len(op_ids)}"
            op_ids[id(rec)] = name
            shapes = ", ".join(_fmt_shape(s) for s in rec.shapes)
            step = "" if rec.step is None else f"\\nstep {rec.step}"
            freed = "\\n(freed)" if rec.freed else ""
            style = (", style=dashed" if rec.freed else "") + (", penwidth=2" if bold else "")
            lines.append(f'  {name} [label="{rec.op}\\n{shapes}{step}{freed}", shape=box{style}];')
            pending.append(rec)
        return op_ids[id(rec)]

    pending = []
    if tensor._record is None:
        leaf_node(tensor)
    else:
        op_node(tensor._record, bold=True)
        while pending:
            rec = pending.pop()
            here = op_ids[id(rec)]
            for t in rec.inputs:
                if t._record is None:
                    lines.append(f"  {leaf_node(t)} -> {here};")
                else:
                    slot = f' [label="{t._slot}"]' if len(t._record.shapes) > 1 else ""
                    lines.append(f"  {op_node(t._record)} -> {here}{slot};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(tensor, path):
    """Draw the graph behind `tensor` into `path` (.svg, .png or .pdf) with Graphviz's `dot`.

    The file is written atomically: a failed render leaves no partial file behind.
    """
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    if fmt not in ("svg", "png", "pdf"):
        raise ValueError(f"render: the file name must end in .svg, .png or .pdf, got {path!r}")
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("render: the Graphviz program 'dot' is not installed "
                           "(e.g. apt-get install graphviz); to_dot() gives the DOT text")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".minigrad-", suffix="." + fmt)
    os.close(fd)
    try:
        done = subprocess.run([dot, f"-T{fmt}", "-o", tmp], input=to_dot(tensor),
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"render: dot failed: {done.stderr.strip()}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
