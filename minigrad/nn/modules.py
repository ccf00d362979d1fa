"""Modules: objects that own Parameters, buffers and other Modules and compute with them; the
containers that hold Modules (Sequential, ModuleList, ModuleDict); the plain layers.

Every layer takes PyTorch's arguments in PyTorch's positional order, and minigrad's own
(dtype, device, rng) as keywords only: where PyTorch goes on positionally (Dropout's
inplace, Embedding's max_norm, device and dtype), a value is refused, never misread."""
import math
import operator
from collections import namedtuple
from collections.abc import Mapping

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


class IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What load_state_dict returns, as PyTorch's: the module's keys that the state lacked, and
    the state's keys that the module has no place for."""

    __slots__ = ()

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()


class Module:
    """Base class of layers, cells and containers.

    What a module owns is read off its attributes, in the order they were assigned: each
    Parameter is one of its parameters, each Module one of its children, and the Tensors
    named by register_buffer are its buffers. There is no bookkeeping in __setattr__, so
    assigning, reassigning (the place in the order stays) and deleting simply work, and a
    subclass that never calls super().__init__() works too (it should, as in PyTorch).

    Subclasses set their Parameters and Modules as attributes in __init__ and define forward().
    The orders are PyTorch's: a module's own parameters, then its buffers, then each child's
    entries under "child." (state_dict, named_parameters).
    """

    training = True  # a class attribute, so that it holds before any __init__ runs

    def __init__(self):
        pass  # nothing to set up: the attributes are what a module owns

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} defines no forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- what it owns: its own attributes ----------------------------------------

    def _child_items(self):
        """(name, Module) for each attribute holding a Module, in order; a module held under
        two names is listed twice (state_dict and repr show both, as PyTorch's)."""
        return [(name, v) for name, v in vars(self).items() if isinstance(v, Module)]

    def _own_parameters(self):
        return [(name, v) for name, v in vars(self).items() if isinstance(v, Parameter)]

    def _own_buffers(self, persistent_only=False):
        """(name, Tensor) for each registered buffer that holds a Tensor, in registration order."""
        attributes = vars(self)
        return [(name, attributes[name]) for name, persistent in attributes.get("_buffer_names", {}).items()
                if isinstance(attributes.get(name), Tensor) and (persistent or not persistent_only)]

    # -- what it owns, descendants included ---------------------------------------

    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """(dotted name, Module) for this module (named "") and every descendant, depth first,
        each module once unless remove_duplicate=False."""
        memo = set() if memo is None else memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._child_items():
            yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self):
        """This module and every descendant, each once, as a list (PyTorch gives an iterator)."""
        return [m for _, m in self.named_modules()]

    def named_children(self):
        """(name, Module) for each child, each module once."""
        seen = set()
        for name, child in self._child_items():
            if id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        """The children, each once, as a list (PyTorch gives an iterator)."""
        return [m for _, m in self.named_children()]

    def _named_members(self, own, prefix, recurse, remove_duplicate):
        """(dotted name, Tensor) for what `own(module)` lists in this module and, with recurse,
        in every descendant; each Tensor once unless remove_duplicate=False."""
        modules = (self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse
                   else [(prefix, self)])
        seen = set()
        for path, module in modules:
            for name, t in own(module):
                if remove_duplicate:
                    if id(t) in seen:
                        continue
                    seen.add(id(t))
                yield (f"{path}.{name}" if path else name), t

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """(dotted name, Parameter) for every parameter, sub-modules' included; a parameter
        shared by two modules comes once, under its first name (as PyTorch's)."""
        return self._named_members(Module._own_parameters, prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        """The parameters, as a list (PyTorch gives an iterator)."""
        return [p for _, p in self.named_parameters(recurse=recurse)]

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        """(dotted name, Tensor) for every buffer (persistent or not) that is not None."""
        return self._named_members(Module._own_buffers, prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        """The buffers that are not None, as a list (PyTorch gives an iterator)."""
        return [b for _, b in self.named_buffers(recurse=recurse)]

    def register_buffer(self, name, tensor, persistent=True):
        """Make attribute `name` a buffer: a Tensor (or None) that the module owns but never trains,
        such as running statistics. Persistent buffers are saved in state_dict and loaded by
        load_state_dict; every buffer moves with .to(). Assigning the attribute later keeps it a buffer.
        """
        _check_name("register_buffer", name)
        registry = vars(self).setdefault("_buffer_names", {})
        if name not in registry and hasattr(self, name):
            raise KeyError(f"register_buffer: {type(self).__name__} already has an attribute {name!r}")
        if tensor is not None and (not isinstance(tensor, Tensor) or isinstance(tensor, Parameter)):
            raise TypeError(f"register_buffer: buffer {name!r} must be a Tensor that is not a Parameter, "
                            f"or None; got {type(tensor).__name__}")
        registry[name] = bool(persistent)
        setattr(self, name, tensor)

    # -- modes and gradients -------------------------------------------------------

    def train(self, mode=True):
        """Set training mode (mode=True) or evaluation mode (False) on this module and every
        descendant; layers such as Dropout read `self.training`. Returns self."""
        if not isinstance(mode, bool):
            raise ValueError(f"train: the training mode is expected to be a bool, got {mode!r}")
        # Each child's own train(), as PyTorch calls it: a subclass may override it (to keep a
        # part frozen, say) and is obeyed.
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        """Evaluation mode: train(False). Returns self."""
        return self.train(False)

    def apply(self, fn):
        """Call fn(module) on every child's descendants, then each child, then self. Returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def requires_grad_(self, requires_grad=True):
        """Whether gradients are wanted for every parameter (False freezes them). Returns self."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    # -- state ---------------------------------------------------------------------

    def _state_items(self, prefix=""):
        """(key, Tensor) for each entry of state_dict, in its order."""
        for name, t in self._own_parameters() + self._own_buffers(persistent_only=True):
            yield prefix + name, t
        for name, child in self._child_items():
            yield from child._state_items(f"{prefix}{name}.")

    def state_dict(self):
        """{dotted name: a copy of the array, as a NumPy array}, with PyTorch's keys in PyTorch's
        order: the module's parameters, then its persistent buffers, then each child's entries
        under "child." (a child held under two names appears under both)."""
        return {key: devices.to_numpy(t.data).copy() for key, t in self._state_items()}

    def load_state_dict(self, state, strict=True):
        """Load values into the parameters and persistent buffers by state_dict's keys; returns
        (missing_keys, unexpected_keys), as PyTorch's.

        Values: NumPy or CuPy arrays, Tensors, or anything that gives its data through
        __dlpack__, .numpy() or __array__ (lists too), so that a PyTorch model's
        `mg_model.load_state_dict(torch_model.state_dict())` works. Each is cast to its
        tensor's dtype; one of another shape is a ValueError naming the key and both shapes.
        strict: the keys must be exactly the module's (a RuntimeError naming them, as PyTorch's);
        with strict=False, missing keys keep their values and unexpected ones are skipped.
        Nothing changes unless every value loads. The Parameters stay the same objects (an
        optimizer built before still holds them): their arrays are replaced, not written into,
        so that the records on the tape keep the values they were made with.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"load_state_dict: expected a dict of arrays, got {type(state).__name__}")
        own = dict(self._state_items())
        missing = [key for key in own if key not in state]
        unexpected = [key for key in state if key not in own]
        if strict and (missing or unexpected):
            lines = [f"{what} key(s) in state_dict: " + ", ".join(f'"{k}"' for k in keys) + "."
                     for what, keys in (("Missing", missing), ("Unexpected", unexpected)) if keys]
            raise RuntimeError(f"load_state_dict: error(s) in loading state_dict for {type(self).__name__}:"
                               + "".join("\n\t" + line for line in lines))
        new, misfits = {}, []
        for key, t in own.items():
            if key in state:
                array = _state_array(key, state[key])
                if array.shape != t.shape:
                    misfits.append(f"{key}: expected shape {t.shape}, got {array.shape}")
                else:
                    new[key] = devices.to_device(array.astype(t.dtype, copy=True), t.device)
        if misfits:  # RuntimeError, as PyTorch's: code ported with `except RuntimeError` catches it
            raise RuntimeError(f"load_state_dict: {type(self).__name__}: size mismatch for "
                             + "; ".join(misfits))
        for key, array in new.items():
            own[key].data = devices.read_only(array)  # replaced, not written into: records keep their values
        return IncompatibleKeys(missing, unexpected)

    def to(self, device):
        """Move every parameter (and its gradient) and every buffer to `device`, in place;
        returns the module.

        The Parameters stay the same objects, so an optimizer built before the move still
        holds them; it moves its own state at its next step.
        """
        device = devices.parse_device(device)
        for t in self.parameters() + self.buffers():
            if t.device != device:
                t.data = devices.to_device(t.data, device)
                t.grad = None if t.grad is None else devices.to_device(t.grad, device)
                t.device = device
        return self

    # -- printing ------------------------------------------------------------------

    def extra_repr(self):
        return ""

    def __repr__(self):
        children = [f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._child_items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ")" if not children else head + "\n" + "\n".join(children) + "\n)"


def _check_name(who, name):
    """A buffer's or a child's name: a non-empty string without "." (the separator of keys)."""
    if not isinstance(name, str):
        raise TypeError(f"{who}: a name must be a string, got {type(name).__name__}")
    if not name or "." in name:
        raise KeyError(f"{who}: a name must be non-empty and without a dot, got {name!r}")


def _state_array(key, value):
    """A state_dict value as an array of numbers (NumPy, or CuPy for data on a GPU); TypeError
    naming the key otherwise."""
    try:
        array = _as_array(value)
    except (TypeError, ValueError, BufferError) as e:
        raise TypeError(f"load_state_dict: {key}: cannot read a {type(value).__name__} as an array "
                        f"({e})") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"load_state_dict: {key}: expected numbers, got dtype {array.dtype}")
    return array


_DLPACK_CUDA = 2  # DLPack's device type of a CUDA GPU (__dlpack_device__()[0]); 1 is the CPU


def _as_array(value):
    """value's data as an array, without a copy where it can: a Tensor's own; through DLPack
    (NumPy for data on the CPU, CuPy on a GPU: a CuPy array, a PyTorch tensor); through
    .numpy(); through numpy.asarray (which takes __array__, lists and numbers)."""
    if isinstance(value, (Tensor, np.ndarray)):
        return value.data if isinstance(value, Tensor) else value
    if getattr(value, "requires_grad", False) and hasattr(value, "detach"):
        value = value.detach()  # a PyTorch tensor that requires grad refuses DLPack
    if hasattr(value, "__dlpack__"):
        on_gpu = hasattr(value, "__dlpack_device__") and value.__dlpack_device__()[0] == _DLPACK_CUDA
        return devices.cupy().from_dlpack(value) if on_gpu else np.from_dlpack(value)
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    return np.asarray(value)


# -- containers ---------------------------------------------------------------------

class _Container(Module):
    """What the containers share: the Modules they hold, in `_modules` ({name: Module}), are their
    children, named by their keys ("0", "1", ... for positions). Subclasses call super().__init__()."""

    def __init__(self):
        super().__init__()
        self._modules = {}

    def _child_items(self):
        # then any Module a subclass sets as an attribute, as for every Module
        return list(self._modules.items()) + super()._child_items()

    def _check(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: only Modules go in, got {type(module).__name__}")
        return module

    def _put(self, name, module):
        _check_name(type(self).__name__, name)
        self._modules[name] = self._check(module)

    def __len__(self):
        return len(self._modules)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward(): call the modules it holds")


def _position(who, index, length):
    """An int index (negative counts from the end) as a position in [0, length)."""
    try:
        i = operator.index(index)
    except TypeError:
        raise TypeError(f"{who}: indices must be integers or slices, got {type(index).__name__}") from None
    if not -length <= i < length:
        raise IndexError(f"{who}: index {i} is out of range for length {length}")
    return i % length


class Sequential(_Container):
    """Modules called in turn, each on what the one before returned: Sequential(a, b)(x) = b(a(x)).

    Sequential(m0, m1, ...) names its modules "0", "1", ... (keys "0.weight", ...), and
    Sequential(OrderedDict(name=module, ...)) by the dict's keys, as PyTorch's. seq[i]
    (negative from the end), seq[i:j] (a Sequential, the names kept), len, iteration, append.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], Mapping):
            items = modules[0].items()
        else:
            items = ((str(i), m) for i, m in enumerate(modules))
        for name, module in items:
            self._put(name, module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def __getitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(dict(items[index]))
        return items[_position("Sequential", index, len(items))][1]

    def __iter__(self):
        return iter(list(self._modules.values()))

    def append(self, module):
        """Add `module` at the end, named by its position; returns self."""
        self._put(str(len(self)), module)
        return self


class ModuleList(_Container):
    """A list of Modules, registered as children "0", "1", ... (keys "layers.1.weight"), as PyTorch's.

    lst[i] (negative from the end), lst[i:j] (a ModuleList), lst[i] = module, del lst[i], len,
    iteration, append, extend, insert, `+`. It has no forward(): call the modules it holds.
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _set(self, modules):
        """Hold `modules` (a list), named by their positions; all checked before any goes in."""
        for module in modules:
            self._check(module)
        self._modules = {str(i): m for i, m in enumerate(modules)}

    def __getitem__(self, index):
        modules = list(self)
        if isinstance(index, slice):
            return ModuleList(modules[index])
        return modules[_position("ModuleList", index, len(modules))]

    def __setitem__(self, index, module):
        modules = list(self)
        modules[_position("ModuleList", index, len(modules))] = module
        self._set(modules)

    def __delitem__(self, index):
        modules = list(self)
        del modules[index if isinstance(index, slice) else _position("ModuleList", index, len(modules))]
        self._set(modules)

    def __iter__(self):
        return iter(list(self._modules.values()))

    def insert(self, index, module):
        """Put `module` before position `index` (as list.insert); the ones after move up."""
        modules = list(self)
        modules.insert(index, module)
        self._set(modules)

    def append(self, module):
        """Add `module` at the end; returns self."""
        return self.extend([module])

    def extend(self, modules):
        """Add each module of an iterable at the end; returns self."""
        try:
            modules = list(modules)
        except TypeError:
            raise TypeError(f"ModuleList.extend: expected an iterable of Modules, "
                            f"got {type(modules).__name__}") from None
        self._set(list(self) + modules)
        return self

    def __add__(self, other):
        return ModuleList(list(self) + list(other))

    def __iadd__(self, other):
        return self.extend(other)


class ModuleDict(_Container):
    """A dict of Modules, registered as children under their keys (keys "heads.out.bias"), as PyTorch's.

    d[key], d[key] = module, del d[key], `key in d`, len, iteration over the keys, keys(),
    values(), items(), update(), pop() and clear(); insertion order is kept. It has no forward().
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self._put(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __contains__(self, key):
        return key in self._modules

    def __iter__(self):
        return iter(list(self._modules))

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules):
        """Add (or replace) the modules of a mapping, or of an iterable of (key, module) pairs."""
        pairs = modules.items() if isinstance(modules, (Mapping, ModuleDict)) else modules
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"ModuleDict.update: element #{i} must be a (key, module) pair, "
                                 f"got {pair!r}")
            self[pair[0]] = pair[1]

    def pop(self, key):
        """Remove the module under `key` and return it."""
        return self._modules.pop(key)

    def clear(self):
        self._modules.clear()


