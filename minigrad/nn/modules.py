"""Modules: objects that own Parameters (and other Modules) and compute with them."""
import math

import numpy as np

from ..backends import devices
from ..tensor import Tensor, _dtype, _generator, zeros
from . import functional as F
from . import recurrent


class Parameter(Tensor):
    """A Tensor that requires grad and that a Module counts among its parameters."""

    __slots__ = ()

    def __init__(self, data, dtype=None, device="cpu"):
        super().__init__(data, requires_grad=True, dtype=dtype, device=device)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers and cells: parameters and sub-modules are found by looking
    at the attributes, in the order they were assigned (as PyTorch orders them).

    Subclasses set Parameters and Modules as attributes in __init__ and define forward().
    """

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} defines no forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- what it owns -------------------------------------------------------

    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) for every parameter, sub-modules' included."""
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
            elif isinstance(value, Module):
                yield from value.named_parameters(prefix + name + ".")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    # -- state --------------------------------------------------------------

    def state_dict(self):
        """{dotted name: a copy of the parameter's array, as a NumPy array}."""
        return {name: devices.to_numpy(p.data).copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state, strict=True):
        """Load arrays (NumPy arrays or anything numpy.asarray takes) into the parameters.

        Values are cast to each parameter's dtype and must have its shape. With strict,
        the keys must be exactly the module's; otherwise missing and extra keys are skipped.
        Nothing is changed unless every value fits.
        """
        own = dict(self.named_parameters())
        if strict:
            missing = sorted(set(own) - set(state))
            unexpected = sorted(set(state) - set(own))
            if missing or unexpected:
                raise ValueError(f"load_state_dict: {type(self).__name__}: missing keys {missing}, "
                                 f"unexpected keys {unexpected}")
        new = {}
        for name, value in state.items():
            if name not in own:
                continue
            p = own[name]
            array = devices.to_numpy(value)
            if array.shape != p.shape:
                raise ValueError(f"load_state_dict: {name}: expected shape {p.shape}, got {array.shape}")
            new[name] = devices.to_device(array.astype(p.dtype, copy=True), p.device)
        for name, array in new.items():
            own[name].data = array  # replaced, not written into: records keep their values

    def to(self, device):
        """Move every parameter (and its gradient) to `device`, in place; returns the module.

        The Parameters stay the same objects, so an optimizer built before the move still
        holds them; it moves its own state at its next step.
        """
        device = devices.parse_device(device)
        for p in self.parameters():
            if p.device != device:
                p.data = devices.to_device(p.data, device)
                p.grad = None if p.grad is None else devices.to_device(p.grad, device)
                p.device = device
        return self

    # -- printing -----------------------------------------------------------

    def extra_repr(self):
        return ""

    def __repr__(self):
        children = [f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ")" if not children else head + "\n" + "\n".join(children) + "\n)"


def _uniform(rng, bound, shape, dtype):
    return rng.uniform(-bound, bound, shape).astype(dtype)


def _positive(who, **sizes):
    for name, n in sizes.items():
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{who}: {name} must be an integer >= 1, got {n!r}")


class Linear(Module):
    """y = x W^T + b.   x: (..., in_features) -> y: (..., out_features)

    weight: (out_features, in_features), bias: (out_features,), both initialized
    U(-1/sqrt(in_features), 1/sqrt(in_features)) as PyTorch does. rng: a seed or a
    numpy.random.Generator.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=None, device=None, rng=None):
        _positive("Linear", in_features=in_features, out_features=out_features)
        dtype = _dtype(dtype, "Linear", float_only=True)
        rng = _generator(rng)
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features)
        self.weight = Parameter(_uniform(rng, bound, (out_features, in_features), dtype), device=device)
        self.bias = Parameter(_uniform(rng, bound, (out_features,), dtype), device=device) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Embedding(Module):
    """A lookup table: row i of weight for index i.   indices: (...) integers -> (..., embedding_dim)

    weight: (num_embeddings, embedding_dim), initialized N(0, 1) as PyTorch does.
    """

    def __init__(self, num_embeddings, embedding_dim, dtype=None, device=None, rng=None):
        _positive("Embedding", num_embeddings=num_embeddings, embedding_dim=embedding_dim)
        dtype = _dtype(dtype, "Embedding", float_only=True)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        data = _generator(rng).standard_normal((num_embeddings, embedding_dim)).astype(dtype)
        self.weight = Parameter(data, device=device)

    def forward(self, indices):
        idx = indices.data if isinstance(indices, Tensor) else devices.as_array(indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"Embedding: indices must be integers, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            bad = idx[(idx < 0) | (idx >= self.num_embeddings)].flat[0]
            raise ValueError(f"Embedding: index {bad} is out of range for {self.num_embeddings} embeddings")
        # getitem's backward adds repeated rows up
        return self.weight[devices.to_device(idx, self.weight.device)]

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class _Cell(Module):
    """What the cells and the layers share: PyTorch's parameters weight_ih (G*H, I), weight_hh (G*H, H),
    bias_ih and bias_hh (G*H,), all initialized U(-1/sqrt(H), 1/sqrt(H))."""

    gates = 1

    def __init__(self, input_size, hidden_size, bias=True, dtype=None, device=None, rng=None):
        who = type(self).__name__
        _positive(who, input_size=input_size, hidden_size=hidden_size)
        dtype = _dtype(dtype, who, float_only=True)
        rng = _generator(rng)
        self.input_size, self.hidden_size = input_size, hidden_size
        rows, bound = self.gates * hidden_size, 1 / math.sqrt(hidden_size)
        self.weight_ih = Parameter(_uniform(rng, bound, (rows, input_size), dtype), device=device)
        self.weight_hh = Parameter(_uniform(rng, bound, (rows, hidden_size), dtype), device=device)
        self.bias_ih = Parameter(_uniform(rng, bound, (rows,), dtype), device=device) if bias else None
        self.bias_hh = Parameter(_uniform(rng, bound, (rows,), dtype), device=device) if bias else None

    def _zeros(self, x, sequence=False):
        """The zero state for input x: (B, H), or (H,) for unbatched x; x is one step's input,
        or with sequence=True a sequence of them, time first."""
        shape = x.shape if hasattr(x, "shape") else np.shape(x)
        lead = shape[1:] if sequence else shape
        shape = lead[:-1] + (self.hidden_size,) if lead else (self.hidden_size,)
        return zeros(shape, dtype=self.weight_hh.dtype, device=self.weight_hh.device)

    def _pair(self, x, state, sequence=False):
        """An LSTM's state as the op takes it: zeros for None, a tuple for a list."""
        if state is None:
            return (self._zeros(x, sequence), self._zeros(x, sequence))
        return tuple(state) if isinstance(state, list) else state

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias_ih is not None else ", bias=False")


