"""The recurrent modules: the cells (one time step) and the sequence layers, as PyTorch's."""
import math
import warnings

import numpy as np

from .. import bptt
from ..ops import concat, stack
from ..tensor import Tensor, _dtype, _generator, tensor, zeros
from . import functional as F
from . import recurrent
from .modules import Module, Parameter, _flag, _positive, _uniform


def _as_tensor(value, device):
    """A layer's input or state: a Tensor as it is, an array as minigrad.tensor reads it
    (its dtype kept: a float64 array into a float32 layer is the ops' dtype error)."""
    return value if isinstance(value, Tensor) else tensor(value, device=device)


class _Cell(Module):
    """What the cells share: PyTorch's parameters weight_ih (G*H, I), weight_hh (G*H, H),
    bias_ih and bias_hh (G*H,), all initialized U(-1/sqrt(H), 1/sqrt(H))."""

    gates = 1

    # dtype, device and rng are keywords: PyTorch's cells take (device, dtype) in that order
    # after bias, so a positional argument would be read as something else.
    def __init__(self, input_size, hidden_size, bias=True, *, dtype=None, device=None, rng=None):
        who = type(self).__name__
        _positive(who, input_size=input_size, hidden_size=hidden_size)
        bias = _flag(who, "bias", bias)
        dtype = _dtype(dtype, who, float_only=True)
        rng = _generator(rng)
        self.input_size, self.hidden_size = input_size, hidden_size
        rows, bound = self.gates * hidden_size, 1 / math.sqrt(hidden_size)
        self.weight_ih = Parameter(_uniform(rng, bound, (rows, input_size), dtype), device=device)
        self.weight_hh = Parameter(_uniform(rng, bound, (rows, hidden_size), dtype), device=device)
        self.bias_ih = Parameter(_uniform(rng, bound, (rows,), dtype), device=device) if bias else None
        self.bias_hh = Parameter(_uniform(rng, bound, (rows,), dtype), device=device) if bias else None

    def _zeros(self, x):
        """The zero state for one step's input x: (B, H), or (H,) for unbatched x."""
        shape = x.shape if hasattr(x, "shape") else np.shape(x)
        shape = shape[:-1] + (self.hidden_size,) if shape else (self.hidden_size,)
        return zeros(shape, dtype=self.weight_hh.dtype, device=self.weight_hh.device)

    def _pair(self, x, state):
        """An LSTM cell's state as the op takes it: zeros for None, a tuple for a list."""
        if state is None:
            return (self._zeros(x), self._zeros(x))
        return tuple(state) if isinstance(state, list) else state

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias_ih is not None else ", bias=False")


