"""The fixed workloads W1-W8 and the LSTM sweeps: their sizes, their data, their starting
weights, and minigrad's implementation of each.

Every implementation of a workload (minigrad here, the NumPy floor in floor.py,
PyTorch in torch_impl.py, JAX in jax_impl.py) starts from the same weights and sees the
same data, so they do the same maths and, in float64, end with the same weights: the
smoke tests check that, which keeps the floor honest.

An implementation is a function `prepare(workload, weights, data) -> run`, where
`run()` does the timed work and returns the trained weights as a dict of NumPy arrays
(named as PyTorch names them: weight_ih, ..., head.weight, head.bias; a stacked workload's
layers as PyTorch's nn.LSTM names them: weight_ih_l0, ..., weight_ih_l1, ...).
"""
from dataclasses import dataclass, replace

import numpy as np


# -- the workloads ------------------------------------------------------------------

@dataclass(frozen=True)
class Recurrent:
    """W1-W3, W6, W8 and the LSTM sweeps: train a cell and a linear readout on one sequence
    under TBPTT(k, k).

    Every time step: state = cell(x_t, state); loss_t = loss(readout(h), y_t). Every k
    steps: back-propagate the sum of the window's losses through its k steps, and update.
    With layers > 1 (W6) the cells are stacked as in PyTorch's nn.LSTM(num_layers=layers,
    dropout=dropout): each layer's h is the next one's x, through dropout; such a workload
    runs only in the sequence-layer form (nn.LSTM and train_sequence(segments=True)).
    """
    name: str
    cell: str           # "rnn" (Elman, tanh) or "lstm"
    input: int
    hidden: int
    output: int
    batch: int
    k: int              # TBPTT(k, k)
    steps: int          # time steps in the sequence
    loss: str           # "mse" (targets: floats) or "ce" (targets: classes; inputs one-hot)
    optimizer: str      # "sgd" or "adagrad"
    lr: float
    eps: float = 1e-8   # Adagrad's epsilon (min-char-rnn's)
    layers: int = 1     # stacked layers (the sequence-layer form only)
    dropout: float = 0.0  # the probability of zeroing an entry of h between two layers
    about: str = ""

    units = property(lambda self: self.steps)
    unit = "time step"

    def smoke(self):
        """The same workload at tiny sizes, odd so that shape mistakes show."""
        return replace(self, input=self.output if self.loss == "ce" else 5, hidden=7, batch=3,
                       output=self.output if self.loss == "ce" else 4, k=4, steps=12)

    @property
    def layer_suffixes(self):
        """The suffix of each layer's weight names: none for one layer (named as a cell's)."""
        return ("",) if self.layers == 1 else tuple(f"_l{k}" for k in range(self.layers))

    def weight_name(self, name):
        """The workload's name of a cell's or a sequence layer's parameter: a one-layer
        workload names its weights as the cell does (weight_ih for the layer's weight_ih_l0)."""
        return name.removesuffix("_l0") if self.layers == 1 else name


W1 = Recurrent("W1", "rnn", input=64, hidden=128, output=64, batch=32, k=20, steps=400,
               loss="mse", optimizer="sgd", lr=0.01,
               about="Elman 64->128, batch 32, readout to 64 + MSE, SGD, TBPTT(20, 20)")
W2 = replace(W1, name="W2", cell="lstm",
             about="LSTM 64->128, batch 32, readout to 64 + MSE, SGD, TBPTT(20, 20)")
W3 = Recurrent("W3", "rnn", input=65, hidden=100, output=65, batch=1, k=25, steps=1000,
               loss="ce", optimizer="adagrad", lr=0.1,
               about="min-char-rnn: one-hot 65 -> Elman 100, batch 1, cross-entropy, Adagrad, "
                     "TBPTT(25, 25)")
RECURRENT = (W1, W2, W3)
# W6 is W2 with a second layer: W6 / W2 is what the second layer costs.
W6 = replace(W2, name="W6", layers=2, dropout=0.2,
             about="2-layer LSTM 64->128->128, dropout 0.2 between the layers, batch 32, "
                   "readout to 64 + MSE, SGD, TBPTT(20, 20)")
