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
import functools
import threading
import warnings
from dataclasses import dataclass

import numpy as np

from .backends.devices import array_module, device_of
from .backward import backward
from .ops import stack
from .optim import clip_grad_norm_
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
    n = _check_call(step, state, inputs, targets, policy, optimizer, clip_grad_norm, segments)
    dropped = sum(w.first_loss - (w.prev + 1) for w in policy.windows(n))
    if dropped:
        warnings.warn(f"train_sequence: {policy} drops the losses of {dropped} of {n} steps: "
                      "steps before a window (k2 < k1) are run but never back-propagated",
                      DroppedLossWarning, stacklevel=2)
    tape = get_tape()  # the calling thread's: two threads train apart, each on its own
    with tape.steps(n) as base:  # step s is labelled base + s; nothing of this call outlives it
        run = _Run(step, inputs, targets, tape, base, _state_shapes(state), segments, policy, n)
        update = _Update(run, optimizer, clip_grad_norm)
        train = _recompute if policy.recompute else _stored
        state = train(run, update, policy, n, _detached(state))
    return TrainResult(_detached(state), update.losses, len(update.losses))


def _stored(run, update, policy, n, state):
    """recompute=False: one forward pass; each update back-propagates through stored records."""
    for window in policy.windows(n):
        # The steps since the previous update, none of them straddling a window's first step
        # (this window's, or with k2 > k1 a later one's) when segments run several at once.
        cuts = policy.starts(n, window.prev + 1, window.end)
        state, losses = run.forward(state, window.prev + 1, window.end, cuts,
                                    record_from=window.start)  # forward
        update(losses, window, retain_graph=True)              # update
        run.free_before(policy.next_start(n, window.end))      # free
    return state


def _recompute(run, update, policy, n, context):
    """recompute=True: advance the context lazily; re-run each window with current parameters."""
    at = 0  # the context is the state after step `at`
    state = context
    for window in policy.windows(n):
        context, _ = run.forward(context, at + 1, window.start - 1)  # context
        at = window.start - 1
        state, losses = run.forward(context, window.start, window.end, (window.first_loss,),
                                    record_from=window.start, loss_from=window.first_loss)  # forward
        update(losses, window, retain_graph=False)                                        # update
        run.free_before(window.end + 1)                                                   # free
    return state


class _Update:
    """One update: zero the gradients, back-propagate the window's loss from the window's
    first step, clip, step. Keeps each update's loss."""

    def __init__(self, run, optimizer, clip):
        self.run, self.optimizer, self.clip = run, optimizer, clip
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.losses = []

    def __call__(self, step_losses, window, retain_graph):
        """step_losses: the scalar loss Tensors of the steps the update sums (rule 2)."""
        total = step_losses[0] if len(step_losses) == 1 else stack(step_losses).sum()
        if not total.requires_grad:
            raise RuntimeError(f"train_sequence: the loss of the update after step {window.end} "
                               "does not depend on any parameter that requires grad")
        self.optimizer.zero_grad()
        backward(total, retain_graph=retain_graph, since_step=self.run.label(window.start))
        if self.clip is not None:
            clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        self.losses.append(float(total.data.item()))


class _Running(threading.local):
    """_Run.running: the step call running in this thread, in `.call` (None between calls)."""
    call = None


