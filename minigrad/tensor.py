"""The Tensor: an array, the gradient that flows into it, and the record that made it."""
import weakref

import numpy as np

from .backends import devices
from .backward import backward as _backward

DEFAULT_DTYPE = np.dtype(np.float32)
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Tensor:
    """An n-dimensional array that can take part in reverse-mode differentiation.

    data:          the backend array (a numpy.ndarray on the CPU, a cupy.ndarray on a GPU)
    grad:          an array of the same backend, shape and dtype, or None;
                   backward() adds into it, zero_grad() clears it
    requires_grad: whether gradients are wanted for it; true for every output of
                   a recorded op, set by the user on leaves (parameters, inputs)
    device:        "cpu" or "cuda:N"

    Build one with `minigrad.tensor(...)`; `Tensor(data, ...)` takes the same arguments.
    """

    __slots__ = ("data", "grad", "requires_grad", "device", "_record", "_slot", "_hooks",
                 "__weakref__")

    # numpy defers to our reflected operators (ndarray * Tensor -> Tensor.__rmul__)
    # instead of treating a Tensor as an object to loop over.
    __array_ufunc__ = None

    def __init__(self, data, requires_grad=False, dtype=None, device=None):
        if device is None:  # where the data is: a CuPy array stays on its GPU
            device = data.device if isinstance(data, Tensor) else devices.device_of(_unwrap(data))
        device = devices.parse_device(device)
        self.data = devices.read_only(devices.to_device(_to_array(data, dtype), device))
        if requires_grad and self.data.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"tensor: only float32 and float64 tensors can require grad, got {self.data.dtype}"
            )
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.device = device
        self._record = None  # the Record whose output this is; None for a leaf
        self._slot = 0       # which of that record's outputs
        self._hooks = None   # register_hook / retain_grad: see _Hooks

    # -- what it is ---------------------------------------------------------

    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def is_leaf(self):
        return self._record is None

    @property
    def op(self):
        """The name of the op that made this tensor, or None for a leaf."""
        return None if self._record is None else self._record.op

    def size(self, dim=None):
        """The shape as a tuple, as PyTorch's t.size(); t.size(dim) is one axis's length."""
        if dim is None:
            return self.data.shape
        return self.data.shape[ops._dim_of("size", dim, self.data.ndim)]

    def dim(self):
        """The number of dimensions (ndim)."""
        return self.data.ndim

    def numel(self):
        """The number of entries."""
        return int(self.data.size)

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __bool__(self):
        return bool(self.data)

    def __repr__(self):
        body = np.array2string(devices.to_numpy(self.data), separator=", ", prefix="tensor(")
        extra = ""
        if self.data.dtype != DEFAULT_DTYPE:
            extra += f", dtype={self.data.dtype}"
        if self.device != devices.CPU:
            extra += f", device={self.device!r}"
        if self._record is not None:
            extra += f", op={self._record.op}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # -- leaving the graph --------------------------------------------------

    def numpy(self):
        """The data as a numpy.ndarray (the array itself on the CPU: no copy; a copy from a GPU)."""
        return devices.to_numpy(self.data)

    def to(self, device):
        """This tensor on `device` ("cpu", "cuda", "cuda:N"): itself if already there, else a
        copy that stays in the graph (the gradient travels back)."""
        return ops.to(self, device)

    def cpu(self):
        return ops.to(self, devices.CPU)

    def cuda(self, index=0):
        return ops.to(self, f"cuda:{index}")

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item: only one-element tensors convert to a number, got shape {self.shape}")
        return self.data.item()

    def __float__(self):
        if self.data.size != 1:
            raise ValueError(f"float(): only one-element tensors convert to a number, got shape {self.shape}")
        return float(self.data.item())

    def __int__(self):
        if self.data.size != 1:
            raise ValueError(f"int(): only one-element tensors convert to a number, got shape {self.shape}")
        return int(self.data.item())

    def tolist(self):
        """The data as (nested) Python lists of numbers; a 0-d tensor gives a number."""
        return devices.to_numpy(self.data).tolist()

    def detach(self):
        """A new leaf on the same data, cut off from the graph (requires_grad=False)."""
        return _make(self.data, self.device)

    # -- DLPack: the same memory, seen by NumPy, CuPy, PyTorch, JAX -----------

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """The data as a DLPack capsule, sharing its memory: numpy.from_dlpack(t),
        torch.from_dlpack(t), cupy.from_dlpack(t). The keywords are the standard's; those
        given go to the NumPy or CuPy array as they are (None ones are left out, so an array
        that predates a keyword still exports).

        NOTE: a tensor that requires grad is exported too, where PyTorch refuses: .numpy()
        hands out the same array, and so does .detach(), so refusing would only add a step.
        The consumer gets the values, never the graph. It shares the array the tensor holds
        now: an optimizer step replaces p.data (never writes into it), so a view taken
        before the step keeps the old values, and the records on the tape keep theirs.
        """
        given = dict(stream=stream, max_version=max_version, dl_device=dl_device, copy=copy)
        data = self.data
        if max_version is None and isinstance(data, np.ndarray) and not data.flags.writeable:
            # A consumer of the old protocol (no max_version) cannot be told the array is
            # read-only, and NumPy refuses to export it: it gets a copy, as copy=True would.
            data = data.copy()
        return data.__dlpack__(**{k: v for k, v in given.items() if v is not None})

    def __dlpack_device__(self):
        """(DLPack device type, number): (1, 0) on the CPU, (2, N) on GPU N."""
        return self.data.__dlpack_device__()

    # -- gradients ----------------------------------------------------------

    def backward(self, grad=None, retain_graph=False):
        """Back-propagate from this tensor, adding d(self)/d(leaf) into every leaf's .grad.

        grad: the gradient of some scalar with respect to self (same shape);
              may be omitted only when self is a scalar (it is then 1).
        retain_graph: keep the records for another backward; by default the records
              used are freed, and a second backward through them raises.
        """
        _backward(self, grad, retain_graph=retain_graph)

    def zero_grad(self):
        """Clear the gradient (set it to None; the next backward starts from zero)."""
        self.grad = None

    def register_hook(self, hook):
        """Call hook(g) each time a backward computes g = dL/d(self), as PyTorch's register_hook.

        g is an array of self's shape (minigrad's gradients are arrays, as .grad is); the hook
        must not write into it, and may return a replacement (an array or a Tensor of the same
        shape and dtype), which is used in its place: passed on to the record that made self,
        or added into .grad for a leaf. None keeps g. Several hooks run in the order they were
        registered, each on what the one before returned. A leaf's hooks run once per backward,
        on the sum of its gradients; a kept gradient (retain_grad) is the one after the hooks.
        Returns a handle whose remove() takes the hook off.
        """
        if not callable(hook):
            raise TypeError(f"register_hook: the hook must be callable, got {type(hook).__name__}")
        if not self.requires_grad:
            raise RuntimeError("register_hook: cannot register a hook on a tensor that does not "
                               "require grad")
        return self._watch().add(hook)

    def retain_grad(self):
        """Keep this non-leaf tensor's gradient in .grad after backward (summed over backwards,
        as a leaf's). On a leaf that requires grad it does nothing: leaves keep theirs anyway."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad: cannot retain the gradient of a tensor that does not "
                               "require grad")
        if self._record is not None:
            self._watch().retain = True

    @property
    def retains_grad(self):
        """Whether retain_grad() was called on this non-leaf tensor."""
        return self._hooks is not None and self._hooks.retain

    def _watch(self):
        """This tensor's _Hooks, made on first use; a non-leaf is also named on its record, so
        that the reverse walk, which goes record by record, finds it (backward.py)."""
        if self._hooks is None:
            self._hooks = _Hooks()
            rec = self._record
            if rec is not None:
                if rec.watched is None:
                    rec.watched = {}
                rec.watched[self._slot] = weakref.ref(self)  # weak: self owns rec, not the reverse
        return self._hooks

    # -- ops: defined in ops.py, forward and backward side by side ----------

    def __add__(self, other): return ops.add(self, other)
    def __radd__(self, other): return ops.add(other, self)
    def __sub__(self, other): return ops.sub(self, other)
    def __rsub__(self, other): return ops.sub(other, self)
    def __mul__(self, other): return ops.mul(self, other)
    def __rmul__(self, other): return ops.mul(other, self)
    def __truediv__(self, other): return ops.div(self, other)
    def __rtruediv__(self, other): return ops.div(other, self)
    def __neg__(self): return ops.neg(self)
    def __pow__(self, exponent): return ops.pow(self, exponent)
    def __matmul__(self, other): return ops.matmul(self, other)
    def __rmatmul__(self, other): return ops.matmul(other, self)
    def __getitem__(self, index): return ops.getitem(self, index)

    # Comparisons give boolean tensors (masks for where); they have no gradient. == and !=
    # compare entry by entry too, as PyTorch's; hashing stays by identity, so tensors still
    # work as dict keys and in sets (a dict compares with == only after equal hashes, and
    # identity hashes of live objects differ).
    # Comparisons with what is not a tensor, an array or a number (None, a list) are Python's:
    # == by identity (False), < a TypeError, as PyTorch's.
    def __eq__(self, other):
        return ops.compare("eq", self, other) if _comparable(other) else NotImplemented

    def __ne__(self, other):
        return ops.compare("ne", self, other) if _comparable(other) else NotImplemented

    __hash__ = object.__hash__

    def __lt__(self, other):
        return ops.compare("lt", self, other) if _comparable(other) else NotImplemented

    def __le__(self, other):
        return ops.compare("le", self, other) if _comparable(other) else NotImplemented

    def __gt__(self, other):
        return ops.compare("gt", self, other) if _comparable(other) else NotImplemented

    def __ge__(self, other):
        return ops.compare("ge", self, other) if _comparable(other) else NotImplemented

    def exp(self): return ops.exp(self)
    def log(self): return ops.log(self)
    def tanh(self): return ops.tanh(self)
    def sigmoid(self): return ops.sigmoid(self)
    def relu(self): return ops.relu(self)
    def sqrt(self): return ops.sqrt(self)
    def abs(self): return ops.abs(self)
    def clip(self, min=None, max=None): return ops.clip(self, min, max)
    def log1p(self): return ops.log1p(self)
    def expm1(self): return ops.expm1(self)
    def sin(self): return ops.sin(self)
    def cos(self): return ops.cos(self)
    def square(self): return ops.square(self)
    def maximum(self, other): return ops.maximum(self, other)
    def minimum(self, other): return ops.minimum(self, other)

    # Reductions take (dim, keepdim) positionally, as PyTorch's, and NumPy's axis/keepdims by
    # keyword (one name of each pair). max(dim) and min(dim) give (values, indices), as PyTorch's.
    def sum(self, dim=None, keepdim=None, *, axis=None, keepdims=None):
        return ops.sum(self, dim, keepdim, axis=axis, keepdims=keepdims)

    def mean(self, dim=None, keepdim=None, *, axis=None, keepdims=None):
        return ops.mean(self, dim, keepdim, axis=axis, keepdims=keepdims)

    def max(self, dim=None, keepdim=None, *, axis=None, keepdims=None):
        return ops.max(self, dim, keepdim, axis=axis, keepdims=keepdims)

    def min(self, dim=None, keepdim=None, *, axis=None, keepdims=None):
        return ops.min(self, dim, keepdim, axis=axis, keepdims=keepdims)

    def logsumexp(self, dim=None, keepdim=None, *, axis=None, keepdims=None):
        return ops.logsumexp(self, dim, keepdim, axis=axis, keepdims=keepdims)

    def var(self, dim=None, unbiased=None, keepdim=None, *, correction=None, axis=None, keepdims=None):
        return ops.var(self, dim, unbiased, keepdim, correction=correction, axis=axis, keepdims=keepdims)

    def std(self, dim=None, unbiased=None, keepdim=None, *, correction=None, axis=None, keepdims=None):
        return ops.std(self, dim, unbiased, keepdim, correction=correction, axis=axis, keepdims=keepdims)

    def norm(self, p=2, dim=None, keepdim=None, *, axis=None, keepdims=None):
        return ops.norm(self, p, dim, keepdim, axis=axis, keepdims=keepdims)

    def cumsum(self, dim=None, *, axis=None): return ops.cumsum(self, dim, axis=axis)
    def gather(self, dim, index): return ops.gather(self, dim, index)
    def chunk(self, chunks, dim=0): return ops.chunk(self, chunks, dim)
    def split(self, split_size_or_sections, dim=0): return ops.split(self, split_size_or_sections, dim)

    def reshape(self, *shape): return ops.reshape(self, *shape)
    def astype(self, dtype): return ops.astype(self, dtype)
    def clone(self): return ops.clone(self)
    def expand(self, *sizes): return ops.expand(self, *sizes)
    def repeat(self, *sizes): return ops.repeat(self, *sizes)
    def argmax(self, dim=None, keepdim=False): return ops.arg("argmax", self, dim, keepdim)
    def argmin(self, dim=None, keepdim=False): return ops.arg("argmin", self, dim, keepdim)

    # PyTorch's shape methods: reshapes and a transpose under PyTorch's names, so they
    # add no records of their own (the tape shows reshape / transpose).
    def view(self, *shape):
        """As reshape (-1 for the one size left to infer); minigrad always copies where
        NumPy must, so there is no view-or-fail rule as in PyTorch."""
        return ops._reshape("view", self, shape)

    def permute(self, *dims):
        """The axes in the order dims (a permutation of all of them), as torch.permute."""
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        n = self.data.ndim
        normal = [ops._dim_of("permute", d, n) for d in dims]
        if sorted(normal) != list(range(n)):
            raise ValueError(f"permute: dims {dims} are not a permutation of the {n} "
                             f"dimensions of {self.shape}")
        return ops.transpose(self, *normal)

    def unsqueeze(self, dim):
        """A new axis of length 1 at dim, in [-ndim - 1, ndim] (np.expand_dims)."""
        n = self.data.ndim
        d = ops._dim_of("unsqueeze", dim, n + 1)
        return ops._reshape("unsqueeze", self, self.shape[:d] + (1,) + self.shape[d:])

    def squeeze(self, dim=None):
        """Drop axes of length 1: all of them, or those among dim (an int or a tuple).
        As PyTorch (unlike np.squeeze), naming an axis whose length is not 1 leaves it."""
        n = self.data.ndim
        if dim is None:
            drop = set(range(n))
        else:
            dims = dim if isinstance(dim, tuple) else (dim,)
            drop = {ops._dim_of("squeeze", d, max(n, 1)) for d in dims}
        shape = tuple(k for i, k in enumerate(self.shape) if not (i in drop and k == 1))
        return ops._reshape("squeeze", self, shape)

    def flatten(self, start_dim=0, end_dim=-1):
        """Merge the axes start_dim..end_dim (both included) into one."""
        n = self.data.ndim
        if n == 0:
            return ops._reshape("flatten", self, (1,))
        start = ops._dim_of("flatten", start_dim, n)
        end = ops._dim_of("flatten", end_dim, n)
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} "
                             f"for shape {self.shape}")
        merged = int(np.prod(self.shape[start:end + 1]))
        return ops._reshape("flatten", self, self.shape[:start] + (merged,) + self.shape[end + 1:])
    def transpose(self, *axes): return ops.transpose(self, *axes)
    @property
    def T(self): return ops.transpose(self)


def _comparable(other):
    """Whether a comparison with `other` is entry by entry: a Tensor, a NumPy or CuPy array,
    a real number."""
    return (isinstance(other, (Tensor, np.ndarray, np.generic, int, float))
            or hasattr(other, "__cuda_array_interface__"))


class _Hooks:
    """A tensor's backward hooks (register_hook), in order, and whether it keeps its gradient
    (retain_grad). backward.py runs them: `run` when the tensor's gradient is complete."""

    __slots__ = ("fns", "retain", "_next")

    def __init__(self):
        self.fns = {}        # key -> hook, in the order registered (dicts keep it)
        self.retain = False
        self._next = 0

    def add(self, hook):
        key, self._next = self._next, self._next + 1
        self.fns[key] = hook
        return _HookHandle(self.fns, key)

    def run(self, t, g):
        """g, dL/dt, passed through t's hooks in order; each may return a replacement."""
        for hook in list(self.fns.values()):
            new = hook(g)
            if new is None:
                continue
            new = new.data if isinstance(new, Tensor) else new
            if getattr(new, "shape", None) != g.shape or getattr(new, "dtype", None) != g.dtype:
                raise RuntimeError(
                    f"register_hook: a hook on a tensor of shape {t.shape} and dtype {t.dtype} "
                    f"returned {type(new).__name__} of shape {getattr(new, 'shape', None)} and "
                    f"dtype {getattr(new, 'dtype', None)}; a replacement gradient must match")
            g = new
        return g


