"""Backpropagation through time, full and truncated, as policies over the tape.

TBPTT(k1, k2) is Sutskever's notation (thesis, 2013, section 2.8.6): every k1
forward steps, back-propagate through the last k2 steps and update. Williams and
Peng (1990) write the same procedure BPTT(h; h') with h = k2 and h' = k1.
BPTT() is TBPTT(n, n) for a sequence of n steps: one update, at the end.

`train_sequence` runs a sequence under a policy; its docstring states the semantics
(the README quotes it word for word).

How the tape does it (recompute=False). Each call owns a range of step labels
(`tape.steps(n)`), and every step runs inside `tape.at_step(label)`, so its records carry
their step. An update calls `backward(loss, since_step=start)`:
records of steps before the window are constants, so the gradient stops at the window's
first step. It keeps the records (retain_graph=True), because the next window may reach
back into this one, then frees every record older than the next window's first step:
that freeing is what keeps memory flat in n. Steps that lie in no window (k2 < k1) run
under no_grad() and make no records at all.

Segments (segments=True). The user's step runs several steps at once, so one record (a
sequence layer's) may span several steps; it carries the label of its first. Segments are
cut at every window's first step (TBPTT.starts), so neither `since_step` nor the freeing
ever falls inside one, and everything above holds unchanged.
"""
import contextlib
import numbers
import threading
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from .backends.devices import array_module, device_of, own_copy, read_only, to_device, to_numpy
from .backward import backward
from .ops import stack
from .optim.clip import scale_grad_norm_
from .tape import get_tape
from .tensor import Tensor, _make


