"""Truncation policies: train_sequence against slow, obvious references, in float64.

The references rebuild each window's graph from scratch, from states kept as
plain arrays, with a plain backward() and a hand-written SGD update: no step
labels, no since_step, no freeing. If train_sequence's bookkeeping (which steps
a window covers, which losses it sums, which parameter values a stored step
used, when the context moves) were wrong anywhere, the numbers would differ.
"""
import collections
import gc
import tracemalloc
import warnings

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim
from minigrad.bptt import BPTT, TBPTT, Window, train_sequence
from minigrad.nn import functional as F

# Every test runs on every backend: NumPy, the kernels emulated on the CPU, and a GPU.
pytestmark = pytest.mark.usefixtures("on_backend")

F64 = np.float64
CELLS = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


# -- a small model: a cell, a linear readout, squared error ----------------------

class Model:
    def __init__(self, kind, inputs=3, hidden=4, outputs=2, seed=0):
        self.kind = kind
        self.cell = CELLS[kind](inputs, hidden, dtype="float64", rng=seed)
        self.head = nn.Linear(hidden, outputs, dtype="float64", rng=seed + 1)
        self.params = self.cell.parameters() + self.head.parameters()

    def step(self, state, x, y):
        new = self.cell(x, state)
        h = new[0] if self.kind == "lstm" else new
        return new, F.mse_loss(self.head(h), y)

    def initial_state(self, rng, batch):
        """A non-zero state, so that treating it as a constant matters."""
        h = mg.tensor(rng.standard_normal((batch, self.cell.hidden_size)))
        if self.kind == "lstm":
            return (h, mg.tensor(rng.standard_normal((batch, self.cell.hidden_size))))
        return h

    def values(self):
        return [p.data.copy() for p in self.params]


LAYERS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class LayerModel(Model):
    """Model's network with the cell's sequence layer (the same parameters, the same
    initialization), trained a segment at a time."""

    def __init__(self, kind, seed=0):
        super().__init__(kind, seed=seed)
        self.cell = LAYERS[kind](3, 4, dtype="float64", rng=seed)
        self.params = self.cell.parameters() + self.head.parameters()

    def segment(self, state, xs, ys):
        # The layer's state is (num_layers = 1, batch, hidden), the cell's (batch, hidden): the
        # same numbers. The reshapes let the test compare both models' states as they are.
        hs, new = self.cell(xs, each(state, lambda s: s.reshape((1,) + s.shape)))
        per_step = ys.shape[1] * ys.shape[2]  # the sum over steps of each step's mean
        loss = F.mse_loss(self.head(hs), ys, reduction="sum") / per_step
        return each(new, lambda s: s.reshape(s.shape[1:])), loss


def each(state, f):
    """f applied to a state's tensor, or to each tensor of an LSTM's (h, c); None stays None."""
    if state is None:
        return None
    return tuple(f(s) for s in state) if isinstance(state, tuple) else f(state)


def data(rng, n, batch=2, inputs=3, outputs=2):
    return rng.standard_normal((n, batch, inputs)), rng.standard_normal((n, batch, outputs))