class _Elman(_Cell):
    """What RNNCell and RNN share: _Cell's parameters and the nonlinearity."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *,
                 dtype=None, device=None, rng=None):
        recurrent._check_nonlinearity(type(self).__name__, nonlinearity)
        super().__init__(input_size, hidden_size, bias, dtype=dtype, device=device, rng=rng)
        self.nonlinearity = nonlinearity

    def extra_repr(self):
        return super().extra_repr() + _nonlinearity_repr(self)


def _nonlinearity_repr(module):
    return "" if module.nonlinearity == "tanh" else ", nonlinearity='relu'"


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


# -- the sequence layers ------------------------------------------------------------------
#
# PyTorch's nn.RNN, nn.LSTM and nn.GRU: num_layers layers, each of D = 1 or 2 directions.
# Each layer and direction is one record on the tape (functional.rnn, lstm or gru, the
# second direction with reverse=True); the layer's output is the two directions' outputs
# side by side, and feeds the next layer (through dropout while training, but the last).

class _RNNBase(Module):
    """What nn.RNN, nn.LSTM and nn.GRU share: PyTorch's constructor, parameters, state layout
    and stacking. Subclasses set `gates` (G) and `layer` (one layer and direction's op)."""

    gates = 1

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, dtype=None, device=None, rng=None):
        who = type(self).__name__
        _positive(who, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
        self.bias = _flag(who, "bias", bias)
        self.batch_first = _flag(who, "batch_first", batch_first)
        self.bidirectional = _flag(who, "bidirectional", bidirectional)
        if (isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, (int, float, np.number))
                or not 0 <= dropout <= 1):
            raise ValueError(f"{who}: dropout must be a number in [0, 1], the probability of "
                             f"zeroing an element, got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            # Reported at the caller's line: GRU inherits this __init__, RNN and LSTM call it.
            level = 2 if type(self).__init__ is _RNNBase.__init__ else 3
            warnings.warn(f"{who}: dropout acts after every recurrent layer but the last, so "
                          f"dropout={dropout} with num_layers=1 does nothing", UserWarning,
                          stacklevel=level)
        dtype = _dtype(dtype, who, float_only=True)
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.num_layers, self.dropout = int(num_layers), float(dropout)
        # One generator for the initialization and then, while training, the dropout masks.
        self._rng = _generator(rng)
        D, H, G = self.directions, self.hidden_size, self.gates
        bound = 1 / math.sqrt(H)
        self._names = []  # per layer and direction, in PyTorch's order: its parameters' names
        for layer in range(self.num_layers):
            inputs = self.input_size if layer == 0 else D * H
            for direction in range(D):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = {"weight_ih": (G * H, inputs), "weight_hh": (G * H, H)}
                if self.bias:
                    shapes.update(bias_ih=(G * H,), bias_hh=(G * H,))
                for name, shape in shapes.items():  # drawn in this order, as PyTorch does
                    data = _uniform(self._rng, bound, shape, dtype)
                    setattr(self, name + suffix, Parameter(data, device=device))
                self._names.append([name + suffix for name in shapes])

    @property
    def directions(self):
        return 2 if self.bidirectional else 1

    def forward(self, input, hx=None):
        """(output, h_n), LSTM: (output, (h_n, c_n)); see the class docstring for the shapes."""
        who = type(self).__name__
        x = _as_tensor(input, self.weight_hh_l0.device)
        if x.ndim not in (2, 3):
            raise ValueError(f"{who}: input must be (L, N, H_in), (N, L, H_in) with batch_first, "
                             f"or unbatched (L, H_in); got shape {x.shape}")
        batched = x.ndim == 3
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{who}: input of shape {x.shape} has {x.shape[-1]} features; "
                             f"input_size is {self.input_size}")
        transposed = batched and self.batch_first
        if transposed:
            x = x.transpose(1, 0, 2)  # time first, as the recurrent ops take it
        if self.bidirectional:
            bptt.require_whole_windows(f"{who}(bidirectional=True)")
        states = self._initial_states(who, hx, x, batched)
        finals = []
        for layer in range(self.num_layers):
            if layer and self.dropout and self.training:
                x = F.dropout(x, self.dropout, training=True, rng=self._rng)
            outputs = []
            for direction in range(self.directions):
                k = layer * self.directions + direction
                params = [getattr(self, name) for name in self._names[k]]
                out, last = self._layer(x, states[k], params, reverse=direction == 1)
                outputs.append(out)
                finals.append(last)
            x = outputs[0] if len(outputs) == 1 else concat(outputs, axis=-1)
        output = x.transpose(1, 0, 2) if transposed else x
        return output, self._final_states(finals)

    def _expected_state(self, x, batched):
        count = self.directions * self.num_layers
        return (count, x.shape[1], self.hidden_size) if batched else (count, self.hidden_size)

    def _split(self, who, name, h, x, batched):
        """One state (D * num_layers, N, H) as the states of each layer and direction."""
        h = _as_tensor(h, self.weight_hh_l0.device)
        expected = self._expected_state(x, batched)
        if h.shape != expected:
            raise ValueError(f"{who}: {name} of shape {h.shape} for input of shape {x.shape}; "
                             f"expected {expected} (num_layers * directions, "
                             f"{'batch, ' if batched else ''}hidden_size)")
        if expected[0] == 1:  # one layer, one direction: a reshape, cheaper than indexing
            return [h.reshape(expected[1:])]
        return [h[k] for k in range(expected[0])]

    def _zeros(self, x, batched):
        """The zero state of one layer and direction (shared by all of them: a constant)."""
        shape = self._expected_state(x, batched)[1:]
        return zeros(shape, dtype=self.weight_hh_l0.dtype, device=self.weight_hh_l0.device)

    @staticmethod
    def _join(states):
        """Each layer and direction's last state, (N, H), as one (D * num_layers, N, H)."""
        if len(states) == 1:
            return states[0].reshape((1,) + states[0].shape)
        return stack(states, axis=0)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class _OneState(_RNNBase):
    """RNN and GRU: the state is one tensor, h."""

    def _initial_states(self, who, hx, x, batched):
        if hx is None:
            return [self._zeros(x, batched)] * (self.directions * self.num_layers)
        return self._split(who, "hx", hx, x, batched)

    def _final_states(self, finals):
        return self._join(finals)


