"""The tape: one record per differentiable op, in the order the ops ran (a Wengert list).

Recording and replaying are separate: this file writes and frees records;
`backward.py` walks them in reverse. Each thread has a tape of its own (PER_THREAD, at the
end), so threads never see each other's records or recording switch.

Who owns what. Each output tensor owns the record that made it, and each record
owns its input tensors, so the graph behind a tensor lives exactly as long as
the tensor does, as everywhere else in Python. The tape only *lists* records
(through weak references), oldest first: that order is a valid order for the
reverse walk, so backward never sorts the graph, and a graph nobody can reach
any more (an evaluation pass run without `no_grad()`, say) disappears by itself
instead of piling up on the tape.

Time. Truncated backpropagation through time needs four things from the tape,
and each is one attribute, one loop or one block here:
  - `tape.at_step(s)` labels every record made inside it with the time step s;
  - `backward(..., since_step=s)` treats records of steps before s as constants;
  - `tape.free(before_step=s)` drops the records of steps before s;
  - `tape.steps(n)` hands out n labels no one else uses, and frees their records at its end
    (`tape.reserve(n)` hands them out alone).
"""
import contextlib
import functools
import heapq
import itertools
import numbers
import threading
import weakref


class Record:
    """One line of the Wengert list: `outputs = op(*inputs)`, with its local derivative.

    op:       the op's name, e.g. "matmul"
    inputs:   the input Tensors (constants included), in the op's argument order
    backward: a closure g -> (one gradient per input, None where there is none);
              for an op with several outputs, g is a tuple with one array per output.
              The arrays it needs were saved in the closure when the op ran; see `saved`.
              None once the record is freed.
    shapes, dtypes: of the outputs (kept for the listing; the outputs may be gone)
    index:    position in the order of all records ever made (increasing)
    step:     the time step that made it, or None outside any step
    watched:  None, or {output slot: weak reference to that output} for outputs with hooks
              or a kept gradient (Tensor.register_hook, Tensor.retain_grad)
    """

    __slots__ = ("op", "inputs", "backward", "shapes", "dtypes", "index", "step",
                 "grads", "watched", "__weakref__")

    def __init__(self, op, inputs, backward, shapes, dtypes, index, step):
        self.op = op
        self.inputs = inputs
        self.backward = backward
        self.shapes = shapes
        self.dtypes = dtypes
        self.index = index
        self.step = step
        self.grads = None  # the outputs' gradients, only while backward runs
        self.watched = None

    @property
    def freed(self):
        return self.backward is None

    @property
    def saved(self):
        """What the op saved for its backward: the closure's variables, by name."""
        if self.backward is None or self.backward.__closure__ is None:
            return {}
        names = self.backward.__code__.co_freevars
        return {n: c.cell_contents for n, c in zip(names, self.backward.__closure__)}

    def free(self):
        """Let go of the saved arrays and the inputs, so the memory behind them can go."""
        self.backward = None
        self.inputs = ()

    def __repr__(self):
        ins = ", ".join(str(tuple(t.shape)) for t in self.inputs)
        outs = ", ".join(str(s) for s in self.shapes)
        state = " freed" if self.freed else ""
        step = "" if self.step is None else f" step={self.step}"
        return f"<Record #{self.index} {self.op}({ins}) -> {outs}{step}{state}>"


