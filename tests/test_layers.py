"""The sequence ops functional.rnn, lstm and gru (T time steps, one record) and the layers
nn.RNN, nn.LSTM and nn.GRU.

Their first reference is independent of minigrad: the forward and the backpropagation
through time written out by hand in plain NumPy from PyTorch's equations (numpy_rnn.py,
itself checked by central differences here); in float64 the layers must give its outputs,
final state and every gradient to 1e-10. The second is the cells: T calls of rnn_cell,
lstm_cell or gru_cell (each checked against primitive ops and PyTorch in test_cells.py)
must give the same outputs and the same gradients for every input, in float32 and float64;
the cells share their pointwise code with the layers, so this catches the bookkeeping of
the sequence ops, not a wrong formula. Each op also passes a float64 gradcheck of its own,
with odd sizes, batched and unbatched, with and without bias.
"""
import gc

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from minigrad.nn import functional as F
import numpy_rnn
from helpers import DTYPES, F32, F64, close, rand_leaf

# Every test runs on every backend: NumPy, the kernels emulated on the CPU, and a GPU.
pytestmark = pytest.mark.usefixtures("on_backend")

IN, H = 3, 5
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
KINDS = list(GATES)
OP = {"rnn_tanh": "rnn", "rnn_relu": "rnn", "lstm": "lstm", "gru": "gru"}


def n_states(kind):
    return 2 if kind == "lstm" else 1


def operands(rng, kind, steps, batch, bias, dtype=F64):
    """Leaves [xs, *states, w_ih, w_hh(, b_ih, b_hh)]; batch None: unbatched.

    For relu, draws again until no pre-activation of the cell loop lies within 0.05 of the
    kink (central differences across it are wrong) and both signs occur."""
    lead = () if batch is None else (batch,)
    rows = GATES[kind] * H
    while True:
        ts = [rand_leaf(rng, steps, *lead, IN, dtype=dtype)]
        ts += [rand_leaf(rng, *lead, H, dtype=dtype) for _ in range(n_states(kind))]
        ts += [rand_leaf(rng, rows, n, dtype=dtype, scale=0.5) for n in (IN, H)]
        if bias:
            ts += [rand_leaf(rng, rows, dtype=dtype, scale=0.5) for _ in range(2)]
        if kind != "rnn_relu" or _relu_away_from_kink(ts):
            return ts


def _relu_away_from_kink(ts):
    xs, h, w_ih, w_hh, *b = (t.data.astype(F64) for t in ts)
    pre = []
    for x in xs:
        a = x @ w_ih.T + h @ w_hh.T + (b[0] + b[1] if b else 0)
        pre.append(a)
        h = np.maximum(a, 0)
    pre = np.concatenate([p.ravel() for p in pre])
    return np.abs(pre).min() > 0.05 and (pre > 0).any() and (pre < 0).any()


def run_layer(kind, xs, states, params):
    """The sequence op: returns (hs, last state as a tuple)."""
    if kind == "lstm":
        hs, (h, c) = F.lstm(xs, tuple(states), *params)
        return hs, (h, c)
    if kind == "gru":
        hs, h = F.gru(xs, states[0], *params)
    else:
        hs, h = F.rnn(xs, states[0], *params, nonlinearity=kind[4:])
    return hs, (h,)


def run_cells(kind, xs, states, params):
    """The reference: one cell op per step, then the h's stacked."""
    states, hs = tuple(states), []
    for t in range(xs.shape[0]):
        x = xs[t]
        if kind == "lstm":
            states = F.lstm_cell(x, states, *params)
        elif kind == "gru":
            states = (F.gru_cell(x, states[0], *params),)
        else:
            states = (F.rnn_cell(x, states[0], *params, nonlinearity=kind[4:]),)
        hs.append(states[0])
    return mg.stack(hs), states


def split(kind, ts):
    k = n_states(kind)
    return ts[0], ts[1:1 + k], ts[1 + k:]


# -- against BPTT written by hand in NumPy -------------------------------------------------