STACKED = (W6,)
# W8, the large LSTM of issue 21: the sequence-layer form only (the per-step cell loops add
# nothing at these sizes, where the matmuls take most of the time)
W8 = Recurrent("W8", "lstm", input=256, hidden=512, output=64, batch=64, k=50, steps=100,
               loss="mse", optimizer="sgd", lr=0.01,
               about="LSTM 256->512, batch 64, readout to 64 + MSE, SGD, TBPTT(50, 50)")
LARGE = (W8,)


def _sweep_point(hidden, batch, steps):
    """W2 at another hidden size or batch, named S-H{hidden}-B{batch}. Fewer `steps` where a
    step costs more, so that a round stays near 0.3-1 s on one thread (estimated from W2's
    times and the sizes of the products, not measured at every point)."""
    return replace(W2, name=f"S-H{hidden}-B{batch}", hidden=hidden, batch=batch, steps=steps,
                   about=f"LSTM 64->{hidden}, batch {batch}, readout to 64 + MSE, SGD, TBPTT(20, 20)")


# The LSTM sweeps (sequence-layer form only): hidden 64-1024 at batch 32, then batch 8-64 at
# hidden 128 (whose batch 32 point the hidden sweep has already); each `steps` a multiple of k.
SWEEP_BATCH, SWEEP_HIDDEN = 32, 128
SWEEP = (tuple(_sweep_point(hidden, SWEEP_BATCH, steps)
               for hidden, steps in ((64, 400), (128, 400), (256, 200), (512, 100), (1024, 40)))
         + tuple(_sweep_point(SWEEP_HIDDEN, batch, 400) for batch in (8, 16, 64)))


@dataclass(frozen=True)
class Scaling:
    """W4: TBPTT's time per step and peak memory as the sequence grows.

    An Elman cell with a readout and MSE, trained with SGD on a sequence of n steps
    under each policy; BPTT is there as the control whose memory grows with n.
    """
    name: str
    input: int
    hidden: int
    output: int
    batch: int
    lengths: tuple
    policies: tuple     # (label, k1, k2, recompute); k1 = None for BPTT()
    lr: float = 0.01
    about: str = ""
    unit = "time step"

    def smoke(self):
        return replace(self, input=5, hidden=7, output=4, batch=3, lengths=(12, 24))

    def cell_workload(self, n):
        """The recurrent workload one run of W4 is (its k is the policy's; see run_scaling)."""
        return Recurrent(self.name, "rnn", self.input, self.hidden, self.output, self.batch,
                         k=10, steps=n, loss="mse", optimizer="sgd", lr=self.lr)


W4 = Scaling("W4", input=32, hidden=64, output=32, batch=16,
             lengths=(500, 1000, 2000, 4000, 8000),
             policies=(("TBPTT(10, 10)", 10, 10, False), ("TBPTT(10, 40)", 10, 40, False),
                       ("TBPTT(10, 40, recompute)", 10, 40, True), ("BPTT", None, None, False)),
             about="Elman 32->64, batch 16, readout + MSE, SGD; n = 500 .. 8000 steps")


@dataclass(frozen=True)
class Chain:
    """W5: the cost of an op itself: a chain of elementwise ops on a tiny tensor,
    y = tanh(y * w + b) repeated (three ops a link), then sum and backward."""
    name: str
    ops: int
    size: int
    about: str = ""
    unit = "op"

    units = property(lambda self: self.ops)

    def smoke(self):
        return replace(self, ops=30)


W5 = Chain("W5", ops=999, size=16,
           about="a chain of 999 elementwise ops (mul, add, tanh) on 16 numbers, forward + backward")


