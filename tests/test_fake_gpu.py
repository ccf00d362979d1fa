"""Tensors living on "cuda", run on the CPU through a strict fake CuPy: the device paths on any machine.

tests/test_cuda.py runs these paths on a real GPU and skips without one. Here `fake_gpu`
puts `FakeCupy` where backends.cupy() finds it, so that Tensor(device="cuda"), .to, Module.to,
the optimizers, train_sequence, `minigrad train --device cuda`, checkpoints and sampling run
with "device arrays" that are not NumPy arrays, and the tests compare what they give with
the CPU's numbers in float64.

The fake is strict where CuPy is: see FakeCudaArray. It runs in two ways (`fake_gpu`'s params):
    cupy-library:  every op family forced to "numpy": the NumPy references run on the fake arrays through
                   the fake module (as CuPy's NumPy-like functions and cuBLAS would);
    kernels:       the default "auto" paths: our CUDA kernels, compiled by tests/emulator.py
                   and launched on the fake arrays' memory (matmul measures, with fake events).
"""
import contextlib
import operator
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

import emulator
import minigrad as mg
from minigrad import backends, nn
from minigrad.backends import cuda
from minigrad.app.cli import main
from minigrad.nn import functional as F
from minigrad.optim import SGD, Adagrad, Adam, AdamW, RMSprop
from helpers import train_layer

IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly.")  # CuPy's words


# -- the fake ---------------------------------------------------------------------------

DEVICES = 2  # the fake's GPUs: cuda:0 and cuda:1


class _Current(threading.local):
    """CuPy's current device, per thread (cupy.cuda.runtime.getDevice()): where CuPy
    allocates, and where its functions and our kernels run."""
    device = 0


_current = _Current()


def _set_device(n):
    if not 0 <= n < DEVICES:
        raise RuntimeError(f"cudaErrorInvalidDevice: the fake has {DEVICES} GPUs, not a number {n}")
    _current.device = n


class FakeDevice:
    """cupy.cuda.Device: a GPU number; `with Device(n):` makes it current inside the block,
    Device(n).use() from now on."""

    def __init__(self, id=None):
        self.id = _current.device if id is None else int(id)
        self._entered = []  # the devices current before each `with`, innermost last

    def use(self):
        _set_device(self.id)

    def __enter__(self):
        self._entered.append(_current.device)
        _set_device(self.id)
        return self

    def __exit__(self, *exc):
        _current.device = self._entered.pop()
        return False

    def __eq__(self, other):
        return isinstance(other, FakeDevice) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


def _refuse(value):
    return TypeError(f"Unsupported type {type(value)}")  # what CuPy says of a NumPy operand


def _here(array):
    """array, if it is on the current device: CuPy runs its functions and kernels there, and
    an operand on another GPU is an error (a pointer there, an illegal address)."""
    if array._dev != _current.device:
        raise ValueError(f"Array device must be same as the current device: array device = "
                         f"{array._dev} while current = {_current.device}")
    return array


def _inner(value, seen=None):
    """An argument as NumPy computes on it: a fake array's own ndarray (it must be on the
    current device); a NumPy array raises TypeError, as CuPy refuses host arrays as
    operands; lists and tuples item by item."""
    if isinstance(value, FakeCudaArray):
        _here(value)
        if seen is not None:
            seen[id(value._a)] = value
        return value._a
    if isinstance(value, np.ndarray):
        raise _refuse(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_inner(v, seen) for v in value)
    return value


def _index(value):
    """An index: fake arrays unwrapped; NumPy arrays accepted (CuPy copies them over)."""
    if isinstance(value, tuple):
        return tuple(_index(v) for v in value)
    return value._a if isinstance(value, FakeCudaArray) else value


# Methods whose arguments CuPy reads as C vectors of ints (shapes, axes): any sequence of
# integers does, a NumPy array of them included.
_SHAPE_METHODS = ("reshape", "transpose", "swapaxes")


def _outer(result, seen=None):
    """A NumPy result as CuPy gives it: arrays and NumPy scalars (full reductions, a[i, j])
    become fake arrays (CuPy returns 0-d arrays, never host scalars); an array written in
    place through out= comes back as the fake array that was passed. New arrays are on
    the current device."""
    if seen and id(result) in seen:
        return seen[id(result)]
    if isinstance(result, (np.ndarray, np.generic)):
        return FakeCudaArray(np.asarray(result))
    if isinstance(result, (list, tuple)):
        return type(result)(_outer(r, seen) for r in result)
    return result


library_calls = 0  # calls of the fake module's functions and arrays' operators that would
                   # launch a kernel of CuPy's on a GPU, at most one each (kernels/README.md's counts)
_NO_LAUNCH = ("empty", "empty_like")  # CuPy takes their memory from its pool, launching nothing


def _on_device(fn):
    """fn, taking and giving fake arrays instead of NumPy arrays."""
    counted = getattr(fn, "__name__", None) not in _NO_LAUNCH

    def call(*args, **kwargs):
        global library_calls
        library_calls += counted
        seen = {}
        return _outer(fn(*_inner(args, seen), **{k: _inner(v, seen) for k, v in kwargs.items()}), seen)
    return call


reads = 0  # copies from the "GPU" to the host so far: each would wait for a real GPU


def _read():
    global reads
    reads += 1


