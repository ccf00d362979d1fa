"""Neural-network building blocks; `minigrad.nn.functional` holds the fused functions."""
from . import functional

__all__ = ["functional"]