class _Run:
    """Runs the user's step over steps of the sequence, with checks; the records of step s
    carry the tape label base + s (segments: the label of their first step)."""

    # While a call of `step` runs in this thread: running.call is (the _Run, a, b) for its
    # steps a..b, else None (one per thread, as the tapes). Read by require_whole_windows: a
    # layer called inside `step` cannot see the policy, and the cuts stay decided here, in
    # one place. Only that check looks further (this runs every step).
    running = _Running()

    def __init__(self, step, inputs, targets, tape, base, shapes, segments, policy, n):
        self.step, self.inputs, self.targets, self.tape, self.base = step, inputs, targets, tape, base
        self.shapes = shapes  # the state's (shape, dtype) per tensor, once known
        self.segments = segments
        self.policy, self.n = policy, n

    @functools.cached_property
    def tiled(self):
        """Whether the windows tile the sequence (each begins right after the previous update:
        BPTT(), TBPTT(k, k) with k dividing n): then, and only then, are the segments exactly
        the windows, and a window's steps never reach into another window."""
        return all(w.start == w.prev + 1 for w in self.policy.windows(self.n))

    def is_window(self, a, b):
        """Whether steps a..b are one window of the policy, and no other window reaches them."""
        if not self.tiled:
            return False
        k1 = self.policy.sizes(self.n)[0]
        window = self.policy.update(-(-b // k1), self.n)  # update ceil(b / k1): the first after b
        return (window.start, window.end) == (a, b)

    def label(self, s):
        """The tape label of step s."""
        return self.base + s

    def free_before(self, s):
        """Free the records of this call's steps before step s."""
        self.tape.free(before_step=self.base + s, from_step=self.base + 1)

    def forward(self, state, first, last, cuts=(), *, record_from=None, loss_from=None):
        """Run steps first..last from `state`, recording the steps from `record_from` on
        (None: none). Returns the state after step `last` and, in order, the losses of the
        recorded steps from `loss_from` on (None: all of them). With segments, a new segment
        begins at each step of `cuts`."""
        losses = []
        for a, b in self.pieces(first, last, cuts):
            record = record_from is not None and a >= record_from
            state, loss = self(state, a, b, record)
            if record and (loss_from is None or a >= loss_from):
                losses.append(loss)
        return state, losses

    def pieces(self, first, last, cuts):
        """Steps first..last as the calls of `step`: (a, b) pairs, one per step, or with
        segments as few as possible, a new one beginning at each step of `cuts`."""
        if not self.segments:
            return ((s, s) for s in range(first, last + 1))
        if first > last:
            return ()
        bounds = [first, *(s for s in cuts if first < s <= last), last + 1]
        return [(a, b - 1) for a, b in zip(bounds, bounds[1:])]

    def __call__(self, state, a, b, record):
        """Steps a..b (a == b unless segments): the user's step, under the label of step a."""
        if self.segments:
            x, y = _span(self.inputs, a - 1, b), _span(self.targets, a - 1, b)
        else:
            x, y = _at(self.inputs, a - 1), _at(self.targets, a - 1)
        running = _Run.running
        outer, running.call = running.call, (self, a, b)
        try:
            with self.tape.at_step(self.label(a), record=record):
                out = self.step(state, x, y)
        finally:
            running.call = outer
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError(f"train_sequence: step must return (new_state, loss), got "
                            f"{type(out).__name__} at {_where(a, b)}")
        new_state, loss = out
        if not isinstance(loss, Tensor) or loss.data.size != 1:
            what = f"shape {loss.shape}" if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"train_sequence: step must return a scalar loss Tensor, got {what} "
                             f"at {_where(a, b)}")
        shapes = _state_shapes(new_state, b)
        if self.shapes is None:
            self.shapes = shapes
        elif shapes != self.shapes:
            raise ValueError(f"train_sequence: the state changed at {_where(a, b)} from "
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
    if isinstance(seq, np.ndarray):
        return _make(seq[lo:hi])
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


def _state_shapes(state, s=0):
    """((shape, dtype), ...) of a state: a Tensor or a tuple of Tensors; None while unknown."""
    if isinstance(state, Tensor):
        return ((state.shape, state.dtype),)
    if state is None and s == 0:
        return None
    parts = state if isinstance(state, tuple) else (state,)
    if not parts or not all(isinstance(t, Tensor) for t in parts):
        where = "the initial state" if s == 0 else f"the state returned at step {s}"
        raise TypeError(f"train_sequence: {where} must be a Tensor or a tuple of Tensors, got "
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


def _length(seq, name):
    if isinstance(seq, (Tensor, np.ndarray, np.generic)):
        if seq.ndim == 0:
            raise ValueError(f"train_sequence: {name} needs time as its first axis, got a scalar")
        return seq.shape[0]
    try:
        return len(seq)
    except TypeError:
        raise TypeError(f"train_sequence: {name} must be an array, a Tensor or a sequence of "
                        f"per-step arrays, got {type(seq).__name__}") from None


def _check_call(step, state, inputs, targets, policy, optimizer, clip, segments):
    """Everything that can be checked before any parameter changes; returns n."""
    if not callable(step):
        raise TypeError(f"train_sequence: step must be callable, got {type(step).__name__}")
    if not isinstance(policy, TBPTT):
        raise TypeError(f"train_sequence: policy must be BPTT() or TBPTT(k1, k2), got {policy!r}")
    if not hasattr(optimizer, "param_groups") or not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"train_sequence: optimizer must be a minigrad.optim optimizer, got "
                        f"{type(optimizer).__name__}")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float))
                             or not clip > 0):
        raise ValueError(f"train_sequence: clip_grad_norm must be a number > 0 or None, got {clip!r}")
    if not isinstance(segments, bool):
        raise TypeError(f"train_sequence: segments must be True or False, got {segments!r}")
    if not get_tape().enabled:
        raise RuntimeError("train_sequence: called inside no_grad(); nothing would be recorded")
    _state_shapes(state)
    n, n_targets = _length(inputs, "inputs"), _length(targets, "targets")
    if n != n_targets:
        raise ValueError(f"train_sequence: inputs have {n} steps and targets {n_targets}; "
                         "they must have the same length")
    return n


__all__ = ["BPTT", "TBPTT", "Window", "TrainResult", "train_sequence"]
