"""Neural-network building blocks: Modules and Parameters; fused functions in `functional`."""
from . import functional
from .modules import Embedding, Linear, Module, Parameter
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

__all__ = ["functional", "Module", "Parameter", "Linear", "Embedding", "RNNCell", "LSTMCell", "GRUCell",
           "RNN", "LSTM", "GRU"]