class RecordingSGD(optim.SGD):
    """SGD that keeps a copy of every gradient it is asked to apply."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.grads = []

    def step(self):
        self.grads.append([p.grad.copy() for p in self._params()])
        super().step()


def arrays(state):
    return tuple(t.data for t in state) if isinstance(state, tuple) else state.data


def const(values):
    return tuple(mg.tensor(v) for v in values) if isinstance(values, tuple) else mg.tensor(values)


def simulated_updates(n, k1, k2):
    """The updates found by running steps 1..n one at a time, as TBPTT is described: update
    once k1 steps have passed since the last update, or at the last step, back through the
    last k2 steps. As (p, first window step, t): the update after step t, the one before
    it after step p. A brute force that shares no formula with TBPTT.update."""
    updates, recent, p, since = [], collections.deque(maxlen=k2), 0, 0
    for t in range(1, n + 1):
        recent.append(t)   # the last k2 steps, oldest first
        since += 1
        if since == k1 or t == n:
            updates.append((p, recent[0], t))
            p, since = t, 0
    return updates


def sgd_update(params, lr, clip=None):
    if clip is not None:
        optim.clip_grad_norm_(params, clip)
    grads = [p.grad.copy() for p in params]
    for p, g in zip(params, grads):
        p.data = p.data - lr * g
    return grads


def window_loss(model, start_state, X, Y, lo, t, p, values_at=None):
    """Rebuild steps lo..t from a stored state; the sum of the losses of steps after p.
    values_at(j): the parameter values step j used (None: the current ones)."""
    current = [q.data for q in model.params]
    state, total = const(start_state), None
    for j in range(lo, t + 1):
        if values_at is not None:
            for q, v in zip(model.params, values_at(j)):
                q.data = v
        state, loss = model.step(state, mg.tensor(X[j - 1]), mg.tensor(Y[j - 1]))
        if j > p:
            total = loss if total is None else total + loss
    for q, v in zip(model.params, current):
        q.data = v
    return total, state


def reference_stored(model, state0, X, Y, k1, k2, lr, clip=None):
    """recompute=False: one forward pass; each update rebuilds its window from the stored
    states, each step with the parameter values it ran with."""
    n = len(X)
    updates = {t: (p, lo) for p, lo, t in simulated_updates(n, k1, k2)}
    states, used, losses, grads = [arrays(state0)], [None], [], []
    state = state0
    for s in range(1, n + 1):
        used.append([q.data.copy() for q in model.params])
        with mg.no_grad():
            state, _ = model.step(state, mg.tensor(X[s - 1]), mg.tensor(Y[s - 1]))
        states.append(arrays(state))
        if s in updates:
            p, lo = updates[s]
            total, _ = window_loss(model, states[lo - 1], X, Y, lo, s, p, values_at=lambda j: used[j])
            for q in model.params:
                q.grad = None
            mg.backward(total)
            grads.append(sgd_update(model.params, lr, clip))
            losses.append(float(total.data))
    return losses, grads, states[-1]


def reference_recompute(model, state0, X, Y, k1, k2, lr, clip=None):
    """recompute=True: move the context to just before each window with the current
    parameters, then re-run the window with them."""
    context, at = arrays(state0), 0
    losses, grads = [], []
    for p, lo, t in simulated_updates(len(X), k1, k2):
        with mg.no_grad():
            while at < lo - 1:
                at += 1
                nxt, _ = model.step(const(context), mg.tensor(X[at - 1]), mg.tensor(Y[at - 1]))
                context = arrays(nxt)
        total, last = window_loss(model, context, X, Y, lo, t, p)
        for q in model.params:
            q.grad = None
        mg.backward(total)
        grads.append(sgd_update(model.params, lr, clip))
        losses.append(float(total.data))
    return losses, grads, arrays(last)


def run_policy(model, state0, X, Y, policy, lr, clip=None):
    """train_sequence a step at a time, or with a LayerModel, a segment at a time."""
    opt = RecordingSGD(model.params, lr)
    segments = isinstance(model, LayerModel)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # k2 < k1 warns; tested on its own
        result = train_sequence(model.segment if segments else model.step, state0, X, Y,
                                policy=policy, optimizer=opt, clip_grad_norm=clip, segments=segments)
    return result, opt.grads


def assert_same(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


# -- the schedule --------------------------------------------------------------

def test_windows_follow_the_semantics():
    # Derived by hand from the rules in bptt.py's docstring (1: updates after k1, 2 k1, ...
    # and after n; 2: the window of the update after t is max(1, t - k2 + 1) .. t).
    # TBPTT(4, 4), n = 13: updates after 4, 8, 12 and, as 4 does not divide 13, after 13;
    # the last window is 13 - 4 + 1 = 10 .. 13, reaching back across the update after 12.
    assert list(TBPTT(4, 4).windows(13)) == [Window(0, 1, 4), Window(4, 5, 8), Window(8, 9, 12),
                                             Window(12, 10, 13)]
    # TBPTT(2, 5), n = 6: updates after 2, 4, 6; windows 1..2 and 1..4 (cut at step 1), then 2..6.
    assert list(TBPTT(2, 5).windows(6)) == [Window(0, 1, 2), Window(2, 1, 4), Window(4, 2, 6)]
    # TBPTT(5, 2), n = 10: updates after 5 and 10, each back over two steps: 4..5, 9..10.
    assert list(TBPTT(5, 2).windows(10)) == [Window(0, 4, 5), Window(5, 9, 10)]
    assert list(TBPTT(3, 7).windows(10)) == [Window(0, 1, 3), Window(3, 1, 6), Window(6, 3, 9),
                                             Window(9, 4, 10)]
    assert list(TBPTT(1, 3).windows(4)) == [Window(0, 1, 1), Window(1, 1, 2), Window(2, 1, 3),
                                            Window(3, 2, 4)]
    assert list(BPTT().windows(7)) == [Window(0, 1, 7)]
    assert list(TBPTT(20, 20).windows(7)) == [Window(0, 1, 7)]  # k1 > n: one update, at n
    assert list(TBPTT(3, 3).windows(0)) == [] and list(BPTT().windows(0)) == []
    assert Window(12, 10, 13).first_loss == 13 and Window(0, 4, 5).first_loss == 4


def test_windows_are_what_running_the_steps_one_by_one_finds():
    for n in range(0, 25):
        for k1 in range(1, 9):
            for k2 in range(1, 10):
                found = [(w.prev, w.start, w.end) for w in TBPTT(k1, k2).windows(n)]
                assert found == simulated_updates(n, k1, k2), (n, k1, k2)
        found = [(w.prev, w.start, w.end) for w in BPTT().windows(n)]
        assert found == simulated_updates(n, max(n, 1), max(n, 1))


def test_reprs_and_notation():
    assert repr(TBPTT(5, 20)) == "TBPTT(5, 20)"
    assert repr(TBPTT(1, 3, recompute=True)) == "TBPTT(1, 3, recompute=True)"
    assert repr(BPTT()) == "BPTT()"
    assert "Williams and Peng" in TBPTT.__doc__ and "h = k2; h' = k1" in TBPTT.__doc__


# -- every configuration against the references ---------------------------------

CONFIGS = [
    pytest.param(12, 12, 12, id="TBPTT(n,n)"),
    pytest.param(12, 1, 12, id="TBPTT(1,n)"),
    pytest.param(12, 3, 1, id="TBPTT(k1,1)"),
    pytest.param(12, 2, 5, id="k1<k2<n"),
    pytest.param(12, 4, 4, id="k1=k2"),
    pytest.param(12, 5, 2, id="k2<k1"),
    pytest.param(12, 5, 7, id="k1-not-dividing-n"),
    pytest.param(13, 4, 4, id="k1=k2,n=13"),
]


@pytest.mark.parametrize("segments", [False, True], ids=["cells", "layer-segments"])
@pytest.mark.parametrize("recompute", [False, True], ids=["stored", "recompute"])
@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("n, k1, k2", CONFIGS)
def test_policy_matches_the_reference(n, k1, k2, kind, recompute, segments):
    # segments: the same training with the cell's sequence layer, a segment at a time
    rng = np.random.default_rng(1)
    X, Y = data(rng, n)
    ours, ref = (LayerModel(kind) if segments else Model(kind)), Model(kind)
    state0 = ours.initial_state(rng, 2)
    result, grads = run_policy(ours, state0, X, Y, TBPTT(k1, k2, recompute=recompute), lr=0.1)
    reference = reference_recompute if recompute else reference_stored
    losses, ref_grads, last = reference(ref, state0, X, Y, k1, k2, lr=0.1)

    assert result.updates == len(simulated_updates(n, k1, k2)) == len(grads)
    assert_same(result.losses, losses)
    for g, rg in zip(grads, ref_grads):
        for a, b in zip(g, rg):
            assert_same(a, b)
    for a, b in zip(ours.params, ref.params):
        assert_same(a.data, b.data)
    assert_same(arrays(result.state), last)
    assert not [rec for rec in mg.get_tape() if rec.step is not None]  # nothing left behind


@pytest.mark.parametrize("recompute", [False, True], ids=["stored", "recompute"])
def test_clipping_is_applied_before_each_step(recompute):
    rng = np.random.default_rng(2)
    X, Y = data(rng, 10)
    ours, ref = Model("lstm"), Model("lstm")
    state0 = ours.initial_state(rng, 2)
    result, grads = run_policy(ours, state0, X, Y, TBPTT(2, 4, recompute=recompute), lr=0.1, clip=0.05)
    reference = reference_recompute if recompute else reference_stored
    losses, ref_grads, _ = reference(ref, state0, X, Y, 2, 4, lr=0.1, clip=0.05)
    assert_same(result.losses, losses)
    for a, b in zip(ours.params, ref.params):
        assert_same(a.data, b.data)
    for g in grads:  # clipped: the joint norm of what the optimizer saw is at most 0.05
        assert np.sqrt(sum((x ** 2).sum() for x in g)) <= 0.05 + 1e-12


# -- the classic special cases ---------------------------------------------------

@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_tbptt_k_k_is_detaching_the_state_every_k_steps(kind):
    rng = np.random.default_rng(3)
    X, Y = data(rng, 12)
    ours, chunked = Model(kind), Model(kind)
    state0 = ours.initial_state(rng, 2)
    result, _ = run_policy(ours, state0, X, Y, TBPTT(4, 4), lr=0.2)

    # The classic chunking loop of deep-learning libraries.
    opt = optim.SGD(chunked.params, lr=0.2)
    state, losses = state0, []
    for start in range(0, 12, 4):
        state = const(arrays(state))  # detach
        total = None
        for s in range(start, start + 4):
            state, loss = chunked.step(state, mg.tensor(X[s]), mg.tensor(Y[s]))
            total = loss if total is None else total + loss
        opt.zero_grad()
        mg.backward(total)
        opt.step()
        losses.append(float(total.data))
    assert_same(result.losses, losses)
    for a, b in zip(ours.params, chunked.params):
        assert_same(a.data, b.data)


def test_stateful_training_continues_the_sequence():
    """Two calls on the halves, the second from the first's state, equal one call on the whole."""
    rng = np.random.default_rng(4)
    X, Y = data(rng, 12)
    whole, halves = Model("gru"), Model("gru")
    state0 = whole.initial_state(rng, 2)
    one, _ = run_policy(whole, state0, X, Y, TBPTT(3, 3), lr=0.1)
    first, _ = run_policy(halves, state0, X[:6], Y[:6], TBPTT(3, 3), lr=0.1)
    second, _ = run_policy(halves, first.state, X[6:], Y[6:], TBPTT(3, 3), lr=0.1)
    assert_same(one.losses, first.losses + second.losses)
    assert_same(one.state.data, second.state.data)
    for a, b in zip(whole.params, halves.params):
        assert_same(a.data, b.data)