class FakeCudaArray:
    """A "GPU array": a NumPy array in a wrapper that behaves like cupy.ndarray where minigrad
    could tell the difference.

    A wrapper, not an ndarray subclass: a subclass would pass every isinstance(x, np.ndarray)
    test and be taken in silently by np.asarray, np.savez, ctypes, which is exactly what
    a real GPU array is not. As with CuPy:
      - `__cuda_array_interface__` and `.device.id`: backends.device_of says "cuda:0" or
        "cuda:1"; an array is made on the current device (FakeDevice), and computing with
        one that is on another device raises ValueError (see _here), as CuPy does;
      - np.asarray(a) / np.array(a) raise TypeError (`__array__`); only cupy.asnumpy and
        a.get() copy to the host;
      - an operand that is a NumPy array raises TypeError (fake + ndarray, ndarray + fake,
        cupy.tanh(ndarray), a kernel launched with one); Python and NumPy scalars are fine;
      - NumPy's functions called on fake arrays dispatch to the fake module
        (`__array_ufunc__`, `__array_function__`), as CuPy's do;
      - reductions and a[i, j] give 0-d arrays, not host scalars; float(), int(), bool(),
        .item() and format() copy a value to the host.
    Every copy to the host is counted in `reads` (each one waits for the GPU).
    """

    __slots__ = ("_a", "base", "_dev")
    __hash__ = None  # unhashable, as any ndarray

    def __init__(self, array, base=None, device=None):
        assert type(array) is np.ndarray, type(array)
        self._a = array
        self.base = base  # as CuPy's: a view's is the array that owns the memory, else None
        self._dev = _current.device if device is None else device  # the GPU that holds it

    def _view(self, array):
        """The fake array of a NumPy result computed from self._a: a view of self's memory
        has, as in CuPy, base = the fake array that owns it."""
        if type(array) is not np.ndarray:
            return _outer(array)
        if not np.may_share_memory(array, self._a):  # a gather: a kernel, a new array
            return FakeCudaArray(array, None, _here(self)._dev)
        return FakeCudaArray(array, self.base if self.base is not None else self, self._dev)

    # what CuPy's arrays say about themselves
    @property
    def __cuda_array_interface__(self):
        return {"shape": self._a.shape, "typestr": self._a.dtype.str, "version": 3,
                "data": (self._a.ctypes.data, not self._a.flags.writeable),
                "strides": None if self._a.flags.c_contiguous else self._a.strides}

    @property
    def device(self):
        return FakeDevice(self._dev)

    @property
    def data(self):  # cupy.cuda.MemoryPointer: .ptr is the address (here a host one)
        return types.SimpleNamespace(ptr=self._a.ctypes.data)

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: self._view(self._a.T))

    def get(self):
        _read()
        return self._a.copy()

    # the host only on purpose
    def __array__(self, *args, **kwargs):
        raise TypeError(IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return getattr(_FakeUfunc(ufunc), method)(*inputs, **kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        return getattr(fake_cupy, func.__name__)(*args, **kwargs)

    def __getattr__(self, name):  # methods: sum, reshape, astype, copy, max, fill, ...
        if name.startswith("__"):  # not __array_interface__ & co.: NumPy would read the memory
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if name in _SHAPE_METHODS:  # their arguments are shapes or axes, not data
            return lambda *args, **kwargs: self._view(attr(*_index(args), **kwargs))
        if callable(attr):
            _here(self)
            return _on_device(attr)
        return attr

    def item(self):
        _read()
        return self._a.item()

    def tolist(self):
        _read()
        return self._a.tolist()

    def __bool__(self):
        _read()
        return bool(self._a)

    def __float__(self):
        _read()
        return float(self._a)

    def __int__(self):
        _read()
        return int(self._a)

    def __format__(self, spec):
        _read()
        return format(self._a, spec)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (self._view(row) for row in self._a)

    def __repr__(self):
        return repr(self._a)

    def __copy__(self):
        return FakeCudaArray(self._a.copy(), None, self._dev)

    def __deepcopy__(self, memo):
        return FakeCudaArray(self._a.copy(), None, self._dev)

    def __getitem__(self, index):
        return self._view(self._a[_index(index)])

    def __setitem__(self, index, value):  # a NumPy value is copied over, as CuPy does
        _here(self)
        self._a[_index(index)] = _inner(value) if isinstance(value, FakeCudaArray) else value


def _binary(op):
    def forward(self, other):
        global library_calls
        library_calls += 1
        return _outer(op(_here(self)._a, _inner(other)))

    def reflected(self, other):
        global library_calls
        library_calls += 1
        return _outer(op(_inner(other), _here(self)._a))
    return forward, reflected


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
              "lshift", "rshift"):
    _op = getattr(operator, _name + "_" if _name in ("and", "or") else _name)
    _forward, _reflected = _binary(_op)
    setattr(FakeCudaArray, f"__{_name}__", _forward)
    setattr(FakeCudaArray, f"__r{_name}__", _reflected)

    def _inplace(self, other, _iop=getattr(operator, f"i{_name}")):
        global library_calls
        library_calls += 1
        _iop(_here(self)._a, _inner(other))
        return self
    setattr(FakeCudaArray, f"__i{_name}__", _inplace)
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(FakeCudaArray, f"__{_name}__", _binary(getattr(operator, _name))[0])
for _name in ("neg", "pos", "abs", "invert"):
    setattr(FakeCudaArray, f"__{_name}__", lambda self, _op=getattr(operator, _name): _outer(_op(_here(self)._a)))


class _FakeUfunc:
    """A NumPy ufunc on fake arrays: fake.tanh(x), fake.add.at(a, i, v), fake.maximum.reduce(...)."""

    def __init__(self, ufunc):
        self._ufunc = ufunc

    def __call__(self, *args, **kwargs):
        return _on_device(self._ufunc)(*args, **kwargs)

    def at(self, a, index, values=None):
        args = () if values is None else (_inner(values),)
        self._ufunc.at(_inner(a), _index(index), *args)

    def __getattr__(self, name):  # reduce, accumulate, outer, nin, ...
        attr = getattr(self._ufunc, name)
        return _on_device(attr) if callable(attr) else attr


class _FakeEvent:
    """cupy.cuda.Event: a time stamp (on the host clock) for matmul's measurement. Each
    synchronize() is counted in `reads`: the host waits for the GPU as for a copy."""

    def record(self, stream=None):
        self.at = time.perf_counter()

    def synchronize(self):
        _read()


def _to_fake(a, dtype=None, copy=False):
    """The upload: anything NumPy takes (a host array, numbers, lists) -> a fake array on the
    current device. A fake array on another device is copied over, as CuPy does."""
    if isinstance(a, FakeCudaArray):
        copy = copy or a._dev != _current.device
        a = a._a if dtype is None or a.dtype == dtype else a._a.astype(dtype)
        return FakeCudaArray(a.copy() if copy else a)
    if isinstance(a, (list, tuple)) and any(isinstance(v, FakeCudaArray) for v in a):
        raise TypeError("the fake cupy does not build an array from a list of arrays; use stack")
    return FakeCudaArray(np.array(a, dtype=dtype, copy=True))


def _device_attribute(attribute, device):
    """cupy.cuda.runtime.deviceGetAttribute, for the one attribute minigrad asks: the opt-in
    shared memory per block, an H100's (the emulator's limit)."""
    if attribute != 97 or not 0 <= device < DEVICES:
        raise ValueError(f"the fake GPU knows attribute 97 of devices 0 and 1 only, not {attribute} of {device}")
    return emulator.SHARED_OPTIN


def _fake_gemm(transa, transb, a, b, out=None, alpha=1.0, beta=0.0):
    """cupy.cublas.gemm: out = alpha op(a) @ op(b) + beta out, in place, with CuPy's checks."""
    if not (a.ndim == b.ndim == 2 and a.dtype == b.dtype) or out is None or out.dtype != a.dtype:
        raise AssertionError("cupy.cublas.gemm: two matrices and an out of one dtype")
    for array in (a, b, out):
        _here(array)
    op_a, op_b = (v._a.T if trans == "T" else v._a for v, trans in ((a, transa), (b, transb)))
    if out.shape != (op_a.shape[0], op_b.shape[1]) or op_a.shape[1] != op_b.shape[0]:
        raise AssertionError(f"cupy.cublas.gemm: shapes {op_a.shape} @ {op_b.shape} -> {out.shape}")
    product = alpha * (op_a @ op_b)
    out._a[...] = product if beta == 0 else product + beta * out._a
    return out


class FakeCupy(types.ModuleType):
    """The cupy module, on the CPU: NumPy's functions on fake arrays, two "GPUs" (0 and 1)."""

    def __init__(self):
        super().__init__("cupy")
        self.ndarray = FakeCudaArray
        runtime = types.SimpleNamespace(getDeviceCount=lambda: DEVICES,
                                        getDevice=lambda: _current.device, setDevice=_set_device,
                                        cudaDevAttrMaxSharedMemoryPerBlockOptin=97,
                                        deviceGetAttribute=_device_attribute)
        self.cuda = types.SimpleNamespace(
            runtime=runtime, Device=FakeDevice, Event=_FakeEvent,
            get_elapsed_time=lambda start, stop: 1e3 * (stop.at - start.at))
        self.cublas = types.SimpleNamespace(gemm=_fake_gemm)

    def asnumpy(self, a):
        return a.get() if isinstance(a, FakeCudaArray) else np.asarray(a)

    def asarray(self, a, dtype=None):
        if isinstance(a, FakeCudaArray) and (dtype is None or a.dtype == dtype) \
                and a._dev == _current.device:
            return a  # already there: no copy
        return _to_fake(a, dtype)

    def array(self, a, dtype=None, copy=True):
        return _to_fake(a, dtype, copy=copy)

    def RawModule(self, **kwargs):
        raise AssertionError("the fake GPU compiles no CUDA: the tests replace minigrad.backends.cuda.compiler")

    def __getattr__(self, name):
        attr = getattr(np, name)  # AttributeError for what NumPy does not have either
        if isinstance(attr, np.ufunc):
            return _FakeUfunc(attr)
        if isinstance(attr, types.ModuleType):
            raise AttributeError(f"the fake cupy has no {name} submodule")
        if callable(attr) and not isinstance(attr, type):
            return _on_device(attr)
        return attr  # dtypes, newaxis, pi, ...


fake_cupy = FakeCupy()


class _OnFakeMemory:
    """An emulator module whose kernels take fake arrays (their memory is host memory), and
    refuse NumPy arrays, as a real launch does."""

    def __init__(self, module):
        self._module = module

    def get_function(self, name):
        return _OnFakeMemory.Kernel(self._module.get_function(name))

    class Kernel:
        """An emulator kernel launched on fake arrays; its attributes (max_dynamic_shared_size_bytes)
        are the emulator kernel's."""

        def __init__(self, fn):
            object.__setattr__(self, "_fn", fn)

        def __getattr__(self, name):
            return getattr(self._fn, name)

        def __setattr__(self, name, value):
            setattr(self._fn, name, value)

        def __call__(self, grid, block, args, **kwargs):
            for a in args:
                if isinstance(a, np.ndarray):
                    raise TypeError(f"{self._fn.name}: a NumPy array as a kernel argument: {_refuse(a)}")
                if isinstance(a, FakeCudaArray):
                    _here(a)  # a kernel runs on the current device
            return self._fn(grid, block, tuple(a._a if isinstance(a, FakeCudaArray) else a for a in args),
                            **kwargs)


VARIANTS = ["cupy-library", "kernels"]


@pytest.fixture(params=VARIANTS)
def fake_gpu(request, monkeypatch):
    """Device "cuda" works, on the fake (see the module's docstring); yields the variant's name."""
    monkeypatch.setattr(backends.devices, "_cupy", fake_cupy)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)  # nothing imports the real one
    monkeypatch.setattr(_current, "device", 0)
    if request.param == "kernels":
        if emulator.UNAVAILABLE:
            pytest.skip(emulator.UNAVAILABLE)
        monkeypatch.setattr(cuda, "compiler",
                            lambda source, file: _OnFakeMemory(emulator.compile(source, file)))
        paths = contextlib.nullcontext()
    else:
        paths = backends.using(**{f: "numpy" for f in backends.FAMILIES})
    cuda.clear_cache()
    request.addfinalizer(cuda.clear_cache)
    with paths:
        yield request.param


