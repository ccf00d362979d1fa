"""Neural-network building blocks: Modules and Parameters; fused functions in `functional`."""
from . import functional
from .modules import Embedding, Linear, Module, Parameter

__all__ = ["functional", "Module", "Parameter", "Linear", "Embedding"]