@pytest.mark.parametrize("kind", list(CELLS))
def test_bptt_is_tbptt_n_n_and_its_gradient_is_the_numerical_one(kind):
    rng = np.random.default_rng(5)
    n = 7
    X, Y = data(rng, n)
    a, b = Model(kind), Model(kind)
    state0 = a.initial_state(rng, 2)
    before = a.values()
    ra, (ga,) = run_policy(a, state0, X, Y, BPTT(), lr=0.0)
    rb, (gb,) = run_policy(b, state0, X, Y, TBPTT(n, n), lr=0.0)
    assert ra.updates == rb.updates == 1
    assert_same(ra.losses, rb.losses)
    for x, y in zip(ga, gb):
        assert_same(x, y)

    def unrolled_loss():
        with mg.no_grad():
            state, total = state0, 0.0
            for s in range(n):
                state, loss = a.step(state, mg.tensor(X[s]), mg.tensor(Y[s]))
                total += float(loss.data)
        return total

    assert_same(ra.losses[0], unrolled_loss())
    eps = 1e-6
    for p, g, value in zip(a.params, ga, before):
        numeric = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            bumped = value.copy()
            bumped[i] += eps
            p.data = bumped
            up = unrolled_loss()
            bumped[i] -= 2 * eps
            down = unrolled_loss()
            numeric[i] = (up - down) / (2 * eps)
        p.data = value
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("recompute", [False, True], ids=["stored", "recompute"])
def test_scalar_case_by_hand(recompute):
    """h_t = w h_(t-1), h_0 = 0.9, w = 0.2, loss_t = h_t, TBPTT(1, 3), lr = 0.

    The update after step t back-propagates loss_t = w^t h_0 through steps 1..t:
    d/dw = t w^(t-1) h_0, i.e. 0.9, 0.36 and, at the third update, 3 w^2 h_0 = 0.108.
    """
    w = nn.Parameter(np.array(0.2))

    def step(h, x, y):
        h = w * h
        return h, h

    opt = RecordingSGD([w], lr=0.0)
    result = train_sequence(step, mg.tensor(np.array(0.9)), np.zeros(3), np.zeros(3),
                            policy=TBPTT(1, 3, recompute=recompute), optimizer=opt)
    assert [float(g[0]) for g in opt.grads] == pytest.approx([0.9, 0.36, 0.108], rel=1e-14)
    assert result.losses == pytest.approx([0.18, 0.036, 0.0072], rel=1e-14)
    assert float(result.state.data) == pytest.approx(0.0072, rel=1e-14)