def on_fake(x):
    return isinstance(x, FakeCudaArray)


# -- the fake is as strict as CuPy ------------------------------------------------------------

def test_the_fake_refuses_what_cupy_refuses(fake_gpu):
    a = fake_cupy.arange(6.0).reshape(2, 3)
    assert backends.device_of(a) == "cuda:0" and backends.array_module(a) is fake_cupy
    for convert in (np.asarray, np.array, lambda x: np.stack([np.ones(3), x[0]])):
        with pytest.raises(TypeError):
            convert(a)
    for mixed in (lambda: a + np.ones(3), lambda: np.ones(3) * a, lambda: fake_cupy.tanh(np.ones(3)),
                  lambda: fake_cupy.where(a > 1, a, np.zeros(3))):
        with pytest.raises(TypeError, match="Unsupported type"):
            mixed()
    assert on_fake(a.sum()) and a.sum().ndim == 0  # a 0-d device array, not a host scalar
    assert on_fake(np.tanh(a)) and on_fake(np.concatenate([a, a]))  # NumPy's names dispatch
    np.testing.assert_array_equal(backends.to_numpy(a * 2.0 + np.float64(1)),
                                  np.arange(6.0).reshape(2, 3) * 2 + 1)


# -- the kernel loader ------------------------------------------------------------------------

def test_the_compiler_stamps_every_header_so_that_cupys_disk_cache_sees_an_edit(monkeypatch, tmp_path):
    """CuPy caches a compiled module on disk by its source text, which an #include'd header
    is not part of: cuda.compiler puts a hash of every kernels/*.cuh in front of the source."""
    built = []
    monkeypatch.setattr(backends.devices, "_cupy", fake_cupy)
    monkeypatch.setattr(fake_cupy, "RawModule", lambda code, options: built.append((code, options)))
    monkeypatch.setattr(cuda, "KERNELS_DIR", tmp_path)
    (tmp_path / "common.cuh").write_text("// common\n")
    (tmp_path / "lstm.cuh").write_text("// lstm, first\n")
    source = '#include "common.cuh"\n#include "lstm.cuh"\n'
    for edit in ("// lstm, first\n", "// lstm, edited\n"):
        (tmp_path / "lstm.cuh").write_text(edit)
        cuda.compiler(source, "lstm.cu")
    (first, options), (edited, _) = built
    assert first != edited and first.endswith(source) and edited.endswith(source)
    assert '#line 1 "lstm.cu"' in first and options == ("-std=c++17", f"-I{tmp_path}")


