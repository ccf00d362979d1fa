"""Neural-network building blocks: Modules and Parameters; fused functions in `functional`."""
from . import functional
from .modules import (GRU, LSTM, RNN, Embedding, GRUCell, Linear, LSTMCell, Module, Parameter,
                      RNNCell)

__all__ = ["functional", "Module", "Parameter", "Linear", "Embedding", "RNNCell", "LSTMCell", "GRUCell",
           "RNN", "LSTM", "GRU"]