# -- the unfold-and-average procedure, written literally ------------------------

def test_unfold_and_average_is_tbptt_1_k_recompute():
    """../shared/design/BPTT-NOTES.md, section 1: k instances f_1..f_k of the transition,
    each updated by its own gradient, averaged after every pattern; the context advanced
    with the new weights. minigrad: TBPTT(1, k, recompute=True), f's lr divided by k."""
    rng = np.random.default_rng(6)
    n, k, lr, hidden = 9, 3, 0.3, 4
    A, Y = data(rng, n, batch=2, inputs=3, outputs=2)

    def loss_of(g, x, y):  # 1/2 |g(x) - y|^2: its gradient back-propagates e = y - g(x)
        return 0.5 * F.mse_loss(g(x), mg.tensor(y), reduction="sum")

    # The literal procedure.
    f = [nn.RNNCell(3, hidden, dtype="float64", rng=7) for _ in range(k)]
    g = nn.Linear(hidden, 2, dtype="float64", rng=8)
    x = mg.zeros((2, hidden), dtype="float64")  # the context x_0: the zero vector
    for t in range(1, n + 1):  # pattern t: the window of steps max(1, t-k+1) .. t
        m = min(t, k)
        lo = t - m + 1
        state = x
        for j, inst in enumerate(f[k - m:]):  # the last m instances of f
            state = inst(mg.tensor(A[lo - 1 + j]), state)
        loss = loss_of(g, state, Y[t - 1])  # the target at the window's last step
        for module in f + [g]:
            module.zero_grad()
        mg.backward(loss)
        for module in f + [g]:  # each instance by its own gradient
            for p in module.parameters():
                if p.grad is not None:
                    p.data = p.data - lr * p.grad
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):  # average the instances
            mean = sum(getattr(inst, name).data for inst in f) / k
            for inst in f:
                getattr(inst, name).data = mean.copy()
        if t >= k:  # the next window starts one step later: x = f(x, a) with the new weights
            with mg.no_grad():
                x = f[0](mg.tensor(A[lo - 1]), x)

    # minigrad's policy.
    cell = nn.RNNCell(3, hidden, dtype="float64", rng=7)
    head = nn.Linear(hidden, 2, dtype="float64", rng=8)

    def step(h, a, y):
        h = cell(a, h)
        return h, loss_of(head, h, y.data)

    opt = optim.SGD([{"params": cell.parameters(), "lr": lr / k}, {"params": head.parameters()}], lr=lr)
    train_sequence(step, mg.zeros((2, hidden), dtype="float64"), A, Y,
                   policy=TBPTT(1, k, recompute=True), optimizer=opt)

    for (name, p), q in zip(cell.named_parameters(), f[0].parameters()):
        assert_same(p.data, q.data)
    for p, q in zip(head.parameters(), g.parameters()):
        assert_same(p.data, q.data)
    assert not np.allclose(cell.weight_hh.data, nn.RNNCell(3, hidden, dtype="float64", rng=7).weight_hh.data)