# -- tensors on "cuda" --------------------------------------------------------------------------

def test_tensors_move_and_gradients_travel_back(fake_gpu):
    x = mg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    y = x.to("cuda")
    assert y.device == "cuda:0" and on_fake(y.data)
    (y * y).sum().backward()
    assert type(x.grad) is np.ndarray
    np.testing.assert_allclose(x.grad, 2 * np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(y.numpy(), x.data)
    assert "device='cuda:0'" in repr(y) and y.to("cuda") is y and y.cpu().device == "cpu"
    z = mg.tensor(np.ones(3), device="cuda", requires_grad=True)
    (z.tanh() * 3.0).sum().backward()
    assert on_fake(z.grad)
    assert (z.sum()).item() == 3.0


def test_mixing_devices_raises_naming_both(fake_gpu):
    a, b = mg.ones(3), mg.ones(3, device="cuda")
    with pytest.raises(RuntimeError, match=r"add: inputs on different devices \(cpu, cuda:0\)"):
        a + b
    with pytest.raises(RuntimeError, match=r"matmul: inputs on different devices \(cuda:0, cpu\)"):
        mg.ones(2, 2, device="cuda") @ mg.ones(2, 2)


def test_creation_on_cuda_gives_the_cpu_numbers(fake_gpu):
    np.testing.assert_array_equal(mg.randn(3, 4, rng=5, device="cuda").numpy(), mg.randn(3, 4, rng=5).data)
    assert mg.tensor(mg.zeros(2, device="cuda").data).device == "cuda:0"  # device data stays put
    for t in (mg.zeros(2, 3, device="cuda"), mg.ones(2, device="cuda"), mg.arange(4, device="cuda"),
              mg.rand(2, rng=0, device="cuda"), mg.zeros_like(mg.ones(2, device="cuda"))):
        assert t.device == "cuda:0" and on_fake(t.data)


def test_ops_on_cuda_give_the_cpu_values_and_gradients(fake_gpu, rng):
    """A little of every kind of op, forward and backward, on both devices (float64)."""
    a_np, b_np = rng.standard_normal((4, 5)), rng.standard_normal((5,))
    mask = a_np > 0
    results = []
    for device in ("cpu", "cuda"):
        a = mg.tensor(a_np, requires_grad=True, device=device)
        b = mg.tensor(b_np, requires_grad=True, device=device)
        h = (a * b + 1.0).tanh() - (a / 3.0).sigmoid() + a.relu() * b.exp() + (a * a + 1.0).log()
        h = h + a.abs().sqrt() + a.clip(-0.5, 0.5) + mg.where(mg.tensor(mask, device=device), a, b)
        h = h @ mg.tensor(np.ones((5, 2)), device=device) + (a @ b)[:, None]
        h = mg.concat([h, h[1:3]], axis=0).sum(axis=1) + mg.stack([a[0], b]).max(axis=1).values.sum()
        loss = (h * h).mean() + F.softmax(a, axis=1).sum() + F.log_softmax(a, axis=1)[[0, 2], [1, 3]].sum()
        loss.backward()
        results.append([backends.to_numpy(v) for v in (loss.data, a.grad, b.grad)])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_more_ops_and_hooks_on_cuda_give_the_cpu_values_and_gradients(fake_gpu, rng):
    """The ops PyTorch users reach for (issue 18), and hooks, forward and backward on both devices."""
    a_np, b_np = rng.standard_normal((4, 5)), rng.standard_normal((5,))
    index = rng.integers(0, 5, (4, 3))
    results = []
    for device in ("cpu", "cuda"):
        a = mg.tensor(a_np, requires_grad=True, device=device)
        b = mg.tensor(b_np, requires_grad=True, device=device)
        h = mg.maximum(a, b) + mg.minimum(a, b) * (a * a).log1p() + a.expm1().sin() + b.cos().square()
        h = h + a.cumsum(1) + a.logsumexp(dim=1, keepdim=True) + a.var(0) + a.std(dim=1, keepdim=True)
        h = h + a.norm(dim=0) + a.norm(1, dim=1, keepdim=True) + a.min(dim=0).values * a.max()
        seen = []
        h.register_hook(lambda g: seen.append(g) or g * 2)
        h.retain_grad()
        g = a.gather(1, mg.tensor(index, device=device))
        parts = a.chunk(2, dim=1) + a.split([1, 3], dim=0)
        loss = (h * h).mean() + (g * g).sum() + sum((p * p).sum() for p in parts)
        loss.backward()
        assert backends.device_of(seen[0]) == backends.parse_device(device)
        results.append([backends.to_numpy(v) for v in (loss.data, h.grad, a.grad, b.grad)])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make", [
    lambda ps: AdamW(ps, lr=0.01, amsgrad=True), lambda ps: RMSprop(ps, lr=0.01, momentum=0.9, centered=True),
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.1, maximize=True),
    lambda ps: Adagrad(ps, lr=0.05, lr_decay=0.1, weight_decay=0.1, initial_accumulator_value=0.5),
    lambda ps: Adam(ps, lr=0.01, weight_decay=0.1, maximize=True)],
    ids=["adamw-amsgrad", "rmsprop-centered-momentum", "sgd-dampening-maximize", "adagrad-options",
         "adam-maximize"])
def test_the_new_optimizer_options_on_cuda_give_the_cpu_weights(fake_gpu, make):
    weights = []
    for device in ("cpu", "cuda"):
        net = nn.Linear(3, 2, dtype="float64", rng=0).to(device)
        optimizer = make(net.parameters())
        x = mg.tensor(np.linspace(-1, 1, 12).reshape(4, 3), device=device)
        for _ in range(5):
            optimizer.zero_grad()
            (net(x).tanh() ** 2).sum().backward()
            optimizer.step()
        assert all(on_fake(p.data) == (device == "cuda") for p in net.parameters())
        weights.append([p.numpy() for p in net.parameters()])
    for got, want in zip(*weights):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_embedding_and_cross_entropy_with_device_targets(fake_gpu, rng):
    """Indices and class targets given as raw device arrays stay on the device."""
    idx = rng.integers(0, 7, (3, 4))
    targets = rng.integers(0, 5, (3, 4))
    results = []
    for device in ("cpu", "cuda"):
        emb = nn.Embedding(7, 6, dtype="float64", rng=0).to(device)
        head = nn.Linear(6, 5, dtype="float64", rng=1).to(device)
        where = backends.parse_device(device)
        i, t = backends.to_device(idx, where), backends.to_device(targets, where)
        losses = [F.cross_entropy(head(emb(i)), t, reduction=r) for r in ("mean", "sum", "none")]
        losses[0].backward()
        (losses[1] + losses[2].sum()).backward()
        results.append([backends.to_numpy(v) for v in
                        (losses[0].data, losses[2].data, emb.weight.grad, head.weight.grad)])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_training_on_cuda_gives_the_cpu_losses_and_weights(fake_gpu, kind):
    """TBPTT(3, 5) over a layer, segments at a time, with Adam: float64 on both devices."""
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((8, 3, 3))
    ys = rng.integers(0, 5, (8, 3))
    results, launched = [], cuda.launches
    for device in ("cpu", "cuda"):
        losses, params = train_layer(kind, device, xs, ys, hidden=5, clip_grad_norm=1.0)
        assert all(p.device == backends.parse_device(device) for p in params)
        results.append((losses, [p.numpy() for p in params]))
    assert (cuda.launches > launched) == (fake_gpu == "kernels")  # our kernels ran, or CuPy's library
    (cpu_losses, cpu_weights), (gpu_losses, gpu_weights) = results
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-10)
    for got, want in zip(gpu_weights, cpu_weights):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