class _Elman(_Cell):
    """What RNNCell and RNN share: _Cell's parameters and the nonlinearity."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh",
                 dtype=None, device=None, rng=None):
        recurrent._check_nonlinearity(type(self).__name__, nonlinearity)
        super().__init__(input_size, hidden_size, bias, dtype, device, rng)
        self.nonlinearity = nonlinearity

    def extra_repr(self):
        extra = "" if self.nonlinearity == "tanh" else ", nonlinearity='relu'"
        return super().extra_repr() + extra


class RNNCell(_Elman):
    """Elman cell, as PyTorch's RNNCell:  h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)

    cell(x, h=None) -> h'.   x: (batch, input_size) or (input_size,);  h, h': (batch, hidden_size)
    or (hidden_size,); h=None means zeros. nonlinearity: "tanh" or "relu".
    rng: a seed or a numpy.random.Generator for the initialization.
    """

    def forward(self, x, h=None):
        if h is None:
            h = self._zeros(x)
        return F.rnn_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
                          self.nonlinearity)


class LSTMCell(_Cell):
    """LSTM cell, as PyTorch's LSTMCell (gates i, f, g, o; see functional.lstm_cell).

    cell(x, (h, c)=None) -> (h', c').   x: (batch, input_size) or (input_size,);
    h, c: (batch, hidden_size) or (hidden_size,); None means zeros for both.
    """

    gates = 4

    def forward(self, x, state=None):
        return F.lstm_cell(x, self._pair(x, state), self.weight_ih, self.weight_hh,
                           self.bias_ih, self.bias_hh)


class GRUCell(_Cell):
    """GRU cell, as PyTorch's GRUCell (gates r, z, n; see functional.gru_cell).

    cell(x, h=None) -> h'.   x: (batch, input_size) or (input_size,);  h, h': (batch, hidden_size)
    or (hidden_size,); h=None means zeros.
    """

    gates = 3

    def forward(self, x, h=None):
        if h is None:
            h = self._zeros(x)
        return F.gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


# The sequence layers: a cell's parameters, run over T steps as one record (functional.rnn,
# lstm, gru). NOTE: their states are (batch, hidden), as the cells' are, so a cell and a
# layer can carry one state in turn; PyTorch's nn.RNN/LSTM/GRU add a leading layers axis,
# (1, batch, hidden), and name their parameters weight_ih_l0, ...: load_state_dict needs
# the names mapped.

class RNN(_Elman):
    """An Elman RNN over a sequence, as PyTorch's nn.RNN with one layer and time first.

    rnn(xs, h0=None) -> (hs, h_T).   xs: (T, batch, input_size) or (T, input_size);
    h0, h_T: (batch, hidden_size) or (hidden_size,), h0=None means zeros;
    hs: (T, batch, hidden_size) or (T, hidden_size), every step's h.
    """

    def forward(self, xs, h0=None):
        if h0 is None:
            h0 = self._zeros(xs, sequence=True)
        return F.rnn(xs, h0, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
                     self.nonlinearity)


class LSTM(_Cell):
    """An LSTM over a sequence, as PyTorch's nn.LSTM with one layer and time first.

    lstm(xs, (h0, c0)=None) -> (hs, (h_T, c_T)).   xs: (T, batch, input_size) or (T, input_size);
    states: (batch, hidden_size) or (hidden_size,), None means zeros for both;
    hs: (T, batch, hidden_size) or (T, hidden_size).
    """

    gates = 4

    def forward(self, xs, state=None):
        return F.lstm(xs, self._pair(xs, state, sequence=True), self.weight_ih, self.weight_hh,
                      self.bias_ih, self.bias_hh)


class GRU(_Cell):
    """A GRU over a sequence, as PyTorch's nn.GRU with one layer and time first.

    gru(xs, h0=None) -> (hs, h_T), shapes as RNN's.
    """

    gates = 3

    def forward(self, xs, h0=None):
        if h0 is None:
            h0 = self._zeros(xs, sequence=True)
        return F.gru(xs, h0, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
