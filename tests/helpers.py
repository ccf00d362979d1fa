"""What the op tests share: dtypes, dtype-aware tolerances, and leaves to differentiate."""
import numpy as np

import minigrad as mg
from minigrad import nn
from minigrad.bptt import TBPTT, train_sequence
from minigrad.nn import functional as F
from minigrad.optim import Adam

F32, F64 = np.float32, np.float64
DTYPES = [F32, F64]


def tol(dtype):
    """float64: tight; float32: what a handful of float32 roundings allows."""
    return dict(rtol=1e-12, atol=1e-12) if np.dtype(dtype) == F64 else dict(rtol=1e-5, atol=1e-6)


def close(actual, expected, dtype=F64):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected, dtype=F64), **tol(dtype))


def leaf(values, dtype=F64):
    """A leaf that requires grad, holding `values` (hand-written numbers)."""
    return mg.tensor(np.array(values, dtype=dtype), requires_grad=True)


def rand_leaf(rng, *shape, dtype=F64, scale=1.0, low=None, high=None):
    """A leaf that requires grad: normal with standard deviation `scale`, or uniform in [low, high)."""
    data = scale * rng.standard_normal(shape) if low is None else rng.uniform(low, high, shape)
    return mg.tensor(data.astype(dtype), requires_grad=True)


def train_layer(kind, device, xs, ys, hidden, **options):
    """TBPTT(3, 5) over an nn.RNN/LSTM/GRU ("rnn", "lstm", "gru") and a readout to 5 classes,
    segments at a time, with Adam, in float64 on `device` (the same weights on every device).
    options go to train_sequence. Returns (the losses, the parameters)."""
    layer = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
    layer = layer(xs.shape[-1], hidden, dtype="float64", rng=1).to(device)
    head = nn.Linear(hidden, 5, dtype="float64", rng=2).to(device)
    params = layer.parameters() + head.parameters()

    def step(state, x, y):
        hs, state = layer(x, state)
        return state, F.cross_entropy(head(hs), y.data, reduction="sum")
    result = train_sequence(step, None, mg.tensor(xs, device=device), mg.tensor(ys, device=device),
                            policy=TBPTT(3, 5), optimizer=Adam(params, lr=0.01), segments=True,
                            **options)
    return result.losses, params
