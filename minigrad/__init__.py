"""minigrad: a tape-based reverse-mode autodiff for recurrent networks, on NumPy."""
import numpy as _np

from . import bptt, nn, optim, viz
from .anomaly import detect_anomaly
from .backward import backward
from .gradcheck import GradcheckError, gradcheck
from .io import load, load_safetensors, save, save_safetensors
from .ops import (abs, cat, chunk, clip, concat, cos, cumsum, exp, expm1, gather, log, log1p,
                  logsumexp, matmul, max, maximum, mean, min, minimum, norm, record, relu, reshape,
                  sigmoid, sin, split, sqrt, square, stack, std, sum, tanh, transpose, unbroadcast,
                  var, where)
from .tape import Record, Tape, get_tape, is_grad_enabled, no_grad
from .tensor import (Tensor, arange, from_dlpack, from_numpy, ones, ones_like, rand, randn,
                     tensor, zeros, zeros_like)

float32 = _np.dtype(_np.float32)
float64 = _np.dtype(_np.float64)

__version__ = "0.1.0"

__all__ = [
    "Tensor", "tensor", "zeros", "ones", "zeros_like", "ones_like", "arange", "randn", "rand",
    "concat", "stack", "where", "unbroadcast", "record", "backward", "gradcheck", "GradcheckError",
    "no_grad", "is_grad_enabled", "get_tape", "Tape", "Record", "float32", "float64",
    "nn", "optim", "bptt", "viz", "save", "load", "save_safetensors", "load_safetensors",
    "from_dlpack", "from_numpy", "detect_anomaly",
    # the ops as functions, as torch.X (each is also a Tensor method)
    "exp", "log", "log1p", "expm1", "sin", "cos", "square", "tanh", "sigmoid", "relu", "sqrt",
    "abs", "clip", "maximum", "minimum", "matmul", "sum", "mean", "max", "min", "logsumexp",
    "var", "std", "norm", "cumsum", "gather", "cat", "chunk", "split", "reshape", "transpose",
]
