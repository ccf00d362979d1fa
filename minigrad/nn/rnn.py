"""The recurrent modules: the cells (one time step) and the sequence layers, as PyTorch's."""
import math

import numpy as np

from ..tensor import _dtype, _generator, zeros
from . import functional as F
from . import recurrent
from .modules import Module, Parameter, _positive, _uniform


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
