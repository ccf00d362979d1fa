"""PyTorch baselines of the workloads (CPU), when torch is installed.

Two for W1-W3: the eager cell loop (nn.RNNCell / nn.LSTMCell called once per step,
as minigrad runs) and the fused layer (nn.RNN / nn.LSTM over a whole window, which
batches the input projections and runs the recurrence in C++); for W6 the fused layer,
stacked, with PyTorch's own dropout masks; for W8 and the LSTM sweeps the fused layer; for
W7, the character language model, the fused layer with Adam and gradient clipping. Same
weights, same data, same losses and updates as the other implementations.
"""
import numpy as np

try:
    import torch
except ImportError:  # the suite prints a note and skips these
    torch = None

MISSING = "PyTorch is not installed (pip install torch==2.13.0): its baselines are skipped"


def _optimizer(w, params):
    if w.optimizer == "sgd":
        return torch.optim.SGD(params, lr=w.lr)
    return torch.optim.Adagrad(params, lr=w.lr, eps=w.eps)


def _loss(w, y_hat, y):
    """The same per-step loss as minigrad's: mean over the batch (and features)."""
    if w.loss == "mse":
        return torch.nn.functional.mse_loss(y_hat, y)
    return torch.nn.functional.cross_entropy(y_hat, y)


def _trained(modules):
    """The trained weights as NumPy arrays (the copy from a GPU waits for it to finish)."""
    return {name: p.detach().cpu().numpy().copy() for prefix, m in modules
            for name, p in ((prefix + n, p) for n, p in m.named_parameters())}


def _model(w, kinds, weights, data, device="cpu", **options):
    """(inputs, targets, cell or layer, readout, optimizer), starting from `weights`, on
    `device`; options go to the cell's or layer's constructor."""
    xs, ys = (torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in data)
    cell = kinds[w.cell](w.input, w.hidden, dtype=xs.dtype, device=device, **options)
    head = torch.nn.Linear(w.hidden, w.output, dtype=xs.dtype, device=device)
    with torch.no_grad():
        for name, p in cell.named_parameters():
            p.copy_(torch.from_numpy(weights[w.weight_name(name)]))
        head.weight.copy_(torch.from_numpy(weights["head.weight"]))
        head.bias.copy_(torch.from_numpy(weights["head.bias"]))
    return xs, ys, cell, head, _optimizer(w, list(cell.parameters()) + list(head.parameters()))


def torch_cell_loop(w, weights, data, device="cpu"):
    """The eager loop: one cell call, one readout and one loss per time step."""
    xs, ys, cell, head, opt = _model(w, {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell},
                                     weights, data, device=device)

    def run():
        state = None
        for start in range(0, w.steps, w.k):
            loss = 0
            for t in range(start, min(start + w.k, w.steps)):
                state = cell(xs[t], state)
                h = state[0] if w.cell == "lstm" else state
                loss = loss + _loss(w, head(h), ys[t])
            opt.zero_grad()
            loss.backward()
            opt.step()
            state = tuple(s.detach() for s in state) if w.cell == "lstm" else state.detach()
        return _trained([("", cell), ("head.", head)])
    return run


def torch_fused(w, weights, data, device="cpu"):
    """The fused layer: nn.RNN / nn.LSTM runs a whole window in one call (cuDNN on a GPU)."""
    xs, ys, layer, head, opt = _model(w, {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM},
                                      weights, data, device=device, num_layers=w.layers,
                                      dropout=w.dropout)

    def run():
        state = None
        for start in range(0, w.steps, w.k):
            end = min(start + w.k, w.steps)
            out, state = layer(xs[start:end], state)
            y_hat = head(out)               # (steps, batch, output)
            if w.loss == "mse":             # the sum over steps of each step's mean
                loss = (end - start) * torch.nn.functional.mse_loss(y_hat, ys[start:end])
            else:
                loss = (end - start) * torch.nn.functional.cross_entropy(
                    y_hat.reshape(-1, w.output), ys[start:end].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            state = tuple(s.detach() for s in state) if w.cell == "lstm" else state.detach()
        trained = _trained([("", layer), ("head.", head)])
        return {w.weight_name(k): v for k, v in trained.items()}
    return run


def torch_charlm(w, weights, data):
    """W7: nn.LSTM and nn.Linear over a window of k steps at a time, the window's inputs
    one-hot encoded once, the state detached between windows; Adam, gradients clipped."""
    functional = torch.nn.functional
    xs, ys = (torch.from_numpy(np.ascontiguousarray(a)) for a in data)
    dtype = {np.float32: torch.float32, np.float64: torch.float64}[weights["head.weight"].dtype.type]
    lstm = torch.nn.LSTM(w.vocab, w.hidden, num_layers=w.layers, dtype=dtype)
    head = torch.nn.Linear(w.hidden, w.vocab, dtype=dtype)
    with torch.no_grad():
        for prefix, module in (("", lstm), ("head.", head)):
            for name, p in module.named_parameters():
                p.copy_(torch.from_numpy(weights[prefix + name]))
    params = list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=w.lr)

    def run():
        state = None
        for start in range(0, w.steps, w.k):
            x = functional.one_hot(xs[start:start + w.k], w.vocab).to(dtype)  # (k, B, V), once
            out, state = lstm(x, state)
            logits = head(out)              # (k, B, V)
            loss = functional.cross_entropy(logits.reshape(-1, w.vocab), ys[start:start + w.k].reshape(-1),
                                            reduction="sum") / w.batch
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, w.clip)
            opt.step()
            state = tuple(s.detach() for s in state)
        return _trained([("", lstm), ("head.", head)])
    return run


def torch_chain(w, data):
    """The chain with torch tensors, eager; returns d(sum y)/dx."""
    x0, a0, b0 = (torch.from_numpy(v) for v in data)

    def run():
        x = x0.clone().requires_grad_(True)
        y = x
        for _ in range(w.ops // 3):
            y = torch.tanh(y * a0 + b0)
        y.sum().backward()
        return {"x.grad": x.grad.numpy()}
    return run