@dataclass(frozen=True)
class CharLM:
    """W7: the character language model `minigrad train --text FILE --layers 2 --hidden 256`
    trains, timed against the same model in PyTorch (there is no NumPy floor for it).

    Inputs are (steps, batch) class indices, one-hot encoded once per segment (minigrad) or
    window (PyTorch); nn.LSTM(vocab, hidden, num_layers=layers), then nn.Linear(hidden, vocab)
    on every step's output at once; the loss of a segment is the cross-entropy summed over its
    steps and batch entries, divided by the batch. Trained with Adam, the gradients clipped to
    a joint norm of `clip`, under TBPTT(k, k), as the trainer runs it: a Stream with
    segments=True, fed `feed` steps at a time, each feed saying how many steps still come.
    """
    name: str
    vocab: int          # V: the characters; inputs are one-hot over them
    hidden: int
    layers: int
    batch: int
    k: int              # TBPTT(k, k)
    feed: int           # steps a Stream.feed call gets (the trainer's unit)
    steps: int          # time steps in the sequence (a multiple of feed and of k)
    lr: float           # Adam's
    clip: float         # the largest joint 2-norm of the gradients
    about: str = ""

    units = property(lambda self: self.steps)
    unit = "time step"

    def smoke(self):
        """Tiny and odd sizes; still two layers, feeds of 2k steps and four windows."""
        return replace(self, vocab=11, hidden=7, batch=3, k=4, feed=8, steps=16)

    def weight_names(self):
        """The trained weights' names, in the order nn.LSTM and nn.Linear hold them."""
        return [f"{kind}_l{k}" for k in range(self.layers)
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")] + ["head.weight", "head.bias"]


W7 = CharLM("W7", vocab=96, hidden=256, layers=2, batch=32, k=50, feed=100, steps=400,
            lr=2e-3, clip=1.0,
            about="character LM (minigrad train --text, --layers 2 --hidden 256): one-hot 96 -> "
                  "2-layer LSTM 256 -> readout 96, batch 32, cross-entropy, Adam 2e-3, clip 1.0, "
                  "TBPTT(50, 50), a Stream fed 100 steps at a time")
CHARLM = (W7,)


# -- data and starting weights ---------------------------------------------------------

def recurrent_data(w, dtype=np.float32, seed=0):
    """(xs, ys): xs (steps, batch, input); ys (steps, batch, output) floats for MSE, or
    (steps, batch) classes for cross-entropy, where xs is the one-hot of a symbol
    sequence and ys the next symbol (min-char-rnn's task)."""
    rng = np.random.default_rng(seed)
    if w.loss == "mse":
        xs = rng.standard_normal((w.steps, w.batch, w.input)).astype(dtype)
        ys = rng.standard_normal((w.steps, w.batch, w.output)).astype(dtype)
        return xs, ys
    symbols = rng.integers(0, w.input, size=(w.steps + 1, w.batch))
    xs = np.eye(w.input, dtype=dtype)[symbols[:-1]]
    return xs, symbols[1:]


def recurrent_weights(w, dtype=np.float32, seed=1):
    """Starting weights, uniform in +-1/sqrt(hidden) as PyTorch initializes its cells: the
    layers' in the order PyTorch draws them (_layer_shapes), then the readout's."""
    rng = np.random.default_rng(seed)
    bound = 1 / np.sqrt(w.hidden)

    def u(*shape):
        return rng.uniform(-bound, bound, shape).astype(dtype)
    weights = {name: u(*shape) for name, shape in _layer_shapes(w)}
    return weights | {"head.weight": u(w.output, w.hidden), "head.bias": u(w.output)}


def _layer_shapes(w):
    """(name, shape) of every layer's weights, layer by layer, in the order that PyTorch's
    and minigrad's nn.LSTM (and nn.RNN) draw them."""
    rows = (4 if w.cell == "lstm" else 1) * w.hidden
    for k, suffix in enumerate(w.layer_suffixes):
        inputs = w.input if k == 0 else w.hidden
        yield from (("weight_ih" + suffix, (rows, inputs)), ("weight_hh" + suffix, (rows, w.hidden)),
                    ("bias_ih" + suffix, (rows,)), ("bias_hh" + suffix, (rows,)))


# minigrad's sequence layers draw their initial weights and then their dropout masks from
# one generator, rng; the workloads seed it with this (their own weights replace the drawn ones).
LAYER_SEED = 3


def dropout_generator(w):
    """The generator of the dropout masks where minigrad's nn.LSTM(..., rng=LAYER_SEED) holds
    it after drawing its initial weights: the next draw is the first window's mask, (k, batch,
    hidden), kept where >= dropout. The NumPy floor draws its masks from it, to train as minigrad."""
    rng = np.random.default_rng(LAYER_SEED)
    bound = 1 / np.sqrt(w.hidden)
    for _, shape in _layer_shapes(w):
        rng.uniform(-bound, bound, shape)  # the layer's initial weights, as it draws them
    return rng


def charlm_data(w, seed=4):
    """(xs, ys): (steps, batch) int64 classes, a random text and the next character of each."""
    symbols = np.random.default_rng(seed).integers(0, w.vocab, size=(w.steps + 1, w.batch))
    return symbols[:-1], symbols[1:]


def charlm_weights(w, dtype=np.float32, seed=5):
    """Starting weights: minigrad's own initialization (PyTorch's layout and bounds), the
    layers' then the readout's, from one generator; the PyTorch side copies them."""
    from minigrad import nn

    rng = np.random.default_rng(seed)
    lstm = nn.LSTM(w.vocab, w.hidden, num_layers=w.layers, dtype=dtype, rng=rng)
    head = nn.Linear(w.hidden, w.vocab, dtype=dtype, rng=rng)
    weights = {name: np.array(p.numpy()) for name, p in lstm.named_parameters()}  # writable copies
    return weights | {"head." + name: np.array(p.numpy()) for name, p in head.named_parameters()}


def chain_data(w, dtype=np.float32, seed=2):
    """(x, w, b): the chain's input and the two constants of every link."""
    rng = np.random.default_rng(seed)
    x, scale, shift = rng.uniform(-1, 1, (3, w.size)).astype(dtype)
    return x, (1 + 0.1 * scale).astype(dtype), (0.1 * shift).astype(dtype)


# -- minigrad ----------------------------------------------------------------------------

def _minigrad_setup(w, weights, layer, device="cpu"):
    """The cell (or, with layer=True, its sequence layer), the readout and the optimizer,
    starting from `weights`, on `device`."""
    from minigrad import nn, optim

    dtype = weights["head.weight"].dtype
    if layer:  # its generator draws the initial weights (replaced below), then the dropout masks
        kind = {"rnn": nn.RNN, "lstm": nn.LSTM}[w.cell]
        rnn = kind(w.input, w.hidden, num_layers=w.layers, dropout=w.dropout, dtype=dtype,
                   rng=LAYER_SEED)
    else:
        rnn = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell}[w.cell](w.input, w.hidden, dtype=dtype)
    head = nn.Linear(w.hidden, w.output, dtype=dtype)
    rnn.load_state_dict({name: weights[w.weight_name(name)] for name, _ in rnn.named_parameters()})
    head.load_state_dict({"weight": weights["head.weight"], "bias": weights["head.bias"]})
    rnn.to(device)
    head.to(device)
    params = list(rnn.parameters()) + list(head.parameters())
    if w.optimizer == "sgd":
        opt = optim.SGD(params, lr=w.lr)
    else:
        opt = optim.Adagrad(params, lr=w.lr, eps=w.eps)
    return rnn, head, opt