# -- matmul's "auto" path -------------------------------------------------------------------------

@pytest.mark.parametrize("fake_gpu", ["kernels"], indirect=True)
@pytest.mark.parametrize("kernel_time, runs", [(0.79, "matmul"), (0.81, "gemm")])
def test_auto_matmul_takes_our_kernel_only_where_it_measured_clearly_faster(fake_gpu, monkeypatch,
                                                                            kernel_time, runs):
    """Our kernel where it took at most 0.8x cuBLAS's time, else one GEMM (for matmul_add,
    adding into out: beta = 1); measured once per shapes, dtype, layout and device."""
    measured, launched = [], []
    monkeypatch.setattr(cuda, "_matmul_times",
                        lambda x, *rest: measured.append(x.device.id) or {"kernel": kernel_time, "cublas": 1.0})
    monkeypatch.setattr(cuda, "on_launch", [launched.append])
    rng = np.random.default_rng(8)
    x, w, out = rng.standard_normal((5, 7)), rng.standard_normal((3, 7)), rng.standard_normal((5, 3))
    for device in ("cuda:0", "cuda:1"):
        xd, wd, outd = (backends.to_device(a, device) for a in (x, w, out))
        for _ in range(2):
            y = backends.primitives.matmul(xd, wd.T)  # W^T read in place, as the layers do
            np.testing.assert_allclose(y.get(), x @ w.T, rtol=1e-14)
        backends.primitives.matmul_add(xd, wd.T, outd)
        np.testing.assert_allclose(outd.get(), out + x @ w.T, rtol=1e-14)
    assert measured == [0, 1]  # once per device: matmul and matmul_add share the measurement
    assert launched == [runs + "_f64"] * 6


# -- cuda:1: every op and the reverse walk run on their arrays' GPU, whichever is current ----------

def _fake_devices(arrays):
    return {a._dev for a in arrays}


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_training_on_cuda_1_runs_there_without_the_user_entering_it(fake_gpu, kind):
    """The fake computes on its current device only (CuPy's rule), which stays 0 here unless
    minigrad makes the arrays' GPU current: the run would raise at its first op."""
    rng = np.random.default_rng(0)
    xs, ys = rng.standard_normal((8, 3, 3)), rng.integers(0, 5, (8, 3))
    cpu_losses, cpu_params = train_layer(kind, "cpu", xs, ys, hidden=5, clip_grad_norm=1.0)
    with fake_cupy.cuda.Device(0):  # as a user's code around the call might be
        losses, params = train_layer(kind, "cuda:1", xs, ys, hidden=5, clip_grad_norm=1.0)
    assert all(p.device == "cuda:1" for p in params)
    assert _fake_devices(p.data for p in params) == _fake_devices(p.grad for p in params) == {1}
    np.testing.assert_allclose(losses, cpu_losses, rtol=1e-10)
    for got, want in zip(params, cpu_params):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-12)


def test_two_models_on_two_gpus_train_in_turn_in_one_thread(fake_gpu):
    """Each op runs on its own arrays' GPU, whichever ran last: the same model and data on
    cuda:0 and cuda:1, a step of each in turn, end with the same weights."""
    nets = [nn.LSTM(3, 4, dtype="float64", rng=0).to(d) for d in ("cuda:0", "cuda:1")]
    optimizers = [Adam(net.parameters(), lr=0.01) for net in nets]
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    for _ in range(3):
        for net, optimizer, device in zip(nets, optimizers, ("cuda:0", "cuda:1")):
            optimizer.zero_grad()
            out, _ = net(mg.tensor(x, device=device))
            (out ** 2).sum().backward()
            optimizer.step()
    for net, device in zip(nets, (0, 1)):
        assert _fake_devices(p.data for p in net.parameters()) == {device}
    for a, b in zip(*(net.parameters() for net in nets)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_the_reverse_walk_crosses_gpus_where_the_forward_did(fake_gpu):
    """A graph that moves from cuda:0 to cuda:1: each record's backward runs on its GPU."""
    a = mg.tensor(np.arange(1.0, 7.0).reshape(2, 3), device="cuda:0", requires_grad=True)
    b = (a.tanh() * 2).to("cuda:1")
    loss = (b.exp() * b).sum()
    assert loss.device == "cuda:1" and loss.data._dev == 1
    loss.backward()
    x = np.arange(1.0, 7.0).reshape(2, 3)
    y = 2 * np.tanh(x)  # d/dy sum(exp(y) y) = exp(y) (1 + y); dy/dx = 2 (1 - tanh^2)
    assert a.grad._dev == 0
    np.testing.assert_allclose(a.grad.get(), np.exp(y) * (1 + y) * 2 * (1 - np.tanh(x) ** 2), rtol=1e-12)


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ps: Adam(ps, lr=0.01),
                                  lambda ps: Adagrad(ps, lr=0.05)], ids=["sgd", "adam", "adagrad"])
def test_an_optimizer_follows_its_parameters_to_another_device(fake_gpu, make):
    weights = []
    for devices in (("cpu",) * 4, ("cpu", "cuda", "cuda", "cpu")):
        net = nn.Linear(3, 2, dtype="float64", rng=0)
        optimizer = make(net.parameters())
        x = mg.tensor(np.ones((4, 3)))
        for device in devices:
            net.to(device)
            optimizer.zero_grad()
            (net(x.to(device)) ** 2).sum().backward()
            optimizer.step()
            assert all(p.device == backends.parse_device(device) for p in net.parameters())
            for state in optimizer.state.values():
                for value in state.values():
                    if hasattr(value, "shape"):
                        assert backends.device_of(value) == backends.parse_device(device)
        state = optimizer.state_dict()  # saved from the CPU after a visit to the GPU
        weights.append([p.numpy() for p in net.parameters()])
    for got, want in zip(*weights):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    net.to("cuda")
    optimizer.load_state_dict(state)
    optimizer.zero_grad()
    net(x.to("cuda")).sum().backward()
    optimizer.step()  # loaded (host) state goes to the parameters' device
    assert all(on_fake(p.data) for p in net.parameters())


