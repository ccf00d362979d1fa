"""nn.RNN, nn.LSTM and nn.GRU as PyTorch's: stacked, bidirectional, batch-first, unbatched.

PyTorch's own numbers for every configuration are in test_torch_layers.py. Here: the layer
against a plain loop over the cell ops (layer by layer, step by step, the second direction
walking backwards), float64 gradchecks, dropout between layers, train_sequence with stacked
and bidirectional layers, the reverse sequence ops, and every constructor and input error.
"""
import re
import warnings

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim
from minigrad.bptt import BPTT, TBPTT, train_sequence
from minigrad.nn import functional as F
from minigrad.nn import rnn as rnn_module
import numpy_rnn
from helpers import close

LAYERS = {"rnn_tanh": nn.RNN, "rnn_relu": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
IN, H, L, N = 3, 4, 5, 2


def make(kind, num_layers=2, bidirectional=True, seed=0, **options):
    if kind.startswith("rnn"):
        options["nonlinearity"] = kind[4:]
    return LAYERS[kind](IN, H, num_layers, bidirectional=bidirectional, dtype="float64",
                        rng=seed, **options)


def states_for(kind, layer, rng, batch=N):
    """A non-zero initial state of the layer's shape (D * num_layers, N, H), requiring grad."""
    shape = (layer.directions * layer.num_layers,) + ((batch,) if batch else ()) + (H,)
    h = mg.tensor(rng.uniform(-0.5, 0.5, shape), requires_grad=True)
    if kind == "lstm":
        return (h, mg.tensor(rng.uniform(-0.5, 0.5, shape), requires_grad=True))
    return h


def cell_loop(kind, layer, xs, state):
    """The reference: every layer and direction stepped with the cell ops, one step at a
    time (the second direction from the last step to the first), then joined."""
    def step(x, s, p):
        if kind == "lstm":
            return F.lstm_cell(x, s, *p)
        if kind == "gru":
            return F.gru_cell(x, s, *p)
        return F.rnn_cell(x, s, *p, nonlinearity=kind[4:])
    D, finals = layer.directions, []
    for num in range(layer.num_layers):
        outputs = []
        for d in range(D):
            k = num * D + d
            suffix = f"_l{num}" + ("_reverse" if d else "")
            p = [getattr(layer, n + suffix) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                 if hasattr(layer, n + suffix)]
            s = (state[0][k], state[1][k]) if kind == "lstm" else state[k]
            hs = [None] * xs.shape[0]
            for t in (range(xs.shape[0] - 1, -1, -1) if d else range(xs.shape[0])):
                s = step(xs[t], s, p)
                hs[t] = s[0] if kind == "lstm" else s
            outputs.append(mg.stack(hs))
            finals.append(s)
        xs = outputs[0] if D == 1 else mg.concat(outputs, axis=-1)
    if kind == "lstm":
        return xs, (mg.stack([h for h, _ in finals]), mg.stack([c for _, c in finals]))
    return xs, mg.stack(finals)


def flat(out):
    """(output, state) -> [output, h_n(, c_n)]."""
    output, state = out
    return [output] + (list(state) if isinstance(state, tuple) else [state])


def leaves(layer, xs, state):
    return [xs] + (list(state) if isinstance(state, tuple) else [state]) + layer.parameters()


@pytest.mark.usefixtures("on_backend")  # NumPy, the CUDA kernels emulated on the CPU, a GPU
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("batch", [None, N], ids=["unbatched", "batched"])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_layer_equals_the_cell_loop(kind, batch, num_layers, bidirectional, rng):
    layer = make(kind, num_layers, bidirectional, bias=kind != "gru")
    xs = mg.tensor(rng.uniform(-1, 1, (L,) + ((batch,) if batch else ()) + (IN,)), requires_grad=True)
    state = states_for(kind, layer, rng, batch)
    results, weights = [], None
    for run in (layer, lambda x, s: cell_loop(kind, layer, x, s)):
        for t in leaves(layer, xs, state):
            t.grad = None
        outs = flat(run(xs, state))
        weights = weights or [rng.standard_normal(o.shape) for o in outs]  # one per entry
        sum((o * w).sum() for o, w in zip(outs, weights)).backward()
        results.append(([o.data for o in outs], [t.grad for t in leaves(layer, xs, state)]))
    (got, got_grads), (want, want_grads) = results
    assert got[0].shape == (L,) + ((batch,) if batch else ()) + (layer.directions * H,)
    for a, b in zip(got + got_grads, want + want_grads):
        close(a, b)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_stacked_bidirectional_layer_passes_gradcheck(kind, rng):
    layer = make(kind, num_layers=2, bidirectional=True, seed=3)
    xs = mg.tensor(rng.uniform(-1, 1, (3, 2, IN)), requires_grad=True)
    state = states_for(kind, layer, rng)
    inputs = leaves(layer, xs, state)
    k = 1 + (2 if kind == "lstm" else 1)

    def fn(x, *rest):
        out = layer(x, tuple(rest[:2]) if kind == "lstm" else rest[0])
        return mg.concat([o.reshape(-1) for o in flat(out)])
    if kind == "rnn_relu":  # central differences across relu's kink are wrong: move away from it
        inputs = inputs[:k]
    assert mg.gradcheck(fn, inputs)


@pytest.mark.usefixtures("on_backend")
def test_reverse_sequence_op_is_the_op_on_the_reversed_input(rng):
    # Against numpy_rnn (BPTT by hand): reverse=True is the forward op on x[::-1], its output
    # turned back in time; the gradient of x comes back in x's order.
    for kind, op in [("lstm", F.lstm), ("gru", F.gru), ("rnn_tanh", F.rnn)]:
        G = {"lstm": 4, "gru": 3, "rnn_tanh": 1}[kind]
        xs = rng.uniform(-1, 1, (L, N, IN))
        h0 = rng.uniform(-0.5, 0.5, (N, H))
        c0 = rng.uniform(-0.5, 0.5, (N, H))
        params = [rng.uniform(-0.5, 0.5, s) for s in [(G * H, IN), (G * H, H), (G * H,), (G * H,)]]
        state = (h0, c0) if kind == "lstm" else (h0,)
        g_hs, g_last = rng.standard_normal((L, N, H)), [rng.standard_normal((N, H)) for _ in state]
        want_hs, want_last, cache = numpy_rnn.forward(kind, xs[::-1], state, *params)
        want = numpy_rnn.backward(cache, g_hs[::-1], tuple(g_last))
        ts = [mg.tensor(a, requires_grad=True) for a in [xs, *state, *params]]
        k = len(state)
        hs, last = op(ts[0], tuple(ts[1:1 + k]) if kind == "lstm" else ts[1], *ts[1 + k:],
                      reverse=True)
        last = last if kind == "lstm" else (last,)
        ((hs * mg.tensor(g_hs)).sum() + sum((s * mg.tensor(g)).sum() for s, g in zip(last, g_last))).backward()
        close(hs.data, want_hs[::-1])
        for s, w in zip(last, want_last):
            close(s.data, w)
        close(ts[0].grad, want["xs"][::-1])
        close(ts[1].grad, want["h0"])
        close(ts[1 + k].grad, want["W_ih"])
        close(ts[2 + k].grad, want["W_hh"])


def test_batch_first_and_unbatched_are_the_same_numbers(rng):
    layer = make("lstm", num_layers=2, bidirectional=True)
    first = make("lstm", num_layers=2, bidirectional=True, batch_first=True)
    xs = rng.uniform(-1, 1, (L, N, IN))
    out, (h, c) = layer(mg.tensor(xs))
    out_bf, (h_bf, c_bf) = first(mg.tensor(xs.transpose(1, 0, 2)))
    close(out_bf.data, out.data.transpose(1, 0, 2))
    close(h_bf.data, h.data)  # the states are never batch-first
    out_1, (h_1, _) = layer(mg.tensor(xs[:, 1]))  # unbatched: one sequence, no batch axis
    assert out_1.shape == (L, 2 * H) and h_1.shape == (4, H)
    close(out_1.data, out.data[:, 1])
    close(h_1.data, h.data[:, 1])


def test_no_state_means_zeros(rng):
    for kind in LAYERS:
        layer = make(kind, num_layers=2)
        xs = mg.tensor(rng.uniform(-1, 1, (L, N, IN)))
        zero = mg.zeros(4, N, H, dtype="float64")
        explicit = flat(layer(xs, (zero, zero) if kind == "lstm" else zero))
        for a, b in zip(flat(layer(xs)), explicit):
            close(a.data, b.data)


def test_each_layer_and_direction_is_one_recurrent_record(rng):
    layer = make("lstm", num_layers=3, bidirectional=True)
    out = layer(mg.tensor(rng.uniform(-1, 1, (L, N, IN)), requires_grad=True))
    ops = [r.op for r in mg.get_tape()]  # the records that made `out`, still alive
    assert out[0].op == "concat"
    assert ops.count("lstm") == 6 and ops.count("lstm_cell") == 0


# -- dropout between layers --------------------------------------------------------------

def test_dropout_acts_between_layers_in_training_mode_only(rng, monkeypatch):
    p = 0.5
    layer = make("gru", num_layers=3, bidirectional=False, dropout=p)
    plain = make("gru", num_layers=3, bidirectional=False)  # the same weights (same seed)
    xs = mg.tensor(rng.uniform(-1, 1, (L, N, IN)))
    # eval(): no dropout at all, and the same numbers every call
    layer.eval()
    for a, b in zip(flat(layer(xs)), flat(plain(xs))):
        close(a.data, b.data)
    # train(): the mask the layer drew, recorded, applied by hand to the plain layers
    seen = []
    real = F.dropout

    def recording(x, p_, training=True, rng=None):
        y = real(x, p_, training=training, rng=rng)
        seen.append((x.data.copy(), y.data.copy(), p_, training))
        return y
    monkeypatch.setattr(rnn_module.F, "dropout", recording)
    layer.train()
    out, h_n = layer(xs)
    assert len(seen) == 2                      # after layers 0 and 1, not after the last
    for x, y, p_, training in seen:
        assert p_ == p and training
        kept = y != 0
        close(y[kept], x[kept] / (1 - p))      # inverted dropout: survivors scaled by 1/(1-p)
        assert 0.2 < kept.mean() < 0.8
    x, finals = xs, []
    for num in range(3):
        if num:
            x = x * mg.tensor(seen[num - 1][1] / seen[num - 1][0])  # the same mask
        x, h = F.gru(x, mg.zeros(N, H, dtype="float64"), *[getattr(plain, f"{n}_l{num}") for n in
                     ("weight_ih", "weight_hh", "bias_ih", "bias_hh")])
        finals.append(h)
    close(out.data, x.data)
    close(h_n.data, mg.stack(finals).data)


def test_dropout_masks_come_from_the_layers_generator(rng):
    xs = mg.tensor(rng.uniform(-1, 1, (L, N, IN)))
    a, b = make("lstm", dropout=0.3, seed=5), make("lstm", dropout=0.3, seed=5)
    first = a(xs)[0].data
    close(first, b(xs)[0].data)                # the same seed: the same masks
    assert not np.allclose(first, a(xs)[0].data)  # the generator moves on: new masks


def test_dropout_with_one_layer_warns_as_pytorch():
    with pytest.warns(UserWarning, match="LSTM: dropout acts after every recurrent layer but "
                                         "the last, so dropout=0.2 with num_layers=1 does nothing"):
        nn.LSTM(3, 4, dropout=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.LSTM(3, 4, 2, dropout=0.2)


# -- under train_sequence ---------------------------------------------------------------------

def _training(kind, layer_options, policy, segments, n=12, seed=3):
    """Train a stacked layer and a readout on one sequence; return (losses, parameters)."""
    rng = np.random.default_rng(seed)
    X, Y = rng.uniform(-1, 1, (n, N, IN)), rng.uniform(-1, 1, (n, N, 2))
    layer = make(kind, seed=1, **layer_options)
    head = nn.Linear(layer.directions * H, 2, dtype="float64", rng=2)
    params = layer.parameters() + head.parameters()

    def step(state, xs, ys):
        if not segments:  # one step: a sequence of length 1
            xs, ys = xs.reshape((1,) + xs.shape), ys.reshape((1,) + ys.shape)
        hs, state = layer(xs, state)
        return state, F.mse_loss(head(hs), ys, reduction="sum")
    result = train_sequence(step, None, X, Y, policy=policy, segments=segments,
                            optimizer=optim.SGD(params, lr=0.05))
    return result, [p.data for p in params]


@pytest.mark.filterwarnings("ignore:train_sequence. TBPTT.4, 2. drops the losses")
@pytest.mark.parametrize("policy", [BPTT(), TBPTT(3, 3), TBPTT(2, 5), TBPTT(4, 2)], ids=repr)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_stacked_layer_segments_equal_steps(kind, policy):
    # The state is the stacked state; segments and single steps give the same training.
    options = dict(num_layers=3, bidirectional=False)
    seg, seg_params = _training(kind, options, policy, segments=True)
    one, one_params = _training(kind, options, policy, segments=False)
    close(seg.losses, one.losses)
    for a, b in zip(seg_params, one_params):
        close(a, b)
    for a, b in zip(flat((None, seg.state))[1:], flat((None, one.state))[1:]):
        assert a.shape == (3, N, H)
        close(a.data, b.data)


@pytest.mark.parametrize("policy, n", [(BPTT(), 12), (TBPTT(4, 4), 12), (TBPTT(3, 3, recompute=True), 12)],
                         ids=["BPTT", "TBPTT(4,4)", "TBPTT(3,3,recompute)"])
def test_bidirectional_layer_trains_where_every_segment_is_a_window(policy, n):
    result, _ = _training("lstm", dict(num_layers=2, bidirectional=True), policy, segments=True, n=n)
    assert result.updates == len(list(policy.windows(n)))
    assert result.state[0].shape == (4, N, H)


@pytest.mark.parametrize("policy, n, segments, steps", [
    (TBPTT(2, 4), 12, True, "1..2"),      # k1 < k2: the window 1..4 takes two calls
    (TBPTT(4, 2), 12, True, "1..2"),      # k2 < k1: steps before a window run on their own
    (TBPTT(4, 4), 13, True, "1..4"),      # k does not divide n: the last window, 10..13, is cut
    (TBPTT(3, 3), 6, False, "1..1"),      # steps one at a time
], ids=["k1<k2", "k2<k1", "k-not-dividing-n", "single-steps"])
@pytest.mark.filterwarnings("ignore:train_sequence. TBPTT.4, 2. drops the losses")
def test_bidirectional_layer_refuses_part_of_a_window(policy, n, segments, steps):
    message = (f"LSTM(bidirectional=True): under {policy!r} with n = {n}, train_sequence runs "
               f"parts of windows in one call of step (here steps {steps}), and the layer would "
               "see only that part. Use BPTT(), or segments=True with TBPTT(k, k) and k dividing "
               "n, where every call is one whole window")
    with pytest.raises(ValueError, match=re.escape(message)):
        _training("lstm", dict(num_layers=1, bidirectional=True), policy, segments=segments, n=n)
    assert not [r for r in mg.get_tape() if r.step is not None]  # nothing left behind


def test_a_bidirectional_layer_outside_train_sequence_is_not_checked(rng):
    out, _ = make("rnn_tanh", num_layers=1)(mg.tensor(rng.uniform(-1, 1, (L, N, IN))))
    assert out.shape == (L, N, 2 * H)


# -- the constructor and the input, as PyTorch reads them ----------------------------------------

def test_positional_arguments_are_pytorchs():
    lstm = nn.LSTM(3, 4, 2, False, True, 0.0, True)  # num_layers, bias, batch_first, dropout, bidirectional
    assert (lstm.num_layers, lstm.bias, lstm.batch_first, lstm.bidirectional) == (2, False, True, True)
    assert [n for n, _ in lstm.named_parameters()] == [
        "weight_ih_l0", "weight_hh_l0", "weight_ih_l0_reverse", "weight_hh_l0_reverse",
        "weight_ih_l1", "weight_hh_l1", "weight_ih_l1_reverse", "weight_hh_l1_reverse"]
    assert lstm.weight_ih_l1.shape == (16, 8) and lstm.weight_hh_l1_reverse.shape == (16, 4)
    rnn = nn.RNN(3, 4, 2, "relu", False)       # RNN: nonlinearity comes fourth
    assert rnn.nonlinearity == "relu" and rnn.bias is False and rnn.num_layers == 2
    assert repr(lstm) == "LSTM(3, 4, num_layers=2, bias=False, batch_first=True, bidirectional=True)"
    assert repr(nn.GRU(3, 4, 3, dropout=0.5)) == "GRU(3, 4, num_layers=3, dropout=0.5)"


def test_dtype_device_and_rng_are_keywords_only():
    # PyTorch's positional order goes on where minigrad's stops ((device, dtype) for cells,
    # Dropout's inplace, ...): a positional value there must not be read as a dtype or a seed.
    for make_it in (lambda: nn.RNNCell(3, 4, True, "tanh", "float64"),
                    lambda: nn.LSTMCell(3, 4, True, "cpu"),
                    lambda: nn.GRU(3, 4, 1, True, False, 0.0, False, "float64"),
                    lambda: nn.LSTM(3, 4, 1, True, False, 0.0, False, 0, "cpu"),
                    lambda: nn.Linear(3, 4, True, "cpu"),
                    lambda: nn.Embedding(10, 3, 0, 1.0),            # PyTorch: max_norm=1.0
                    lambda: nn.Dropout(0.2, True),                  # PyTorch: inplace=True
                    lambda: nn.LayerNorm(4, 1e-5, True, True, "cpu")):
        with pytest.raises(TypeError, match="positional argument"):
            make_it()


def test_initialization_is_uniform_within_one_over_sqrt_hidden():
    lstm = nn.LSTM(5, 16, 2, bidirectional=True, dtype="float64", rng=0)
    for name, p in lstm.named_parameters():
        assert np.abs(p.data).max() <= 0.25, name
        assert np.abs(p.data).max() > 0.2, name  # spread over the range, not squeezed


BAD_CONSTRUCTORS = [
    (lambda: nn.LSTM(3, 4, 0), ValueError, "LSTM: num_layers must be an integer >= 1, got 0"),
    (lambda: nn.LSTM(3, 4, True), ValueError, "LSTM: num_layers must be an integer >= 1, got True"),
    (lambda: nn.GRU(3, 4, 2.0), ValueError, "GRU: num_layers must be an integer >= 1, got 2.0"),
    (lambda: nn.LSTM(3, 4, 2, 2), TypeError, "LSTM: bias must be True or False, got int 2"),
    (lambda: nn.RNN(3, 4, 1, "tanh", True, 1), TypeError, "RNN: batch_first must be True or False"),
    (lambda: nn.GRU(3, 4, bidirectional="yes"), TypeError, "GRU: bidirectional must be True or False"),
    (lambda: nn.LSTM(3, 4, 2, dropout=1.5), ValueError,
     r"LSTM: dropout must be a number in \[0, 1\], the probability of zeroing an element, got 1.5"),
    (lambda: nn.LSTM(3, 4, 2, dropout=True), ValueError, "LSTM: dropout must be a number"),
    (lambda: nn.LSTM(3, 4, 2, dropout="0.1"), ValueError, "LSTM: dropout must be a number"),
    (lambda: nn.RNN(3, 4, 1, "gelu"), ValueError, "RNN: nonlinearity must be 'tanh' or 'relu', got 'gelu'"),
    (lambda: nn.LSTM(3, 4, 1, True, False, 0.0, False, 2), ValueError,
     r"LSTM: proj_size=2 is not supported \(only 0: no projection of h\)"),
    (lambda: nn.LSTM(3, 0), ValueError, "LSTM: hidden_size must be an integer >= 1, got 0"),
    (lambda: nn.GRU(3, 4, dtype="int32"), TypeError, "GRU: dtype must be float32 or float64"),
]


@pytest.mark.parametrize("call, error, message", BAD_CONSTRUCTORS,
                         ids=[m.split(":")[1].split()[0] + f"-{k}" for k, (_, _, m) in enumerate(BAD_CONSTRUCTORS)])
def test_bad_constructor_arguments_are_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


X64 = mg.zeros(L, N, IN, dtype="float64")
BAD_CALLS = [
    (lambda: make("lstm")(mg.zeros(L, N, 1, IN, dtype="float64")), ValueError,
     r"LSTM: input must be \(L, N, H_in\), \(N, L, H_in\) with batch_first, or unbatched "
     r"\(L, H_in\); got shape \(5, 2, 1, 3\)"),
    (lambda: make("gru")(mg.zeros(L, N, 7, dtype="float64")), ValueError,
     r"GRU: input of shape \(5, 2, 7\) has 7 features; input_size is 3"),
    (lambda: make("gru")(X64, mg.zeros(2, N, H, dtype="float64")), ValueError,
     r"GRU: hx of shape \(2, 2, 4\) for input of shape \(5, 2, 3\); expected \(4, 2, 4\) "
     r"\(num_layers \* directions, batch, hidden_size\)"),
    (lambda: make("rnn_tanh")(X64[:, 0], mg.zeros(4, N, H, dtype="float64")), ValueError,
     r"RNN: hx of shape \(4, 2, 4\) for input of shape \(5, 3\); expected \(4, 4\) "
     r"\(num_layers \* directions, hidden_size\)"),
    (lambda: make("lstm")(X64, mg.zeros(4, N, H, dtype="float64")), TypeError,
     r"LSTM: the state must be a tuple \(h_0, c_0\), got Tensor"),
    (lambda: make("lstm")(X64, (mg.zeros(4, N, H, dtype="float64"), mg.zeros(4, 1, H, dtype="float64"))),
     ValueError, r"LSTM: c_0 of shape \(4, 1, 4\)"),
    (lambda: make("gru")(X64, np.zeros((4, N, H), np.float32)), TypeError,  # arrays keep their dtype
     "gru: dtypes float64 and float32 differ"),
    (lambda: make("gru")(X64.astype("float32")), TypeError, "gru: dtypes float32 and float64 differ"),
]


@pytest.mark.parametrize("call, error, message", BAD_CALLS, ids=[f"call-{k}" for k in range(len(BAD_CALLS))])
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.usefixtures("on_backend")
@pytest.mark.parametrize("kind", list(LAYERS))
def test_a_batch_of_none_gives_empty_outputs_as_pytorch(kind):
    # PyTorch returns empty outputs and states for N = 0; the weights get zero gradients.
    layer = make(kind, num_layers=2, bidirectional=True)
    xs = mg.zeros(L, 0, IN, dtype="float64", requires_grad=True)
    out, state = flat(layer(xs))[0], flat(layer(xs))[1:]
    assert out.shape == (L, 0, 2 * H) and all(s.shape == (4, 0, H) for s in state)
    (out.sum() + sum(s.sum() for s in state)).backward()
    assert xs.grad.shape == (L, 0, IN)
    for p in layer.parameters():
        np.testing.assert_array_equal(p.grad, 0)
