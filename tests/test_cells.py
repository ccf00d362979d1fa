"""The recurrent cells: the fused ops functional.rnn_cell, lstm_cell and gru_cell (one
record per time step) and the modules RNNCell, LSTMCell and GRUCell.

Each fused op is checked by a float64 gradcheck on all of its inputs, against the same cell
written with minigrad's primitive ops (values and every gradient, float32 and float64), and
against numbers computed by PyTorch 2.13 and pasted at the end of this file (the suite
needs no torch). Then the modules (parameters, initialization, state, printing), bad input,
and a backward that must not see parameter updates made after the forward.
"""
import gc

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from minigrad.nn import functional as F
from helpers import DTYPES, F32, F64, close, rand_leaf

# Every test runs on every backend: NumPy, the kernels emulated on the CPU, and a GPU.
pytestmark = pytest.mark.usefixtures("on_backend")

IN, H = 4, 5                      # input and hidden sizes of the generated tests
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
KINDS = list(GATES)
OP = {"rnn_tanh": "rnn_cell", "rnn_relu": "rnn_cell", "lstm": "lstm_cell", "gru": "gru_cell"}
CELLS = [(nn.RNNCell, 1), (nn.LSTMCell, 4), (nn.GRUCell, 3)]


def n_states(kind):
    return 2 if kind == "lstm" else 1


def run_fused(kind, x, states, params):
    """The fused op: params are (w_ih, w_hh) or (w_ih, w_hh, b_ih, b_hh)."""
    if kind == "lstm":
        return F.lstm_cell(x, tuple(states), *params)
    if kind == "gru":
        return F.gru_cell(x, states[0], *params)
    return F.rnn_cell(x, states[0], *params, nonlinearity=kind[4:])


def run_reference(kind, x, states, params):
    """The same cell the slow, obvious way, straight from PyTorch's equations, with
    minigrad's primitive ops (matmul, +, [], tanh, sigmoid, relu, *): many records."""
    w_ih, w_hh, *b = params
    h, n = states[0], w_hh.shape[1]
    a_ih, a_hh = x @ w_ih.T, h @ w_hh.T
    if b:
        a_ih, a_hh = a_ih + b[0], a_hh + b[1]

    def gate(a, k):
        return a[..., k * n:(k + 1) * n]
    if kind.startswith("rnn"):
        a = a_ih + a_hh
        return a.tanh() if kind == "rnn_tanh" else a.relu()
    if kind == "lstm":
        a = a_ih + a_hh
        i, f, g, o = gate(a, 0).sigmoid(), gate(a, 1).sigmoid(), gate(a, 2).tanh(), gate(a, 3).sigmoid()
        c = f * states[1] + i * g
        return o * c.tanh(), c
    r = (gate(a_ih, 0) + gate(a_hh, 0)).sigmoid()
    z = (gate(a_ih, 1) + gate(a_hh, 1)).sigmoid()
    cand = (gate(a_ih, 2) + r * gate(a_hh, 2)).tanh()     # r acts after the recurrent matmul
    return (1 - z) * cand + z * h


def operands(rng, kind, batch, bias, dtype=F64):
    """Leaves [x, *states, w_ih, w_hh(, b_ih, b_hh)]; batch None means unbatched input.

    For relu, draws again until every pre-activation is at least 0.05 away from the kink
    (central differences across it are wrong) and both signs occur (both branches run)."""
    lead = () if batch is None else (batch,)
    rows = GATES[kind] * H
    while True:
        ts = [rand_leaf(rng, *lead, IN, dtype=dtype)]
        ts += [rand_leaf(rng, *lead, H, dtype=dtype) for _ in range(n_states(kind))]
        ts += [rand_leaf(rng, rows, n, dtype=dtype, scale=0.5) for n in (IN, H)]
        if bias:
            ts += [rand_leaf(rng, rows, dtype=dtype, scale=0.5) for _ in range(2)]
        if kind != "rnn_relu":
            return ts
        x, h, w_ih, w_hh, *b = (t.data.astype(F64) for t in ts)
        pre = x @ w_ih.T + h @ w_hh.T + sum(b)
        if np.abs(pre).min() > 0.05 and (pre > 0).any() and (pre < 0).any():
            return ts


def split(kind, ts):
    k = n_states(kind)
    return ts[0], ts[1:1 + k], ts[1 + k:]


def outputs(out):
    return out if isinstance(out, tuple) else (out,)


# -- 1. float64 gradcheck of each fused op, with respect to all of its inputs -----------

