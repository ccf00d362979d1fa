"""The CUDA path: loads kernels/*.cu and holds one launch wrapper per primitive.

Each wrapper below has the name and the signature of a primitive of primitives.py (its
NumPy reference, whose docstring gives the shapes and the maths), launches the kernel of the
same name (KERNELS) and returns the same values; dispatch.py decides which of the two runs.
A wrapper is its checks, then its launch: a check that fails (more broadcast axes than the
kernel takes, an `out=` array it cannot write in place, mixed dtypes) raises Unsupported,
which @wrapper turns into NotImplemented before anything is launched: the reference runs.

Wrappers allocate with the array module of their inputs, so that they also run on NumPy
arrays: the tests replace `compiler` by tests/emulator.py's, which builds the same
kernel sources for the CPU. CuPy is imported through devices.cupy(), never here.
"""
import contextlib
import functools
import hashlib
import importlib.resources
import operator
import re

import numpy as np

from . import devices, dispatch

KERNELS_DIR = importlib.resources.files("minigrad.kernels")
# Every kernel entry point (each compiled as name_f32 and name_f64), by file. A primitive's
# kernel has the primitive's name; matmul_add launches matmul (accumulating), sum_axes one
# of its two shapes.
KERNELS = {
    "elementwise.cu": ("activation", "activation_backward", "binary"),
    "matmul.cu": ("matmul",),
    "reduce.cu": ("sum_axes_rows", "sum_axes_cols"),
    "loss.cu": ("softmax_xent", "softmax_xent_backward"),
    "lstm.cu": ("lstm_step", "lstm_step_backward"),
    "gru.cu": ("gru_step", "gru_step_backward"),
    "window.cu": ("elman_window", "elman_window_backward", "lstm_window", "lstm_window_backward"),
    "optim.cu": ("sgd_step", "adam_step", "adagrad_step"),
}
_FILE_OF = {name: file for file, names in KERNELS.items() for name in names}

EMULATED = "emulated"  # the device key of NumPy arrays: kernels run by the tests' CPU emulator
THREADS = 256          # threads per block of the one-dimensional kernels
MAX_BLOCKS = 65535     # at most this many blocks; grid-stride loops cover any size with them
# A block's dynamic shared memory: up to 48 KiB as launched, more once the kernel opts in
# (max_dynamic_shared_size_bytes), up to the device's limit. The emulator's limit is an H100's.
SHARED_DEFAULT = 48 * 1024
EMULATED_SHARED_LIMIT = 227 * 1024

launches = 0   # how many kernels `launch` has started, and cuBLAS GEMMs: the tests bound a
               # training step's count (kernels/README.md)
on_launch = []  # functions called with each launched kernel's name ("lstm_step_f32"; "gemm_f32")

_modules = {}        # (device key, file) -> compiled module: each source compiled once per device
_functions = {}      # (device key, entry point) -> kernel function
_scalars = {}        # entry point -> its parameter count and scalar parameters (_scalar_parameters),
                     # from its signature in the source: how launch converts its arguments
_shared_limits = {}  # device key -> the most dynamic shared memory a block may have (bytes)
_opted_in = {}       # (device key, entry point) -> the dynamic shared memory it may have now


# -- loading and launching -----------------------------------------------------------------

def compiler(source, file):
    """Compile one kernel source (the text of kernels/`file`) into a module whose
    .get_function(name) gives its kernels: NVRTC, through cupy.RawModule.

    The tests replace this function by the CPU emulator's and call clear_cache().
    """
    # CuPy caches compiled modules on disk by their source text, which does not contain the
    # headers (common.cuh, lstm.cuh): a comment with their hash makes an edit of one recompile.
    # `#line` keeps the line numbers of compiler errors those of the file.
    headers = hashlib.sha256()
    for header in sorted(KERNELS_DIR.iterdir(), key=lambda path: path.name):
        if header.name.endswith(".cuh"):
            headers.update(header.name.encode() + b"\0" + header.read_bytes())
    stamp = f"// headers {headers.hexdigest()[:16]}\n#line 1 \"{file}\"\n"
    return devices.cupy().RawModule(code=stamp + source, options=("-std=c++17", f"-I{KERNELS_DIR}"))


def clear_cache():
    """Forget every compiled module and matmul's measurements (after replacing `compiler`)."""
    for cache in (_modules, _functions, _shared_limits, _opted_in, _matmul_choice):
        cache.clear()


