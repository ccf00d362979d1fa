"""The CUDA path: loads kernels/*.cu and holds one launch wrapper per NumPy twin.

Each wrapper below has the name and the signature of a twin (ops.mm, functional._lstm,
optim.adam_step, ...) and returns the same values; backend.twin decides which of the
two runs. A wrapper that cannot handle a case (more broadcast axes than the kernel
takes, an `out=` array it cannot write in place, mixed dtypes) returns NotImplemented
before launching anything, and the twin runs instead.

Wrappers allocate with the array module of their inputs, so that they also run on NumPy
arrays: the tests replace `compiler` by tests/emulator.py's, which builds the same
kernel sources for the CPU. CuPy is imported through devices.cupy(), never here.
"""
import hashlib
import importlib.resources

import numpy as np

from . import devices, dispatch

KERNELS_DIR = importlib.resources.files("minigrad.kernels")
EMULATED = "emulated"  # the device key of NumPy arrays: kernels run by the tests' CPU emulator
THREADS = 256          # threads per block of the one-dimensional kernels
MAX_BLOCKS = 65535     # at most this many blocks; grid-stride loops cover any size with them

launches = 0   # how many kernels `launch` has started: the tests bound a training step's count
on_launch = []  # functions called with each launched kernel's name (e.g. "lstm_step_f32")

_modules = {}    # (device key, file) -> compiled module: each source compiled once per device
_functions = {}  # (device key, file, entry point) -> kernel function
_shared_limits = {}  # device key -> the most dynamic shared memory a block may have (bytes)
_opted_in = {}       # (device key, file, entry point) -> the dynamic shared memory it may have now

# A block's dynamic shared memory: up to 48 KiB as launched, more once the kernel opts in
# (max_dynamic_shared_size_bytes), up to the device's limit. The emulator's limit is an H100's.
SHARED_DEFAULT = 48 * 1024
EMULATED_SHARED_LIMIT = 227 * 1024


# -- loading and launching -----------------------------------------------------------------

def compiler(source, file):
    """Compile one kernel source (the text of kernels/`file`) into a module whose
    .get_function(name) gives its kernels: NVRTC, through cupy.RawModule.

    The tests replace this function by the CPU emulator's and call clear_cache().
    """
    cupy = devices.cupy()
    # CuPy caches compiled modules on disk by their source text, which does not contain the
    # headers (common.cuh, lstm.cuh): a comment with their hash makes an edit of one recompile.
    # `#line` keeps the line numbers of compiler errors those of the file.
    headers = hashlib.sha256()
    for header in sorted(KERNELS_DIR.iterdir(), key=lambda path: path.name):
        if header.name.endswith(".cuh"):
            headers.update(header.name.encode() + b"\0" + header.read_bytes())
    stamp = f"// headers {headers.hexdigest()[:16]}\n#line 1 \"{file}\"\n"
    return cupy.RawModule(code=stamp + source, options=("-std=c++17", f"-I{KERNELS_DIR}"))


def clear_cache():
    """Forget every compiled module and matmul's measurements (after replacing `compiler`)."""
    _modules.clear()
    _functions.clear()
    _shared_limits.clear()
    _opted_in.clear()
    _mm_choice.clear()


def _device_key(array):
    """Which device runs kernels on `array`: its GPU's number, or EMULATED for a NumPy array."""
    return EMULATED if isinstance(array, (np.ndarray, np.generic)) else array.device.id


def _module(file, device_key):
    """kernels/`file`, compiled for the device once and kept."""
    module = _modules.get((device_key, file))
    if module is None:
        module = compiler((KERNELS_DIR / file).read_text(), file)
        _modules[(device_key, file)] = module
    return module


def _function(file, entry, device_key):
    """The kernel `entry` of kernels/`file` on a device, looked up once and kept."""
    fn = _functions.get((device_key, file, entry))
    if fn is None:
        if device_key == EMULATED:
            fn = _module(file, device_key).get_function(entry)
        else:  # CuPy compiles and loads a RawModule on the current device, at its first kernel
            with devices.cupy().cuda.Device(device_key):
                fn = _module(file, device_key).get_function(entry)
        _functions[(device_key, file, entry)] = fn
    return fn