# -- the tape and memory ---------------------------------------------------------

@pytest.mark.parametrize("k1, k2", [(3, 7), (7, 3), (4, 4)])
def test_the_tape_holds_at_most_max_k1_k2_steps(k1, k2):
    rng = np.random.default_rng(7)
    X, Y = data(rng, 30)
    model = Model("lstm")
    live = []

    def step(state, x, y):
        out = model.step(state, x, y)
        live.append({rec.step for rec in mg.get_tape() if rec.step is not None})
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        train_sequence(step, None, X, Y, policy=TBPTT(k1, k2), optimizer=optim.SGD(model.params, lr=0.1))
    # At its fullest, just before an update, the tape holds that update's window: k2 steps.
    assert max(len(steps) for steps in live) == k2 <= max(k1, k2)
    assert not [rec for rec in mg.get_tape() if rec.step is not None]  # nothing left behind


def _peak_memory(policy, n, data_arrays):
    X, Y = data_arrays
    model = Model("rnn", inputs=8, hidden=256, outputs=8)
    opt = optim.SGD(model.params, lr=0.01)
    state0 = mg.zeros((32, 256), dtype="float64")
    # Warm up on the longest sequence: CPython keeps freed small tuples on free lists (up to
    # 2000 of each size), which tracemalloc still counts where they were made: a cache of
    # about 100 KB whatever n is, but one that a short run would not yet have filled.
    train_sequence(model.step, state0, X, Y, policy=policy, optimizer=opt)
    gc.collect()
    tracemalloc.start()
    try:
        train_sequence(model.step, state0, X[:n], Y[:n], policy=policy, optimizer=opt)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.numpy_only("the tape's peak memory over long sequences (emulated kernels: minutes)")