_LAYER_DOC = """
    layer(input, {h0}=None) -> (output, {hn}), as PyTorch's nn.{name}. With D = 2 if
    bidirectional else 1:
      input   (L, N, H_in), or (N, L, H_in) with batch_first, or unbatched (L, H_in)
      states  {states}: each (D * num_layers, N, H) or, unbatched, (D * num_layers, H);
              None means zeros. Never batch-first. Row layer * D + direction.
      output  (L, N, D * H) (batch_first: (N, L, D * H); unbatched: (L, D * H)): the last
              layer's h at every step, the two directions side by side.
    Parameters, as PyTorch names and shapes them: weight_ih_l{{k}} (G*H, H_in) for layer 0
    and (G*H, D*H) above, weight_hh_l{{k}} (G*H, H), bias_ih_l{{k}} and bias_hh_l{{k}} (G*H,),
    with the suffix _reverse for the second direction; all drawn U(-1/sqrt(H), 1/sqrt(H))
    from rng (a seed or a numpy.random.Generator), which then draws the dropout masks.
    dropout: applied to the output of every layer but the last, in training mode only.
    Each layer and direction is one record on the tape. A bidirectional layer needs the
    whole sequence: under train_sequence(segments=True), use it with BPTT() or TBPTT(k, k)
    with k dividing the sequence's length, where every segment is a whole window
    (anything else is an error, since its second direction would see part of a window).
    There, as in PyTorch when h_n is passed to the next call, the state carried to the
    next window holds the second direction's last state, the one at the window's first
    step, and that starts the next window's second direction at its last step: pass
    zeros in those rows to keep the windows' second directions apart."""


class RNN(_OneState):
    __doc__ = """A stacked Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), G = 1.
""" + _LAYER_DOC.format(h0="h_0", hn="h_n", name="RNN", states="h_0, h_n") + """
    nonlinearity: "tanh" or "relu" (positional argument 4, as PyTorch's).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, *, dtype=None, device=None,
                 rng=None):
        recurrent._check_nonlinearity("RNN", nonlinearity)
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype=dtype, device=device, rng=rng)

    def _layer(self, x, h0, params, reverse):
        return F.rnn(x, h0, *params, nonlinearity=self.nonlinearity, reverse=reverse)

    def extra_repr(self):
        return super().extra_repr() + _nonlinearity_repr(self)


class GRU(_OneState):
    __doc__ = """A stacked GRU (gates r, z, n; see functional.gru_cell), G = 3.
""" + _LAYER_DOC.format(h0="h_0", hn="h_n", name="GRU", states="h_0, h_n")
    gates = 3

    def _layer(self, x, h0, params, reverse):
        return F.gru(x, h0, *params, reverse=reverse)


class LSTM(_RNNBase):
    __doc__ = """A stacked LSTM (gates i, f, g, o; see functional.lstm_cell), G = 4.
""" + _LAYER_DOC.format(h0="(h_0, c_0)", hn="(h_n, c_n)", name="LSTM",
                        states="h_0, c_0, h_n, c_n") + """
    proj_size: only 0 (PyTorch's projections are not implemented).
    """
    gates = 4

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, *, dtype=None, device=None,
                 rng=None):
        if isinstance(proj_size, (bool, np.bool_)) or proj_size != 0:
            raise ValueError(f"LSTM: proj_size={proj_size!r} is not supported (only 0: no "
                             "projection of h)")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype=dtype, device=device, rng=rng)

    def _layer(self, x, state, params, reverse):
        return F.lstm(x, state, *params, reverse=reverse)

    def _initial_states(self, who, hx, x, batched):
        if hx is None:
            zero = self._zeros(x, batched)
            return [(zero, zero)] * (self.directions * self.num_layers)
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"{who}: the state must be a tuple (h_0, c_0), got {type(hx).__name__}")
        hs = self._split(who, "h_0", hx[0], x, batched)
        cs = self._split(who, "c_0", hx[1], x, batched)
        return list(zip(hs, cs))

    def _final_states(self, finals):
        return self._join([h for h, _ in finals]), self._join([c for _, c in finals])