def _c_value(value, real):
    """A kernel argument as the C side expects it: a Python int becomes an int (np.int32;
    OverflowError past 2^31 - 1), a float the kernel's precision `real`. Arrays and NumPy
    integers pass as they are: a `long long` parameter gets an np.int64 from its wrapper."""
    if isinstance(value, (bool, int)):
        return np.int32(value)
    if isinstance(value, (float, np.floating)):
        return real(value)
    return value


def shared_memory_limit(device_key):
    """The most dynamic shared memory (bytes) one block may have on a device: the GPU's
    opt-in limit (227 KiB on an H100, 163 KiB on an A100), asked once."""
    limit = _shared_limits.get(device_key)
    if limit is None:
        if device_key == EMULATED:
            limit = EMULATED_SHARED_LIMIT
        else:
            runtime = devices.cupy().cuda.runtime
            limit = runtime.deviceGetAttribute(runtime.cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                               device_key)
        _shared_limits[device_key] = limit
    return limit


def launch(file, name, like, grid, block, args, *, shared_mem=0, count=True):
    """Run kernel `name` of kernels/`file` in `like`'s precision (entry point name_f32 for
    float32, name_f64 for float64) on `like`'s device: fn(grid, block, args).

    shared_mem: bytes of dynamic shared memory per block (common.cuh's dynamic_shared);
    past 48 KiB the kernel is opted in first, up to shared_memory_limit (the caller checks).
    count=False: not counted in `launches` nor shown to `on_launch` (matmul's timing runs,
    made once per shape, which are not part of the computation).
    """
    real = np.float32 if like.dtype == np.float32 else np.float64
    entry = name + ("_f32" if real is np.float32 else "_f64")
    device_key = _device_key(like)
    fn = _function(file, entry, device_key)
    args = tuple(_c_value(a, real) for a in args)
    if count:
        global launches
        launches += 1
        for hook in on_launch:
            hook(entry)
    if device_key == EMULATED or device_key == devices.cupy().cuda.runtime.getDevice():
        _run(fn, (device_key, file, entry), grid, block, args, shared_mem)
    else:  # a kernel runs on the current device: make it the arrays' for the launch
        with devices.cupy().cuda.Device(device_key):
            _run(fn, (device_key, file, entry), grid, block, args, shared_mem)


def _run(fn, key, grid, block, args, shared_mem):
    if not shared_mem:
        fn(grid, block, args)
        return
    if shared_mem > _opted_in.get(key, SHARED_DEFAULT):
        fn.max_dynamic_shared_size_bytes = shared_mem  # a driver call: once per kernel and size
        _opted_in[key] = shared_mem
    fn(grid, block, args, shared_mem=shared_mem)