class _HookHandle:
    """What register_hook returns: remove() takes the hook off (a second remove() is a no-op)."""

    __slots__ = ("_fns", "_key")

    def __init__(self, fns, key):
        self._fns, self._key = fns, key

    def remove(self):
        self._fns.pop(self._key, None)


def _make(data, device=devices.CPU, requires_grad=False):
    """A Tensor around a backend array, without checks: the fast path ops use."""
    t = Tensor.__new__(Tensor)
    t.data = data
    t.grad = None
    t.requires_grad = requires_grad
    t.device = device
    t._record = None
    t._slot = 0
    t._hooks = None
    return t


def _unwrap(data):
    return data.data if isinstance(data, Tensor) else data


def _to_array(data, dtype=None):
    """Apply minigrad's dtype rules (see `tensor`) and return a fresh array: a NumPy
    array, or a CuPy array for CuPy data (it stays on its GPU)."""
    if isinstance(data, Tensor):
        data = data.data
    if devices.device_of(data) != devices.CPU:  # a GPU array: checked and converted on the
        data = devices.to_numpy(data)             # host, then moved back by the caller
    elif isinstance(data, (list, tuple)) and any(isinstance(v, Tensor) for v in data):
        raise TypeError("tensor: got a list of Tensors; join them with minigrad.stack(...)")
    if dtype is not None:
        dtype = np.dtype(dtype)
    elif not isinstance(data, (np.ndarray, np.generic)):
        # Python numbers and lists: floats and ints become the default float dtype.
        kind = np.asarray(data).dtype.kind
        dtype = DEFAULT_DTYPE if kind in "iuf" else None
    try:
        array = np.array(data, dtype=dtype, copy=True)
    except (TypeError, ValueError) as e:
        raise TypeError(f"tensor: cannot make a tensor from {type(data).__name__}: {e}") from None
    _check_dtype(array.dtype, "tensor")
    return array