def _device_key(array):
    """Which device runs kernels on `array`: its GPU's number, or EMULATED for a NumPy array."""
    return EMULATED if isinstance(array, (np.ndarray, np.generic)) else array.device.id


def _on(device_key):
    """The context a launch on a device runs in: CuPy compiles, loads and launches on its
    current device, so another GPU is made current for the call."""
    if device_key == EMULATED or device_key == devices.cupy().cuda.runtime.getDevice():
        return contextlib.nullcontext()
    return devices.cupy().cuda.Device(device_key)


def _function(entry, device_key):
    """The kernel `entry` (name_f32 or name_f64) on a device: its file compiled once per
    device, the kernel looked up once."""
    fn = _functions.get((device_key, entry))
    if fn is None:
        file = _FILE_OF[entry[:-4]]
        if (device_key, file) not in _modules:
            source = (KERNELS_DIR / file).read_text()
            _scalars.update(_scalar_parameters(source, file))
            _modules[(device_key, file)] = compiler(source, file)
        with _on(device_key):
            fn = _functions[(device_key, entry)] = _modules[(device_key, file)].get_function(entry)
    return fn


def shared_memory_limit(device_key):
    """The most dynamic shared memory (bytes) one block may have on a device: the GPU's
    opt-in limit (227 KiB on an H100, 163 KiB on an A100), asked once."""
    if device_key not in _shared_limits:
        if device_key == EMULATED:
            _shared_limits[device_key] = EMULATED_SHARED_LIMIT
        else:
            runtime = devices.cupy().cuda.runtime
            _shared_limits[device_key] = runtime.deviceGetAttribute(
                runtime.cudaDevAttrMaxSharedMemoryPerBlockOptin, device_key)
    return _shared_limits[device_key]


# A kernel's scalar parameter types, as NumPy types: a launch passes each scalar argument
# as exactly the bytes its parameter has (a Python int given for a `long long` as 4 bytes
# would read garbage).
_C_TYPES = {"int": np.int32, "long long": np.int64, "float": np.float32, "double": np.float64}
_ENTRY_POINT = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')


def _scalar_parameters(source, file):
    """{entry point: (its number of parameters, ((position, NumPy type, whether an integer),
    ...) of its scalar parameters)} from the signatures in a kernel source. Pointers take
    arrays as they are."""
    found = {}
    for entry, params in _ENTRY_POINT.findall(source):
        params = [" ".join(p.split()) for p in params.split(",")] if params.strip() not in ("", "void") else []
        scalars = []
        for k, param in enumerate(params):
            if "*" in param:
                continue
            c_type = param.rsplit(" ", 1)[0].removeprefix("const ")
            if c_type not in _C_TYPES:
                raise RuntimeError(f"{file}: {entry}'s parameter `{param}` has a type launch cannot "
                                   f"pass; expected a pointer or one of {', '.join(_C_TYPES)}")
            scalars.append((k, _C_TYPES[c_type], c_type in ("int", "long long")))
        found[entry] = (len(params), tuple(scalars))
    return found


def _c_arguments(entry, args):
    """args as `entry`'s parameters take them: each scalar as its parameter's C type, arrays
    as they are. An integer parameter takes integers only (TypeError for a float), and one
    past the type's range raises OverflowError rather than wrapping around."""
    count, scalars = _scalars[entry]
    if len(args) != count:
        raise TypeError(f"launch: {entry} takes {count} arguments, got {len(args)}")
    args = list(args)
    for k, c_type, integer in scalars:
        args[k] = c_type(operator.index(args[k]) if integer else args[k])
    return tuple(args)  # (what CuPy's and the emulator's kernels take)


def launch(name, like, grid, block, args, *, shared_mem=0, count=True):
    """Run kernel `name` (KERNELS) in `like`'s precision (entry point name_f32 for float32,
    name_f64 for float64) on `like`'s device: fn(grid, block, args).

    shared_mem: bytes of dynamic shared memory per block (common.cuh's dynamic_shared);
    past 48 KiB the kernel is opted in first, up to shared_memory_limit (the caller checks).
    count=False: not counted in `launches` nor shown to `on_launch` (matmul's timing runs,
    made once per shape, which are not part of the computation).
    """
    entry = name + ("_f32" if like.dtype == np.float32 else "_f64")
    device_key = _device_key(like)
    fn = _function(entry, device_key)
    args = _c_arguments(entry, args)
    if count:
        _count(entry)
    with _on(device_key):
        if shared_mem > _opted_in.get((device_key, entry), SHARED_DEFAULT):
            fn.max_dynamic_shared_size_bytes = shared_mem  # a driver call: once per kernel and size
            _opted_in[(device_key, entry)] = shared_mem
        fn(grid, block, args, shared_mem=shared_mem)