def test_a_cuda_model_saves_and_loads(fake_gpu, tmp_path):
    net = nn.LSTM(3, 4, dtype="float64", rng=0).to("cuda")
    optimizer = Adam(net.parameters(), lr=0.01)
    net(mg.randn(2, 1, 3, rng=1, dtype="float64", device="cuda"))[0].sum().backward()
    optimizer.step()
    mg.save(tmp_path / "m.npz", model=net.state_dict(), optimizer=optimizer.state_dict())
    loaded = mg.load(tmp_path / "m.npz")
    cpu = nn.LSTM(3, 4, dtype="float64", rng=5)
    cpu.load_state_dict(loaded["model"])
    for p, q in zip(net.parameters(), cpu.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.data)
    net.load_state_dict(loaded["model"])
    assert all(on_fake(p.data) for p in net.parameters())


# -- `minigrad train --device cuda`, in-process -----------------------------------------------------

def _train(capsys, *argv):
    assert main(["train", "--quiet", "--dtype", "float64", "--hidden", "6", "--batch", "3", *argv]) == 0, \
        capsys.readouterr().err
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if not line.startswith("time ")]  # timings differ
    return out, [line.replace("device cuda:0 (asked for)", "device cpu (asked for)") for line in lines]


def test_minigrad_train_on_cuda_prints_the_cpu_numbers(fake_gpu, capsys):
    argv = ["--task", "delay", "--delay", "2", "--length", "12", "--steps", "36", "--k1", "3", "--k2", "4"]
    out, gpu = _train(capsys, *argv, "--device", "cuda")
    assert "device cuda:0 (asked for)" in out and "held-out: accuracy" in out
    assert _train(capsys, *argv, "--device", "cpu")[1] == gpu
    assert "device cuda:0 (auto: a usable GPU)" in _train(capsys, *argv)[0]


def test_minigrad_train_on_cuda_1_prints_the_cpu_numbers(fake_gpu, capsys):
    argv = ["--task", "delay", "--delay", "2", "--length", "12", "--steps", "36", "--k1", "3", "--k2", "4"]
    out, gpu = _train(capsys, *argv, "--device", "cuda:1")
    assert "device cuda:1 (asked for)" in out
    gpu = [line.replace("device cuda:1 (asked for)", "device cpu (asked for)") for line in gpu]
    assert _train(capsys, *argv, "--device", "cpu")[1] == gpu


def test_minigrad_train_on_cuda_resumes_from_its_checkpoint(fake_gpu, capsys, tmp_path):
    argv = ["--task", "adding", "--length", "8", "--cell", "gru", "--optimizer", "sgd", "--device", "cuda"]
    whole = _train(capsys, *argv, "--steps", "32")[1]
    _train(capsys, *argv, "--steps", "16", "--save", str(tmp_path / "run.npz"))
    resumed = _train(capsys, *argv, "--steps", "32", "--resume", str(tmp_path / "run.npz"))[1]
    assert resumed[-1] == whole[-1] and resumed[-2] == whole[-2]  # held-out and training loss


def test_minigrad_train_text_on_cuda_samples_the_cpu_text(fake_gpu, capsys, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat; the rat ate the hat. " * 4)
    argv = ["--text", str(text), "--length", "10", "--steps", "30", "--sample", "20", "--cell", "rnn"]
    out, gpu = _train(capsys, *argv, "--device", "cuda")
    assert "sample (20 characters" in out
    assert _train(capsys, *argv, "--device", "cpu")[1] == gpu


# -- tutorial 5's GPU branch ---------------------------------------------------------------

TUTORIAL_5 = Path(__file__).resolve().parent.parent / "tutorials" / "5-a-cuda-kernel.ipynb"


@pytest.mark.parametrize("fake_gpu", ["kernels"], indirect=True)  # it launches its kernel itself
def test_tutorial_5_runs_its_gpu_cells_on_the_fake(fake_gpu, monkeypatch):
    """tutorials/5-a-cuda-kernel.ipynb takes another branch on a GPU (cupy.RawModule, launches
    on device arrays, CUDA events): run its cells here, with the fake as CuPy and the kernel built
    by the emulator, so that a slip in them shows before the first run on a GPU."""
    nbformat = pytest.importorskip("nbformat",
                                   reason='needs the tutorials extra: pip install -e ".[tutorials]"')
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = TUTORIAL_5
    built = {}

    def raw_module(code, options=()):
        built["options"] = options
        return _OnFakeMemory(emulator.compile(code, str(cuda.KERNELS_DIR / "lstm.cu")))

    monkeypatch.setattr(fake_cupy, "RawModule", raw_module)
    monkeypatch.setattr(fake_cupy.cuda.runtime, "getDeviceProperties",
                        lambda device: {"name": b"Fake GPU"}, raising=False)
    monkeypatch.setattr(plt, "show", lambda: plt.close("all"))
    # The NVRTC cell is not the GPU branch (it runs wherever CuPy is, tests/test_nvrtc.py does
    # the same), and the real NVRTC bindings, loading, would import the fake as their cupy.
    monkeypatch.setitem(sys.modules, "cupy.cuda", None)
    code = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells
                     if cell.cell_type == "code")
    # Two changes, for the emulator's speed: fewer timing runs, and no verdict on times that
    # measure the emulator, not a GPU.
    edits = {"repeats=200": "repeats=2",
             'assert times["fused kernel"] < times["reference, run by CuPy"]': "pass"}
    for old, new in edits.items():
        assert old in code, f"tutorial 5 changed: {old!r} is gone; update this test"
        code = code.replace(old, new)
    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith("%"))
    scope = {}
    exec(compile(code, str(path), "exec"), scope)
    assert scope["GPU"] and scope["where"] == "on the GPU" and scope["xp"] is fake_cupy
    assert "-std=c++17" in built["options"]
    assert set(scope["times"]) == {"fused kernel", "reference, run by CuPy", "one pass over 3 MB"}
    assert scope["device"] == "Fake GPU"


