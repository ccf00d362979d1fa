"""Neural-network building blocks: Modules and Parameters; fused functions in `functional`."""
from . import functional
from .modules import (Dropout, Embedding, Identity, IncompatibleKeys, LayerNorm, Linear, Module, ModuleDict,
                      ModuleList, Parameter, Sequential)
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

__all__ = ["functional", "Module", "Parameter", "Linear", "Embedding", "RNNCell", "LSTMCell", "GRUCell",
           "RNN", "LSTM", "GRU", "Sequential", "ModuleList", "ModuleDict", "Identity", "Dropout", "LayerNorm",
           "IncompatibleKeys"]