def test_peak_memory_of_tbptt_does_not_grow_with_n():
    rng = np.random.default_rng(8)
    sequence = (rng.standard_normal((1600, 32, 8)), rng.standard_normal((1600, 32, 8)))
    short = _peak_memory(TBPTT(10, 30), 200, sequence)
    long = _peak_memory(TBPTT(10, 30), 1600, sequence)
    assert long <= 1.05 * short, (short, long)
    print(f"peak memory of TBPTT(10, 30): {short} bytes at n = 200, {long} at n = 1600")
    # The measure does see growth: full BPTT keeps every step.
    prefix = tuple(a[:100] for a in sequence)
    assert _peak_memory(BPTT(), 100, prefix) > 1.5 * _peak_memory(BPTT(), 50, prefix)


# -- what train_sequence promises about its arguments and result -----------------

def test_inputs_as_arrays_tensors_or_lists_give_the_same_result():
    rng = np.random.default_rng(9)
    X, Y = data(rng, 6)
    results = []
    for xs, ys in [(X, Y), (mg.tensor(X), mg.tensor(Y)), (list(X), list(Y))]:
        model = Model("rnn")
        results.append(run_policy(model, None, xs, ys, TBPTT(2, 3), lr=0.1)[0].losses)
    assert results[0] == results[1] == results[2]


def test_step_sees_constant_tensors_and_the_result_state_is_detached():
    rng = np.random.default_rng(10)
    X, Y = data(rng, 5)
    model = Model("lstm")
    seen = []

    def step(state, x, y):
        seen.append((type(x), x.requires_grad, type(y), y.requires_grad, x.shape))
        return model.step(state, x, y)

    result = train_sequence(step, None, X, Y, policy=TBPTT(2, 2), optimizer=optim.SGD(model.params, lr=0.1))
    assert seen == [(mg.Tensor, False, mg.Tensor, False, (2, 3))] * 5
    h, c = result.state
    assert not h.requires_grad and h._record is None and not c.requires_grad and c._record is None
    assert result.updates == 3 and len(result.losses) == 3
    assert all(isinstance(v, float) for v in result.losses)


def test_initial_state_is_a_constant_even_when_it_requires_grad():
    rng = np.random.default_rng(11)
    X, Y = data(rng, 4)
    model = Model("rnn")
    h0 = nn.Parameter(rng.standard_normal((2, 4)))
    train_sequence(model.step, h0, X, Y, policy=BPTT(), optimizer=optim.SGD(model.params, lr=0.1))
    assert h0.grad is None


def test_dropped_losses_warn_once():
    rng = np.random.default_rng(12)
    X, Y = data(rng, 20)
    model = Model("rnn")
    with pytest.warns(RuntimeWarning, match=r"TBPTT\(5, 2\) drops the losses of 12 of 20 steps") as record:
        train_sequence(model.step, None, X, Y, policy=TBPTT(5, 2), optimizer=optim.SGD(model.params, lr=0.1))
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # k2 >= k1 drops nothing and so says nothing
        train_sequence(model.step, None, X, Y, policy=TBPTT(5, 5), optimizer=optim.SGD(model.params, lr=0.1))


def test_an_optimizer_with_state_follows_the_policy():
    """Adam's per-parameter state advances once per update."""
    rng = np.random.default_rng(13)
    X, Y = data(rng, 10)
    model = Model("gru")
    opt = optim.Adam(model.params, lr=1e-2)
    result = train_sequence(model.step, None, X, Y, policy=TBPTT(3, 5), optimizer=opt)
    assert result.updates == 4
    assert {s["step"] for s in opt.state.values()} == {4}


# -- bad input -------------------------------------------------------------------

@pytest.mark.parametrize("k1, k2, error", [
    (0, 3, ValueError), (3, 0, ValueError), (-1, 2, ValueError),
    (1.5, 2, TypeError), (2, 2.0, TypeError), (True, 2, TypeError), ("3", 2, TypeError), (None, 2, TypeError),
])
def test_tbptt_rejects_steps_that_are_not_integers_from_1(k1, k2, error):
    with pytest.raises(error, match=r"TBPTT: k[12] must be an integer >= 1"):
        TBPTT(k1, k2)


def test_tbptt_accepts_numpy_integers_and_rejects_a_non_bool_recompute():
    assert TBPTT(np.int64(2), np.int32(3)).k2 == 3
    with pytest.raises(TypeError, match="recompute must be True or False"):
        TBPTT(2, 3, recompute="yes")


def _model_and_opt():
    model = Model("rnn")
    return model, optim.SGD(model.params, lr=0.1)


def test_length_mismatch_changes_no_parameter():
    rng = np.random.default_rng(14)
    X, Y = data(rng, 6)
    model, opt = _model_and_opt()
    before = model.values()
    with pytest.raises(ValueError, match="inputs have 6 steps and targets 5"):
        train_sequence(model.step, None, X, Y[:5], policy=TBPTT(2, 2), optimizer=opt)
    for p, v in zip(model.params, before):
        np.testing.assert_array_equal(p.data, v)