def test_gpu_arrays_stay_batch_major_so_that_the_window_kernels_run(fake_gpu, rng):
    """The sequence ops keep GPU arrays batch-major (dispatch.feature_major), the layout the
    window kernels read: an LSTM layer's window arrays are C-contiguous on the device (a
    feature-major view would send the window to the step loop: right numbers, no kernel)."""
    from minigrad.backends import dispatch, primitives
    seen = []
    window = primitives.lstm_window
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(primitives, "lstm_window",
                      lambda A, Hs, *rest: seen.append((on_fake(A), A.flags.c_contiguous, Hs.flags.c_contiguous))
                      or window(A, Hs, *rest))
        x = mg.tensor(rng.standard_normal((4, 3, 2)).astype(np.float32), device="cuda")
        assert not dispatch.feature_major(x.data)
        nn.LSTM(2, 5, rng=0).to("cuda")(x)
    assert seen == [(True, True, True)]


# -- the host waits for the GPU once per feed at most ------------------------------------------

def _counting_reads(kind):
    """A model on the fake GPU in float64 (an Elman cell run a step at a time for "cell", else
    an "rnn", "lstm" or "gru" layer) with a readout to 5 classes and cross-entropy: (its
    step function, its parameters)."""
    if kind == "cell":
        rnn = nn.RNNCell(4, 6, dtype="float64", rng=1).to("cuda")
    else:
        rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](4, 6, dtype="float64", rng=1).to("cuda")
    head = nn.Linear(6, 5, dtype="float64", rng=2).to("cuda")

    def step(state, x, y):
        if kind == "cell":
            state = rnn(x, state)
            return state, F.cross_entropy(head(state), y)
        hs, state = rnn(x, state)
        return state, F.cross_entropy(head(hs), y)
    return step, rnn.parameters() + head.parameters()


def _train_counting_reads(kind, xs, ys, segments):
    """train_sequence with TBPTT(3, 5), Adam and clipping on _counting_reads' model: (the
    losses, how many times the host read the GPU)."""
    step, params = _counting_reads(kind)
    before = reads
    result = mg.bptt.train_sequence(step, None, mg.tensor(xs, device="cuda"), mg.tensor(ys, device="cuda"),
                                    policy=mg.bptt.TBPTT(3, 5), optimizer=Adam(params, lr=0.01),
                                    segments=segments, clip_grad_norm=1.0)
    return result.losses, reads - before


@pytest.mark.parametrize("kind, segments", [("cell", False), ("rnn", True), ("lstm", True), ("gru", True),
                                            ("lstm", False)])
def test_a_training_run_reads_the_gpu_twice_not_per_window(fake_gpu, kind, segments):
    """Reading a result back makes the host wait until the GPU has done all the work queued:
    in the training loop that would stall it once per read. train_sequence checks the class
    targets once (one read for the whole sequence), reads the updates' losses once, at the
    end, and nothing else: clipping scales by a norm it does not read."""
    rng = np.random.default_rng(3)
    xs, ys = rng.standard_normal((12, 3, 4)), rng.integers(0, 5, (12, 3))
    _train_counting_reads(kind, xs, ys, segments)  # matmul's one-off timing of each shape
    losses, count = _train_counting_reads(kind, xs, ys, segments)
    assert len(losses) == 4 and all(type(v) is float for v in losses)
    assert count == 2, f"{count} reads for 4 updates"


@pytest.mark.parametrize("targets_on", ["cuda", "cpu"])
def test_a_stream_reads_the_gpu_once_per_feed(fake_gpu, targets_on):
    """A stream fed a window at a time: per feed one read of its loss, and, for targets on the
    GPU, one check of the piece (targets on the host are checked there before they go up)."""
    rng = np.random.default_rng(4)
    step, params = _counting_reads("lstm")
    stream = mg.bptt.Stream(mg.bptt.TBPTT(3, 3), step, Adam(params, lr=0.01), segments=True,
                            clip_grad_norm=1.0)
    counts = []
    for _ in range(4):
        xs, ys = rng.standard_normal((3, 3, 4)), rng.integers(0, 5, (3, 3))
        before = reads
        losses = stream.feed(mg.tensor(xs, device="cuda"), mg.tensor(ys, device=targets_on))
        counts.append(reads - before)
        assert len(losses) == 1
    assert stream.flush() is None
    assert counts[1:] == [2 if targets_on == "cuda" else 1] * 3, counts


# Launches per window of train_sequence, TBPTT(20, 20), Adam and clipping (hidden 6, batch 3,
# float64), once matmul has measured its shapes: (minigrad's kernels and cuBLAS GEMMs, calls
# of CuPy's functions and operators, each at most one kernel of its own). kernels/README.md
# lists them: a change that moves them updates both.
WINDOW_LAUNCHES = {"cell": (302, 272), "rnn": (15, 44), "lstm": (15, 47), "gru": (93, 43)}


def _launches(kind, windows, k=20):
    """(minigrad's launches, CuPy library calls, reads) of a train_sequence over `windows`
    windows of _counting_reads' model, a step at a time for "cell", else segments."""
    rng = np.random.default_rng(0)
    xs, ys = rng.standard_normal((k * windows, 3, 4)), rng.integers(0, 5, (k * windows, 3))
    step, params = _counting_reads(kind)
    before = cuda.launches, library_calls, reads
    mg.bptt.train_sequence(step, None, mg.tensor(xs, device="cuda"), mg.tensor(ys, device="cuda"),
                           policy=mg.bptt.TBPTT(k, k), optimizer=Adam(params, lr=0.01),
                           segments=kind != "cell", clip_grad_norm=1.0)
    return tuple(after - b for after, b in zip((cuda.launches, library_calls, reads), before))


@pytest.mark.parametrize("fake_gpu", ["kernels"], indirect=True)
@pytest.mark.parametrize("kind", list(WINDOW_LAUNCHES))
def test_a_window_launches_what_the_kernels_readme_says(fake_gpu, kind):
    """Each launch costs the host some microseconds: at hidden 256 a window of the layer path
    must be a few dozen launches, not hundreds. Per window: the difference between a run of
    three windows and one of one (which holds the first update's set-up, the optimizer's
    state, and the run's two reads), halved."""
    _launches(kind, 1)  # matmul's one-off timing of each shape
    one, three = _launches(kind, 1), _launches(kind, 3)
    per_window = tuple((b - a) // 2 for a, b in zip(one, three))
    assert per_window[:2] == WINDOW_LAUNCHES[kind], f"{per_window[:2]}: update kernels/README.md's table"
    assert per_window[2] == 0 and one[2] == three[2] == 2  # no read per window


CLIP_CASES = {"plain": ([3.0, -4.0], [1.0]), "nan": ([1.0, np.nan], [3.0, 4.0]),
              "inf": ([1.0, np.inf, 3.0], [-2.0]), "huge": ([3e200], [-4e200]),
              "tiny": ([3e-200, 4e-200], [0.0]), "zero": ([0.0, 0.0], [0.0]), "empty": ([], [2.0])}


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, np.inf])
@pytest.mark.parametrize("case", list(CLIP_CASES))
def test_clipping_on_a_gpu_gives_the_cpu_norm_and_gradients(fake_gpu, case, norm_type):
    """On a GPU the norm is computed there in one piece (test_optim checks the CPU's against
    PyTorch and by hand: NaN, inf, gradients whose squares overflow or underflow float64)."""
    results = []
    for device in ("cpu", "cuda"):
        params = [mg.tensor(np.ones(len(g)), requires_grad=True).to(device) for g in CLIP_CASES[case]]
        for p, g in zip(params, CLIP_CASES[case]):
            p.grad = backends.to_device(np.array(g, dtype=np.float64), backends.parse_device(device))
        with np.errstate(all="ignore"):
            total = mg.optim.clip_grad_norm_(params, 1.0, norm_type)
        results.append((total, [backends.to_numpy(p.grad) for p in params]))
    (cpu_total, cpu_grads), (gpu_total, gpu_grads) = results
    assert type(gpu_total) is float
    np.testing.assert_allclose(gpu_total, cpu_total, rtol=1e-14)
    for got, want in zip(gpu_grads, cpu_grads):
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)