def _steps(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"TBPTT: {name} must be an integer >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"TBPTT: {name} must be an integer >= 1, got {value}")
    return int(value)


@dataclass(frozen=True)
class Window:
    """One update: it happens after step `end`; the previous update was after step `prev`
    (0 for none); the gradient flows through steps `start` .. `end`. The update's loss sums
    the steps in max(prev + 1, start) .. end."""
    prev: int
    start: int
    end: int

    @property
    def first_loss(self):
        return max(self.prev + 1, self.start)


class TBPTT:
    """Truncated BPTT: every k1 forward steps, back-propagate through the last k2 steps.

    Sutskever's TBPTT(k1, k2), which is Williams and Peng's BPTT(h = k2; h' = k1).
    k1: forward steps between updates; k2: steps of backpropagation (integers >= 1).
    recompute: False (default) back-propagates through the activations stored when each
    step ran; True re-runs each window from its context with the current parameters
    (the unfold-and-average procedure). See this module's docstring for the semantics.
    """

    def __init__(self, k1, k2, recompute=False):
        self.k1 = _steps(k1, "k1")
        self.k2 = _steps(k2, "k2")
        if not isinstance(recompute, bool):
            raise TypeError(f"TBPTT: recompute must be True or False, got {recompute!r}")
        self.recompute = recompute

    def sizes(self, n):
        """(k1, k2) for a sequence of n steps."""
        return self.k1, self.k2

    # The schedule. `update` is its one definition; windows, starts and next_start read it.

    def update(self, k, n):
        """The k-th update (k = 1, 2, ...) of a sequence of n steps as a Window; None past the last.

        Update k comes after step end = min(k k1, n), as long as the one before it came before
        step n; its window is steps max(1, end - k2 + 1) .. end.
        """
        k1, k2 = self.sizes(n)
        prev = (k - 1) * k1  # the previous update came after this step (0: there was none)
        if prev >= n:
            return None
        end = min(k * k1, n)
        return Window(prev, max(1, end - k2 + 1), end)

    def windows(self, n):
        """The updates of a sequence of n steps, in order, as Windows (lazily: O(1) memory)."""
        k = 1
        while (window := self.update(k, n)) is not None:
            yield window
            k += 1

    def starts(self, n, first, last):
        """The steps in first+1 .. last (first >= 1) where a window begins, in order, for a
        sequence of n steps.

        Without listing the windows before them: windows begin in order, and update k's window
        begins at max(1, min(k k1, n) - k2 + 1) <= max(1, k k1 - k2 + 1), so none before update
        (first + k2 - 1) // k1 + 1 begins after `first`.
        """
        k1, k2 = self.sizes(n)
        found = []
        k = (first + k2 - 1) // k1 + 1
        while (window := self.update(k, n)) is not None and window.start <= last:
            if window.start > first:
                found.append(window.start)
            k += 1
        return found

    def next_start(self, n, end):
        """The first step of the next window after the update after step `end` (end + 1 if
        that was the last update)."""
        k1, _ = self.sizes(n)
        following = self.update(-(-end // k1) + 1, n)  # the update after step `end` is number ceil(end / k1)
        return end + 1 if following is None else following.start

    def stream(self, step, optimizer, *, state=None, clip_grad_norm=None, segments=False):
        """A Stream that trains under this policy on a sequence fed in pieces (see Stream)."""
        return Stream(self, step, optimizer, state=state, clip_grad_norm=clip_grad_norm,
                      segments=segments)

    def __repr__(self):
        extra = ", recompute=True" if self.recompute else ""
        return f"TBPTT({self.k1}, {self.k2}{extra})"


class BPTT(TBPTT):
    """Full backpropagation through time: TBPTT(n, n) for a sequence of n steps,
    one update after the last step, through every step."""

    def __init__(self):
        self.k1 = self.k2 = None
        self.recompute = False

    def sizes(self, n):
        return max(n, 1), max(n, 1)

    def __repr__(self):
        return "BPTT()"


@dataclass
class TrainResult:
    """What train_sequence returns.

    state:   the state after step n, as the last forward pass computed it, detached
    losses:  each update's loss (the sum of the losses it back-propagated), as floats
    updates: how many updates ran
    """
    state: object
    losses: list
    updates: int


class DroppedLossWarning(RuntimeWarning):
    """train_sequence's warning that TBPTT(k1, k2) with k2 < k1 runs steps whose losses no
    update back-propagates (a subclass of RuntimeWarning, so that it can be told from NumPy's)."""


def train_sequence(step, state, inputs, targets, *, policy, optimizer, clip_grad_norm=None,
                   segments=False):
    """Train on one sequence of n steps under a truncation policy (BPTT() or TBPTT(k1, k2)).

    step(state, x_t, y_t) -> (new_state, loss_t): the user's function for one time step.
        x_t and y_t arrive as Tensors that do not require grad; loss_t is a scalar Tensor;
        the state is a Tensor or a tuple of Tensors (None for the first step is allowed
        when `step` makes its own initial state), of the same shapes at every step.
        A step may run without recording (the context steps of recompute=True, the steps
        before a window): there its tensors do not require grad, so a step that calls
        retain_grad() or register_hook() checks `h.requires_grad` first.
    inputs, targets: time on the first axis (arrays, Tensors, or sequences of per-step
        arrays), both of length n. Nothing proportional to n is copied.
    policy: BPTT() or TBPTT(k1, k2, recompute=...).
    optimizer: a minigrad.optim optimizer over the parameters to train.
    clip_grad_norm: if given, clip the gradients of the optimizer's parameters to this
        joint 2-norm before each step.
    segments: False (default) calls `step` once per time step; True once per segment of
        consecutive steps (see 7 below), for steps written with a sequence layer.
    Returns a TrainResult(state, losses, updates).

    It is one `feed` of the whole sequence and a `flush` of a Stream (policy.stream(...)), told
    that the sequence ends there, so that it cuts segments as if it knew n from the start.

    Semantics, steps numbered 1..n:

      1. Updates happen after steps k1, 2*k1, ..., and after step n if k1 does not divide n.
      2. At the update after step t, with the previous update after step p (p = 0 at first),
         the window is steps max(1, t-k2+1) .. t. The update's loss is the SUM of loss_s over
         the steps s in (p, t] that lie inside the window. Losses of steps before the window
         (possible only when k2 < k1) are dropped, with a warning (once per call) saying so.
         Note the final update when k1 does not divide n: its window still reaches k2 steps
         back, across the previous update (TBPTT(4, 4) with n = 13 updates after steps 4, 8,
         12 and 13, the last through steps 10..13).
      3. The gradient flows only through the window: the state entering its first step is a
         constant. The state passed to `train_sequence` is always a constant (a window never
         reaches before the call).
      4. `train_sequence` zeroes the optimizer's gradients before each update's backward,
         clips them if asked, then calls `optimizer.step()`.
      5. recompute=False (default): each step's forward runs once. An update back-propagates
         through the values stored when each step was computed, including, when k2 > k1, steps
         computed before the previous update, with the parameter values current at that time;
         the gradient of a parameter is summed over all its uses in the window. The tape holds
         at most the records of the last max(k1, k2) steps (plus the parameter values they
         used, at most about k2/k1 + 1 versions): peak memory does not grow with n.
      6. recompute=True (the unfold-and-average procedure of the Wikipedia article on BPTT,
         generalized): the state just before each window (the context) is advanced lazily,
         without recording, with the parameter values current at that moment; each update
         re-runs its window from the context with the current parameters, recording, and
         back-propagates. It stores inputs and the context only, and costs about k1 + k2
         forward steps per update.
      7. segments=True: `step(state, xs, ys)` runs the steps a..b of a segment at once: xs and
         ys are inputs[a-1:b] and targets[a-1:b] (time first, b - a + 1 >= 1 steps), and the
         loss it returns is the SUM of those steps' losses. Segments never contain a window's
         first step other than their own first, nor an update other than after their last
         step, so the windows, the updates' losses and the gradients are exactly those of 1-6
         (up to rounding). Under TBPTT(k, k) each segment is a whole window; under BPTT() the
         whole sequence. With a sequence layer (nn.RNN, nn.LSTM, nn.GRU) a segment is one
         record on the tape instead of one per step and op, which is much faster. A bidirectional
         layer needs whole windows: it raises unless the windows tile the sequence (BPTT(), or
         TBPTT(k, k) with k dividing n), where every segment is exactly one window.
    """
    _check_policy("train_sequence", policy)
    stream = Stream(policy, step, optimizer, state=state, clip_grad_norm=clip_grad_norm,
                    segments=segments, _who="train_sequence", _copy=False)
    n, n_targets = _length(inputs, "inputs", "train_sequence"), _length(targets, "targets", "train_sequence")
    if n != n_targets:
        raise ValueError(f"train_sequence: inputs have {n} steps and targets {n_targets}; they "
                         "must have the same length")
    stream._check_recording("train_sequence")
    dropped = sum(w.first_loss - (w.prev + 1) for w in policy.windows(n))
    if dropped:  # said here, with the whole call's count, instead of by the stream
        stream._warned = True
        warnings.warn(f"train_sequence: {policy} drops the losses of {dropped} of {n} steps: "
                      "steps before a window (k2 < k1) are run but never back-propagated",
                      DroppedLossWarning, stacklevel=2)
    try:
        losses = stream._feed(inputs, targets, last=True)
        final = stream._flush()
    except BaseException:
        stream._abandon()  # nothing of this call outlives it
        raise
    if final is not None:
        losses.append(final)
    return TrainResult(stream.state, _floats(losses), len(losses))


# A stream's sequence reserves this many step labels on its tape, since it cannot know n:
# 2**48 steps, years of training, and labels stay machine-sized ints for thousands of streams.
_OPEN = 2 ** 48


# What a Stream state dict holds: always, then in stored (False) or recompute (True) mode.
_STATE_KEYS = {None: ("policy", "segments", "m", "p", "promised", "updates", "warned", "parameters",
                      "first", "inputs", "targets"),
               False: ("state", "entering", "calls", "used", "version_ids", "versions"),
               True: ("context", "at", "last")}


class Stream:
    """TBPTT over a sequence that arrives in pieces: the truncation carries across pieces.

        stream = TBPTT(k1, k2).stream(step, optimizer)     # or BPTT().stream(...)
        for x, y in pieces:                                # any lengths, 0 included
            losses = stream.feed(x, y)                     # the losses of the updates made
        stream.flush()                                     # the final partial update, if due

    `step`, the state, inputs and targets, `clip_grad_norm` and `segments` are as in
    train_sequence, whose rules 1-7 hold for the steps fed since the last flush, n being
    their count: feeding a sequence in any pieces, then flushing, makes the same updates,
    losses and weights as train_sequence on the whole of it (bit for bit with
    segments=False; up to rounding with segments=True, where the segments may be cut
    differently). Under BPTT() the stream updates only at flush().

    flush() ends the sequence: no later window reaches back across it, and feeding after it
    starts a new sequence from `stream.state`, as a second train_sequence(..., state=...)
    would. `stream.state` is the detached state after the last step fed; `stream.updates`
    counts the updates so far.

    What a stream cannot know is n. So:
      - every step that some window may yet reach is recorded (train_sequence runs the steps
        before a window under no_grad() when k2 < k1; a stream records them too while a flush
        could still reach them) and freed as soon as no window can reach it; the k2 < k1
        warning comes once per stream, at the first update that drops losses;
      - with segments=True, the flush window's first step (n - k2 + 1) is not known while
        steps are fed, so the last k2 steps of each feed run one step at a time; the steps
        before them run in whole segments, cut at every window start and update as
        train_sequence cuts them. With feeds much longer than k2 nearly every step runs
        inside a whole segment; a caller that knows more steps will come before the flush
        says so, feed(x, y, more=j), and with j >= k2 the whole feed runs in segments.
        Under BPTT() each feed is a segment. A bidirectional layer
        cannot run in a stream (its windows are never known whole).

    The stream keeps its own copies of the inputs and targets it still needs (a caller may
    refill one buffer for every feed); memory stays O(max(k1, k2)) steps plus one feed,
    however many feeds come. A sequence records on the tape of the thread that fed it first;
    feed it from that thread (or flush first).
    """

    def __init__(self, policy, step, optimizer, *, state=None, clip_grad_norm=None,
                 segments=False, _who="stream", _copy=True):
        self.policy, self._who, self._copy = policy, _who, _copy
        shapes = _check_call(_who, step, state, optimizer, clip_grad_norm, segments)
        self._k1, self._k2 = policy.k1, policy.k2  # None, None under BPTT()
        self._run = _Run(step, shapes, segments, policy, _who)
        self._update = _Update(optimizer, clip_grad_norm, _who)
        self._state = _detached(state)  # after the last step fed (stored mode)
        self.updates = 0
        self._warned = False
        self._level = 2
        self._begin()

    # -- the API -------------------------------------------------------------

    def feed(self, inputs, targets, *, more=0):
        """Run the steps of one piece (time first; arrays, Tensors or lists of per-step arrays,
        of equal length); returns the losses (floats) of the updates it made, in order.

        more: a promise that at least this many more steps will be fed before the next
        flush(). It changes no result, only speed: with segments=True the final window
        cannot start in this piece when more >= k2, so its last steps run as whole
        segments instead of one step at a time (and, when k2 < k1, steps no window will
        reach are not recorded). flush() raises RuntimeError if the promise was broken."""
        if isinstance(more, bool) or not isinstance(more, numbers.Integral) or more < 0:
            raise ValueError(f"Stream.feed: more must be an integer >= 0, got {more!r}")
        self._level = 6  # warnings point at the caller: feed, _feed, _*_feed, _*_update, _say
        return _floats(self._feed(inputs, targets, last=False, more=int(more)))

    def flush(self):
        """End the sequence: make the final partial update (rule 1's "after step n") and
        return its loss, or None if none is due (no step since the last update)."""
        loss = self._flush()
        return None if loss is None else _floats([loss])[0]

    def _flush(self):
        """flush(), the loss left where it was computed (a 0-d array)."""
        self._check_recording("flush")
        if self._tape is not None and get_tape() is not self._tape:
            raise RuntimeError("Stream.flush: this sequence records on the tape of the thread "
                               "that fed it first; flush it from that thread")
        if self._m < self._promised:  # its segments were cut for a longer sequence
            raise RuntimeError(f"Stream.flush: feed(..., more=...) promised at least "
                               f"{self._promised} steps before the flush; {self._m} were fed")
        self._level = 4
        n, loss = self._m, None
        if n > self._p:
            with _feeding(self._data):
                if self.policy.recompute:
                    loss = self._recompute_update(n)
                else:
                    loss = self._stored_update(n, retain_graph=False)
        if self.policy.recompute and self._last is not None:
            self._state = self._last[1]
        self._abandon()
        self._state = _detached(self._state)
        self._begin()
        return loss

    @property
    def state(self):
        """The detached recurrent state after the last step fed (in recompute mode computed
        when read, without recording, from the context, unless the last window ran to it)."""
        if not self.policy.recompute or self._m == 0:
            return _detached(self._state)
        if self._last is not None and self._last[0] == self._m:
            return _detached(self._last[1])
        state, _ = self._forward(self._context, self._at + 1, self._m)  # recording nothing
        return _detached(state)

    # -- checkpoints -------------------------------------------------------------

    def state_dict(self):
        """What it takes to go on exactly where the stream is, between two feeds, in another
        process: a dict of arrays, numbers, strings, None, lists and dicts (minigrad.save
        writes it). Save the model's and the optimizer's state dicts with it.

        It never holds the tape. Stored mode: the steps a later window can still reach (at
        most the last k2 fed), their inputs and targets, the state entering the first of them,
        and the parameter values each ran with: at most ceil((k2 - 1) / k1) + 1 versions of
        the optimizer's parameters, the current one included. load_state_dict runs those
        steps again with those values, which rebuilds their records exactly. Recompute mode:
        the context, its position, and the inputs and targets since it (at most k2 steps).
        Under BPTT() every step since the last flush is reachable: the whole sequence so far.
        Both also hold a fingerprint of the current parameters (shapes, dtypes, CRC-32).
        """
        params = self._update.params
        sd = {"format": "minigrad.Stream/1", "policy": repr(self.policy),
              "segments": self._run.segments, "m": self._m, "p": self._p, "promised": self._promised,
              "updates": self.updates, "warned": self._warned,
              "parameters": [_fingerprint(p.data) for p in params]}
        if self.policy.recompute:
            first = self._at + 1
            last = self._last[1] if self._last is not None and self._last[0] == self._m else None
            sd.update(context=_state_arrays(self._context), at=self._at, last=_state_arrays(last))
        else:
            first = min(self._entering, default=self._m + 1)
            calls = sorted(self._entering)  # one step each, but under BPTT() with segments
            versions = sorted({self._used[a] for a in calls})  # update counts
            sd.update(state=_state_arrays(self._state), entering=_state_arrays(self._entering.get(first)),
                      calls=[[a, self._ends[a]] for a in calls], used=[self._used[a] for a in calls],
                      version_ids=versions,
                      versions=[[to_numpy(a) for a in self._versions[v]] for v in versions])
        xs, ys = [], []
        for s in range(first, self._m + 1):
            x, y = self._data.span(s, s, False)
            xs.append(to_numpy(x.data))
            ys.append(to_numpy(y.data))
        sd.update(first=first, inputs=xs, targets=ys)
        return sd

    def load_state_dict(self, sd):
        """Go on from a state_dict() of a stream under the same policy and segments, over a
        model and optimizer whose state dicts were restored first (their parameters must be
        those the state dict recorded: ValueError otherwise). The loaded state wins over the
        state= this stream was built with; anything fed to it since is dropped. In stored mode
        the reachable steps run again here: a step that draws random numbers (dropout) draws
        them again, so set its generator to the state it had before the first of them (step
        sd["first"]) to get the same masks, and back afterwards (minigrad train does)."""
        params = self._update.params
        if not isinstance(sd, dict) or sd.get("format") != "minigrad.Stream/1":
            raise ValueError("Stream.load_state_dict: not a Stream state dict (no format "
                             "'minigrad.Stream/1')")
        missing = [key for key in _STATE_KEYS[None] if key not in sd]
        if not missing and sd["policy"] == repr(self.policy):
            missing = [key for key in _STATE_KEYS[self.policy.recompute] if key not in sd]
        if missing:
            raise ValueError(f"Stream.load_state_dict: the state dict lacks {', '.join(missing)}")
        if sd["policy"] != repr(self.policy) or sd["segments"] != self._run.segments:
            raise ValueError(f"Stream.load_state_dict: the state dict is of a stream under "
                             f"{sd['policy']} with segments={sd['segments']}; this one is "
                             f"{self.policy!r} with segments={self._run.segments}")
        found = [_fingerprint(p.data) for p in params]
        if [list(f) for f in sd["parameters"]] != [list(f) for f in found]:
            raise ValueError("Stream.load_state_dict: the optimizer's parameters are not those the "
                             "stream was saved with (shapes, dtypes or values differ): restore the "
                             "model's and the optimizer's state dicts before the stream's")
        device = params[0].device if params else "cpu"
        self._abandon()
        self._begin()
        self.updates, self._warned = int(sd["updates"]), bool(sd["warned"])
        self._p, self._promised = int(sd["p"]), int(sd["promised"])
        first, m = int(sd["first"]), int(sd["m"])
        tape = get_tape()
        self._tape, self._base = tape, tape.reserve(_OPEN)
        self._run.tape, self._run.base, self._run.n = tape, self._base, None
        if m >= first:
            self._data.add(first, _on(np.stack(sd["inputs"]), device),
                           _on(np.stack(sd["targets"]), device))
        if self.policy.recompute:
            self._context, self._at = _state_tensors(sd["context"], device), int(sd["at"])
            self._state = self._context
            if self._context is not None:
                self._run.shapes = _state_shapes(self._context, who="Stream.load_state_dict")
            if sd["last"] is not None:
                self._last = (m, _state_tensors(sd["last"], device))
            self._m = m
            return
        state = _state_tensors(sd["entering"] if m >= first else sd["state"], device)
        if state is not None:
            self._run.shapes = _state_shapes(state, who="Stream.load_state_dict")
        current = [p.data for p in params]
        versions = {int(v): [t.data for t in map(lambda a: _on(a, device), arrays)]
                    for v, arrays in zip(sd["version_ids"], sd["versions"])}
        if self.updates in versions:  # the current version: the optimizer's own arrays
            versions[self.updates] = current
        try:  # the steps a window can reach, again, each with the parameters it used
            for (a, b), v in zip(sd["calls"], sd["used"]):
                a, b, v = int(a), int(b), int(v)
                for p, array in zip(params, versions[v]):
                    p.data = array
                self._entering[a], self._used[a], self._ends[a] = _detached(state), v, b
                self._versions.setdefault(v, versions[v])
                state, loss = self._run(state, a, b, True, *self._data.span(a, b, self._run.segments))
                if a > self._p:
                    self._pending.append((a, loss))
        finally:
            for p, a in zip(params, current):
                p.data = a
        self._state, self._m = state, m

    def __repr__(self):
        return (f"<Stream {self.policy}: {self._m} steps fed since the last flush, "
                f"{self.updates} updates>")

    # -- one sequence --------------------------------------------------------

    def _begin(self):
        """A new sequence, from self._state: no step fed, no label reserved yet."""
        self._tape, self._base = None, None
        self._m = 0          # steps fed since the last flush
        self._promised = 0   # feed(..., more=) promised the flush at no earlier step than this
        self._p = 0          # the last update came after this step (0: none yet)
        self._pending = []   # stored mode: (first step, loss) of the recorded calls since p
        self._data = _Pieces()
        self._context, self._at = self._state, 0  # recompute mode: the state after step _at
        self._last = None    # recompute mode: (t, state) of the last window run, ending at t
        # stored mode, for state_dict: the detached state entering each call of step a window
        # may still reach, and the parameter version (0, 1, ...: the updates before it) it ran
        # with; the versions' arrays (optimizers replace .data, so these stay as they were)
        self._entering, self._used, self._versions = {}, {}, {}
        self._ends = {}  # stored mode: the last step of the call that began at step a

    def _abandon(self):
        """Free every record of this sequence (its labels), as train_sequence's end does."""
        if self._tape is not None:
            self._tape.free(before_step=self._base + _OPEN + 1, from_step=self._base + 1)

    def _check_recording(self, who):
        if not get_tape().enabled:
            raise RuntimeError(f"{self._who if who == 'train_sequence' else 'Stream.' + who}: "
                               "called inside no_grad(); nothing would be recorded")

    def _feed(self, inputs, targets, last, more=0):
        who = "train_sequence" if self._who == "train_sequence" else "Stream.feed"
        n_in, n_tg = _length(inputs, "inputs", who), _length(targets, "targets", who)
        if n_in != n_tg:
            raise ValueError(f"{who}: inputs have {n_in} steps and targets {n_tg}; they must "
                             "have the same length")
        self._check_recording("feed")
        tape = get_tape()
        if self._tape is None:
            self._tape, self._base = tape, tape.reserve(_OPEN)
            self._run.tape, self._run.base = tape, self._base
        elif tape is not self._tape:
            raise RuntimeError(f"{who}: this sequence records on the tape of the thread that "
                               "fed it first; feed it from that thread, or flush() first")
        if n_in == 0:
            return []
        if self._copy:
            inputs, targets = _own(inputs), _own(targets)
        first, end = self._m + 1, self._m + n_in
        self._promised = max(self._promised, end + more)
        self._data.add(first, inputs, targets)
        self._run.n = end if last else None  # known: cut segments as train_sequence does
        train = self._recompute_feed if self.policy.recompute else self._stored_feed
        with _feeding(self._data):
            return train(first, end, last)

    # -- recompute=False: each step runs once, recorded while a window may reach it ------

    def _stored_feed(self, first, end, last):
        losses, state = [], self._state
        for a, b in self._run.pieces(first, end, self._cuts(first, end, last)):
            record = self._reachable(a, end, last)
            if record and not last:  # what state_dict needs to run step a again
                self._entering[a], self._used[a], self._ends[a] = _detached(state), self.updates, b
                if self.updates not in self._versions:
                    self._versions[self.updates] = [p.data for p in self._update.params]
            state, loss = self._run(state, a, b, record, *self._data.span(a, b, self._run.segments))
            self._m = b
            if record:
                self._pending.append((a, loss))
            if self._k1 is not None and b % self._k1 == 0:  # an update is due after step b
                self._state = state
                losses.append(self._stored_update(b, retain_graph=True))
        self._state = state
        self._free()
        if last:
            self._data.drop_before(end + 1)  # run: the records keep what they need
        return losses

    def _stored_update(self, t, retain_graph):
        start = 1 if self._k2 is None else max(1, t - self._k2 + 1)
        window = Window(self._p, start, t)
        self._say_dropped(window)
        kept = [loss for a, loss in self._pending if a >= start]
        loss = self._update(kept, window, retain_graph, self._base + start)
        self._p, self._pending = t, []
        self.updates += 1
        self._free()
        return loss

    def _reachable(self, a, end, last):
        """Whether a window may yet reach step a, fed in a piece that ends at step `end`
        (the sequence's last step if `last`): the update after it, or a flush at n >= end
        (n >= the steps promised, if more)."""
        if self._k1 is None:
            return True
        k1, k2 = self._k1, self._k2
        u = -(-a // k1) * k1  # the first regular update at or after step a
        if last and u > end:  # there is none: the final update, after step n = end
            u = end
        return a >= u - k2 + 1 or (not last and a >= max(end, self._promised) - k2 + 1)

    def _cuts(self, first, end, last):
        """The steps in first+1 .. end that must begin a segment: every window's first step
        (with the final window's, n - k2 + 1, unknown unless `last`: then each step where it
        may be, the last k2 or, with a promise of more steps, fewer) and every step right
        after an update."""
        if not self._run.segments or self._k1 is None:
            return ()
        k1, k2 = self._k1, self._k2
        n = end if last else _OPEN
        cuts = set(self.policy.starts(n, first, end))
        cuts.update(range(-(-first // k1) * k1 + 1, end + 1, k1))  # after each update
        if not last:  # where the final window may start: n >= end, or the steps promised
            cuts.update(range(max(first + 1, max(end, self._promised) - k2 + 1), end + 1))
        return sorted(cuts)

    def _free(self):
        """Free the records no window can reach any more: before the first step of the
        earliest window still possible (a flush now, or the next regular update's)."""
        if self._k1 is None:
            return  # BPTT(): the one window is the whole sequence
        m = self._m
        if m == self._p and self._run.n is not None:  # n known (train_sequence): the next window
            earliest = self.policy.next_start(self._run.n, m)
        else:
            earliest = m - self._k2 + (1 if m > self._p else 2)  # a flush at n >= m (n > p)
        earliest = max(1, earliest)
        self._tape.free(before_step=self._base + earliest, from_step=self._base + 1)
        self._data.drop_before(earliest)  # and what state_dict would need of those steps
        for a in [a for a in self._entering if a < earliest]:
            del self._entering[a], self._used[a], self._ends[a]
        in_use = set(self._used.values())
        for v in [v for v in self._versions if v not in in_use]:
            del self._versions[v]

    # -- recompute=True: a context advanced lazily, each window re-run --------------

    def _recompute_feed(self, first, end, last):
        losses = []
        for t in range(-(-first // self._k1) * self._k1, end + 1, self._k1):
            self._m = t
            losses.append(self._recompute_update(t))
        self._m = end
        if not last:  # steps no window can reach any more join the context now
            self._advance(end - self._k2)
        return losses

    def _recompute_update(self, t):
        start = 1 if self._k2 is None else max(1, t - self._k2 + 1)
        window = Window(self._p, start, t)
        self._say_dropped(window)
        self._advance(start - 1)  # with the parameters current now: rule 6
        state, kept = self._forward(self._context, start, t, (window.first_loss,),
                                    record_from=start, loss_from=window.first_loss)
        loss = self._update(kept, window, False, self._base + start)
        self._tape.free(before_step=self._base + t + 1, from_step=self._base + 1)
        self._p, self._last = t, (t, _detached(state))
        self.updates += 1
        return loss

    def _advance(self, s):
        """Move the context to the state after step s, without recording."""
        if s > self._at:
            self._context, _ = self._forward(self._context, self._at + 1, s)
            self._at = s
            self._data.drop_before(s + 1)

    def _forward(self, state, first, last, cuts=(), *, record_from=None, loss_from=None):
        """Run steps first..last from `state`, recording the steps from `record_from` on
        (None: none). Returns the state after step `last` and, in order, the losses of the
        recorded steps from `loss_from` on (None: all of them). With segments, a new segment
        begins at each step of `cuts`."""
        losses = []
        for a, b in self._run.pieces(first, last, cuts):
            record = record_from is not None and a >= record_from
            state, loss = self._run(state, a, b, record, *self._data.span(a, b, self._run.segments))
            if record and (loss_from is None or a >= loss_from):
                losses.append(loss)
        return state, losses

    def _say_dropped(self, window):
        """The k2 < k1 warning, once per stream: at the first update that drops losses."""
        dropped = window.first_loss - (window.prev + 1)
        if dropped and not self._warned:
            self._warned = True
            warnings.warn(f"stream: {self.policy} drops the losses of the steps before each "
                          f"window ({dropped} of {window.end - window.prev} at the update after "
                          f"step {window.end}): they are run but never back-propagated (k2 < k1)",
                          DroppedLossWarning, stacklevel=self._level)


class _Pieces:
    """The inputs and targets a stream still needs, as the pieces they came in: step s (from 1)
    of the sequence is entry s - first of the piece that begins at step `first`."""

    def __init__(self):
        self.pieces = []  # [first step, inputs, targets, its length], in step order
        # the pieces' targets arrays on a GPU, each with the checks made of it: class targets
        # are checked there once per piece, not once per step (see fed_targets)
        self.checked = []  # [(targets array, its owner, its bytes, {check: verdict})]

    def add(self, first, inputs, targets):
        self.pieces.append([first, inputs, targets, _length(inputs, "inputs", "stream")])
        data = _array_of(targets)
        # (a contiguous piece's bytes are all its own; on the CPU each call checks its own)
        if data is not None and type(data) is not np.ndarray and data.size and data.flags.c_contiguous:
            self.checked.append((data, _owner(data), _bytes(data), {}))

    def drop_before(self, s):
        """Forget the pieces that end before step s."""
        self.pieces = [p for p in self.pieces if p[0] + p[3] > s]
        if self.checked:
            kept = {id(_array_of(p[2])) for p in self.pieces}
            self.checked = [entry for entry in self.checked if id(entry[0]) in kept]

    def span(self, a, b, segments):
        """(x, y) of steps a..b: per step (a == b) or, with segments, time first."""
        for first, inputs, targets, length in self.pieces:
            if first <= a < first + length:
                break
        else:
            raise RuntimeError(f"stream: step {a} is no longer kept")  # a bug, not a user error
        if not segments:
            return _at(inputs, a - first), _at(targets, a - first)
        if b < first + length:
            return _span(inputs, a - first, b - first + 1), _span(targets, a - first, b - first + 1)
        xs, ys = [], []  # across pieces (a recompute window, a context): stacked, <= k1 + k2 steps
        for s in range(a, b + 1):
            x, y = self.span(s, s, False)
            xs.append(x.data)
            ys.append(y.data)
        xp = array_module(xs[0])
        return _make(xp.stack(xs), x.device), _make(xp.stack(ys), y.device)


class _Fed(threading.local):
    """The pieces of the stream whose steps run now in this thread (None between feeds)."""
    pieces = None


_fed = _Fed()


@contextlib.contextmanager
def _feeding(pieces):
    """Run a stream's steps: while they run, fed_targets finds their targets in `pieces`."""
    previous, _fed.pieces = _fed.pieces, pieces  # a step may feed a stream of its own
    try:
        yield
    finally:
        _fed.pieces = previous


def fed_targets(array):
    """(the targets array of the fed piece that `array` lies in, the checks made of it), or
    None if `array` is not in the targets of a piece that runs now. The checks are a dict,
    check -> verdict, that the caller fills.

    A loss that checks its class targets (nn.functional.cross_entropy) checks them once per
    fed piece through this, not once per step: on a GPU each check reads a result back and
    so waits for the GPU. `array` lies in a piece's targets when it views the same memory
    (same owner), within the piece's bytes, in the piece's dtype and element grid; the check
    covers the whole piece, a superset of every step's targets. minigrad does not write into
    targets, and the piece is the stream's own copy (train_sequence's caller is inside the
    call); a step function that wrote into its targets would go around the check.
    """
    pieces = _fed.pieces
    if pieces is None or not pieces.checked or not array.size:
        return None
    owner, (lo, hi) = _owner(array), _bytes(array)
    for data, data_owner, (data_lo, data_hi), checks in pieces.checked:
        if data_owner is owner and data_lo <= lo and hi <= data_hi and data.dtype == array.dtype \
                and (lo - data_lo) % data.itemsize == 0:
            return data, checks
    return None


def _array_of(targets):
    """The array that holds a piece's targets (a Tensor's, or an array itself); None for
    targets given as a list, whose steps are separate arrays."""
    data = targets.data if isinstance(targets, Tensor) else targets
    return data if isinstance(data, np.ndarray) or hasattr(data, "__cuda_array_interface__") else None


def _bytes(array):
    """(first byte, last byte + 1) of the memory that a non-empty GPU `array` spans."""
    lo = hi = array.data.ptr
    for n, stride in zip(array.shape, array.strides):
        if stride < 0:
            lo += (n - 1) * stride
        else:
            hi += (n - 1) * stride
    return lo, hi + array.itemsize


def _owner(array):
    """The array whose memory `array` views (itself if it owns its memory)."""
    while isinstance(array.base, type(array)):
        array = array.base
    return array


def _fingerprint(array):
    """[shape, dtype, CRC-32 of the bytes] of a parameter: cheap, and enough to tell a model
    whose state dict was not restored from one that was."""
    host = np.ascontiguousarray(to_numpy(array))
    return [list(host.shape), str(host.dtype), zlib.crc32(host.tobytes())]


def _state_arrays(state):
    """A state as what minigrad.save writes: None, an array, or a tuple of arrays."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(to_numpy(t.data) for t in state)
    return to_numpy(state.data)


def _state_tensors(arrays, device):
    if arrays is None:
        return None
    if isinstance(arrays, (tuple, list)):
        return tuple(_on(a, device) for a in arrays)
    return _on(arrays, device)


def _on(array, device):
    """A constant Tensor of a loaded array, on `device`, read-only as minigrad's arrays are."""
    return _make(read_only(to_device(np.asarray(array), device)), device)


def _own(seq):
    """A copy of a fed sequence that the caller can no longer change."""
    if isinstance(seq, Tensor):
        return _make(own_copy(seq.data), seq.device)
    if isinstance(seq, np.ndarray) or hasattr(seq, "__cuda_array_interface__"):
        return own_copy(seq)
    return [own_copy(_at(seq, k).data) for k in range(len(seq))]


def _floats(losses):
    """The updates' losses, 0-d arrays where they were computed, as floats. From a GPU they
    come in one transfer: a float() per update would make the host wait for the GPU to
    finish each window before it could queue the next one's work."""
    if all(type(loss) is np.ndarray for loss in losses):
        return [float(loss.item()) for loss in losses]
    return to_numpy(array_module(losses[0]).stack([loss.reshape(()) for loss in losses])).tolist()


class _Update:
    """One update: zero the gradients, back-propagate the window's loss from the window's
    first step, clip, step; returns the loss, a 0-d array on the parameters' device (read
    by _floats, once per feed)."""

    def __init__(self, optimizer, clip, who):
        self.optimizer, self.clip, self.who = optimizer, clip, who
        self.params = [p for group in optimizer.param_groups for p in group["params"]]

    def __call__(self, step_losses, window, retain_graph, since):
        """step_losses: the scalar loss Tensors of the steps the update sums (rule 2); since:
        the tape label of the window's first step."""
        total = step_losses[0] if len(step_losses) == 1 else stack(step_losses).sum()
        if not total.requires_grad:
            raise RuntimeError(f"{self.who}: the loss of the update after step {window.end} "
                               "does not depend on any parameter that requires grad")
        self.optimizer.zero_grad()
        backward(total, retain_graph=retain_graph, since_step=since)
        if self.clip is not None:
            scale_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        return total.data


class _Running(threading.local):
    """_Run.running: the step call running in this thread, in `.call` (None between calls)."""
    call = None


class _Run:
    """Runs the user's step over steps of a sequence, with checks; the records of step s
    carry the tape label base + s (segments: the label of their first step)."""

    # While a call of `step` runs in this thread: running.call is (the _Run, a, b) for its
    # steps a..b, else None (one per thread, as the tapes). Read by require_whole_windows: a
    # layer called inside `step` cannot see the policy, and the cuts stay decided here, in
    # one place. Only that check looks further (this runs every step).
    running = _Running()

    def __init__(self, step, shapes, segments, policy, who):
        self.step, self.shapes, self.segments, self.policy, self.who = step, shapes, segments, policy, who
        self.tape, self.base = None, 0  # set at the sequence's first feed
        self.n = None  # the sequence's length, when known (train_sequence)
        self._tiled = (None, False)  # (n, whether the windows of n steps tile it), once per n

    def is_window(self, a, b):
        """Whether steps a..b are one window of the policy, and no other window reaches them:
        only when n is known, and the windows tile the sequence (each begins right after the
        previous update: BPTT(), TBPTT(k, k) with k dividing n)."""
        if self.n is None:
            return False
        if self._tiled[0] != self.n:  # asked at every call of a bidirectional layer's step
            self._tiled = (self.n, all(w.start == w.prev + 1 for w in self.policy.windows(self.n)))
        if not self._tiled[1]:
            return False
        k1 = self.policy.sizes(self.n)[0]
        window = self.policy.update(-(-b // k1), self.n)  # update ceil(b / k1): the first after b
        return (window.start, window.end) == (a, b)

    def pieces(self, first, last, cuts):
        """Steps first..last as the calls of `step`: (a, b) pairs, one per step, or with
        segments as few as possible, a new one beginning at each step of `cuts`."""
        if not self.segments:
            return ((s, s) for s in range(first, last + 1))
        if first > last:
            return ()
        bounds = [first, *(s for s in cuts if first < s <= last), last + 1]
        return [(a, b - 1) for a, b in zip(bounds, bounds[1:])]

    def __call__(self, state, a, b, record, x, y):
        """Steps a..b (a == b unless segments) on inputs x and targets y: the user's step,
        under the label of step a."""
        running = _Run.running
        outer, running.call = running.call, (self, a, b)
        try:
            with self.tape.at_step(self.base + a, record=record):
                out = self.step(state, x, y)
        finally:
            running.call = outer
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError(f"{self.who}: step must return (new_state, loss), got "
                            f"{type(out).__name__} at {_where(a, b)}")
        new_state, loss = out
        if not isinstance(loss, Tensor) or loss.data.size != 1:
            what = f"shape {loss.shape}" if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"{self.who}: step must return a scalar loss Tensor, got {what} "
                             f"at {_where(a, b)}")
        shapes = _state_shapes(new_state, b, self.who)
        if self.shapes is None:
            self.shapes = shapes
        elif shapes != self.shapes:
            raise ValueError(f"{self.who}: the state changed at {_where(a, b)} from "
                             f"{_describe(self.shapes)} to {_describe(shapes)}")
        return new_state, loss


def require_whole_windows(who):
    """For a layer whose outputs depend on the whole sequence it is given (the second
    direction of a bidirectional RNN calls it): raise if train_sequence is running its step
    over what may be only part of a window, which would change what the layer computes.
    Outside train_sequence it does nothing."""
    if _Run.running.call is None:
        return
    run, a, b = _Run.running.call
    if not run.is_window(a, b):
        if run.n is None:
            raise ValueError(
                f"{who}: a stream runs parts of windows in one call of step (here steps "
                f"{a}..{b}): it never knows a window whole before it ends, and the layer would "
                f"see only that part. Use train_sequence with BPTT(), or segments=True with "
                f"TBPTT(k, k) and k dividing n, where every call is one whole window")
        raise ValueError(
            f"{who}: under {run.policy} with n = {run.n}, train_sequence runs parts of windows "
            f"in one call of step (here steps {a}..{b}), and the layer would see only that "
            f"part. Use BPTT(), or segments=True with TBPTT(k, k) and k dividing n, where every "
            f"call is one whole window")


def _where(a, b):
    """Steps a..b for an error message (formatted only when one is raised: this runs every step)."""
    return f"step {a}" if a == b else f"steps {a}..{b}"


def _span(seq, lo, hi):
    """Entries lo .. hi-1 of a sequence as one Tensor, time first, that does not require grad:
    a view of an array or a Tensor; per-step arrays in a list are stacked (a copy of hi - lo
    steps)."""
    if isinstance(seq, Tensor):
        return _make(seq.data[lo:hi], seq.device)
    if isinstance(seq, np.ndarray) or hasattr(seq, "__cuda_array_interface__"):
        return _make(seq[lo:hi], device_of(seq))
    items = [_at(seq, k) for k in range(lo, hi)]
    return _make(array_module(items[0].data).stack([t.data for t in items]), items[0].device)


def _at(seq, k):
    """Entry k of a sequence as a Tensor that does not require grad (a view, not a copy)."""
    if isinstance(seq, Tensor):
        return _make(seq.data[k], seq.device)
    item = seq[k]
    if isinstance(item, Tensor):
        return _make(item.data, item.device)
    if not isinstance(item, np.ndarray) and device_of(item) == "cpu":
        item = np.asarray(item)
    return _make(item, device_of(item))


def _state_shapes(state, s=0, who="train_sequence"):
    """((shape, dtype), ...) of a state: a Tensor or a tuple of Tensors; None while unknown."""
    if isinstance(state, Tensor):
        return ((state.shape, state.dtype),)
    if state is None and s == 0:
        return None
    parts = state if isinstance(state, tuple) else (state,)
    if not parts or not all(isinstance(t, Tensor) for t in parts):
        where = "the initial state" if s == 0 else f"the state returned at step {s}"
        raise TypeError(f"{who}: {where} must be a Tensor or a tuple of Tensors, got "
                        f"{type(state).__name__}")
    return tuple((t.shape, t.dtype) for t in parts)


def _describe(shapes):
    return ", ".join(f"{shape} {dtype}" for shape, dtype in shapes)


def _detached(state):
    """The same values with no record behind them: a constant for the next window or call."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(_make(t.data, t.device) for t in state)
    return _make(state.data, state.device)


def _length(seq, name, who):
    if isinstance(seq, (Tensor, np.ndarray, np.generic)) or hasattr(seq, "__cuda_array_interface__"):
        if seq.ndim == 0:
            raise ValueError(f"{who}: {name} needs time as its first axis, got a scalar")
        return seq.shape[0]
    try:
        return len(seq)
    except TypeError:
        raise TypeError(f"{who}: {name} must be an array, a Tensor or a sequence of "
                        f"per-step arrays, got {type(seq).__name__}") from None


def _check_policy(who, policy):
    if not isinstance(policy, TBPTT):
        raise TypeError(f"{who}: policy must be BPTT() or TBPTT(k1, k2), got {policy!r}")


def _check_call(who, step, state, optimizer, clip, segments):
    """Everything about a call or a stream that can be checked before any step runs; returns
    the state's shapes (_state_shapes)."""
    if not callable(step):
        raise TypeError(f"{who}: step must be callable, got {type(step).__name__}")
    if not hasattr(optimizer, "param_groups") or not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"{who}: optimizer must be a minigrad.optim optimizer, got "
                        f"{type(optimizer).__name__}")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float))
                             or not clip > 0):
        raise ValueError(f"{who}: clip_grad_norm must be a number > 0 or None, got {clip!r}")
    if not isinstance(segments, bool):
        raise TypeError(f"{who}: segments must be True or False, got {segments!r}")
    return _state_shapes(state, who=who)


__all__ = ["BPTT", "TBPTT", "Window", "Stream", "TrainResult", "train_sequence"]