@pytest.mark.parametrize("batch", [None, 1, 3], ids=["unbatched", "B=1", "B=3"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("kind", KINDS)
def test_fused_op_passes_gradcheck_for_every_input(kind, bias, batch, rng):
    ts = operands(rng, kind, batch, bias)

    def fn(*t):  # the LSTM's h' and c' side by side: the Jacobian of both outputs is checked
        return mg.concat(outputs(run_fused(kind, *split(kind, t))), axis=-1)
    assert mg.gradcheck(fn, ts)


# -- 2. against the cell written with primitive ops ------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [None, 3], ids=["unbatched", "B=3"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("kind", KINDS)
def test_fused_op_matches_primitive_ops_in_values_and_gradients(kind, bias, batch, dtype, rng):
    ts = operands(rng, kind, batch, bias, dtype)
    # Different upstream gradients for h' and c', so that a mix-up of the two shows.
    upstream = [rng.standard_normal(ts[1].shape).astype(dtype) for _ in range(n_states(kind))]
    results = []
    for run in (run_fused, run_reference):
        for t in ts:
            t.grad = None
        outs = outputs(run(kind, *split(kind, ts)))
        sum((o * g).sum() for o, g in zip(outs, upstream)).backward()
        results.append(([o.data for o in outs], [t.grad for t in ts]))
    (fused_out, fused_grads), (ref_out, ref_grads) = results
    for got, want in zip(fused_out + fused_grads, ref_out + ref_grads):
        assert got.dtype == dtype and got.shape == want.shape
        close(got, want, dtype)


@pytest.mark.parametrize("needs", ["params", "states", "x"])
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_when_only_some_inputs_require_grad(kind, needs, rng):
    # x and the states are often data (x always, the state at the first step): the branches
    # that skip a gradient must skip exactly the inputs that need none, and no other.
    ts = operands(rng, kind, 3, True)
    k = n_states(kind)
    wanted = {"params": range(1 + k, len(ts)), "states": range(1, 1 + k), "x": [0]}[needs]
    for j, t in enumerate(ts):
        t.requires_grad = j in wanted
    grads = []
    for run in (run_fused, run_reference):
        for t in ts:
            t.grad = None
        sum(o.sum() for o in outputs(run(kind, *split(kind, ts)))).backward()
        grads.append([t.grad for t in ts])
    for j, (got, want) in enumerate(zip(*grads)):
        if j in wanted:
            close(got, want)
        else:
            assert got is None


@pytest.mark.parametrize("used", ["h", "c"])
def test_lstm_loss_through_one_output_only(used, rng):
    # The other output gets no gradient at all (the tape fills in zeros for it).
    ts = operands(rng, "lstm", 3, True)
    grads = []
    for run in (run_fused, run_reference):
        for t in ts:
            t.grad = None
        h2, c2 = run("lstm", *split("lstm", ts))
        ((h2 if used == "h" else c2) ** 2).sum().backward()
        grads.append([t.grad for t in ts])
    for got, want in zip(*grads):
        close(got, want)


@pytest.mark.parametrize("kind", KINDS)
def test_a_tensor_used_as_two_inputs_gets_both_gradients(kind, rng):
    # With input size = hidden size, one tensor can be x and h (and c), and one weight both
    # weights: each use adds its part of the gradient.
    v, w = rand_leaf(rng, 3, H), rand_leaf(rng, GATES[kind] * H, H, scale=0.5)
    b = rand_leaf(rng, GATES[kind] * H, scale=0.5)
    grads = []
    for run in (run_fused, run_reference):
        for t in (v, w, b):
            t.grad = None
        sum((o * o).sum() for o in outputs(run(kind, v, [v] * n_states(kind), [w, w, b, b]))).backward()
        grads.append([v.grad, w.grad, b.grad])
    for got, want in zip(*grads):
        close(got, want)


def test_relu_has_slope_zero_at_zero_as_pytorch():
    # x = h = 0 without bias: every pre-activation is exactly 0, where relu has no
    # derivative; PyTorch (and minigrad's relu op) take 0, so nothing reaches x or h.
    x = mg.zeros(2, IN, dtype="float64", requires_grad=True)
    h = mg.zeros(2, H, dtype="float64", requires_grad=True)
    w_ih, w_hh = mg.ones(H, IN, dtype="float64"), mg.ones(H, H, dtype="float64")
    F.rnn_cell(x, h, w_ih, w_hh, nonlinearity="relu").sum().backward()
    np.testing.assert_array_equal(x.grad, 0)
    np.testing.assert_array_equal(h.grad, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_three_steps_unrolled_match_primitive_ops(kind, rng):
    # The state out of one record is the input of the next: gradients must add up across
    # steps (for the LSTM through both of its outputs) and into the shared parameters.
    ts = operands(rng, kind, 2, True)
    xs = [rand_leaf(rng, 2, IN) for _ in range(3)]
    grads = []
    for run in (run_fused, run_reference):
        for t in ts + xs:
            t.grad = None
        _, states, params = split(kind, ts)
        loss = 0
        for x in xs:
            states = outputs(run(kind, x, states, params))
            loss = loss + (states[0] * states[0]).sum() + 0.5 * states[-1].sum()
        loss.backward()
        grads.append([t.grad for t in ts[1:] + xs])     # ts[0], the x of operands(), is unused
    for got, want in zip(*grads):
        close(got, want)


@pytest.mark.parametrize("batch", [None, 3], ids=["unbatched", "B=3"])
@pytest.mark.parametrize("kind", KINDS)
def test_fused_op_makes_exactly_one_record(kind, batch, rng):
    ts = operands(rng, kind, batch, True)
    gc.collect()
    tape = mg.get_tape()
    tape.clear()
    outs = outputs(run_fused(kind, *split(kind, ts)))
    records = list(tape)
    assert [r.op for r in records] == [OP[kind]]
    rec = records[0]
    assert len(rec.inputs) == len(ts) and all(a is b for a, b in zip(rec.inputs, ts))
    state_shape = ((3,) if batch else ()) + (H,)
    assert rec.shapes == (state_shape,) * n_states(kind)      # the LSTM's record has two outputs
    assert [(o._record, o._slot) for o in outs] == [(rec, k) for k in range(n_states(kind))]
    assert all(o.shape == state_shape and o.op == OP[kind] for o in outs)


# -- 3. PyTorch parity (numbers from torch 2.13, float64; see TORCH at the end) -----------

def vals(shape, offset, scale=0.6):
    """Deterministic, irregular numbers: the same formula made PyTorch's parameters and inputs."""
    n = int(np.prod(shape))
    return scale * np.sin(1.7 * np.arange(n) + offset).reshape(shape)


TORCH_CELLS = {
    "rnn_tanh": (nn.RNNCell, dict(nonlinearity="tanh"), 1, True),
    "rnn_relu": (nn.RNNCell, dict(nonlinearity="relu"), 1, True),  # 2 of 4 units are cut off
    "lstm": (nn.LSTMCell, {}, 4, True),
    "lstm_nobias": (nn.LSTMCell, {}, 4, False),
    "gru": (nn.GRUCell, {}, 3, True),
    "gru_nobias": (nn.GRUCell, {}, 3, False),
}


@pytest.mark.parametrize("case", list(TORCH_CELLS))
def test_cell_matches_pytorch(case):
    cls, kwargs, gates, bias = TORCH_CELLS[case]
    cell = cls(3, 2, bias=bias, dtype="float64", rng=0, **kwargs)
    state = {"weight_ih": vals((gates * 2, 3), 1.0), "weight_hh": vals((gates * 2, 2), 2.0)}
    if bias:
        state.update(bias_ih=vals((gates * 2,), 3.0, 0.3), bias_hh=vals((gates * 2,), 4.0, 0.3))
    cell.load_state_dict(state)
    x = mg.tensor(vals((2, 3), 1.5, 1.0), requires_grad=True)
    h = mg.tensor(vals((2, 2), 6.0, 0.8), requires_grad=True)
    want = TORCH[case]
    if gates == 4:
        c = mg.tensor(vals((2, 2), 7.0, 0.8), requires_grad=True)
        h2, c2 = cell(x, (h, c))
        loss = (h2 * h2).sum() + 0.5 * (c2 * c2).sum()     # PyTorch's loss, exactly
        close(c2.data, want["out_c"])
        inputs = {"x": x, "h": h, "c": c}
    else:
        h2 = cell(x, h)
        loss = (h2 * h2).sum()
        inputs = {"x": x, "h": h}
    close(h2.data, want["out_h"])
    loss.backward()
    for name, t in list(inputs.items()) + list(cell.named_parameters()):
        close(t.grad, want["grad_" + name])
    assert sorted("grad_" + n for n, _ in cell.named_parameters()) == sorted(
        k for k in want if k.startswith("grad_w") or k.startswith("grad_b"))


def test_linear_matches_pytorch():
    lin = nn.Linear(3, 2, dtype="float64", rng=0)
    lin.load_state_dict({"weight": vals((2, 3), 1.0), "bias": vals((2,), 3.0, 0.3)})
    x = mg.tensor(vals((4, 3), 5.0, 1.0), requires_grad=True)
    y = lin(x)
    (y * y).sum().backward()
    close(y.data, LINEAR["out"])
    close(x.grad, LINEAR["grad_x"])
    close(lin.weight.grad, LINEAR["grad_weight"])
    close(lin.bias.grad, LINEAR["grad_bias"])


# -- 4. the modules -----------------------------------------------------------------------

@pytest.mark.parametrize("cls, gates", CELLS)
def test_parameters_are_pytorchs_in_names_order_and_shapes(cls, gates):
    cell = cls(3, 5)
    assert [(n, p.shape) for n, p in cell.named_parameters()] == [
        ("weight_ih", (gates * 5, 3)), ("weight_hh", (gates * 5, 5)),
        ("bias_ih", (gates * 5,)), ("bias_hh", (gates * 5,))]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in cell.parameters())
    assert list(cell.state_dict()) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]


@pytest.mark.parametrize("cls, gates", CELLS)
def test_without_bias_there_are_no_bias_parameters(cls, gates):
    cell = cls(3, 5, bias=False, dtype="float64", rng=0)
    assert cell.bias_ih is None and cell.bias_hh is None
    assert [n for n, _ in cell.named_parameters()] == ["weight_ih", "weight_hh"]
    assert list(cell.state_dict()) == ["weight_ih", "weight_hh"]
    # Without bias, zero input from the zero state stays exactly zero (tanh(0) = 0, and the
    # GRU's and LSTM's candidate is tanh(0) = 0); a bias moves it.
    zero = mg.zeros(2, 3, dtype="float64")
    assert all(not o.data.any() and o.shape == (2, 5) for o in outputs(cell(zero)))
    assert outputs(cls(3, 5, dtype="float64", rng=0)(zero))[0].data.all()


@pytest.mark.parametrize("cls, gates", CELLS)
def test_initialization_is_uniform_within_one_over_sqrt_hidden_and_seeded(cls, gates):
    cell = cls(7, 16, rng=0)
    bound = 1 / np.sqrt(16)                          # U(-1/sqrt(H), 1/sqrt(H)), not 1/sqrt(I)
    every = np.concatenate([p.data.ravel() for p in cell.parameters()])
    assert -bound <= every.min() and every.max() <= bound
    assert every.max() > 0.9 * bound and every.min() < -0.9 * bound
    for p in cell.parameters():
        assert p.data.std() > 0.3 * bound            # each one drawn, none left at zero
    same, other = cls(7, 16, rng=0), cls(7, 16, rng=1)
    from_generator = cls(7, 16, rng=np.random.default_rng(0))
    for p, q, r, s in zip(cell.parameters(), same.parameters(), other.parameters(),
                          from_generator.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
        np.testing.assert_array_equal(p.data, s.data)
        assert not np.array_equal(p.data, r.data)


@pytest.mark.parametrize("dtype", [None, "float32", "float64"])
@pytest.mark.parametrize("cls, gates", CELLS)
def test_dtype_is_respected_and_float32_by_default(cls, gates, dtype):
    want = F32 if dtype in (None, "float32") else F64
    cell = cls(3, 5, dtype=dtype, rng=0)
    assert all(p.dtype == want for p in cell.parameters())
    out = outputs(cell(mg.ones(2, 3, dtype=want)))
    assert all(o.dtype == want for o in out)


@pytest.mark.parametrize("batch", [None, 2], ids=["unbatched", "B=2"])
@pytest.mark.parametrize("cls, gates", CELLS)
def test_no_state_means_zeros(cls, gates, batch, rng):
    cell = cls(3, 5, dtype="float64", rng=0)
    lead = () if batch is None else (batch,)
    x = mg.tensor(rng.standard_normal(lead + (3,)))
    zeros = mg.zeros(*lead, 5, dtype="float64")
    implicit = outputs(cell(x))
    explicit = outputs(cell(x, (zeros, zeros) if cls is nn.LSTMCell else zeros))
    assert [o.shape for o in implicit] == [lead + (5,)] * len(implicit)
    for a, b in zip(implicit, explicit):
        np.testing.assert_array_equal(a.data, b.data)
    sum(o.sum() for o in implicit).backward()   # the zero state is data: no gradient needed
    assert all(p.grad is not None for p in cell.parameters())


@pytest.mark.parametrize("cls, gates", CELLS)
def test_unbatched_input_gives_the_first_row_of_the_batched_result(cls, gates, rng):
    cell = cls(3, 5, dtype="float64", rng=0)
    x, h = rng.standard_normal((1, 3)), rng.standard_normal((1, 5))
    state = (lambda a: (mg.tensor(a), mg.tensor(-a))) if cls is nn.LSTMCell else mg.tensor
    single = outputs(cell(mg.tensor(x[0]), state(h[0])))
    batched = outputs(cell(mg.tensor(x), state(h)))
    for a, b in zip(single, batched):
        assert a.shape == (5,)
        close(a.data, b.data[0])


def test_repr_is_readable():
    assert repr(nn.LSTMCell(3, 5)) == "LSTMCell(3, 5)"
    assert repr(nn.GRUCell(3, 5, bias=False)) == "GRUCell(3, 5, bias=False)"
    assert repr(nn.RNNCell(3, 5)) == "RNNCell(3, 5)"
    assert repr(nn.RNNCell(3, 5, nonlinearity="relu")) == "RNNCell(3, 5, nonlinearity='relu')"


def test_load_state_dict_names_the_key_and_both_shapes_of_a_misfit():
    cell = nn.LSTMCell(3, 5, rng=0)
    before = cell.state_dict()
    with pytest.raises(RuntimeError, match=r"weight_hh: expected shape \(20, 5\), got \(5, 20\)"):
        cell.load_state_dict({**before, "weight_hh": np.zeros((5, 20))})
    for name, value in cell.state_dict().items():                 # nothing changed
        np.testing.assert_array_equal(value, before[name])


def test_load_state_dict_casts_float32_into_a_float64_cell():
    cell = nn.GRUCell(3, 5, dtype="float64", rng=0)
    state = nn.GRUCell(3, 5, dtype="float32", rng=1).state_dict()
    cell.load_state_dict(state)
    for name, p in cell.named_parameters():
        assert p.dtype == F64
        np.testing.assert_array_equal(p.data, state[name].astype(F64))


# -- 5. bad input ---------------------------------------------------------------------

def t64(*shape):
    return mg.tensor(np.full(shape, 0.1))


X, X1, S = t64(3, 4), t64(4), t64(3, 5)            # x batched and unbatched, a batched state
W = {g: (t64(g * 5, 4), t64(g * 5, 5), t64(g * 5), t64(g * 5)) for g in (1, 3, 4)}

BAD_CALLS = [
    (lambda: F.rnn_cell(X, S, t64(5, 3), W[1][1]), ValueError,
     r"rnn_cell: weight_ih \(5, 3\) does not fit input \(3, 4\) and weight_hh \(5, 5\); expected \(5, 4\)"),
    (lambda: F.lstm_cell(X, (S, S), t64(16, 4), W[4][1]), ValueError,
     r"lstm_cell: weight_ih \(16, 4\) does not fit .* expected \(20, 4\)"),
    (lambda: F.gru_cell(X, S, W[3][0], t64(15, 4)), ValueError,
     r"gru_cell: weight_hh must be \(3\*H, H\), got shape \(15, 4\)"),
    (lambda: F.rnn_cell(X, t64(3, 4), *W[1][:2]), ValueError,
     r"rnn_cell: state h of shape \(3, 4\) for input \(3, 4\) and hidden size 5; expected \(3, 5\)"),
    (lambda: F.lstm_cell(X, (S, t64(2, 5)), *W[4]), ValueError,
     r"lstm_cell: state c of shape \(2, 5\) .* expected \(3, 5\)"),
    (lambda: F.gru_cell(X1, t64(1, 5), *W[3]), ValueError,
     r"gru_cell: state h of shape \(1, 5\) for input \(4,\) .* expected \(5,\)"),
    (lambda: F.lstm_cell(t64(2, 3, 4), (S, S), *W[4]), ValueError,
     r"lstm_cell: x must be \(batch, input_size\) or \(input_size,\), got shape \(2, 3, 4\)"),
    (lambda: F.rnn_cell(X, S, *W[1][:2], bias_ih=W[1][2]), ValueError,
     "rnn_cell: give both bias_ih and bias_hh, or neither"),
    (lambda: F.lstm_cell(X, (S, S), *W[4][:2], bias_hh=W[4][3]), ValueError, "lstm_cell: give both"),
    (lambda: F.gru_cell(X, S, *W[3][:3]), ValueError, "gru_cell: give both"),
    (lambda: F.gru_cell(X, S, *W[3][:2], t64(15), t64(5)), ValueError,
     r"gru_cell: a bias of shape \(5,\); expected \(15,\)"),
    (lambda: F.rnn_cell(X.astype("float32"), S, *W[1]), TypeError,
     "rnn_cell: dtypes float32 and float64 differ"),
    (lambda: F.lstm_cell(mg.tensor(np.ones((3, 4), np.int64)), (S, S), *W[4]), TypeError,
     "lstm_cell: .*int64"),
    (lambda: F.gru_cell(*(mg.tensor(np.ones(t.shape, np.int64)) for t in (X, S, *W[3]))), TypeError,
     "gru_cell: x must be a float tensor, got dtype int64"),
    (lambda: F.rnn_cell(X, S, *W[1], nonlinearity="sigmoid"), ValueError,
     "rnn_cell: nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"),
    (lambda: nn.RNNCell(4, 5, nonlinearity="gelu"), ValueError,
     "RNNCell: nonlinearity must be 'tanh' or 'relu', got 'gelu'"),
    (lambda: F.lstm_cell(X, S, *W[4]), TypeError, r"lstm_cell: state must be a tuple \(h, c\), got Tensor"),
    (lambda: F.lstm_cell(X, [S, S], *W[4]), TypeError, "lstm_cell: state must be a tuple .* got list"),
    (lambda: F.lstm_cell(X, (S,), *W[4]), TypeError, "lstm_cell: state must be a tuple"),
    (lambda: nn.LSTMCell(4, 5, dtype="float64")(X, S), TypeError,
     r"lstm_cell: state must be a tuple \(h, c\), got Tensor"),  # not split into its rows
    (lambda: nn.LSTMCell(4, 0), ValueError, "LSTMCell: hidden_size must be an integer >= 1, got 0"),
    (lambda: nn.GRUCell(4, 2.5), ValueError, "GRUCell: hidden_size must be an integer >= 1, got 2.5"),
    (lambda: nn.RNNCell(0, 5), ValueError, "RNNCell: input_size must be an integer >= 1, got 0"),
    (lambda: nn.GRUCell(4, 5, dtype="int64"), TypeError, "GRUCell: dtype must be float32 or float64"),
    (lambda: nn.RNNCell(4, 5)(mg.tensor(np.ones((3, 4), np.int64))), TypeError, "rnn_cell: .*int64"),
    (lambda: nn.GRUCell(4, 5)(mg.ones(3, 3)), ValueError, r"gru_cell: weight_ih \(15, 4\) does not fit"),
]


@pytest.mark.parametrize("call, error, message", BAD_CALLS,
                         ids=[f"{k}-{m.split(':')[0]}" for k, (_, _, m) in enumerate(BAD_CALLS)])
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


# -- 6. the backward does not see later changes of the parameters ------------------------

@pytest.mark.parametrize("cls, gates", CELLS)
def test_backward_uses_the_parameters_of_the_forward(cls, gates, rng):
    x_data, h_data = rng.standard_normal((3, 4)), rng.standard_normal((3, 5))

    def grads(update_before_backward):
        cell = cls(4, 5, dtype="float64", rng=0)
        x, h = mg.tensor(x_data, requires_grad=True), mg.tensor(h_data, requires_grad=True)
        state = (h, h * 2) if cls is nn.LSTMCell else h
        outs = outputs(cell(x, state))
        loss = sum((o * o).sum() for o in outs)
        if update_before_backward:
            # An optimizer step between forward and backward: out of place, as minigrad's are.
            cell.weight_hh.data = cell.weight_hh.data + 1.0
            cell.weight_ih.data = -cell.weight_ih.data
            with mg.no_grad():  # the update matters: the cell now computes something else
                assert not np.allclose(outputs(cell(x, state))[0].data, outs[0].data)
        loss.backward()
        return [x.grad, h.grad] + [p.grad for p in cell.parameters()]
    for a, b in zip(grads(False), grads(True)):
        np.testing.assert_array_equal(a, b)


# -- PyTorch's numbers ------------------------------------------------------------------------
#
# Made offline with torch 2.13 in float64, for each case of TORCH_CELLS (sizes I=3, H=2, B=2):
#     cell = torch.nn.<Cell>(3, 2, bias=..., **kwargs); cell.load_state_dict(<the same vals()>)
#     x, h, c = vals((2, 3), 1.5, 1.0), vals((2, 2), 6.0, 0.8), vals((2, 2), 7.0, 0.8)  # grad on
#     loss = (h' ** 2).sum()  [+ 0.5 * (c' ** 2).sum() for the LSTM];  loss.backward()
# and printed with repr(float) (the shortest string that reads back the same float64).
# Linear: torch.nn.Linear(3, 2), weight vals((2, 3), 1.0), bias vals((2,), 3.0, 0.3),
# x vals((4, 3), 5.0, 1.0), loss (y ** 2).sum().

TORCH = {
    "rnn_tanh": dict(
        out_h=[[0.45550123979583407, -0.11496197644190356],
            [0.6517261824506579, -0.28340206153241854]],
        grad_x=[[0.38931636638498424, 0.0492046485987848, -0.4019958625163831],
            [0.43554310150083875, -0.12003909557756193, -0.4046103483700724]],
        grad_h=[[0.49909754497189657, -0.3287560820315692],
            [0.6507789628871539, -0.4663657144153032]],
        grad_weight_ih=[[0.9537761870197602, 0.6343165090243273, -1.1172325666768446],
            [-0.38871723469668273, -0.4570401469583247, 0.5064914479118782]],
        grad_weight_hh=[[-0.14652577231706457, -0.02582900564459414],
            [0.040384244833195276, 0.23539190056866258]],
        grad_bias_ih=[1.4718012896876091, -0.7481654892664829],
        grad_bias_hh=[1.4718012896876091, -0.7481654892664829],
    ),
    "rnn_relu": dict(
        out_h=[[0.4916199747796073, 0.0],
            [0.7782935943991875, 0.0]],
        grad_x=[[0.4964207331948352, 0.2521301831302404, -0.561391905078943],
            [0.7858937728185142, 0.39915242779329796, -0.8887509582302311]],
        grad_h=[[0.5364345336518441, -0.3125736362769096],
            [0.8492404352425104, -0.49484168946031887]],
        grad_weight_ih=[[1.4657182155398414, 1.3469133286804873, -1.8128029489273205],
            [0.0, 0.0, 0.0]],
        grad_weight_hh=[[-0.18893389639795904, -0.4612010663610844],
            [0.0, 0.0]],
        grad_bias_ih=[2.5398271383575897, 0.0],
        grad_bias_hh=[2.5398271383575897, 0.0],
    ),
    "lstm": dict(
        out_h=[[-0.05455535862282312, 0.22441753452271707],
            [-0.4061090945104166, -0.08434608884984071]],
        out_c=[[-0.08952153725851195, 0.6934142526539804],
            [-0.5367174787435762, -0.18909793143857756]],
        grad_x=[[-0.04616100207279048, 0.13286158690944042, 0.011924034119494817],
            [-0.3748605729706053, 0.44338171799407505, 0.2606059865009493]],
        grad_h=[[-0.0757054356474006, 0.27154485849757976],
            [0.00746884978877998, 0.24087438572092135]],
        grad_c=[[-0.032917573674967955, 0.42938614740437236],
            [-0.6355055985736331, -0.07930172479884276]],
        grad_weight_ih=[[0.025676507965637405, 0.039420278646688574, -0.03583467970007994],
            [0.17655013060649805, 0.0007972189865460068, -0.17675556516082666],
            [0.03795490717691665, 0.15011476562791412, -0.07663782930415632],
            [0.11156178560325776, 0.0117974561428921, -0.11460186014466689],
            [-0.30122677806884374, -0.6174387905279348, 0.46033395551686834],
            [0.05897779151441123, -0.10315060912816532, -0.0323970153756236],
            [0.01998961421346565, 0.051063425552838076, -0.03314809669817086],
            [0.06533662401825127, 0.0033615850169303324, -0.06620286746132686]],
        grad_weight_hh=[[-0.0017686109439082895, -0.026004379697995288],
            [-0.038479962158056165, 0.12731354932356911],
            [0.006329994378713531, -0.1424714993218342],
            [-0.023215582675327882, 0.06765684310120554],
            [0.005656146383240953, 0.4806145760231329],
            [-0.022925903349783318, 0.15967074805541223],
            [0.0006072607163478726, -0.043322630994619124],
            [-0.013941795046859138, 0.043641942975736286]],
        grad_bias_ih=[0.05631638269945104, 0.1853085426125893, 0.15186747475913728,
            0.12553425892959985, -0.7764712137392639, -0.01536399829740974,
            0.05906569303886194, 0.0708690510386119],
        grad_bias_hh=[0.05631638269945104, 0.1853085426125893, 0.15186747475913728,
            0.12553425892959985, -0.7764712137392639, -0.01536399829740974,
            0.05906569303886194, 0.0708690510386119],
    ),
    "lstm_nobias": dict(
        out_h=[[0.06493610722789266, 0.2191550486348696],
            [-0.15239633404971661, -0.013102135982959428]],
        out_c=[[0.13230632919861868, 0.774600063585065],
            [-0.20630045291957064, -0.031795699470517705]],
        grad_x=[[-0.010054510555718458, 0.029415270115695318, 0.0024745193504725157],
            [-0.16165534377014987, 0.17182212880471495, 0.11737867318090146]],
        grad_h=[[-0.06912718167081076, 0.13167564296755976],
            [-0.008743488761560312, 0.12751059855873764]],
        grad_c=[[0.03224823917307996, 0.3783331465360474],
            [-0.22629586143656957, -0.009673846466148085]],
        grad_weight_ih=[[-0.002359754162891725, -0.015665873797620807, 0.006396677337195659],
            [0.19170040438151623, -0.012111938406794334, -0.1885792912235923],
            [0.035955742322927975, 0.06242017038224585, -0.05204073289640991],
            [0.11294835245492241, -0.004134505967825702, -0.11188293579374975],
            [0.036584303561215656, -0.2738137290634614, 0.03397447934349144],
            [0.0675004958209764, -0.0250676780449215, -0.06104083121925453],
            [0.0078893168794222, 0.010262209266792293, -0.010533775206091604],
            [0.06355414442117827, -0.00353349199693154, -0.06264360244229442]],
        grad_weight_hh=[[-0.001010286007379494, 0.01603106789250316],
            [-0.04304587744992848, 0.15293843645918073],
            [-0.001773663002373946, -0.04459133058673237],
            [-0.025069958468041904, 0.0867100129387167],
            [-0.034655559154092096, 0.3367186717312475],
            [-0.017182997689279927, 0.07741536162732932],
            [-0.0007235844369566157, -0.005894562953489766],
            [-0.014223998063625105, 0.050157529233989515]],
    ),
    "gru": dict(
        out_h=[[-0.07746075977116046, 0.7960593662248905],
            [-0.08703127712616723, -0.18278812488536245]],
        grad_x=[[0.12086031511275964, 0.10239113159295328, -0.14724538225364098],
            [-0.19090591235281296, 0.0075069818694277, 0.18897144578750877]],
        grad_h=[[-0.02418448796753065, 0.9700363996222372],
            [-0.15181077909306517, -0.08739025849438267]],
        grad_weight_ih=[[0.02163965142092677, -0.0036113141087814153, -0.0207090555407503],
            [0.0363969332140305, 0.025101890403671192, -0.04286541396387591],
            [0.001257833299126321, -0.010460131945926503, 0.001437627522548409],
            [0.016375539557213492, 0.06132012050509461, -0.032177059390452616],
            [-0.14164794977795586, -0.050715910355312775, 0.15471688142289075],
            [0.18332191516314228, -0.24399129555870125, -0.12044804498560066]],
        grad_weight_hh=[[-0.005077676685500979, 0.019805983175567206],
            [-0.005504311077785916, -0.002000353961628946],
            [-0.0012933790278329726, 0.012761714735943924],
            [0.00239541819975474, -0.05756509246195419],
            [0.016047905224412812, -0.024878131345986626],
            [-0.029840804316330283, 0.18417273569153134]],
        grad_bias_ih=[0.01994197709231898, 0.056834531237050026, -0.006499262302318464,
            0.06294777622233305, -0.18608924133790938, 0.009500528761297922],
        grad_bias_hh=[0.01994197709231898, 0.056834531237050026, -0.006499262302318464,
            0.06294777622233305, -0.11962189262593502, 0.015500057291313984],
    ),
    "gru_nobias": dict(
        out_h=[[0.15457198671112135, 0.8469202017692966],
            [0.04443583515372753, 0.04500284787442077]],
        grad_x=[[0.20614598965644415, -0.10198633914878373, -0.1798652330710901],
            [0.06044104929829162, -0.015169201965917516, -0.05653211298596094]],
        grad_h=[[0.049944086660356324, 0.7170847481107668],
            [0.061133280566563454, 0.008605655566792443]],
        grad_weight_ih=[[-0.02540139765546276, 0.0051285895380271665, 0.0240798166045099],
            [0.018331237234578322, -0.007713941770374817, -0.016343439381720185],
            [-0.019614241310795054, 7.621353664091581e-05, 0.01959460192162111],
            [-0.04726190483847997, -0.013053532641623612, 0.050625656462440216],
            [0.2567949115318254, 0.02303453733120844, -0.26273065815936725],
            [0.21454554764607145, 0.04600585896058389, -0.2264007509108868]],
        grad_weight_hh=[[0.006046983912377553, -0.024256512217696705],
            [-0.0047546770867177655, 0.0220503662444165],
            [0.004291067141438579, -0.014330840200897147],
            [0.009050509181640567, -0.019537373290105728],
            [-0.03564125075545322, 0.10433251489800846],
            [-0.024909572397503268, 0.06301158516471725]],
    ),
}

LINEAR = dict(
    out=[[-0.8259361994530688, 0.008852728270054955],
        [-0.910020243243775, -0.6834104115314403],
        [0.1906692763013259, -0.8986652907347477],
        [1.1068256001430175, -0.36912525763169524]],
    grad_x=[[-0.8359367787522943, -0.41297841732067686, 0.9423567694215919],
        [-0.769516653920724, -1.2856071133947902, 1.1008034506968862],
        [0.38897494027744606, -0.9790416399748623, -0.13668669028380115],
        [1.1983228908998498, 0.12533690737325237, -1.230620831793993]],
    grad_weight=[[5.104795547734859, 0.21957880548387607, -5.1613785880360314],
        [-0.7697481621862288, 2.631570065574094, 0.0916215335819551]],
    grad_bias=[-0.8769231325050009, -3.8846964632556564],
)
