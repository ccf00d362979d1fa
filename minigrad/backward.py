"""The reverse walk: from a tensor back along the tape, adding gradients into the leaves.

Reverse-mode differentiation in one loop. The tape lists records in the order
they ran, so walking it backwards visits every record after all the records that
used its outputs: by the time we reach a record, the gradient of each of its
outputs is complete. We call its backward (the local vector-Jacobian product)
and pass the results on to the records that made its inputs, or, for leaves,
into `.grad`.
"""
import numpy as np

from .backends.devices import array_module
from .tape import TAPE


def backward(root, grad=None, *, retain_graph=False, since_step=None):
    """Add d(root)/d(leaf), contracted with `grad`, into the .grad of every leaf that requires it.

    root:         the Tensor to differentiate (usually a scalar loss)
    grad:         dL/d(root), of root's shape; optional when root has one entry (then 1)
    retain_graph: keep the records used, so that another backward can go through them;
                  by default they are freed as soon as they have been used
    since_step:   treat records of time steps before this one as constants: gradient
                  reaching them stops there (the cut of truncated BPTT)

    Leaves' .grad change only if the whole walk succeeds.
    """
    if not root.requires_grad:
        raise RuntimeError(
            "backward: this tensor does not require grad: none of its inputs requires grad, "
            "or it was computed under no_grad()"
        )
    seed = _seed(root, grad)
    start = root._record
    if start is None:  # a leaf: the gradient of x with respect to x is the seed itself
        _add_to_leaf(root, seed)
        return
    if start.backward is None:
        raise _freed_error(start)

    start.grads = [None] * len(start.shapes)
    start.grads[root._slot] = seed
    touched = [start]   # records holding output gradients, to clean up whatever happens
    used = []           # records whose backward ran, freed at the end unless retained
    leaves = {}         # id(leaf) -> [leaf, gradient summed over its uses, is that array ours?]
    waiting = 1         # records holding gradients not yet passed on: 0 means done
    try:
        for ref in reversed(TAPE._refs):
            if not waiting:
                break  # no gradient left to pass on: older records are not on the path
            rec = ref()
            if rec is None or rec.grads is None:
                continue  # dead, or not on the path to root
            out_grads, rec.grads = rec.grads, None
            waiting -= 1
            if since_step is not None and rec.step is not None and rec.step < since_step:
                continue  # before the window: its outputs are constants
            if rec.backward is None:
                raise _freed_error(rec)
            in_grads = rec.backward(out_grads[0] if len(out_grads) == 1
                                    else _fill_missing(out_grads, rec))
            used.append(rec)
            for t, g in zip(rec.inputs, in_grads):
                if g is None or not t.requires_grad:
                    continue
                src = t._record
                if src is None:
                    if g.shape != t.shape:
                        raise RuntimeError(f"backward: {rec.op} returned a gradient of shape "
                                           f"{g.shape} for an input of shape {t.shape}")
                    entry = leaves.get(id(t))
                    if entry is None:
                        leaves[id(t)] = [t, g, False]  # g may be shared: never add into it
                    elif entry[2]:
                        entry[1] += g                  # our own sum: add in place
                    else:
                        entry[1], entry[2] = entry[1] + g, True
                elif since_step is None or src.step is None or src.step >= since_step:
                    if src.grads is None:
                        src.grads = [None] * len(src.shapes)
                        touched.append(src)
                        waiting += 1
                    held = src.grads[t._slot]
                    src.grads[t._slot] = g if held is None else held + g
                # else: t was made before the cut, so it is a constant here
        # A gradient still waiting means its record is no longer on the tape: it was freed.
        for rec in touched:
            if rec.grads is not None:
                raise _freed_error(rec)
    finally:
        for rec in touched:
            rec.grads = None

    for t, g, ours in leaves.values():
        _add_to_leaf(t, g, ours)
    if not retain_graph:
        for rec in used:
            rec.free()  # the tape sweeps freed records out as it grows


def _seed(root, grad):
    """The starting gradient dL/d(root) as an array of root's shape and dtype."""
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward: a gradient can be implied only for a one-entry output, got shape "
                f"{root.shape}; pass grad= of that shape"
            )
        return array_module(root.data).ones(root.shape, dtype=root.dtype)
    from .tensor import Tensor  # here, not at the top: tensor.py imports this module
    data = grad.data if isinstance(grad, Tensor) else grad
    if isinstance(data, np.ndarray) and data.dtype.kind == "f" and data.dtype != root.dtype:
        raise TypeError(f"backward: grad has dtype {data.dtype}, the tensor {root.dtype}")
    xp = array_module(root.data)
    seed = xp.asarray(data, dtype=root.dtype)
    if seed.shape != root.shape:
        raise ValueError(f"backward: grad of shape {seed.shape} for a tensor of shape {root.shape}")
    return seed


def _fill_missing(grads, rec):
    """Output gradients of a several-output op, with zeros for outputs nothing used."""
    xp = array_module(next(g for g in grads if g is not None))
    return tuple(xp.zeros(shape, dtype) if g is None else g
                 for g, shape, dtype in zip(grads, rec.shapes, rec.dtypes))


def _add_to_leaf(t, g, ours=False):
    """Add g into t.grad; `ours`: g is a fresh array no one else holds."""
    if t.grad is None:
        if ours and g.dtype == t.dtype:
            t.grad = g
        else:
            # A copy: the same gradient array may be shared by several tensors, and the
            # leaf's .grad is its own (optimizers and clipping may change it in place).
            t.grad = array_module(g).array(g, dtype=t.dtype, copy=True)
    else:
        t.grad += g


def _freed_error(rec):
    return RuntimeError(
        f"backward: the graph through record #{rec.index} ({rec.op}) was already freed: a "
        "previous backward() used it, or its time step was freed. Call backward(retain_graph=True) "
        "the first time to go through the same records twice."
    )