def _trained(w, rnn, head):
    """The trained weights as NumPy arrays (waiting for a GPU to finish: copies synchronize)."""
    trained = {w.weight_name(k): p.numpy() for k, p in rnn.named_parameters()}
    trained.update({"head." + k: p.numpy() for k, p in head.named_parameters()})
    return trained


def _on(device, data):
    """The workload's inputs and targets on `device` (once, before timing)."""
    import minigrad as mg
    return data if device == "cpu" else tuple(mg.tensor(a, device=device) for a in data)


def minigrad_recurrent(w, weights, data, policy=None, device="cpu"):
    """Train with minigrad's cells, optimizers and train_sequence, as a user would: one
    call of `step` per time step, a record per op."""
    import minigrad.nn.functional as F
    from minigrad import bptt

    xs, ys = _on(device, data)
    cell, head, opt = _minigrad_setup(w, weights, layer=False, device=device)
    loss_fn = F.mse_loss if w.loss == "mse" else F.cross_entropy
    policy = policy or bptt.TBPTT(w.k, w.k)

    def step(state, x, y):
        state = cell(x, state)
        h = state[0] if w.cell == "lstm" else state
        return state, loss_fn(head(h), y)

    def run():
        bptt.train_sequence(step, None, xs, ys, policy=policy, optimizer=opt)
        return _trained(w, cell, head)
    return run