NAMES = {"rnn_tanh": ["xs", "h0"], "rnn_relu": ["xs", "h0"], "lstm": ["xs", "h0", "c0"],
         "gru": ["xs", "h0"]}  # operands() order; then W_ih, W_hh (, b_ih, b_hh)
LAYER = {"rnn_tanh": nn.RNN, "rnn_relu": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def by_hand(kind, arrays, g_hs, g_last):
    """numpy_rnn's outputs and gradients for operands() arrays (unbatched ones as a batch of
    one, and back): returns ([hs, *last], [gradient of each operand, in their order])."""
    k, unbatched = n_states(kind), arrays[0].ndim == 2
    lift = (lambda a: a[:, None]) if unbatched else (lambda a: a)   # (T, I) -> (T, 1, I)
    one = (lambda a: a[None]) if unbatched else (lambda a: a)       # (H,) -> (1, H)
    xs, states, params = arrays[0], arrays[1:1 + k], arrays[1 + k:]
    hs, last, cache = numpy_rnn.forward(kind, lift(xs), tuple(one(s) for s in states), *params)
    grads = numpy_rnn.backward(cache, lift(g_hs), tuple(one(g) for g in g_last))
    names = NAMES[kind] + ["W_ih", "W_hh", "b_ih", "b_hh"][:len(params)]
    outs = [hs] + list(last)
    return ([o.reshape(a.shape) for o, a in zip(outs, [g_hs] + g_last)],
            [grads[n].reshape(a.shape) for n, a in zip(names, arrays)])


def run_module(kind, ts):
    """nn.RNN / LSTM / GRU holding the operands' weights: returns (hs, last state as a tuple,
    the layer's parameters in operands() order)."""
    xs, states, params = split(kind, ts)
    options = {"nonlinearity": kind[4:]} if kind.startswith("rnn") else {}
    layer = LAYER[kind](IN, H, bias=len(params) == 4, dtype="float64", **options)
    names = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    layer.load_state_dict({n: p.data for n, p in zip(names, params)})
    mine = [getattr(layer, n) for n in names[:len(params)]]
    # The layer's states are (num_layers, batch, H) (unbatched: (num_layers, H)); the
    # operands' are one layer's. The reshapes are recorded: gradients reach the operands.
    layered = [s.reshape((1,) + s.shape) for s in states]
    hs, last = layer(xs, tuple(layered) if kind == "lstm" else layered[0])
    last = tuple(last) if kind == "lstm" else (last,)
    return hs, tuple(s.reshape(s.shape[1:]) for s in last), mine


@pytest.mark.numpy_only("checks numpy_rnn.py alone: no minigrad runs")
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("kind", KINDS)
def test_the_bptt_by_hand_is_the_derivative_of_its_forward(kind, bias, rng):
    # Central differences of the hand-written forward: a slip in the hand-written backward
    # cannot hide behind the layers agreeing with it.
    arrays = [t.data.copy() for t in operands(rng, kind, 3, 2, bias)]  # perturbed in place below
    g_hs = rng.standard_normal((3, 2, H))
    g_last = [rng.standard_normal((2, H)) for _ in range(n_states(kind))]

    def loss():
        outs, _ = by_hand(kind, arrays, g_hs, g_last)
        return sum((o * g).sum() for o, g in zip(outs, [g_hs] + g_last))
    _, grads = by_hand(kind, arrays, g_hs, g_last)
    for a, grad in zip(arrays, grads):
        numeric = np.empty_like(a)
        for i in np.ndindex(a.shape):
            keep = a[i]
            a[i] = keep + 1e-6
            up = loss()
            a[i] = keep - 1e-6
            numeric[i] = (up - loss()) / 2e-6
            a[i] = keep
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("api", ["functional", "module"])
@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("batch", [None, 1, 3], ids=["unbatched", "B=1", "B=3"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("kind", KINDS)
def test_sequence_op_matches_bptt_written_by_hand(kind, bias, batch, steps, api, rng):
    ts = operands(rng, kind, steps, batch, bias)
    g_hs = rng.standard_normal(ts[0].shape[:-1] + (H,))   # a random upstream gradient for
    g_last = [rng.standard_normal(ts[1].shape) for _ in range(n_states(kind))]  # every output
    if api == "functional":
        hs, last = run_layer(kind, *split(kind, ts))
        leaves = ts
    else:
        hs, last, params = run_module(kind, ts)
        leaves = ts[:1 + n_states(kind)] + params
    ((hs * g_hs).sum() + sum((s * g).sum() for s, g in zip(last, g_last))).backward()
    want_out, want_grads = by_hand(kind, [t.data for t in ts], g_hs, g_last)
    for what, got, want in zip(["hs", "h_T", "c_T"], [hs] + list(last), want_out):
        np.testing.assert_allclose(got.data, want, rtol=1e-10, atol=1e-10, err_msg=what)
    names = NAMES[kind] + ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    for name, t, want in zip(names, leaves, want_grads):
        assert t.grad is not None, f"{name} got no gradient"
        np.testing.assert_allclose(t.grad, want, rtol=1e-10, atol=1e-10, err_msg=f"d{name}")


# -- against the cells, and gradcheck -------------------------------------------------------

@pytest.mark.parametrize("batch", [None, 1, 2], ids=["unbatched", "B=1", "B=2"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("kind", KINDS)
def test_sequence_op_passes_gradcheck_for_every_input(kind, bias, batch, rng):
    ts = operands(rng, kind, 3, batch, bias)

    def fn(*t):  # every output side by side: hs flattened over time, then the last state
        hs, last = run_layer(kind, *split(kind, t))
        return mg.concat([hs.reshape(-1)] + [s.reshape(-1) for s in last])
    assert mg.gradcheck(fn, ts)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("batch", [None, 3], ids=["unbatched", "B=3"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("kind", KINDS)
def test_sequence_op_matches_the_cell_loop(kind, bias, batch, steps, dtype, rng):
    ts = operands(rng, kind, steps, batch, bias, dtype)
    # Independent upstream gradients for hs and each last state, so that a mix-up shows
    # (h_T is also hs[-1]: both gradients must reach it).
    g_hs = rng.standard_normal(ts[0].shape[:-1] + (H,)).astype(dtype)
    g_last = [rng.standard_normal(ts[1].shape).astype(dtype) for _ in range(n_states(kind))]
    results = []
    for run in (run_layer, run_cells):
        for t in ts:
            t.grad = None
        hs, last = run(kind, *split(kind, ts))
        loss = (hs * g_hs).sum() + sum((s * g).sum() for s, g in zip(last, g_last))
        loss.backward()
        results.append(([hs.data] + [s.data for s in last], [t.grad for t in ts]))
    (got_out, got_grads), (want_out, want_grads) = results
    for got, want in zip(got_out + got_grads, want_out + want_grads):
        assert got.dtype == dtype and got.shape == want.shape
        if dtype == F32:
            # A weight gradient sums T*B products of size ~1 in one matmul here and step by step
            # there; in float32 the two orders differ by a few 1e-6 (seen with the tiled kernel).
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        else:
            close(got, want, dtype)


@pytest.mark.parametrize("needs", ["params", "states", "x"])
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_when_only_some_inputs_require_grad(kind, needs, rng):
    ts = operands(rng, kind, 3, 2, True)
    k = n_states(kind)
    wanted = {"params": range(1 + k, len(ts)), "states": range(1, 1 + k), "x": [0]}[needs]
    for j, t in enumerate(ts):
        t.requires_grad = j in wanted
    grads = []
    for run in (run_layer, run_cells):
        for t in ts:
            t.grad = None
        hs, last = run(kind, *split(kind, ts))
        ((hs * hs).sum() + last[-1].sum()).backward()
        grads.append([t.grad for t in ts])
    for j, (got, want) in enumerate(zip(*grads)):
        if j in wanted:
            close(got, want)
        else:
            assert got is None


@pytest.mark.parametrize("used", ["hs", "h", "c"])
def test_lstm_loss_through_one_output_only(used, rng):
    ts = operands(rng, "lstm", 3, 2, True)
    grads = []
    for run in (run_layer, run_cells):
        for t in ts:
            t.grad = None
        hs, (h, c) = run("lstm", *split("lstm", ts))
        ({"hs": hs, "h": h, "c": c}[used] ** 2).sum().backward()
        grads.append([t.grad for t in ts])
    for got, want in zip(*grads):
        close(got, want)


@pytest.mark.parametrize("kind", KINDS)
def test_two_calls_chained_equal_one_call_over_both(kind, rng):
    # Running steps 1..2 then 3..5 from the state the first call left is running 1..5:
    # the gradient flows back from the second record into the first.
    ts = operands(rng, kind, 5, 2, True)
    xs, states, params = split(kind, ts)
    grads = []
    for parts in ([slice(0, 5)], [slice(0, 2), slice(2, 5)]):
        for t in ts:
            t.grad = None
        s, loss = states, 0
        for part in parts:
            hs, s = run_layer(kind, xs[part], s, params)
            loss = loss + (hs * hs).sum()
        (loss + s[-1].sum()).backward()
        grads.append([t.grad for t in ts])
    for got, want in zip(*grads):
        close(got, want)


@pytest.mark.parametrize("batch", [None, 3], ids=["unbatched", "B=3"])
@pytest.mark.parametrize("kind", KINDS)
def test_sequence_op_makes_exactly_one_record(kind, batch, rng):
    ts = operands(rng, kind, 4, batch, True)
    gc.collect()
    tape = mg.get_tape()
    tape.clear()
    hs, last = run_layer(kind, *split(kind, ts))
    records = list(tape)
    assert [r.op for r in records] == [OP[kind]]
    state_shape = ((3,) if batch else ()) + (H,)
    assert records[0].shapes == ((4,) + state_shape,) + (state_shape,) * n_states(kind)
    assert hs.shape == (4,) + state_shape and all(s.shape == state_shape for s in last)
    np.testing.assert_array_equal(hs.data[-1], last[0].data)


def test_relu_has_slope_zero_at_zero_as_pytorch():
    xs = mg.zeros(3, 2, IN, dtype="float64", requires_grad=True)
    h0 = mg.zeros(2, H, dtype="float64", requires_grad=True)
    w_ih, w_hh = mg.ones(H, IN, dtype="float64"), mg.ones(H, H, dtype="float64")
    hs, _ = F.rnn(xs, h0, w_ih, w_hh, nonlinearity="relu")
    hs.sum().backward()
    np.testing.assert_array_equal(xs.grad, 0)
    np.testing.assert_array_equal(h0.grad, 0)


def test_rnn_by_hand_for_two_steps():
    # H = I = 1, no bias: h1 = tanh(w x1 + u h0), h2 = tanh(w x2 + u h1); L = h2.
    w, u, x1, x2, h0 = 0.5, -0.7, 1.0, 2.0, 0.3
    h1 = np.tanh(w * x1 + u * h0)
    h2 = np.tanh(w * x2 + u * h1)
    d2 = 1 - h2 ** 2               # dL/d(pre-activation of step 2)
    d1 = d2 * u * (1 - h1 ** 2)    # ... of step 1, through h1
    def leaf(v):
        return mg.tensor(v, dtype="float64", requires_grad=True)
    W, U, xs, h = leaf([[w]]), leaf([[u]]), leaf([[[x1]], [[x2]]]), leaf([[h0]])
    hs, last = F.rnn(xs, h, W, U)
    last.sum().backward()
    close(hs.data.ravel(), [h1, h2])
    close(W.grad, [[d2 * x2 + d1 * x1]])
    close(U.grad, [[d2 * h1 + d1 * h0]])
    close(xs.grad.ravel(), [d1 * w, d2 * w])
    close(h.grad, [[d1 * u]])


# -- the layers ------------------------------------------------------------------------------

LAYERS = [(nn.RNN, nn.RNNCell), (nn.LSTM, nn.LSTMCell), (nn.GRU, nn.GRUCell)]


@pytest.mark.parametrize("layer, cell", LAYERS)
def test_layer_has_its_cells_parameters_and_initialization(layer, cell):
    a, b = layer(4, 6, dtype="float64", rng=3), cell(4, 6, dtype="float64", rng=3)
    assert [n for n, _ in a.named_parameters()] == [n + "_l0" for n, _ in b.named_parameters()]
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    assert repr(a) == repr(b).replace(cell.__name__, layer.__name__)


@pytest.mark.parametrize("batch", [None, 2], ids=["unbatched", "B=2"])
@pytest.mark.parametrize("layer, cell", LAYERS)
def test_layer_equals_its_cell_stepped_from_zeros(layer, cell, batch, rng):
    a, b = layer(4, 6, dtype="float64", rng=3), cell(4, 6, dtype="float64", rng=3)
    xs = mg.tensor(rng.standard_normal((5,) + ((batch,) if batch else ()) + (4,)))
    hs, last = a(xs)                                    # no state: zeros
    state = None
    for t in range(5):
        state = b(xs[t], state)
        h = state[0] if isinstance(state, tuple) else state
        close(hs.data[t], h.data)
    if layer is nn.LSTM:
        close(last[1].data[0], state[1].data)   # the layer's state: (num_layers, ...)
    hs2, _ = a(xs, list(last) if layer is nn.LSTM else last)  # a state goes on; a list is taken
    assert hs2.shape == hs.shape


def test_relu_layer():
    layer = nn.RNN(3, 4, nonlinearity="relu", rng=0)
    hs, h = layer(mg.ones(2, 3))
    assert (hs.data >= 0).all() and "nonlinearity='relu'" in repr(layer)


# -- bad input ------------------------------------------------------------------------------

def t64(*shape):
    return mg.tensor(np.full(shape, 0.1))


XS, S = t64(2, 3, 4), t64(3, 5)
W = {g: (t64(g * 5, 4), t64(g * 5, 5), t64(g * 5), t64(g * 5)) for g in (1, 3, 4)}

BAD_CALLS = [
    (lambda: F.rnn(t64(3, 4)[0], S, *W[1]), ValueError,
     r"rnn: x must be \(T, batch, input_size\) or \(T, input_size\), got shape \(4,\)"),
    (lambda: F.gru(t64(2, 3, 3, 4), S, *W[3]), ValueError, r"gru: x must be \(T, batch, input_size\)"),
    (lambda: F.lstm(t64(0, 3, 4), (S, S), *W[4]), ValueError,
     r"lstm: x has no time steps \(shape \(0, 3, 4\)\)"),
    (lambda: F.rnn(XS, t64(2, 5), *W[1]), ValueError,
     r"rnn: state h of shape \(2, 5\) for input \(2, 3, 4\) and hidden size 5; expected \(3, 5\)"),
    (lambda: F.lstm(XS, (S, t64(5)), *W[4]), ValueError, r"lstm: state c of shape \(5,\)"),
    (lambda: F.lstm(XS, S, *W[4]), TypeError, r"lstm: state must be a tuple \(h, c\), got Tensor"),
    (lambda: F.gru(XS, S, t64(15, 3), W[3][1]), ValueError,
     r"gru: weight_ih \(15, 3\) does not fit input \(2, 3, 4\) .* expected \(15, 4\)"),
    (lambda: F.rnn(XS.astype("float32"), S, *W[1]), TypeError, "rnn: dtypes float32 and float64 differ"),
    (lambda: F.rnn(XS, S, *W[1], nonlinearity="gelu"), ValueError,
     "rnn: nonlinearity must be 'tanh' or 'relu', got 'gelu'"),
    (lambda: F.gru(XS, S, *W[3][:3]), ValueError, "gru: give both bias_ih and bias_hh, or neither"),
    (lambda: nn.RNN(4, 5, nonlinearity="sigmoid"), ValueError, "RNN: nonlinearity must be"),
    (lambda: nn.LSTM(4, 0), ValueError, "LSTM: hidden_size must be an integer >= 1, got 0"),
    (lambda: nn.GRU(4, 5)(mg.ones(2, 3, 3)), ValueError,
     r"GRU: input of shape \(2, 3, 3\) has 3 features; input_size is 4"),
]


@pytest.mark.parametrize("call, error, message", BAD_CALLS,
                         ids=[f"{k}-{m.split(':')[0]}" for k, (_, _, m) in enumerate(BAD_CALLS)])
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
