"""The cases that hold minigrad's nn.RNN, nn.LSTM and nn.GRU to PyTorch's, in NumPy alone.

make_layers.py builds each case's PyTorch layer and stores what PyTorch computes;
tests/test_torch_layers.py builds the minigrad layer and compares. Both run it by run(). Both take the layer's
constructor arguments, weights, inputs and loss weights from here, drawn U(-0.5, 0.5)
from a generator seeded by the case's name, so the fixture stores only PyTorch's results:
each case's outputs and gradients (results()) in one vector (pack, unpack).

The loss touches every output with its own weight:
    loss = sum(output * R_output) + sum(h_n * R_h_n) (+ sum(c_n * R_c_n) for an LSTM)
"""
import itertools
import os
import zlib
from dataclasses import dataclass

import numpy as np

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layers.npz")
L, N, H_IN, H = 3, 2, 3, 2  # sequence length, batch, input size, hidden size: tiny, in float64
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}  # the stacked gates of weight_ih, PyTorch's order


@dataclass(frozen=True)
class Case:
    layer: str            # "RNN", "LSTM" or "GRU"
    nonlinearity: str     # "tanh" or "relu" for an RNN, None otherwise
    num_layers: int
    bidirectional: bool
    batch_first: bool
    bias: bool
    batched: bool         # False: input (L, H_in), states (D * num_layers, H)
    zero_state: bool      # True: the layer is called with h_0 = None (zeros)

    @property
    def name(self):
        """The test id, e.g. LSTM-2layers-bidir-batch_first-nobias-unbatched-h_0=None."""
        parts = [self.layer, self.nonlinearity,
                 f"{self.num_layers}layer" + ("s" if self.num_layers > 1 else ""),
                 "bidir" if self.bidirectional else None, "batch_first" if self.batch_first else None,
                 None if self.bias else "nobias", "batched" if self.batched else "unbatched",
                 "h_0=None" if self.zero_state else None]
        return "-".join(p for p in parts if p)

    @property
    def lstm(self):
        return self.layer == "LSTM"

    def kwargs(self):
        """The constructor's arguments after (H_IN, H), the same for PyTorch and minigrad."""
        kwargs = dict(num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                      dropout=0.0, bidirectional=self.bidirectional)
        return kwargs if self.nonlinearity is None else dict(kwargs, nonlinearity=self.nonlinearity)

    def parameter_shapes(self):
        """[(name, shape)] of the layer's parameters, in PyTorch's order: per layer, per direction,
        weight_ih (G*H, in), weight_hh (G*H, H), bias_ih and bias_hh (G*H,)."""
        rows, directions = GATES[self.layer] * H, 2 if self.bidirectional else 1
        shapes = []
        for k, suffix in itertools.product(range(self.num_layers), ["", "_reverse"][:directions]):
            size_in = H_IN if k == 0 else directions * H  # a layer reads both directions below it
            shapes += [(f"weight_ih_l{k}{suffix}", (rows, size_in)), (f"weight_hh_l{k}{suffix}", (rows, H))]
            if self.bias:
                shapes += [(f"bias_ih_l{k}{suffix}", (rows,)), (f"bias_hh_l{k}{suffix}", (rows,))]
        return shapes

    def outputs(self):
        """The layer's outputs, in the order it returns them; the loss weighs each by R_<name>."""
        return ["output", "h_n", "c_n"] if self.lstm else ["output", "h_n"]

    def states(self):
        """The initial states the layer is given: none with zero_state."""
        return [] if self.zero_state else ["h_0", "c_0"] if self.lstm else ["h_0"]

    def shapes(self):
        """{name: shape} of the case's arrays: input, the initial states, and the loss's weights
        R_output, R_h_n (, R_c_n), each the shape of the output it weighs."""
        directions = 2 if self.bidirectional else 1
        batch = (N,) if self.batched else ()
        steps = (N, L) if self.batched and self.batch_first else (L,) + batch
        state = (directions * self.num_layers,) + batch + (H,)
        return {"input": steps + (H_IN,), **{s: state for s in self.states()},
                "R_output": steps + (directions * H,), **{f"R_{o}": state for o in self.outputs()[1:]}}

    def arrays(self):
        """The case's weights {name: array} and its other arrays {name: array} (see shapes),
        float64, drawn U(-0.5, 0.5) from a generator seeded by the case's name."""
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        weights = {name: rng.uniform(-0.5, 0.5, shape) for name, shape in self.parameter_shapes()}
        return weights, {name: rng.uniform(-0.5, 0.5, shape) for name, shape in self.shapes().items()}

    def results(self):
        """[(name, shape)] of what the layer computes, in the fixture's order: the outputs, then
        the gradients of the input, of the initial states and of every parameter (grad/<name>)."""
        shapes = self.shapes()
        grads = [(g, shapes[g]) for g in ["input"] + self.states()] + self.parameter_shapes()
        return ([(o, shapes[f"R_{o}"]) for o in self.outputs()]
                + [(f"grad/{name}", shape) for name, shape in grads])

    def pack(self, results):
        """results {name: array}, as results() names and shapes them, laid end to end in one
        vector: the fixture stores a case so (one array a case, not two dozen, keeps it small)."""
        got = [(name, np.shape(a)) for name, a in results.items()]
        if got != self.results():
            raise ValueError(f"{self.name}: expected results {self.results()}, got {got}")
        return np.concatenate([np.ravel(a) for a in results.values()])

    def unpack(self, flat):
        """pack's inverse: {name: array} from the case's vector."""
        ends = np.cumsum([int(np.prod(shape)) for _, shape in self.results()])
        if flat.shape != (ends[-1],):
            raise ValueError(f"{self.name}: expected {ends[-1]} results, got an array of shape {flat.shape}")
        parts = np.split(flat, ends[:-1])
        return {name: part.reshape(shape) for (name, shape), part in zip(self.results(), parts)}