def minigrad_sequence(w, weights, data, policy=None, device="cpu"):
    """The same training written with the sequence layer (nn.RNN, nn.LSTM; stacked and with
    dropout for W6) and train_sequence(segments=True): one call of `step` per window, a record
    per op (one per layer for the recurrence)."""
    import minigrad.nn.functional as F
    from minigrad import bptt

    xs, ys = _on(device, data)
    layer, head, opt = _minigrad_setup(w, weights, layer=True, device=device)
    policy = policy or bptt.TBPTT(w.k, w.k)

    def step(state, x, y):  # x: (T, B, I) for T steps; the loss: the sum of each step's mean
        hs, state = layer(x, state)
        if w.loss == "mse":
            return state, F.mse_loss(head(hs), y, reduction="sum") / (y.shape[1] * y.shape[2])
        return state, F.cross_entropy(head(hs), y, reduction="sum") / y.shape[1]

    def run():
        bptt.train_sequence(step, None, xs, ys, policy=policy, optimizer=opt, segments=True)
        return _trained(w, layer, head)
    return run


def minigrad_charlm(w, weights, data):
    """W7 as `minigrad train --text` runs it: a TBPTT(k, k) Stream with segments=True, fed
    `feed` steps at a time with the promise of the steps still to come (so every segment is
    a whole window), each segment's inputs one-hot encoded once."""
    import minigrad as mg
    import minigrad.nn.functional as F
    from minigrad import bptt, nn, optim

    xs, ys = data
    dtype = weights["head.weight"].dtype
    lstm = nn.LSTM(w.vocab, w.hidden, num_layers=w.layers, dtype=dtype)
    head = nn.Linear(w.hidden, w.vocab, dtype=dtype)
    lstm.load_state_dict({name: weights[name] for name, _ in lstm.named_parameters()})
    head.load_state_dict({"weight": weights["head.weight"], "bias": weights["head.bias"]})
    opt = optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr=w.lr)
    eye = np.eye(w.vocab, dtype=dtype)

    def segment(state, x, y):  # x, y: (T, B) classes; the loss: summed over steps and batch, / B
        hs, state = lstm(mg.from_numpy(eye[x.data]), state)  # one-hot (T, B, V), once per segment
        return state, F.cross_entropy(head(hs), y, reduction="sum") / y.shape[1]

    def run():
        stream = bptt.TBPTT(w.k, w.k).stream(segment, opt, clip_grad_norm=w.clip, segments=True)
        for start in range(0, w.steps, w.feed):  # `more`: the steps still to come, as the trainer says
            stream.feed(xs[start:start + w.feed], ys[start:start + w.feed], more=w.steps - start - w.feed)
        stream.flush()
        trained = {name: p.numpy() for name, p in lstm.named_parameters()}
        return trained | {"head." + name: p.numpy() for name, p in head.named_parameters()}
    return run


def minigrad_chain(w, data):
    """The chain with minigrad tensors; returns d(sum y)/dx."""
    import minigrad as mg

    x0, a0, b0 = data

    def run():
        x = mg.tensor(x0, requires_grad=True)
        a, b = mg.tensor(a0), mg.tensor(b0)
        y = x
        for _ in range(w.ops // 3):
            y = (y * a + b).tanh()
        y.sum().backward()
        return {"x.grad": x.grad}
    return run


def scaling_policies(w):
    """W4's policies as minigrad objects, by label."""
    from minigrad import bptt
    return {label: (bptt.BPTT() if k1 is None else bptt.TBPTT(k1, k2, recompute=recompute))
            for label, k1, k2, recompute in w.policies}


# On a GPU: W1 and W2 at hidden 256 and 1024, batch 64 (benchmarks/test_workloads.py's
# test_recurrent_gpu; skipped without a GPU).
def _on_gpu(w, hidden):
    return replace(w, name=f"{w.name}-h{hidden}", hidden=hidden, batch=64,
                   about=w.about.replace("128", str(hidden)).replace("batch 32", "batch 64"))


GPU = tuple(_on_gpu(w, h) for w in (W1, W2) for h in (256, 1024))
# ... and at hidden sizes whose recurrent weights fit in a block's shared memory, where the
# sequence layer runs each window's recurrence as one kernel (kernels/window.cu): the Elman
# cell up to 240, the LSTM up to 119 in float32 (test_window_gpu).
GPU_WINDOW = (_on_gpu(W1, 128), _on_gpu(W2, 64), _on_gpu(W2, 100))