def test_a_non_scalar_loss_is_an_error_before_any_update():
    rng = np.random.default_rng(15)
    X, Y = data(rng, 6)
    model, opt = _model_and_opt()
    before = model.values()

    def step(state, x, y):
        state, _ = model.step(state, x, y)
        return state, (model.head(state) - y) ** 2  # forgot to reduce

    with pytest.raises(ValueError, match=r"scalar loss Tensor, got shape \(2, 2\) at step 1"):
        train_sequence(step, None, X, Y, policy=TBPTT(3, 3), optimizer=opt)
    for p, v in zip(model.params, before):
        np.testing.assert_array_equal(p.data, v)
    with pytest.raises(ValueError, match="scalar loss Tensor, got float"):
        train_sequence(lambda s, x, y: (model.step(s, x, y)[0], 1.0), None, X, Y,
                       policy=TBPTT(3, 3), optimizer=opt)


def test_a_state_that_changes_shape_is_an_error():
    rng = np.random.default_rng(16)
    X, Y = data(rng, 6)
    model, opt = _model_and_opt()

    def step(state, x, y):
        new, loss = model.step(state, x, y)
        return (new[:1] if state is not None else new), loss

    with pytest.raises(ValueError, match=r"state changed at step 2 from \(2, 4\) float64 to \(1, 4\)"):
        train_sequence(step, None, X, Y, policy=TBPTT(3, 3), optimizer=opt)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(step=None), TypeError, "step must be callable"),
    (dict(policy=(2, 2)), TypeError, r"policy must be BPTT\(\) or TBPTT"),
    (dict(optimizer="sgd"), TypeError, "optimizer must be a minigrad.optim optimizer"),
    (dict(clip_grad_norm=-1.0), ValueError, "clip_grad_norm must be a number > 0"),
    (dict(clip_grad_norm=0), ValueError, "clip_grad_norm must be a number > 0"),
    (dict(state=[1, 2]), TypeError, "the initial state must be a Tensor or a tuple of Tensors"),
    (dict(inputs=3.0), TypeError, "inputs must be an array, a Tensor or a sequence"),
    (dict(targets=np.float64(1.0)), ValueError, "targets needs time as its first axis"),
    (dict(segments=1), TypeError, "segments must be True or False, got 1"),
])
def test_bad_arguments_are_named(kwargs, error, message):
    rng = np.random.default_rng(17)
    X, Y = data(rng, 4)
    model, opt = _model_and_opt()
    args = dict(step=model.step, state=None, inputs=X, targets=Y, policy=TBPTT(2, 2), optimizer=opt)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        train_sequence(args.pop("step"), args.pop("state"), args.pop("inputs"), args.pop("targets"), **args)


def test_step_must_return_a_pair_and_a_state_of_tensors():
    rng = np.random.default_rng(18)
    X, Y = data(rng, 4)
    model, opt = _model_and_opt()
    with pytest.raises(TypeError, match="step must return \\(new_state, loss\\)"):
        train_sequence(lambda s, x, y: model.step(s, x, y)[1], None, X, Y, policy=BPTT(), optimizer=opt)
    with pytest.raises(TypeError, match="the state returned at step 1 must be a Tensor"):
        train_sequence(lambda s, x, y: (None, model.step(s, x, y)[1]), None, X, Y, policy=BPTT(),
                       optimizer=opt)


def test_a_loss_that_depends_on_no_parameter_and_no_grad_are_errors():
    rng = np.random.default_rng(19)
    X, Y = data(rng, 4)
    model, opt = _model_and_opt()
    with pytest.raises(RuntimeError, match="does not depend on any parameter"):
        train_sequence(lambda s, x, y: (x, (x * 2.0).sum()), None, X, Y, policy=TBPTT(2, 2), optimizer=opt)
    with mg.no_grad(), pytest.raises(RuntimeError, match="inside no_grad"):
        train_sequence(model.step, None, X, Y, policy=TBPTT(2, 2), optimizer=opt)


def test_an_error_inside_step_leaves_nothing_on_the_tape():
    rng = np.random.default_rng(20)
    X, Y = data(rng, 8)
    model, opt = _model_and_opt()

    def step(state, x, y):
        if len(calls) == 5:
            raise KeyError("boom")
        calls.append(1)
        return model.step(state, x, y)

    calls = []
    with pytest.raises(KeyError):
        train_sequence(step, None, X, Y, policy=TBPTT(2, 4), optimizer=opt)
    assert not [rec for rec in mg.get_tape() if rec.step is not None]