def _check_dtype(dtype, op):
    """minigrad's dtypes: float32 and float64 (gradients), integers and booleans (indices, masks)."""
    if dtype.kind == "f" and dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: dtype {dtype} is not supported; use float32 or float64")
    if dtype.kind not in "fiub":
        raise TypeError(f"{op}: dtype {dtype} is not supported (floats, integers and booleans are)")


# -- creating tensors ---------------------------------------------------------

def tensor(data, requires_grad=False, dtype=None, device=None):
    """Make a leaf tensor from data (always copied; the copy is read-only, see devices.read_only:
    replace .data rather than write into it; minigrad.from_numpy shares memory instead).

    dtype rules: NumPy float arrays and scalars keep float32 or float64; Python
    floats, ints and (nested) lists of them become float32; integer and boolean
    arrays stay as they are and cannot require grad. `dtype=` takes anything
    numpy.dtype() takes ("float64", np.float64). device: "cpu", "cuda" or "cuda:N"; by
    default where the data is (the CPU, or the GPU of a CuPy array or Tensor).
    """
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)


def from_numpy(array):
    """A leaf tensor on a NumPy array's memory, not a copy, as torch.from_numpy: writing into
    either shows in the other. dtypes as for `tensor`; requires_grad is False (set it to train).

    NOTE: minigrad makes the arrays of the tensors it creates read-only, so that no write can
    change what a pending backward reads; this array stays yours and writable. Writing into it
    between an op that used the tensor and that op's backward changes the gradient, as with
    torch.from_numpy: use minigrad.tensor(array), a copy, where that could happen. The link
    lasts until .data is replaced: an optimizer's step gives the tensor a new array (updates
    are out of place), and `array` keeps the old values.
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    _check_dtype(array.dtype, "from_numpy")
    return _make(array)


# DLPack's device types (dlpack.h), for saying which one came.
_DLPACK_DEVICES = {1: "CPU", 2: "CUDA", 3: "CUDA host", 4: "OpenCL", 7: "Vulkan", 8: "Metal",
                   9: "VPI", 10: "ROCm", 11: "ROCm host", 12: "ExtDev", 13: "CUDA managed",
                   14: "oneAPI", 15: "WebGPU", 16: "Hexagon", 17: "MAIA"}


def from_dlpack(obj):
    """A leaf tensor on obj's memory, not a copy: obj is anything that speaks DLPack
    (a NumPy, CuPy, PyTorch or JAX array, a Tensor).

    The device is obj's (obj.__dlpack_device__()): the CPU through numpy.from_dlpack, GPU N
    through cupy.from_dlpack ("cuda:N"). Writing into either side shows in the other.
    minigrad itself never writes into a tensor's data (ops and optimizers make new arrays),
    so a read-only source, such as a read-only NumPy array, stays read-only and still works.
    dtypes as for `tensor`: float32, float64, integers, booleans. requires_grad is False;
    set it on a float tensor to train it.
    """
    if not hasattr(obj, "__dlpack__") or not hasattr(obj, "__dlpack_device__"):
        raise TypeError(f"from_dlpack: expected an array that supports DLPack (__dlpack__ and "
                        f"__dlpack_device__), got {type(obj).__name__}")
    kind = int(obj.__dlpack_device__()[0])
    if kind not in (1, 2):
        raise ValueError(f"from_dlpack: the array is on DLPack device type {kind} "
                         f"({_DLPACK_DEVICES.get(kind, 'unknown')}); minigrad takes CPU (1) and "
                         f"CUDA (2) arrays")
    xp = np if kind == 1 else devices.cupy()
    try:
        data = xp.from_dlpack(obj)
    except (BufferError, RuntimeError) as e:  # the producer refuses, or xp lacks the dtype (bfloat16)
        raise TypeError(f"from_dlpack: {xp.__name__}.from_dlpack cannot take this {type(obj).__name__} "
                        f"(dtype {getattr(obj, 'dtype', 'unknown')}): {e}") from None
    _check_dtype(data.dtype, "from_dlpack")
    return _make(data, devices.device_of(data))  # _make, not Tensor(...): Tensor copies


def _shape(shape, op):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if not all(isinstance(n, (int, np.integer)) and n >= 0 for n in shape):
        raise ValueError(f"{op}: a shape is non-negative integers, got {shape}")
    return tuple(int(n) for n in shape)


def _dtype(dtype, op, float_only=False):
    dtype = DEFAULT_DTYPE if dtype is None else np.dtype(dtype)
    if float_only and dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: dtype must be float32 or float64, got {dtype}")
    return dtype


def zeros(*shape, dtype=None, requires_grad=False, device="cpu"):
    """A tensor of zeros: zeros(2, 3) or zeros((2, 3)); float32 unless dtype says otherwise."""
    return Tensor(np.zeros(_shape(shape, "zeros"), _dtype(dtype, "zeros")),
                  requires_grad=requires_grad, device=device)


def ones(*shape, dtype=None, requires_grad=False, device="cpu"):
    """A tensor of ones: ones(2, 3) or ones((2, 3)); float32 unless dtype says otherwise."""
    return Tensor(np.ones(_shape(shape, "ones"), _dtype(dtype, "ones")),
                  requires_grad=requires_grad, device=device)


def zeros_like(t, dtype=None, requires_grad=False):
    """Zeros of t's shape, dtype and device."""
    return zeros(t.shape, dtype=t.dtype if dtype is None else dtype,
                 requires_grad=requires_grad, device=t.device)