def test_clipping_gradients_on_two_gpus_gives_the_cpu_norm_and_gradients(fake_gpu):
    grads = [np.array([3.0, -4.0]), np.array([12.0])]  # joint 2-norm 13
    for clip in (mg.optim.clip_grad_norm_, mg.optim.clip.scale_grad_norm_):
        params = [mg.tensor(np.ones(len(g)), requires_grad=True).to(d) for g, d in zip(grads, ("cuda:0", "cuda:1"))]
        for p, g, d in zip(params, grads, ("cuda:0", "cuda:1")):
            p.grad = backends.to_device(g, d)
        total = clip(params, 6.5)
        assert total is None if clip is mg.optim.clip.scale_grad_norm_ else total == pytest.approx(13.0)
        for p, g, d in zip(params, grads, (0, 1)):
            assert p.grad._dev == d
            np.testing.assert_allclose(p.grad.get(), g * 6.5 / (13.0 + 1e-6), rtol=1e-14)


def test_the_training_loops_clip_without_reading_the_norm(fake_gpu):
    """scale_grad_norm_ (train_sequence's and the streams' clipping) scales float32 gradients
    on the GPU by the factor clip_grad_norm_ uses, and reads nothing back."""
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (5,))]
    params = [mg.tensor(np.zeros(g.shape, np.float32), requires_grad=True).to("cuda") for g in grads]
    for p, g in zip(params, grads):
        p.grad = backends.to_device(g, "cuda:0")
    before = reads
    mg.optim.clip.scale_grad_norm_(params, 0.5)
    assert reads == before
    norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads))
    for p, g in zip(params, grads):
        assert p.grad.dtype == np.float32
        np.testing.assert_allclose(backends.to_numpy(p.grad), g * (0.5 / (norm + 1e-6)), rtol=1e-6)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_targets_checked_once_per_feed_still_name_a_bad_one_and_ignore_padding(fake_gpu, device):
    """The per-piece check changes no result: a bad target is still named at its step, and
    ignored targets (-100, some steps only) give the losses of a call-by-call loop."""
    rng = np.random.default_rng(5)
    xs, ys = rng.standard_normal((6, 2, 3)), rng.integers(0, 4, (6, 2))
    ys[2, 1] = ys[4, 0] = -100
    cell = nn.RNNCell(3, 4, dtype="float64", rng=0).to(device)

    def step(h, x, y):
        h = cell(x, h)
        return h, F.cross_entropy(h, y)
    on = backends.parse_device(device)
    result = mg.bptt.train_sequence(step, None, mg.tensor(xs, device=device), mg.tensor(ys, device=device),
                                    policy=mg.bptt.TBPTT(2, 2), optimizer=SGD(cell.parameters(), lr=0.0))
    h, loop = None, []
    for s in range(6):  # lr 0: the same weights throughout, so one loop gives every loss
        h = cell(mg.tensor(xs[s], device=device), h)
        loop.append(F.cross_entropy(h, backends.to_device(ys[s], on)).item())
    loop = [loop[t] + loop[t + 1] for t in range(0, 6, 2)]
    np.testing.assert_allclose(result.losses, loop, rtol=1e-12)
    for bad in (4, -1):  # above the classes, and below 0 without being ignore_index
        wrong = ys.copy()
        wrong[3, 0] = bad
        with pytest.raises(ValueError, match=f"cross_entropy: target {bad} is out of range for 4 classes"):
            mg.bptt.train_sequence(step, None, mg.tensor(xs, device=device), mg.tensor(wrong, device=device),
                                   policy=mg.bptt.TBPTT(2, 2), optimizer=SGD(cell.parameters(), lr=0.0))


def _cell_step():
    cell = nn.RNNCell(3, 4, dtype="float64", rng=0).to("cuda")

    def step(h, x, y):
        h = cell(x, h)
        return h, F.cross_entropy(h, y)
    return step, cell.parameters()


def test_a_stream_checks_each_piece_a_bad_one_after_good_ones_raises(fake_gpu):
    rng = np.random.default_rng(6)
    step, params = _cell_step()
    stream = mg.bptt.Stream(mg.bptt.TBPTT(2, 2), step, SGD(params, lr=0.1))
    ys = rng.integers(0, 4, (2, 2))
    stream.feed(mg.tensor(rng.standard_normal((2, 2, 3)), device="cuda"), mg.tensor(ys, device="cuda"))
    ys[1, 1] = -3
    with pytest.raises(ValueError, match="cross_entropy: target -3 is out of range for 4 classes"):
        stream.feed(mg.tensor(rng.standard_normal((2, 2, 3)), device="cuda"), mg.tensor(ys, device="cuda"))


@pytest.mark.parametrize("padding", [False, True])
def test_targets_in_a_larger_array_are_checked_as_the_piece_not_the_array(fake_gpu, padding):
    """Targets handed to train_sequence as a slice of a larger device array: the check reads
    the slice once, whatever the rest of the array holds (here a bad value past the slice),
    and ignored targets inside it cost no read either."""
    rng = np.random.default_rng(7)
    xs, big = rng.standard_normal((6, 2, 3)), rng.integers(0, 4, (9, 2))
    big[8, 0] = 99  # outside the slice: not the run's business
    if padding:
        big[1, 0] = -100
    step, params = _cell_step()
    targets = backends.to_device(big, "cuda:0")[:6]
    run = lambda: mg.bptt.train_sequence(step, None, mg.tensor(xs, device="cuda"), targets,
                                         policy=mg.bptt.TBPTT(2, 2), optimizer=SGD(params, lr=0.0))
    run()  # matmul's one-off timings
    before = reads
    assert len(run().losses) == 3
    assert reads - before == 2  # the piece's check, the losses