# -- segments=True: a step that runs several time steps at once ----------------------------

def test_window_starts_by_hand():
    # TBPTT(4, 6), n = 13: updates after 4, 8, 12, 13 with windows 1..4, 3..8, 7..12, 8..13.
    policy = TBPTT(4, 6)
    assert policy.starts(13, 1, 13) == [3, 7, 8]
    assert policy.starts(13, 3, 7) == [7] and policy.starts(13, 5, 6) == []
    # after the update after 4 the next window begins at 3, ... after the last, nothing
    assert [policy.next_start(13, end) for end in (4, 8, 12, 13)] == [3, 7, 8, 14]
    assert BPTT().starts(9, 1, 9) == [] and BPTT().next_start(9, 9) == 10


def test_window_starts_are_what_running_the_steps_one_by_one_finds():
    for n in range(1, 16):
        for k1 in range(1, 8):
            for k2 in range(1, 9):
                policy, updates = TBPTT(k1, k2), simulated_updates(n, k1, k2)
                starts = sorted({lo for _, lo, _ in updates})
                for first in range(1, n + 1):
                    for last in range(first, n + 1):
                        want = [s for s in starts if first < s <= last]
                        assert policy.starts(n, first, last) == want, (n, k1, k2, first, last)
                for (_, _, t), after in zip(updates, updates[1:] + [None]):
                    assert policy.next_start(n, t) == (after[1] if after else t + 1)


def test_window_starts_take_no_memory_proportional_to_n():
    # A trillion steps: listing the windows before step 10^11 would never finish.
    n = 10 ** 12
    assert TBPTT(1, 1).starts(n, 10 ** 11, 10 ** 11 + 3) == [10 ** 11 + 1, 10 ** 11 + 2, 10 ** 11 + 3]
    assert TBPTT(10, 40).next_start(n, 10 ** 11) == 10 ** 11 + 10 - 40 + 1
    assert TBPTT(10, 40).update(10 ** 10, n) == Window(10 ** 11 - 10, 10 ** 11 - 39, 10 ** 11)


def test_segments_are_as_long_as_the_windows_allow():
    # TBPTT(4, 6), n = 13: windows 1..4, 3..8, 7..12, 8..13; updates after 4, 8, 12, 13.
    rng = np.random.default_rng(21)
    X, Y = data(rng, 15)
    model, seen = LayerModel("rnn"), []

    def step(state, xs, ys):
        seen.append(xs.shape[0])
        return model.segment(state, xs, ys)
    train_sequence(step, None, X[:13], Y[:13], policy=TBPTT(4, 6),
                   optimizer=optim.SGD(model.params, lr=0.1), segments=True)
    assert seen == [2, 2, 2, 1, 1, 4, 1]
    # TBPTT(5, 5): the windows, if k1 divides n; else the last window (9..13 for n = 13)
    # reaches back across the previous update, so steps 6..10 come in two pieces.
    for n, pieces in [(15, [5, 5, 5]), (13, [5, 3, 2, 3])]:
        seen.clear()
        train_sequence(step, None, X[:n], Y[:n], policy=TBPTT(5, 5),
                       optimizer=optim.SGD(model.params, lr=0.1), segments=True)
        assert seen == pieces


def test_segments_take_inputs_as_arrays_tensors_or_lists():
    rng = np.random.default_rng(22)
    X, Y = data(rng, 7)
    results = []
    for xs, ys in [(X, Y), (mg.tensor(X), mg.tensor(Y)), (list(X), list(Y))]:
        model = LayerModel("gru")
        result = train_sequence(model.segment, None, xs, ys, policy=TBPTT(3, 3),
                                optimizer=optim.SGD(model.params, lr=0.1), segments=True)
        results.append(result.losses)
    assert results[0] == results[1] == results[2] and len(results[0]) == 3


def test_a_segment_error_names_its_steps():
    rng = np.random.default_rng(23)
    X, Y = data(rng, 6)
    model = LayerModel("rnn")

    def step(state, xs, ys):
        new, loss = model.segment(state, xs, ys)
        return new, loss * mg.ones(2, dtype="float64")
    with pytest.raises(ValueError, match=r"scalar loss Tensor, got shape \(2,\) at steps 1..3"):
        train_sequence(step, None, X, Y, policy=TBPTT(3, 3), optimizer=optim.SGD(model.params, lr=0.1),
                       segments=True)