# -- layers -------------------------------------------------------------------------

def _uniform(rng, bound, shape, dtype):
    return rng.uniform(-bound, bound, shape).astype(dtype)


def _flag(who, name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{who}: {name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def _positive(who, **sizes):
    for name, n in sizes.items():
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{who}: {name} must be an integer >= 1, got {n!r}")


class Identity(Module):
    """Returns its input: a stand-in where a layer is optional. Takes (and ignores) any
    arguments, as PyTorch's."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Linear(Module):
    """y = x W^T + b.   x: (..., in_features) -> y: (..., out_features)

    weight: (out_features, in_features), bias: (out_features,), both initialized
    U(-1/sqrt(in_features), 1/sqrt(in_features)) as PyTorch does. rng: a seed or a
    numpy.random.Generator.
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype=None, device=None, rng=None):
        super().__init__()
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
    padding_idx: a row (negative counts from the end) initialized to zeros that never gets a
    gradient, as PyTorch's (see functional.embedding). rng: a seed or a numpy.random.Generator.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, *, dtype=None, device=None,
                 rng=None):
        super().__init__()
        _positive("Embedding", num_embeddings=num_embeddings, embedding_dim=embedding_dim)
        dtype = _dtype(dtype, "Embedding", float_only=True)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = F._padding_index("Embedding", padding_idx, num_embeddings)
        data = _generator(rng).standard_normal((num_embeddings, embedding_dim)).astype(dtype)
        if self.padding_idx is not None:
            data[self.padding_idx] = 0
        self.weight = Parameter(data, device=device)

    def forward(self, indices):
        return F.embedding(indices, self.weight, self.padding_idx)

    def extra_repr(self):
        padding = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{padding}"