class Tape:
    """The list of records, oldest first, and the switch that turns recording on and off.

    len(tape) counts the live records; iterating yields them oldest first;
    str(tape) is the Wengert list, one line per record.
    """

    __slots__ = ("enabled", "step", "anomaly", "_refs", "_compact_at", "_labels")

    def __init__(self):
        self.enabled = True     # False inside no_grad()
        self.anomaly = False    # True inside detect_anomaly(): ops check what they give (anomaly.py)
        self.step = None        # the time-step label given to new records
        self._refs = []         # weak references to records, oldest first
        self._compact_at = 1024  # when to sweep dead references out of _refs
        self._labels = 0        # step labels handed out by steps(): 1 .. _labels

    # -- recording ----------------------------------------------------------

    def record(self, op, inputs, backward, shapes, dtypes):
        rec = Record(op, inputs, backward, shapes, dtypes, next(_INDEX), self.step)
        refs = self._refs
        refs.append(weakref.ref(rec))
        if len(refs) >= self._compact_at:
            self._compact()
        return rec

    def _compact(self):
        """Drop references to records that died or were freed (amortized O(1) per record)."""
        live = []
        for ref in self._refs:
            rec = ref()
            if rec is not None and rec.backward is not None:
                live.append(ref)
        self._refs = live
        self._compact_at = max(1024, 2 * len(live))

    def at_step(self, step, record=True):
        """Label every record made inside the block with `step` (an int); with record=False,
        also stop recording inside it, as no_grad() does.

            with tape.at_step(7):
                ...
        """
        return _AtStep(self, step, record)

    @contextlib.contextmanager
    def steps(self, n):
        """A block that owns n fresh step labels, base+1 .. base+n: `with tape.steps(n) as base:`.

        No other block gets the same labels, so `since_step` and `free` within one block never
        touch the records of another (an earlier block, or one nested inside). Leaving the block,
        even by an exception, frees every record still labelled base+1 .. base+n.
        train_sequence runs each call inside one: its step s is labelled base + s.
        Labels given by hand to at_step() are not reserved: keep them out of the blocks' way.
        """
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"Tape.steps: n must be an integer >= 0, got {n!r}")
        base = self.reserve(n)
        try:
            yield base
        finally:
            self.free(before_step=base + n + 1, from_step=base + 1)

    def reserve(self, n):
        """n fresh step labels, base+1 .. base+n, that no other block or reservation gets;
        returns base. steps(n) is reserve(n) with freeing at its end; a bptt.Stream, which
        cannot know its length, reserves a range no sequence will exhaust and frees it
        itself."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"Tape.reserve: n must be an integer >= 0, got {n!r}")
        base = self._labels
        self._labels += int(n)
        return base

    # -- freeing ------------------------------------------------------------

    def free(self, before_step, from_step=None):
        """Free the records of the time steps before `before_step` (and from `from_step`,
        if given); unlabeled records stay."""
        for rec in self:
            if (rec.step is not None and rec.step < before_step
                    and (from_step is None or rec.step >= from_step)):
                rec.free()
        self._compact()

    def clear(self):
        """Free every record on the tape."""
        for rec in self:
            rec.free()
        self._compact()

    # -- looking at it ------------------------------------------------------

    def __iter__(self):
        return _live(self._refs)

    def newest_first(self):
        """The live records, newest first: the order of the reverse walk (backward.py).

        A record comes after every record that used one of its outputs, because an op runs
        after the ops that made its inputs. Records freed or made while it runs are left out.
        """
        return _live(reversed(self._refs))

    def __len__(self):
        return sum(1 for _ in self)

    def __repr__(self):
        return f"<Tape: {len(self)} records, recording {'on' if self.enabled else 'off'}>"

    def __str__(self):
        return wengert_list(list(self))


def _live(refs):
    """The records behind weak references `refs`, in their order, less the dead and the freed."""
    for ref in refs:
        rec = ref()
        if rec is not None and rec.backward is not None:
            yield rec


class _AtStep:
    """The context manager of Tape.at_step (a class, not a generator: it runs every time step)."""

    __slots__ = ("tape", "step", "record", "previous")

    def __init__(self, tape, step, record):
        self.tape, self.step, self.record = tape, step, record

    def __enter__(self):
        tape = self.tape
        self.previous = tape.step, tape.enabled
        tape.step = self.step
        if not self.record:
            tape.enabled = False
        return tape

    def __exit__(self, *exc):
        self.tape.step, self.tape.enabled = self.previous


def wengert_list(records):
    """The records as a Wengert list: one line `v3 = tanh(v2)` per record, with shapes.

    Intermediate values are named v0, v1, ... in order; inputs that no listed
    record made are named x0, x1, ... (leaves that require grad), c0, c1, ...
    (constants) and s0, s1, ... (values made by records outside the listing,
    such as a freed earlier time step).
    """
    names = {}      # id(record) -> "vK"
    outside = {}    # id(tensor) -> name, for inputs no listed record made
    counters = {"x": 0, "c": 0, "s": 0}
    lines = [f"Tape: {len(records)} record{'s' if len(records) != 1 else ''}"]

    def name_of(t):
        rec = t._record
        if rec is not None and id(rec) in names:
            base = names[id(rec)]
            return base if len(rec.shapes) == 1 else f"{base}.{t._slot}"
        if id(t) not in outside:
            kind = "s" if rec is not None else ("x" if t.requires_grad else "c")
            outside[id(t)] = f"{kind}{counters[kind]}"
            counters[kind] += 1
        return outside[id(t)]

    rows = []
    for k, rec in enumerate(records):
        args = ", ".join(name_of(t) for t in rec.inputs)
        names[id(rec)] = f"v{k}"
        lhs = f"v{k}" if len(rec.shapes) == 1 else ", ".join(f"v{k}.{j}" for j in range(len(rec.shapes)))
        ins = ", ".join(_fmt_shape(t.shape) for t in rec.inputs)
        outs = ", ".join(_fmt_shape(s) for s in rec.shapes)
        step = "" if rec.step is None else f"  [step {rec.step}]"
        rows.append((f"{lhs} = {rec.op}({args})", f"{ins} -> {outs}  {rec.dtypes[0]}{step}"))
    width = max((len(a) for a, _ in rows), default=0)
    lines += [f"  {a:<{width}}   {b}" for a, b in rows]
    return "\n".join(lines)


def _fmt_shape(shape):
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


TAPE = Tape()
"""The main thread's tape. Each thread records on a tape of its own, as PyTorch's grad mode
is per thread: get_tape() gives the calling thread's; TAPE is the one the main thread sees."""