def _count(entry):
    """Count a launch in `launches` and show it to the `on_launch` hooks."""
    global launches
    launches += 1
    for hook in on_launch:
        hook(entry)


def _launch_1d(name, like, n, args):
    """Launch a grid-stride kernel over n elements: THREADS per block, enough blocks for n up
    to MAX_BLOCKS. Nothing for n = 0 (CUDA refuses an empty grid)."""
    if n:
        launch(name, like, (min(-(-n // THREADS), MAX_BLOCKS),), (THREADS,), args)


# -- what the kernels accept: the checks every wrapper makes before it launches ------------------

class Unsupported(Exception):
    """A case a kernel does not take: its wrapper returns NotImplemented, and the reference runs."""


def wrapper(launcher):
    """Mark a launch wrapper: Unsupported, raised by its checks before it launches anything,
    makes it return NotImplemented."""
    @functools.wraps(launcher)
    def call(*args, **kwargs):
        try:
            return launcher(*args, **kwargs)
        except Unsupported:
            return NotImplemented
    return call


def _require(ok):
    if not ok:
        raise Unsupported


def _alike(like, *arrays):
    """Whether every array is of like's kind (NumPy or CuPy), dtype and device: a kernel has
    one precision and runs on one device. (The reference promotes mixed dtypes, or says what
    is wrong; we leave those cases to it.)"""
    return all(type(a) is type(like) and a.dtype == like.dtype and a.device == like.device
               for a in arrays)


def _dense(a, shape=None):
    """a as the kernels read it: C-contiguous (a copy only if it is not), broadcast to `shape`."""
    if shape is not None and a.shape != tuple(shape):
        a = devices.array_module(a).broadcast_to(a, shape)  # ValueError, as the reference raises
    return a if a.flags.c_contiguous else a.copy()


def _input(a, like, shape=None):
    """An array a kernel reads: like's kind, dtype and device (else Unsupported), made dense
    (broadcast to `shape` if given)."""
    _require(_alike(like, a))
    return _dense(a, shape)


def _output(out, like, shape):
    """An array a kernel writes: a new one of `shape` in like's dtype, or the caller's `out`,
    written in place, which must be like's kind and dtype, of `shape`, C-contiguous (else
    Unsupported): the sequence ops pass views of their (T, B, ...) buffers."""
    if out is None:
        return devices.array_module(like).empty(shape, like.dtype)
    _require(_alike(like, out) and out.shape == tuple(shape) and out.flags.c_contiguous)
    return out


def _address(array):
    """Where an array's first element is: a GPU address, or a host address for the emulator.
    0 for None (an absent array)."""
    if array is None:
        return 0
    return array.ctypes.data if isinstance(array, np.ndarray) else array.data.ptr


# -- elementwise.cu ----------------------------------------------------------------------------

ACTIVATIONS = {"tanh": 0, "sigmoid": 1, "relu": 2, "exp": 3}  # common.cuh's enum
BINARY_OPS = {"add": 0, "sub": 1, "mul": 2, "div": 3}          # elementwise.cu's enum


@wrapper
def activation(x, name, out=None):
    """Primitive: activation. out may be x itself: the kernel reads each element before
    writing it (the Elman cell's h' = activation(a))."""
    _require(name in ACTIVATIONS)
    y = _output(out, x, x.shape)
    _launch_1d("activation", x, x.size, (_dense(x), y, np.int64(x.size), ACTIVATIONS[name]))
    return y


@wrapper
def activation_backward(g, saved, name, out=None):
    """Primitive: activation_backward."""
    _require(name in ACTIVATIONS)
    shape = np.broadcast_shapes(g.shape, saved.shape)
    g, saved = _input(g, g, shape), _input(saved, g, shape)
    dx = _output(out, g, shape)
    _launch_1d("activation_backward", g, dx.size,
               (g, saved, dx, np.int64(dx.size), ACTIVATIONS[name]))
    return dx


def _element_strides(a, shape):
    """a's strides, in elements, when broadcast to `shape`: 0 along the axes that broadcasting
    adds or stretches. Unsupported if a stride is not a whole number of elements."""
    _require(not any(s % a.itemsize for s in a.strides))
    lead = len(shape) - a.ndim
    return [0] * lead + [0 if size == 1 and n != 1 else s // a.itemsize
                         for size, n, s in zip(a.shape, shape[lead:], a.strides)]


def _collapse(shape, strides):
    """The axes of `shape` with axes of length 1 dropped and neighbours merged wherever every
    operand steps over the pair as over one axis (stride of the outer = stride of the inner
    times its length): a list of (length, [stride of each operand]).

    A contiguous (5, 13, 24) plus a (24,) bias is [(65, [24, 0]), (24, [1, 1])]: two axes.
    """
    dims = []
    for k, n in enumerate(shape):
        if n == 1:
            continue
        step = [s[k] for s in strides]
        if dims and all(outer == inner * n for outer, inner in zip(dims[-1][1], step)):
            dims[-1] = (dims[-1][0] * n, step)
        else:
            dims.append((n, step))
    return dims


@wrapper
def binary(x, y, op):
    """Primitive: binary. The kernel takes up to 4 axes with a stride per axis and operand,
    so broadcast and strided views need no copy; more axes after merging: Unsupported."""
    _require(op in BINARY_OPS and _alike(x, y))
    shape = np.broadcast_shapes(x.shape, y.shape)  # ValueError where they do not broadcast
    out = devices.array_module(x).empty(shape, x.dtype)
    if out.size == 0:
        return out
    dims = _collapse(shape, [_element_strides(x, shape), _element_strides(y, shape)])
    _require(len(dims) <= 4 and all(abs(s) < 2**31 and n < 2**31 for n, step in dims for s in step))
    dims = [(1, [0, 0])] * (4 - len(dims)) + dims  # pad at the front to (n0, n1, n2, n3)
    sizes = [n for n, _ in dims[1:]]  # the kernel derives n0 from the element count
    strides = [step[0] for _, step in dims] + [step[1] for _, step in dims]
    _launch_1d("binary", x, out.size,
               (x, y, out, np.int64(out.size), BINARY_OPS[op], *sizes, *strides))
    return out


# -- matmul.cu ---------------------------------------------------------------------------------

TILE = 32  # matmul.cu's tile: each block computes TILE x TILE outputs with 32 x 8 threads
_matmul_choice = {}  # (M, N, K, dtype, trans_x, trans_y, device) -> "kernel" or "cublas"


def _operand(a):
    """(array, trans) as the matmul kernel reads an operand: a itself if C-contiguous; the
    array whose transpose a is (trans = 1) if that one is C-contiguous, as W.T is W; else a copy."""
    if a.flags.c_contiguous:
        return a, 0
    if a.T.flags.c_contiguous:
        return a.T, 1
    return a.copy(), 0


def _launch_matmul(xa, ya, out, trans_x, trans_y, accumulate, count=True):
    M, N = out.shape
    K = xa.shape[0] if trans_x else xa.shape[1]
    launch("matmul", out, (-(-N // TILE), -(-M // TILE)), (TILE, 8),
           (xa, ya, out, M, N, K, trans_x, trans_y, accumulate), count=count)


def _matmul(x, y, out, accumulate):
    """x @ y into `out` (a new array if None), or added into it: the checks and the launch of
    matmul and matmul_add. Unsupported when x, y are not two matrices of one kind, dtype and
    device (the reference raises dot's error, or promotes), or when the path is forced to
    "numpy". Where "auto" chooses cuBLAS for the shape (_matmul_path), and for products too
    tall for our kernel's grid, one cuBLAS GEMM computes it (for matmul_add, adding into out:
    beta = 1). The emulator's NumPy arrays always take the kernel."""
    _require(x.ndim == 2 and y.ndim == 2 and x.shape[1] == y.shape[0] and _alike(x, y))
    (M, K), N = x.shape, y.shape[1]
    xp = devices.array_module(x)
    out = None if out is None else _output(out, x, (M, N))
    if M == 0 or N == 0 or K == 0:  # a sum of no products is 0
        return xp.zeros((M, N), x.dtype) if out is None else out
    path = dispatch.path("matmul")
    _require(path != "numpy")
    (xa, trans_x), (ya, trans_y) = _operand(x), _operand(y)
    if not isinstance(x, np.ndarray) and (path == "auto" or -(-M // TILE) > 65535):
        if _matmul_path(x, y, xa, ya, trans_x, trans_y) == "cublas":
            return _gemm(x, y, xp.empty((M, N), x.dtype) if out is None else out, accumulate)
    _require(-(-M // TILE) <= 65535)
    out = xp.empty((M, N), x.dtype) if out is None else out
    _launch_matmul(xa, ya, out, trans_x, trans_y, accumulate)
    return out


def _gemm(x, y, out, accumulate, count=True):
    """out = x @ y, or out += x @ y (accumulate = 1: beta = 1), in one cuBLAS GEMM, counted
    as a launch; returns out."""
    if count:
        _count("gemm_" + ("f32" if x.dtype == np.float32 else "f64"))
    with _on(x.device.id):
        devices.cupy().cublas.gemm("N", "N", x, y, out=out, alpha=1.0, beta=float(accumulate))
    return out


@wrapper
def matmul(x, y):
    """Primitive: matmul. On the "auto" path our kernel where it measured clearly faster
    than cuBLAS for the shape, else cuBLAS (_matmul_path)."""
    return _matmul(x, y, None, accumulate=0)


@wrapper
def matmul_add(x, y, out):
    """Primitive: matmul_add, in one launch: our kernel adds the product as it writes it,
    cuBLAS's GEMM with beta = 1 (_matmul_path chooses)."""
    return _matmul(x, y, out, accumulate=1)


KERNEL_MARGIN = 0.8  # "auto" takes our matmul where it took at most this much of cuBLAS's time


def _matmul_path(x, y, xa, ya, trans_x, trans_y):
    """"kernel" or "cublas" for x @ y on x's GPU: cuBLAS, unless our tiled kernel measured
    clearly faster (KERNEL_MARGIN) for these shapes, dtype and layout on this device.
    Decided once per process and then fixed, so that within a process the same product always
    gives the same bits (another process measures again); a product too tall for our
    kernel's grid is cuBLAS's."""
    M, K = x.shape
    N = y.shape[1]
    key = (M, N, K, x.dtype.char, trans_x, trans_y, x.device.id)
    if key not in _matmul_choice:
        if -(-M // TILE) > 65535:
            _matmul_choice[key] = "cublas"
        else:
            with _on(x.device.id):  # allocate and time on the arrays' GPU
                times = _matmul_times(x, y, xa, ya, trans_x, trans_y)
            _matmul_choice[key] = "kernel" if times["kernel"] <= KERNEL_MARGIN * times["cublas"] else "cublas"
    return _matmul_choice[key]


def _matmul_times(x, y, xa, ya, trans_x, trans_y, calls=10, rounds=3):
    """GPU milliseconds for `calls` back-to-back products x @ y, accumulated into one array,
    by our kernel and by cuBLAS's GEMM (beta = 1, as matmul_add): the best of `rounds`,
    the two alternated, after a warm-up call of each (compiling, cuBLAS's set-up). Timing
    many calls between two events keeps a single launch's latency out of the measure."""
    cp = devices.cupy()
    out = cp.zeros((x.shape[0], y.shape[1]), x.dtype)
    runs = {"kernel": lambda: _launch_matmul(xa, ya, out, trans_x, trans_y, 1, count=False),
            "cublas": lambda: _gemm(x, y, out, 1, count=False)}
    best = {}
    for run in runs.values():
        run()
    for _ in range(rounds):
        for name, run in runs.items():
            start, stop = cp.cuda.Event(), cp.cuda.Event()
            start.record()
            for _ in range(calls):
                run()
            stop.record()
            stop.synchronize()
            best[name] = min(best.get(name, float("inf")), cp.cuda.get_elapsed_time(start, stop))
    return best


# -- reduce.cu ---------------------------------------------------------------------------------

def _runs(axes):
    """Sorted axes as runs of consecutive axes [start, stop): (0, 1, 3) -> [(0, 2), (3, 4)]."""
    runs = []
    for k in axes:
        if runs and runs[-1][1] == k:
            runs[-1][1] = k + 1
        else:
            runs.append([k, k + 1])
    return runs


@wrapper
def sum_axes(a, axes, keepdims=False):
    """Primitive: sum_axes (axes: a sorted tuple of non-negative ints).

    Each run of consecutive axes is one launch that views the array as (A, R, C) and sums
    R away; runs are reduced last first, so that the earlier axes keep their numbers.
    Needs a C-contiguous input (else Unsupported: CuPy's sum handles any strides).
    """
    _require(a.flags.c_contiguous)
    xp = devices.array_module(a)
    axes = tuple(axes)
    if keepdims:
        out_shape = tuple(1 if k in axes else n for k, n in enumerate(a.shape))
    else:
        out_shape = tuple(n for k, n in enumerate(a.shape) if k not in axes)
    if not axes:
        return a.copy()
    if 0 in out_shape:
        return xp.zeros(out_shape, a.dtype)
    shape = list(a.shape)
    for start, stop in reversed(_runs(axes)):
        A, R, C = (int(np.prod(part, dtype=np.int64))
                   for part in (shape[:start], shape[start:stop], shape[stop:]))
        out = xp.empty(A * C, a.dtype)
        if C == 1 and R >= 32:  # a sum along the last axes: one block per output
            launch("sum_axes_rows", a, (A,), (THREADS,), (a, out, np.int64(A), np.int64(R)))
        else:                   # 32 outputs per block, 8 threads per output
            launch("sum_axes_cols", a, (-(-(A * C) // 32),), (32, 8),
                   (a, out, np.int64(A), np.int64(R), np.int64(C)))
        a, shape = out, shape[:start] + shape[stop:]
    return a.reshape(out_shape)


# -- loss.cu -----------------------------------------------------------------------------------

@wrapper
def softmax_xent(x, t):
    """Primitive: softmax_xent. One block per row of x (K, C), of as many threads as C needs
    (a power of two, 32 to 256). A target outside [0, C) gives a NaN loss (the caller checks
    targets first)."""
    _require(x.ndim == 2 and x.shape[1] > 0)  # the reference raises: a maximum over no classes
    xp = devices.array_module(x)
    K, C = x.shape
    t = xp.asarray(t, dtype=np.int64)  # class indices as loss.cu reads them
    _require(t.shape == (K,))
    losses, lse = xp.empty(K, x.dtype), xp.empty(K, x.dtype)
    if K:
        threads = min(256, max(32, 1 << (C - 1).bit_length()))  # the power of two >= C
        launch("softmax_xent", x, (K,), (threads,), (_dense(x), _dense(t), losses, lse, K, C))
    return losses, lse


@wrapper
def softmax_xent_backward(x, t, scale):
    """Primitive: softmax_xent_backward. Blocks as softmax_xent's: one per row, reducing the
    row's maximum and sum of exponentials again (see loss.cu for why not exp(x - lse))."""
    _require(x.ndim == 2 and x.shape[1] > 0)  # the reference raises: a maximum over no classes
    xp = devices.array_module(x)
    K, C = x.shape
    t = _dense(xp.asarray(t, dtype=np.int64), (K,))
    scale = _input(scale, x, (K,))
    grad = xp.empty((K, C), x.dtype)
    if K:
        threads = min(256, max(32, 1 << (C - 1).bit_length()))  # the power of two >= C
        launch("softmax_xent_backward", x, (K,), (threads,), (_dense(x), t, scale, grad, K, C))
    return grad


# -- the cells' pointwise parts: lstm.cu, gru.cu (the Elman cell's is `activation`) ---------------
#
# One thread per (batch row, hidden unit). Batches are (B, H) states and (B, G*H) gates; the
# sequence ops pass views of their (T, B, ...) buffers as out= (and the like) and as inputs.

def _cell_sizes(gates, count):
    """(B, H) of a (B, count*H) batch of gates; Unsupported for another shape."""
    _require(gates.ndim == 2 and gates.shape[1] % count == 0)
    return gates.shape[0], gates.shape[1] // count


@wrapper
def lstm_step(act, c, out=(None, None, None)):
    """Primitive: lstm_step. act (B, 4H) is activated in place, so it must be C-contiguous."""
    B, H = _cell_sizes(act, 4)
    _require(act.flags.c_contiguous)  # written in place: it cannot be a copy
    c = _input(c, act, (B, H))
    h_new, c_new, tc = (_output(o, act, (B, H)) for o in out)
    _launch_1d("lstm_step", act, B * H, (act, c, h_new, c_new, tc, B, H))
    return h_new, c_new, tc


@wrapper
def lstm_step_backward(g_h, g_c, act, c, tc, out=None):
    """Primitive: lstm_step_backward. The callers pass g_c as a (B, H) array (zeros when
    nothing used c'); None or a scalar 0 is taken as zero without reading it, another
    scalar is broadcast."""
    B, H = _cell_sizes(act, 4)
    g_h, c, tc = (_input(a, act, (B, H)) for a in (g_h, c, tc))
    if g_c is None or (np.isscalar(g_c) and g_c == 0):
        g_c = None
    else:
        g_c = _input(devices.array_module(act).asarray(g_c, act.dtype) if np.isscalar(g_c) else g_c,
                     act, (B, H))
    g_a, g_c_prev = _output(out, act, (B, 4 * H)), _output(None, act, (B, H))
    _launch_1d("lstm_step_backward", act, B * H,
               (g_h, g_h if g_c is None else g_c,  # without g_c the kernel reads nothing there: any array
                _dense(act), c, tc, g_a, g_c_prev, B, H, int(g_c is not None)))
    return g_a, g_c_prev


@wrapper
def gru_step(a_ih, a_hh, h, out=(None, None, None)):
    """Primitive: gru_step. a_ih, a_hh: (B, 3H); out: h' (B, H), (r, z) (B, 2H), n (B, H)."""
    B, H = _cell_sizes(a_hh, 3)
    a_ih, a_hh, h = _input(a_ih, a_hh, a_hh.shape), _input(a_hh, a_hh), _input(h, a_hh, (B, H))
    h_new, rz, cand = (_output(o, a_hh, (B, n * H)) for o, n in zip(out, (1, 2, 1)))
    _launch_1d("gru_step", a_hh, B * H, (a_ih, a_hh, h, h_new, rz, cand, B, H))
    return h_new, rz, cand


@wrapper
def gru_step_backward(g, a_hh, rz, cand, h, g_a_ih=None, g_a_hh=None, g_h=None):
    """Primitive: gru_step_backward. g_h, if given, is added into (accumulate = 1)."""
    B, H = _cell_sizes(a_hh, 3)
    accumulate = int(g_h is not None)
    g, a_hh, rz, cand, h = (_input(a, a_hh, (B, n * H))
                            for a, n in ((g, 1), (a_hh, 3), (rz, 2), (cand, 1), (h, 1)))
    g_a_ih, g_a_hh, g_h = (_output(o, a_hh, (B, n * H))
                           for o, n in ((g_a_ih, 3), (g_a_hh, 3), (g_h, 1)))
    _launch_1d("gru_step_backward", a_hh, B * H,
               (g, a_hh, rz, cand, h, g_a_ih, g_a_hh, g_h, B, H, accumulate))
    return g_a_ih, g_a_hh, g_h


# -- window.cu: the recurrence of a whole window in one launch ----------------------------------

def _window_plan(like, W_hh, gates, threads_per_unit, *buffers):
    """How a window kernel runs over like (T, B, ...): ((T, B, H), grid, block, shared bytes).
    One block per batch row, of threads_per_unit threads per hidden unit, holds W_hh in
    shared memory for all T steps (see window.cu).

    like and `buffers` are the layer's (T, B, ...) buffers, read and written in place: they
    must be like's kind, dtype and device, and C-contiguous; W_hh (gates*H, H) may be any
    layout (it is read once, made dense). Shared memory holds what the forward needs, W_hh^T
    with a padding column (G H^2 + H numbers), the state (H) and the LSTM's gates (4H), and
    is asked for both ways so that a layer runs its window kernels both ways or neither.
    Unsupported, and the step loop (the reference) runs, where that does not fit in a block's
    shared memory, where the gates outnumber a block's 1024 threads (the LSTM's forward has
    a thread per gate), or while the "cells" family is forced to NumPy.
    """
    _require(like.ndim == 3 and _alike(like, W_hh, *buffers)
             and all(a.flags.c_contiguous for a in (like, *buffers)))
    T, B, H = len(like), like.shape[1], W_hh.shape[1]
    gate_values = gates * H if gates > 1 else 0  # the Elman cell's one gate is its state
    shared = (gates * H * H + 2 * H + gate_values) * like.itemsize
    _require(dispatch.path("cells") != "numpy" and gates * H <= 1024 and B > 0
             and shared <= shared_memory_limit(_device_key(like)))
    return (T, B, H), (B,), (-(-threads_per_unit * H // 32) * 32,), shared  # whole warps


@wrapper
def elman_window(A, Hs, W_hh, relu):
    """Primitive: elman_window, in one launch."""
    sizes, grid, block, shared = _window_plan(A, W_hh, 1, 1, Hs)
    kind = ACTIVATIONS["relu" if relu else "tanh"]
    launch("elman_window", A, grid, block, (A, Hs, _dense(W_hh), *sizes, kind), shared_mem=shared)
    return Hs


@wrapper
def elman_window_backward(G_h, Hs, A, W_hh, relu, G_a, need_h0):
    """Primitive: elman_window_backward, in one launch; G_h is not written (the reference's
    scratch)."""
    sizes, grid, block, shared = _window_plan(G_h, W_hh, 1, 1, Hs, G_a)
    g_h0 = _output(None, G_h, sizes[1:]) if need_h0 else None
    kind = ACTIVATIONS["relu" if relu else "tanh"]  # relu' is read off h: h > 0 where a > 0
    launch("elman_window_backward", G_h, grid, block,
           (G_h, Hs, _dense(W_hh), G_a, G_a if g_h0 is None else g_h0,  # without need_h0, not written
            *sizes, kind, int(need_h0)), shared_mem=shared)
    return g_h0


@wrapper
def lstm_window(A, Hs, Cs, TC, W_hh):
    """Primitive: lstm_window, in one launch."""
    sizes, grid, block, shared = _window_plan(A, W_hh, 4, 4, Hs, Cs, TC)
    launch("lstm_window", A, grid, block, (A, Hs, Cs, TC, _dense(W_hh), *sizes), shared_mem=shared)
    return Hs


@wrapper
def lstm_window_backward(G_h, g_c, A, Cs, TC, W_hh, G_a, need_h0):
    """Primitive: lstm_window_backward, in one launch; G_h is not written (the reference's
    scratch)."""
    sizes, grid, block, shared = _window_plan(G_h, W_hh, 4, 1, A, Cs, TC, G_a)
    g_c = _input(g_c, G_h, sizes[1:])
    g_h0 = _output(None, G_h, sizes[1:]) if need_h0 else None
    g_c0 = _output(None, G_h, sizes[1:])
    launch("lstm_window_backward", G_h, grid, block,
           (G_h, g_c, A, Cs, TC, _dense(W_hh), G_a, g_c0 if g_h0 is None else g_h0, g_c0, *sizes,
            int(need_h0)), shared_mem=shared)
    return g_h0, g_c0


# -- optim.cu ----------------------------------------------------------------------------------

def _update_group(name, ws, gs, states, scalars):
    """One launch of optim.cu's `name` over every parameter of a group; the new weights (new
    arrays).

    ws, gs: lists of weights and gradients; states: one list of arrays per state role
    (momentum buffers, ...), updated in place, or None for a role the step does not use.
    The kernel finds the arrays through a table of addresses, one host-to-device copy:
    per role the P addresses, then the P + 1 offsets of the parameters laid end to end.
    """
    like = ws[0]
    xp = devices.array_module(like)
    # one launch has one precision: mixed groups go to the reference
    _require(len(gs) == len(ws) and _alike(like, *ws, *gs)
             and all(g.shape == w.shape for g, w in zip(gs, ws)))
    for role in states:  # updated in place
        for state, w in zip(role or (), ws):
            _output(state, like, w.shape)
    ws, gs = [_dense(w) for w in ws], [_dense(g) for g in gs]
    new_ws = [xp.empty(w.shape, w.dtype) for w in ws]
    offsets = [0]
    for w in ws:
        offsets.append(offsets[-1] + w.size)
    roles = [ws, gs, *(role if role is not None else [None] * len(ws) for role in states), new_ws]
    table = np.array([_address(a) for role in roles for a in role] + offsets, dtype=np.uint64)
    if xp is not np:
        table = xp.asarray(table)  # the one copy to the GPU
    _launch_1d(name, like, offsets[-1], (table, len(ws), np.int64(offsets[-1]), *scalars))
    return new_ws


@wrapper
def sgd_step(ws, gs, bufs, lr, momentum, weight_decay, nesterov, dampening=0.0):
    """Primitive: sgd_step; the momentum buffers are updated in place."""
    _require(bufs is not None or not momentum)  # the reference says what is wrong
    bufs = bufs if momentum else None  # as the reference: buffers only with momentum
    new_ws = _update_group("sgd_step", ws, gs, [bufs],
                           (float(lr), float(momentum), float(weight_decay),
                            int(bool(nesterov)), int(bufs is not None), float(dampening)))
    return new_ws, bufs


@wrapper
def adam_step(ws, gs, ms, vs, t, lr, beta1, beta2, eps, weight_decay, max_vs=None):
    """Primitive: adam_step; m and v are updated in place. amsgrad (max_vs given) is not in
    the kernel: the reference runs it, on the GPU arrays (CuPy)."""
    _require(max_vs is None)
    new_ws = _update_group("adam_step", ws, gs, [ms, vs],
                           (float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
                            1 - beta1 ** t, 1 - beta2 ** t))  # the bias corrections, in double
    return new_ws, ms, vs, None


@wrapper
def adagrad_step(ws, gs, ss, lr, eps, weight_decay=0.0):
    """Primitive: adagrad_step; the sums of squares are updated in place."""
    return _update_group("adagrad_step", ws, gs, [ss],
                         (float(lr), float(eps), float(weight_decay))), ss