def ones_like(t, dtype=None, requires_grad=False):
    """Ones of t's shape, dtype and device."""
    return ones(t.shape, dtype=t.dtype if dtype is None else dtype,
                requires_grad=requires_grad, device=t.device)


def arange(start, stop=None, step=1, dtype=None, requires_grad=False, device="cpu"):
    """Evenly spaced values in [start, stop), as numpy.arange.

    NOTE: integer arguments give an int64 tensor (indices), as numpy and PyTorch do;
    a float among them gives the default float dtype.
    """
    if stop is None:
        start, stop = 0, start
    if dtype is None and any(isinstance(v, float) for v in (start, stop, step)):
        dtype = DEFAULT_DTYPE
    return Tensor(np.arange(start, stop, step, dtype=dtype), requires_grad=requires_grad, device=device)


def _generator(rng):
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_))):
        return np.random.default_rng(rng)
    raise TypeError(f"rng: expected an int seed or a numpy.random.Generator, got {type(rng).__name__}")


def randn(*shape, rng=None, dtype=None, requires_grad=False, device="cpu"):
    """Samples of the standard normal distribution: randn(2, 3, rng=0).

    rng: an int seed, a numpy.random.Generator (advanced by the call), or None (fresh entropy).
    """
    dtype = _dtype(dtype, "randn", float_only=True)
    data = _generator(rng).standard_normal(_shape(shape, "randn"), dtype=dtype)
    return Tensor(data, requires_grad=requires_grad, device=device)


def rand(*shape, rng=None, dtype=None, requires_grad=False, device="cpu"):
    """Samples of the uniform distribution on [0, 1): rand(2, 3, rng=0). rng as for randn."""
    dtype = _dtype(dtype, "rand", float_only=True)
    data = _generator(rng).random(_shape(shape, "rand"), dtype=dtype)
    return Tensor(data, requires_grad=requires_grad, device=device)


# ops.py builds Tensors, and Tensor's methods call ops: import it once Tensor exists.
from . import ops  # noqa: E402