# Record indices count every record of every tape (a graph may span threads: a forward in one,
# its backward in another), so that the tapes' records merge into one order. next() on an
# itertools.count is atomic under the GIL.
_INDEX = itertools.count()
# Every thread's tape, with a weak reference to its thread: kept while the thread lives or
# the tape lists live records (a graph recorded in a thread that has ended can still be
# back-propagated).
_TAPES = {TAPE: weakref.ref(threading.main_thread())}
_TAPES_LOCK = threading.Lock()


def newest_first():
    """The live records of every thread's tape, newest first: the order of the reverse walk
    (backward.py). With one thread, its tape's order; with several, their records merged by
    index, so that a backward in one thread reaches records another recorded."""
    with _TAPES_LOCK:
        if len(_TAPES) > 1:  # forget the tapes of ended threads that list nothing live
            for tape, thread in list(_TAPES.items()):
                if (thread() is None or not thread().is_alive()) and not any(True for _ in tape):
                    del _TAPES[tape]
        tapes = list(_TAPES)
    if len(tapes) == 1:
        return tapes[0].newest_first()
    return heapq.merge(*(t.newest_first() for t in tapes), key=lambda rec: rec.index, reverse=True)


class _PerThread(threading.local):
    """Each thread's tape, in `.tape`: TAPE in the main thread, a fresh Tape in any other,
    made at its first op. (threading.local runs __init__ once in every thread that looks.)"""

    def __init__(self):
        thread = threading.current_thread()
        self.tape = TAPE if thread is threading.main_thread() else Tape()
        with _TAPES_LOCK:
            _TAPES[self.tape] = weakref.ref(thread)


PER_THREAD = _PerThread()
"""PER_THREAD.tape: the calling thread's tape, which ops record on (one lookup per op)."""


def get_tape():
    """The tape that ops record on in the calling thread."""
    return PER_THREAD.tape


class no_grad:
    """Context manager (and decorator) that stops recording: ops inside make no records.

    Use it for evaluation and for updates that must not be differentiated. It stops the
    calling thread's recording only; other threads go on recording on their own tapes.
    """

    def __enter__(self):
        self._tape = PER_THREAD.tape
        self._previous = self._tape.enabled
        self._tape.enabled = False

    def __exit__(self, *exc):
        self._tape.enabled = self._previous

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)
        return wrapper


def is_grad_enabled():
    """Whether ops record in the calling thread (False inside no_grad())."""
    return PER_THREAD.tape.enabled
