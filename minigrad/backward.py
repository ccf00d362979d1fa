"""The reverse walk: from a tensor back along the tape, adding gradients into the leaves.

Reverse-mode differentiation is one loop, the chain rule applied record by record. The tape
lists records in the order they ran, so walking it newest first reaches every record after
all the records that used its outputs: by then the gradient g of each of its outputs is
complete. We call its backward (the local vector-Jacobian product, g -> one g_x per input)
and send each g_x on: to the record that made x, or, if x is a leaf, into x's sum.

Names follow ops.py: `g` is dL/d(output) of the record at hand, `g_x` is dL/dx for its input x.
The loop is in `backward`; the bookkeeping around it is in `_Path` (which records hold
gradients, the cut of truncated BPTT, freed records), `_LeafSums` (the leaves' sums) and
`_watched` (Tensor.register_hook and retain_grad: a tensor's hooks run when its gradient is
complete, before it goes on).
"""
import numpy as np

from . import anomaly
from .backends.devices import array_module
from .tape import get_tape, newest_first


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
    seed = _seed(root, grad)
    if root._record is None:  # a leaf: the gradient of x with respect to x is the seed itself
        _add_to_leaf(root, seed if root._hooks is None else root._hooks.run(root, seed))
        return
    path = _Path(root, seed, since_step)  # the records that hold output gradients
    leaves = _LeafSums()
    tape = get_tape()  # the calling thread's: its anomaly switch
    try:
        for rec, g in path.reached(newest_first()):  # g: dL/d(rec's outputs), complete
            if rec.watched is not None:             # an output has hooks or keeps its gradient
                g = _watched(rec, g, leaves)
            in_grads = _local_gradients(rec, g)     # the chain rule at one op: g -> (g_x, ...)
            if tape.anomaly:                        # inside detect_anomaly(): check them
                anomaly.check_gradients(rec, in_grads)
            for x, g_x in zip(rec.inputs, in_grads):
                if g_x is None or not x.requires_grad:
                    continue                        # no gradient for this input
                if x._record is None:
                    leaves.add(x, g_x, rec)         # into the leaf's sum
                else:
                    path.send(x, g_x, rec)          # on to the record that made x
    except BaseException:
        path.clear()  # on success the walk took every gradient off the records itself
        raise
    leaves.add_into_grads()
    if not retain_graph:
        path.free_used()


class _Path:
    """The records on the path from root back to the leaves, and the gradients they hold.

    A record joins the path when the first gradient reaches one of its outputs; the
    gradients of its outputs are summed on it (`Record.grads`, one entry per output) until
    the walk reaches it and takes them. Two things stop a gradient on its way:
      - the cut: a record of a time step before `since_step` made a constant;
      - a freed record: the gradient cannot go through it, which is an error.
    """

    __slots__ = ("since_step", "joined", "mine", "waiting")

    def __init__(self, root, seed, since_step):
        self.since_step = since_step
        self.joined = []    # records that received gradients: used, unless the walk fails
        self.mine = set()   # their ids: the walk passes other threads' records, which may
                            # hold gradients of a walk of their own
        self.waiting = 0    # records holding gradients not yet taken: 0 means done
        if root._record.freed:
            raise _freed_error(root._record)
        self.send(root, seed, None)

    def send(self, x, g_x, by):
        """Add g_x, computed by the record `by`, into the gradient of x, an output of x._record."""
        rec = x._record
        if g_x.shape != rec.shapes[x._slot]:
            raise _shape_error(by, x, g_x)
        grads = rec.grads
        if grads is None:   # the first gradient to reach rec: rec joins the path
            if self.since_step is not None and rec.step is not None and rec.step < self.since_step:
                return      # made before the cut: x is a constant here
            if rec.backward is None:  # freed
                raise _freed_error(rec)
            grads = rec.grads = [None] * len(rec.shapes)
            self.joined.append(rec)
            self.mine.add(id(rec))  # (rec stays alive in joined: its id is not reused)
            self.waiting += 1
        held = grads[x._slot]
        grads[x._slot] = g_x if held is None else held + g_x

    def reached(self, records):
        """(record, g) for each of `records` (newest first) that gradients reached, g taken
        off the record: one array, or for several outputs a tuple with zeros where nothing
        arrived. Stops when no gradient is left to pass on."""
        for rec in records:
            if not self.waiting:
                return      # no gradient left to pass on: older records are not on the path
            grads = rec.grads
            if grads is None or id(rec) not in self.mine:
                continue    # not on the path (or on another thread's)
            rec.grads = None
            self.waiting -= 1
            yield rec, (grads[0] if len(grads) == 1 else _fill_missing(grads, rec))
        if self.waiting:  # a record that joined is live, so on the tape: this cannot happen
            raise RuntimeError("backward: the walk ended with gradients not passed on: "
                               "a record on the path is no longer on the tape")

    def clear(self):
        """Take every gradient off the records (after an error, some are left on)."""
        for rec in self.joined:
            rec.grads = None

    def free_used(self):
        """Free the records the walk went through (after a successful walk, all that joined)."""
        for rec in self.joined:
            rec.free()  # the tape sweeps freed records out as it grows