def run(case, layer, tensor):
    """Run `layer` (PyTorch's or minigrad's, the case's weights loaded) on the case's input and
    initial states, and back-propagate the case's loss. `tensor` is the framework's
    tensor(array, requires_grad=...). Returns {name: NumPy array}, named as results() names them."""
    _, arrays = case.arrays()
    given = {name: tensor(arrays[name], requires_grad=True) for name in ["input"] + case.states()}
    states = [given[s] for s in case.states()]
    state = None if case.zero_state else tuple(states) if case.lstm else states[0]
    output, state = layer(given["input"], state)
    outputs = dict(zip(case.outputs(), [output, *state] if case.lstm else [output, state]))
    loss = sum((outputs[o] * tensor(arrays[f"R_{o}"])).sum() for o in case.outputs())
    loss.backward()
    results = {name: out.detach().numpy() for name, out in outputs.items()}
    leaves = [*given.items(), *layer.named_parameters()]
    results.update({f"grad/{name}": None if t.grad is None else np.asarray(t.grad) for name, t in leaves})
    return results


def cases():
    """Every case: {RNN tanh, RNN relu, LSTM, GRU} x 1-3 layers x bidirectional x batch_first
    x bias x batched, each called with initial states and with h_0 = None."""
    kinds = [("RNN", "tanh"), ("RNN", "relu"), ("LSTM", None), ("GRU", None)]
    flags = [(False, True)] * 5
    return [Case(layer, nonlinearity, layers, *rest)
            for (layer, nonlinearity), layers, *rest in itertools.product(kinds, [1, 2, 3], *flags)]


def load_fixture():
    """make_layers.py's fixture: {case name: (PyTorch's results {name: array}, the names of its
    layer's state_dict, in order)}."""
    with np.load(FIXTURE) as fixture:
        keys = dict(fixture["state_dict_keys"])
        return {case.name: (case.unpack(fixture[case.name]), keys[case.name].split()) for case in cases()}