class LayerNorm(Module):
    """Layer normalization over the last len(normalized_shape) axes, as PyTorch's LayerNorm:
    y = (x - mean) / sqrt(var + eps) * weight + bias   (see functional.layer_norm).

    x: (..., *normalized_shape) -> y: x's shape. normalized_shape: an int or a tuple.
    weight (ones) and bias (zeros) have shape normalized_shape; elementwise_affine=False
    leaves both out, bias=False the bias.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, *,
                 dtype=None, device=None):
        super().__init__()
        self.normalized_shape = F._normalized_shape("LayerNorm", normalized_shape)
        self.eps = F._eps("LayerNorm", eps)
        self.elementwise_affine = elementwise_affine = _flag("LayerNorm", "elementwise_affine",
                                                             elementwise_affine)
        bias = _flag("LayerNorm", "bias", bias)
        dtype = _dtype(dtype, "LayerNorm", float_only=True)
        shape = self.normalized_shape
        self.weight = Parameter(np.ones(shape, dtype), device=device) if elementwise_affine else None
        self.bias = Parameter(np.zeros(shape, dtype), device=device) if elementwise_affine and bias else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class Dropout(Module):
    """Inverted dropout, as PyTorch's: in training mode (module.train()) each entry is zeroed
    with probability p and the kept ones are scaled by 1/(1 - p); in evaluation mode
    (module.eval()) the input passes unchanged. See functional.dropout.

    rng: a seed or a numpy.random.Generator; the module keeps one Generator and draws a new
    mask from it at each call, so that a seed makes a whole run reproducible.
    """

    def __init__(self, p=0.5, *, rng=None):
        super().__init__()
        self.p = F._probability("Dropout", p)
        self.rng = _generator(rng)

    def forward(self, x):
        return F.dropout(x, self.p, self.training, rng=self.rng)

    def extra_repr(self):
        return f"p={self.p}"