class _LeafSums:
    """Each leaf's gradient summed over its uses, added into its .grad once the walk succeeds
    (after the leaf's hooks, if it has any); so are the gradients of non-leaves that keep
    theirs (retain_grad).

    Leaf ownership: the first gradient to reach a leaf may be an array someone else holds
    too (add's backward hands the same g to both inputs), so it is never added into in place;
    the second makes a fresh array, ours, and the uses after it add into that.
    """

    __slots__ = ("sums", "kept")

    def __init__(self):
        self.sums = {}  # id(leaf) -> [leaf, its gradient so far, is that array ours?]
        self.kept = []  # (non-leaf, its gradient): retain_grad's

    def add(self, x, g_x, by):
        """Add g_x, computed by the record `by`, into the sum of the leaf x."""
        if g_x.shape != x.data.shape:
            raise _shape_error(by, x, g_x)
        entry = self.sums.get(id(x))
        if entry is None:
            self.sums[id(x)] = [x, g_x, False]    # perhaps shared: never add into it
        elif entry[2]:
            entry[1] += g_x                       # our own sum: add in place
        else:
            entry[1], entry[2] = entry[1] + g_x, True

    def add_into_grads(self):
        """Add each sum into its leaf's .grad (the walk succeeded)."""
        sums = self.sums.values()
        # (checked now, not as leaves join: a hook may register another during the walk)
        if any(x._hooks is not None for x, _, _ in sums):
            # every hook first, so that a hook that raises leaves every .grad as it was;
            # a hook may return an array it keeps, so what it returns is not ours
            sums = [(x, g_x, ours) if x._hooks is None else (x, x._hooks.run(x, g_x), False)
                    for x, g_x, ours in sums]
        for x, g_x, ours in sums:
            _add_to_leaf(x, g_x, ours)
        for x, g_x in self.kept:
            _add_to_leaf(x, g_x)


def _watched(rec, g, leaves):
    """rec's output gradients g after the hooks of its outputs; those that keep their
    gradient (retain_grad) are noted in `leaves`, to get it once the walk succeeds."""
    several = len(rec.shapes) > 1
    gs = list(g) if several else [g]
    for slot, ref in rec.watched.items():
        t = ref()
        if t is None:  # the output is gone: nobody can read its gradient or remove its hooks
            continue
        gs[slot] = t._hooks.run(t, gs[slot])
        if t._hooks.retain:
            leaves.kept.append((t, gs[slot]))
    return tuple(gs) if several else gs[0]


def _local_gradients(rec, g):
    """rec's backward applied to g: one gradient (or None) per input, in the inputs' order.
    On a GPU it runs on the GPU of rec's outputs (array_module makes it current): a graph
    that moved between GPUs (.to) has records on each."""
    if type(g) is not np.ndarray:
        array_module(g[0] if type(g) is tuple else g)
    in_grads = rec.backward(g)
    if not isinstance(in_grads, (tuple, list)) or len(in_grads) != len(rec.inputs):
        got = (f"{len(in_grads)} gradients" if isinstance(in_grads, (tuple, list))
               else f"a {type(in_grads).__name__}")
        raise RuntimeError(f"backward: {rec.op}'s backward returned {got} for {len(rec.inputs)} "
                           "input(s); it must return a tuple with one gradient (or None) per input")
    return in_grads


def _seed(root, grad):
    """The starting gradient dL/d(root) as an array of root's shape and dtype."""
    if not root.requires_grad:
        raise RuntimeError(
            "backward: this tensor does not require grad: none of its inputs requires grad, "
            "or it was computed under no_grad()"
        )
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


def _add_to_leaf(x, g_x, ours=False):
    """Add g_x into x.grad; `ours`: g_x is a fresh array no one else holds."""
    xp = array_module(g_x)  # (on a GPU: g_x's, the leaf's, made current)
    if x.grad is None:
        if ours and g_x.dtype == x.dtype:
            x.grad = g_x
        else:
            # A copy: the same gradient array may be shared by several tensors, and the
            # leaf's .grad is its own (optimizers and clipping may change it in place).
            x.grad = xp.array(g_x, dtype=x.dtype, copy=True)
    else:
        x.grad += g_x


def _shape_error(rec, x, g_x):
    return RuntimeError(f"backward: {rec.op} returned a gradient of shape {g_x.shape} "
                        f"for an input of shape {x.shape}")


def _freed_error(rec):
    return RuntimeError(
        f"backward: the graph through record #{rec.index} ({rec.op}) was already freed: a "
        "previous backward() used it, or its time step was freed. Call backward(retain_graph=True) "
        "the first time to go through the same records twice."
    )