def _launch_1d(file, name, like, n, args):
    """Launch a grid-stride kernel over n elements: THREADS per block, enough blocks for n up
    to MAX_BLOCKS. Nothing for n = 0 (CUDA refuses an empty grid)."""
    if n:
        launch(file, name, like, (min(-(-n // THREADS), MAX_BLOCKS),), (THREADS,), args)


# -- what the kernels accept -----------------------------------------------------------------

def _dense(a, shape=None):
    """a as the kernels read it: C-contiguous (a copy only if it is not), broadcast to `shape`."""
    if shape is not None and a.shape != tuple(shape):
        a = devices.array_module(a).broadcast_to(a, shape)  # raises ValueError as the twin would
    return a if a.flags.c_contiguous else a.copy()


def _alike(like, *arrays):
    """Whether every array is of like's kind (NumPy or CuPy), dtype and device: a kernel has
    one precision and runs on one device. (The twin promotes mixed dtypes, or says what is
    wrong; we leave those cases to it.)"""
    return all(type(a) is type(like) and a.dtype == like.dtype and a.device == like.device
               for a in arrays)


def _writable(out, shape, like):
    """Whether a kernel can write `out` in place: like's kind and dtype, `shape`, C-contiguous."""
    return _alike(like, out) and out.shape == tuple(shape) and out.flags.c_contiguous


def _outputs(like, outs, shapes):
    """The arrays a kernel writes: each given `out` (checked writable) or a new array.
    None if one of them cannot be written in place."""
    xp = devices.array_module(like)
    result = []
    for out, shape in zip(outs, shapes):
        if out is None:
            out = xp.empty(shape, like.dtype)
        elif not _writable(out, shape, like):
            return None
        result.append(out)
    return result


def _address(array):
    """Where an array's first element is: a GPU address, or a host address for the emulator.
    0 for None (an absent array)."""
    if array is None:
        return 0
    return array.ctypes.data if isinstance(array, np.ndarray) else array.data.ptr


# -- elementwise.cu ----------------------------------------------------------------------------

ACTIVATIONS = {"tanh": 0, "sigmoid": 1, "relu": 2, "exp": 3}  # common.cuh's enum
BINARY_OPS = {"add": 0, "sub": 1, "mul": 2, "div": 3}          # elementwise.cu's enum


def activation(x, name, out=None):
    """tanh, sigmoid, relu or exp of x, into `out` if given (out may be x itself: the kernel
    reads each element before writing it), else a new array. Primitive: activation."""
    if name not in ACTIVATIONS:
        return NotImplemented
    outs = _outputs(x, (out,), (x.shape,))
    if outs is None:
        return NotImplemented
    (y,) = outs
    _launch_1d("elementwise.cu", "activation", x, x.size, (_dense(x), y, np.int64(x.size), ACTIVATIONS[name]))
    return y


def activation_backward(g, saved, name, out=None):
    """dL/dx from g = dL/dy; saved is y (tanh, sigmoid, exp) or x (relu). Into `out` if given,
    else a new array. Primitive: activation_backward."""
    if name not in ACTIVATIONS or not _alike(g, saved):
        return NotImplemented
    shape = np.broadcast_shapes(g.shape, saved.shape)
    g, saved = _dense(g, shape), _dense(saved, shape)
    outs = _outputs(g, (out,), [shape])
    if outs is None:
        return NotImplemented
    (dx,) = outs
    _launch_1d("elementwise.cu", "activation_backward", g, dx.size,
               (g, saved, dx, np.int64(dx.size), ACTIVATIONS[name]))
    return dx


def _element_strides(a, shape):
    """a's strides, in elements, when broadcast to `shape`: 0 along the axes that broadcasting
    adds or stretches. None if a stride is not a whole number of elements."""
    if any(s % a.itemsize for s in a.strides):
        return None
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


def binary(x, y, op):
    """x op y for op in add, sub, mul, div, with NumPy broadcasting: a new C-contiguous array.
    Twin: ops.binary.

    The kernel takes up to 4 axes with a stride per axis and operand, so broadcast and
    strided views need no copy; more axes after merging: NotImplemented.
    """
    if op not in BINARY_OPS or not _alike(x, y):
        return NotImplemented
    shape = np.broadcast_shapes(x.shape, y.shape)  # ValueError if they do not broadcast, as the twin
    out = devices.array_module(x).empty(shape, x.dtype)
    if out.size == 0:
        return out
    strides = [_element_strides(x, shape), _element_strides(y, shape)]
    if None in strides:
        return NotImplemented
    dims = _collapse(shape, strides)
    if len(dims) > 4 or any(abs(s) >= 2**31 or n >= 2**31 for n, step in dims for s in step):
        return NotImplemented  # the kernel's sizes and strides are C ints
    dims = [(1, [0, 0])] * (4 - len(dims)) + dims  # pad at the front to (n0, n1, n2, n3)
    sizes = [n for n, _ in dims[1:]]  # the kernel derives n0 from the element count
    x_strides = [step[0] for _, step in dims]
    y_strides = [step[1] for _, step in dims]
    _launch_1d("elementwise.cu", "binary", x, out.size,
               (x, y, out, np.int64(out.size), BINARY_OPS[op], *sizes, *x_strides, *y_strides))
    return out


# -- matmul.cu ---------------------------------------------------------------------------------

TILE = 32  # matmul.cu's tile: each block computes TILE x TILE outputs with 32 x 8 threads
_mm_choice = {}  # (M, N, K, dtype, trans_x, trans_y, device) -> "kernel" or "cublas"


def _operand(a):
    """(array, trans) as mm's kernel reads an operand: a itself if C-contiguous; the array
    whose transpose a is (trans = 1) if that one is C-contiguous, as W.T is W; else a copy."""
    if a.flags.c_contiguous:
        return a, 0
    if a.T.flags.c_contiguous:
        return a.T, 1
    return a.copy(), 0


def _mm_launch(xa, ya, out, trans_x, trans_y, count=True, accumulate=0):
    M, N = out.shape
    K = xa.shape[0] if trans_x else xa.shape[1]
    grid = (-(-N // TILE), -(-M // TILE))
    launch("matmul.cu", "matmul", out, grid, (TILE, 8),
           (xa, ya, out, M, N, K, trans_x, trans_y, accumulate), count=count)


def _matrices(x, y):
    """Whether x @ y is a product of two matrices of one kind, dtype and device (else the
    twin raises dot's error, or promotes)."""
    return x.ndim == 2 and y.ndim == 2 and x.shape[1] == y.shape[0] and _alike(x, y)


def _tiled(x, y):
    """How the kernel reads x @ y, (xa, trans_x, ya, trans_y); None when cuBLAS (the twin's
    cupy.dot) computes it instead: more row tiles than a grid's y dimension holds, the path
    forced to "numpy", or "auto" measuring cuBLAS faster for the shape (with CUDA events,
    once per shapes, dtype, layout and device; NumPy arrays, the emulator's, always take
    the kernel). x, y: non-empty matrices that pass _matrices."""
    (M, K), N = x.shape, y.shape[1]
    path = dispatch.path("matmul")
    if -(-M // TILE) > 65535 or path == "numpy":
        return None
    xa, trans_x = _operand(x)
    ya, trans_y = _operand(y)
    if path == "auto" and not isinstance(x, np.ndarray):
        key = (M, N, K, x.dtype.char, trans_x, trans_y, x.device.id)
        if key not in _mm_choice:
            _mm_choice[key] = _faster_mm(x, y, xa, ya, trans_x, trans_y)
        if _mm_choice[key] == "cublas":
            return None
    return xa, trans_x, ya, trans_y


def matmul(x, y):
    """x @ y for 2-D x (M, K) and y (K, N): a new (M, N) array. Twin: ops.mm.
    dispatch.path("matmul") == "auto": the faster of our kernel and cuBLAS (see _tiled)."""
    if not _matrices(x, y):
        return NotImplemented
    xp = devices.array_module(x)
    (M, K), N = x.shape, y.shape[1]
    if M == 0 or N == 0 or K == 0:
        return xp.zeros((M, N), x.dtype)  # a sum of no products is 0
    tiled = _tiled(x, y)
    if tiled is None:
        return NotImplemented
    xa, trans_x, ya, trans_y = tiled
    out = xp.empty((M, N), x.dtype)
    _mm_launch(xa, ya, out, trans_x, trans_y)
    return out


def matmul_add(x, y, out):
    """out += x @ y in one launch (the product added as it is written); returns out.
    Twin: ops.mm_add. out: (M, N), C-contiguous, of x's dtype and device.

    When cuBLAS computes the product (see _tiled), the twin runs instead: cupy.dot and an
    addition, two launches.
    """
    if not _matrices(x, y) or not _writable(out, (x.shape[0], y.shape[1]), x):
        return NotImplemented
    if 0 in x.shape or 0 in y.shape:
        return out  # adding a sum of no products changes nothing
    tiled = _tiled(x, y)
    if tiled is None:
        return NotImplemented
    xa, trans_x, ya, trans_y = tiled
    _mm_launch(xa, ya, out, trans_x, trans_y, accumulate=1)
    return out


def _faster_mm(x, y, xa, ya, trans_x, trans_y, repeats=5):
    """"kernel" or "cublas": which computes x @ y faster here, by the median of `repeats`
    timings with CUDA events, after one warm-up run of each (compiling, cuBLAS's setup)."""
    cp = devices.cupy()
    out = cp.empty((x.shape[0], y.shape[1]), x.dtype)
    runs = {"kernel": lambda: _mm_launch(xa, ya, out, trans_x, trans_y, count=False),
            "cublas": lambda: cp.dot(x, y, out=out)}
    median = {}
    for name, run in runs.items():
        run()
        times = []
        for _ in range(repeats):
            start, stop = cp.cuda.Event(), cp.cuda.Event()
            start.record()
            run()
            stop.record()
            stop.synchronize()
            times.append(cp.cuda.get_elapsed_time(start, stop))
        median[name] = sorted(times)[repeats // 2]
    return "kernel" if median["kernel"] <= median["cublas"] else "cublas"


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


def sum_axes(a, axes, keepdims=False):
    """a summed over `axes` (a sorted tuple of non-negative ints), as a.sum(axis=axes,
    keepdims=keepdims): a new array. Twin: ops.sum_axes.

    Each run of consecutive axes is one launch that views the array as (A, R, C) and sums
    R away; runs are reduced last first, so that the earlier axes keep their numbers.
    Needs a C-contiguous input (else NotImplemented: CuPy's sum handles any strides).
    """
    if not a.flags.c_contiguous:
        return NotImplemented
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
            launch("reduce.cu", "sum_axes_rows", a, (A,), (THREADS,), (a, out, np.int64(A), np.int64(R)))
        else:                   # 32 outputs per block, 8 threads per output
            launch("reduce.cu", "sum_axes_cols", a, (-(-(A * C) // 32),), (32, 8),
                   (a, out, np.int64(A), np.int64(R), np.int64(C)))
        a, shape = out, shape[:start] + shape[stop:]
    return a.reshape(out_shape)


# -- loss.cu -----------------------------------------------------------------------------------

def softmax_xent(x, t):
    """Softmax cross-entropy of the rows of x (K, C) against classes t (K,): (losses, lse),
    each (K,). Twin: functional.softmax_xent.

    One block per row, of as many threads as C needs (a power of two, 32 to 256).
    A target outside [0, C) gives a NaN loss (the caller checks targets first).
    """
    if x.ndim != 2 or x.shape[1] == 0:
        return NotImplemented  # the twin raises: a maximum over no classes
    xp = devices.array_module(x)
    K, C = x.shape
    x, t = _dense(x), _dense(xp.asarray(t, dtype=np.int64))
    if t.shape != (K,):
        return NotImplemented
    losses, lse = xp.empty(K, x.dtype), xp.empty(K, x.dtype)
    if K:
        threads = min(256, max(32, 1 << (C - 1).bit_length()))  # the power of two >= C
        launch("loss.cu", "softmax_xent", x, (K,), (threads,), (x, t, losses, lse, K, C))
    return losses, lse


def softmax_xent_backward(x, t, lse, scale):
    """(softmax(x_k) - onehot(t_k)) scale_k for each row k of x (K, C): a new (K, C) array.
    Twin: functional.softmax_xent_backward."""
    if x.ndim != 2 or not _alike(x, lse, scale):
        return NotImplemented
    xp = devices.array_module(x)
    K, C = x.shape
    x, t = _dense(x), _dense(xp.asarray(t, dtype=np.int64), (K,))
    lse, scale = _dense(lse, (K,)), _dense(scale, (K,))
    grad = xp.empty((K, C), x.dtype)
    _launch_1d("loss.cu", "softmax_xent_backward", x, grad.size, (x, t, lse, scale, grad, K, C))
    return grad


# -- the cells' pointwise parts: elementwise.cu (Elman), lstm.cu, gru.cu -------------------------
#
# One thread per (batch row, hidden unit). Batches are (B, H) states and (B, G*H) gates;
# `out=` and `d=` arrays are written in place (the sequence ops pass views of their
# (T, B, ...) buffers), so those must be C-contiguous, of the right shape and dtype.
# The Elman cell's pointwise part is its activation alone: elementwise.cu's kernels, which
# read each element before writing it, so `out` may be the input.

def lstm_step(act, c, out=(None, None, None)):
    """The LSTM's pointwise part: activates act (B, 4H) = (i, f, g, o) IN PLACE, then
    c' = f c + i g, h' = o tanh(c'). Returns (h', c', tanh(c')), each (B, H), into `out`'s
    arrays where given. Twin: functional._lstm."""
    if act.ndim != 2 or act.shape[1] % 4 or not act.flags.c_contiguous or not _alike(act, c):
        return NotImplemented  # act is written in place: it must be C-contiguous
    B, H = act.shape[0], act.shape[1] // 4
    outs = _outputs(act, out, [(B, H)] * 3)
    if outs is None:
        return NotImplemented
    h_new, c_new, tc = outs
    _launch_1d("lstm.cu", "lstm_step", act, B * H, (act, _dense(c, (B, H)), h_new, c_new, tc, B, H))
    return h_new, c_new, tc


def lstm_step_backward(gh, gc, act, c, tc, d=None):
    """(dL/d(gates before activation) (B, 4H), into `d` if given; dL/dc (B, H)) from
    gh = dL/dh' and gc = the gradient c' gets directly, with act, c, tc as _lstm left them.
    Twin: functional._lstm_backward.

    The callers pass gc as a (B, H) array (zeros when nothing used c'); None or a scalar
    0 is taken as zero without reading it, another scalar is broadcast.
    """
    if act.ndim != 2 or act.shape[1] % 4 or not _alike(act, gh, c, tc):
        return NotImplemented
    xp = devices.array_module(act)
    B, H = act.shape[0], act.shape[1] // 4
    has_gc = not (gc is None or (np.isscalar(gc) and gc == 0))
    if has_gc:
        gc = xp.asarray(gc, dtype=act.dtype) if np.isscalar(gc) else gc
        if not _alike(act, gc):
            return NotImplemented
        gc = _dense(gc, (B, H))
    outs = _outputs(act, (d, None), [(B, 4 * H), (B, H)])
    if outs is None:
        return NotImplemented
    d, gc_prev = outs
    gh = _dense(gh, (B, H))
    _launch_1d("lstm.cu", "lstm_step_backward", act, B * H,
               (gh, gc if has_gc else gh,  # without gc the kernel reads nothing there: any array
                _dense(act), _dense(c, (B, H)), _dense(tc, (B, H)), d, gc_prev, B, H, int(has_gc)))
    return d, gc_prev


def gru_step(a_ih, a_hh, h, out=(None, None, None)):
    """The GRU's pointwise part from a_ih, a_hh (B, 3H) and h (B, H): (h', (r, z) side by
    side (B, 2H), the candidate n (B, H)), into `out` if given, else new arrays.
    Twin: functional._gru."""
    if a_hh.ndim != 2 or a_hh.shape[1] % 3 or not _alike(a_hh, a_ih, h):
        return NotImplemented
    B, H = a_hh.shape[0], a_hh.shape[1] // 3
    outs = _outputs(a_hh, out, [(B, H), (B, 2 * H), (B, H)])
    if outs is None:
        return NotImplemented
    h_new, rz, cand = outs
    _launch_1d("gru.cu", "gru_step", a_hh, B * H,
               (_dense(a_ih, a_hh.shape), _dense(a_hh), _dense(h, (B, H)), h_new, rz, cand, B, H))
    return h_new, rz, cand


def gru_step_backward(g, a_hh, rz, cand, h, d_ih=None, d_hh=None, gh=None):
    """(dL/d a_ih, dL/d a_hh, both (B, 3H) and into d_ih, d_hh if given; the gradient h gets
    directly through z (B, H), added into gh if given) from g = dL/dh'.
    Twin: functional._gru_backward."""
    if a_hh.ndim != 2 or a_hh.shape[1] % 3 or not _alike(a_hh, g, rz, cand, h):
        return NotImplemented
    B, H = a_hh.shape[0], a_hh.shape[1] // 3
    accumulate = int(gh is not None)
    outs = _outputs(a_hh, (d_ih, d_hh, gh), [(B, 3 * H), (B, 3 * H), (B, H)])
    if outs is None:
        return NotImplemented
    d_ih, d_hh, gh = outs
    _launch_1d("gru.cu", "gru_step_backward", a_hh, B * H,
               (_dense(g, (B, H)), _dense(a_hh), _dense(rz, (B, 2 * H)), _dense(cand, (B, H)),
                _dense(h, (B, H)), d_ih, d_hh, gh, B, H, accumulate))
    return d_ih, d_hh, gh


# -- window.cu: the recurrence of a whole window in one launch ----------------------------------
#
# One block per batch row, holding W_hh in shared memory for all T steps (see window.cu).
# A layer whose weights do not fit in a block's shared memory, or whose gates outnumber a
# block's 1024 threads, runs the step loop (the twin) instead, as does every call while the
# "cells" family is forced to NumPy.

def _window_plan(like, W_hh, gates, threads_per_unit, *arrays):
    """(B, H, block size, shared bytes) for a window kernel over like (T, B, ...), or None
    if it cannot run here (then the twin runs).

    like and `arrays` are the layer's (T, B, ...) buffers, read and written in place: they
    must be like's kind, dtype and device, and C-contiguous; W_hh (gates*H, H) may be any
    layout (it is read once, made dense). Shared memory holds what the forward needs, W_hh^T
    with a padding column (G H^2 + H numbers), the state (H) and the LSTM's gates (4H), and
    is asked for both ways so that a layer runs its window kernels both ways or neither.
    The LSTM's forward has a thread per gate.
    """
    if (like.ndim != 3 or not _alike(like, W_hh, *arrays)
            or not all(a.flags.c_contiguous for a in (like, *arrays))):
        return None
    B, H = like.shape[1], W_hh.shape[1]
    gate_values = gates * H if gates > 1 else 0  # the Elman cell's one gate is its state
    shared = (gates * H * H + 2 * H + gate_values) * like.itemsize
    if (dispatch.path("cells") == "numpy" or gates * H > 1024 or B == 0
            or shared > shared_memory_limit(_device_key(like))):
        return None
    return B, H, -(-threads_per_unit * H // 32) * 32, shared  # whole warps


def elman_window(A, Hs, W_hh, relu):
    """for t = 0 .. T-1: A[t] += Hs[t] W_hh^T; Hs[t + 1] = act(A[t]), in one launch.
    A: (T, B, H), Hs: (T + 1, B, H), W_hh: (H, H). Twin: functional._elman_window."""
    plan = _window_plan(A, W_hh, 1, 1, Hs)
    if plan is None:
        return NotImplemented
    B, H, block, shared = plan
    kind = ACTIVATIONS["relu" if relu else "tanh"]
    launch("window.cu", "elman_window", A, (B,), (block,),
           (A, Hs, _dense(W_hh), len(A), B, H, kind), shared_mem=shared)
    return Hs


def elman_window_backward(G, Hs, A, W_hh, relu, D, need_h0):
    """D[t] = (G[t] + D[t+1] W_hh) act'(.) for t = T-1 .. 0 in one launch; returns dL/dh0
    (B, H), or None without need_h0. G is not written. Twin: functional._elman_window_backward."""
    plan = _window_plan(G, W_hh, 1, 1, Hs, D)
    if plan is None:
        return NotImplemented
    B, H, block, shared = plan
    gh0 = devices.array_module(G).empty((B, H), G.dtype) if need_h0 else None
    kind = ACTIVATIONS["relu" if relu else "tanh"]  # relu' is read off h: h > 0 where a > 0
    launch("window.cu", "elman_window_backward", G, (B,), (block,),
           (G, Hs, _dense(W_hh), D, D if gh0 is None else gh0,  # without need_h0 nothing is written there
            len(G), B, H, kind, int(need_h0)), shared_mem=shared)
    return gh0


def lstm_window(A, Hs, Cs, TC, W_hh):
    """T LSTM steps in one launch: A (T, B, 4H) completed and activated in place; Hs, Cs
    (T + 1, B, H) and TC (T, B, H) filled in. Twin: functional._lstm_window."""
    plan = _window_plan(A, W_hh, 4, 4, Hs, Cs, TC)
    if plan is None:
        return NotImplemented
    B, H, block, shared = plan
    launch("window.cu", "lstm_window", A, (B,), (block,),
           (A, Hs, Cs, TC, _dense(W_hh), len(A), B, H), shared_mem=shared)
    return Hs


def lstm_window_backward(G, gc, A, Cs, TC, W_hh, D, need_h0):
    """Back through T LSTM steps in one launch: D (T, B, 4H) written; returns (dL/dh0 or
    None without need_h0, dL/dc0), each (B, H). G is not written.
    Twin: functional._lstm_window_backward."""
    plan = _window_plan(G, W_hh, 4, 1, A, Cs, TC, D)
    if plan is None or not _alike(G, gc):
        return NotImplemented
    B, H, block, shared = plan
    xp = devices.array_module(G)
    gh0 = xp.empty((B, H), G.dtype) if need_h0 else None
    gc0 = xp.empty((B, H), G.dtype)
    launch("window.cu", "lstm_window_backward", G, (B,), (block,),
           (G, _dense(gc, (B, H)), A, Cs, TC, _dense(W_hh), D, gc0 if gh0 is None else gh0, gc0,
            len(G), B, H, int(need_h0)), shared_mem=shared)
    return gh0, gc0


# -- optim.cu ----------------------------------------------------------------------------------

def _update_group(name, ws, gs, states, scalars):
    """One launch of optim.cu's `name` over every parameter of a group; the new weights (new
    arrays), or NotImplemented.

    ws, gs: lists of weights and gradients; states: one list of arrays per state role
    (momentum buffers, ...), updated in place, or None for a role the step does not use.
    The kernel finds the arrays through a table of addresses, one host-to-device copy:
    per role the P addresses, then the P + 1 offsets of the parameters laid end to end.
    """
    like = ws[0]
    xp = devices.array_module(like)
    if len(gs) != len(ws) or not _alike(like, *ws, *gs):
        return NotImplemented  # one launch has one precision: mixed groups go to the twin
    for k, w in enumerate(ws):
        if gs[k].shape != w.shape:
            return NotImplemented
        if any(role is not None and not _writable(role[k], w.shape, like) for role in states):
            return NotImplemented
    ws, gs = [_dense(w) for w in ws], [_dense(g) for g in gs]
    new_ws = [xp.empty(w.shape, w.dtype) for w in ws]
    offsets = [0]
    for w in ws:
        offsets.append(offsets[-1] + w.size)
    roles = [ws, gs, *(role if role is not None else [None] * len(ws) for role in states), new_ws]
    table = np.array([_address(a) for role in roles for a in role] + offsets, dtype=np.uint64)
    if xp is not np:
        table = xp.asarray(table)  # the one copy to the GPU
    _launch_1d("optim.cu", name, like, offsets[-1], (table, len(ws), np.int64(offsets[-1]), *scalars))
    return new_ws


def sgd_step(ws, gs, bufs, lr, momentum, weight_decay, nesterov):
    """SGD on a group: (new weights, the momentum buffers updated in place, or None without
    momentum). Twin: optim.sgd_step."""
    if momentum and bufs is None:
        return NotImplemented  # the twin says what is wrong
    bufs = bufs if momentum else None  # as the twin: buffers only with momentum
    new_ws = _update_group("sgd_step", ws, gs, [bufs],
                           (float(lr), float(momentum), float(weight_decay),
                            int(bool(nesterov)), int(bufs is not None)))
    return NotImplemented if new_ws is NotImplemented else (new_ws, bufs)


def adam_step(ws, gs, ms, vs, t, lr, beta1, beta2, eps, weight_decay):
    """Adam's step t (from 1) on a group: (new weights, m and v updated in place).
    Twin: optim.adam_step."""
    new_ws = _update_group("adam_step", ws, gs, [ms, vs],
                           (float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
                            1 - beta1 ** t, 1 - beta2 ** t))  # the bias corrections, in double
    return NotImplemented if new_ws is NotImplemented else (new_ws, ms, vs)


def adagrad_step(ws, gs, ss, lr, eps):
    """Adagrad on a group: (new weights, the sums of squares updated in place).
    Twin: optim.adagrad_step."""
    new_ws = _update_group("adagrad_step", ws, gs, [ss], (float(lr), float(eps)))
    return NotImplemented if new_ws is NotImplemented else (new_ws, ss)
