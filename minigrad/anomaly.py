"""Anomaly detection: with `detect_anomaly()` on, every op checks its output and the reverse
walk every gradient for NaN and inf, and the first one found raises, naming the op.

Off (the default) it costs one flag test per op and per record walked (the tape's `anomaly`, read
in ops.record and in backward.py); on, it adds a pass over every array, and on a GPU a wait
for the answer.
"""
import functools

import numpy as np

from .backends.devices import array_module
from .tape import get_tape


class detect_anomaly:
    """Context manager (and decorator), as PyTorch's: inside it, an op whose output holds NaN
    or inf, or a backward that gives such a gradient, raises a RuntimeError naming the op,
    its record on the tape and the shapes of its inputs.

        with minigrad.detect_anomaly():
            loss = model(x)
            loss.backward()
    """

    def __init__(self):
        self._previous = []  # (tape, its switch before), one per `with` this object entered

    def __enter__(self):
        tape = get_tape()  # the calling thread's, as no_grad()
        self._previous.append((tape, tape.anomaly))
        tape.anomaly = True

    def __exit__(self, *exc):
        tape, previous = self._previous.pop()
        tape.anomaly = previous

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with detect_anomaly():
                return fn(*args, **kwargs)
        return wrapper


def check_output(op, outs, inputs, rec):
    """Raise if a float output of op (outs: a tuple of arrays) holds NaN or inf. rec: the
    op's record, or None when it was not recorded."""
    for k, out in enumerate(outs):
        bad = _nonfinite(out)
        if bad:
            which = f"output {k}" if len(outs) > 1 else "output"
            raise RuntimeError(f"detect_anomaly: {_name(op, rec)} gave {bad} in its {which} of shape "
                               f"{out.shape}; {_inputs(inputs)}")


def check_gradients(rec, in_grads):
    """Raise if the backward of the record rec gave a gradient holding NaN or inf."""
    for k, g_x in enumerate(in_grads):
        bad = None if g_x is None else _nonfinite(g_x)
        if bad:
            raise RuntimeError(f"detect_anomaly: the backward of {_name(rec.op, rec)} gave {bad} in "
                               f"the gradient of its input {k} (of shape {g_x.shape}); "
                               f"{_inputs(rec.inputs)}")


def _nonfinite(a):
    """'nan', 'inf' or 'nan and inf' for a float array holding them, else None."""
    if getattr(a, "dtype", np.dtype(bool)).kind != "f":
        return None
    xp = array_module(a)
    if bool(xp.isfinite(a).all()):
        return None
    nan, inf = bool(xp.isnan(a).any()), bool(xp.isinf(a).any())
    return "nan and inf" if nan and inf else ("nan" if nan else "inf")


def _name(op, rec):
    if rec is None:
        return f"{op} (not recorded)"
    step = "" if rec.step is None else f", time step {rec.step}"
    return f"{op} (record #{rec.index}{step})"


def _inputs(inputs):
    """The inputs' shapes, and which of them already held NaN or inf (then the op only passed
    it on: look at where that input came from)."""
    shapes = ", ".join(str(tuple(t.shape)) for t in inputs)
    held = [f"input {k} ({bad})" for k, t in enumerate(inputs) if (bad := _nonfinite(t.data))]
    return f"its inputs: {shapes}" + (f"; {', '.join(held)} already held them" if held
                                     else ", all finite")
