"""Modules: objects that own Parameters (and other Modules) and compute with them."""
import math

import numpy as np

from ..backends import devices
from ..tensor import Tensor, _dtype, _generator
from . import functional as F


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
