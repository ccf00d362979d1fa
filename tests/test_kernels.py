"""Every CUDA kernel wrapper in minigrad.backends.cuda against its NumPy reference (backends.PRIMITIVES).

Each test runs on two devices through one fixture:
  - "emulated": the kernels' C source compiled for the CPU by tests/emulator.py, run on
    NumPy arrays; on every machine with g++. Kernels with __syncthreads() also run with
    the threads of each block resumed in reverse ("emulated-reversed"): a missing barrier
    changes their result.
  - "cuda": CuPy arrays on a real GPU; skipped, with the reason, where there is none.

Inputs are random with odd sizes (1, 3, 17, 33, 67, ...), so that partial blocks and
tiles are hit. The arrays that wrappers allocate start as NaN (np.empty and cupy.empty
are replaced; on the emulator every array also lies between guard zones), and out=/d=
arguments are NaN-filled views into bigger buffers: a kernel that leaves part of its
output unwritten, or writes next to it, fails. Every call must launch a kernel: a wrapper
that fell back to its reference (NotImplemented) fails too.
"""
import numpy as np
import pytest

import emulator
import minigrad  # noqa: F401  (registers every primitive in backends.PRIMITIVES)
from minigrad import backends
from minigrad.backends import cuda

F32, F64 = np.float32, np.float64
DTYPES = [F32, F64]
TESTED = set()  # the wrappers this file tests, checked against backends.PRIMITIVES


def covers(*names):
    """Record that the decorated test is the test of these wrappers."""
    TESTED.update(names)
    return lambda test: test


def close(actual, expected, dtype, scale=1.0):
    """Kernel result against the reference's: same shape and dtype, values within what the
    dtype's roundings allow. scale: the size of the terms a result sums (matmul, sums), for atol."""
    assert actual.shape == expected.shape, f"shape: expected {expected.shape}, got {actual.shape}"
    assert actual.dtype == dtype, f"dtype: expected {np.dtype(dtype)}, got {actual.dtype}"
    rtol, atol = (1e-5, 1e-6) if dtype == F32 else (1e-12, 1e-12)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * max(scale, 1.0))


def reference(name):
    """The NumPy function of the kernel `name`."""
    return backends.PRIMITIVES[name][1]


# -- the devices --------------------------------------------------------------------------
#
# On the emulator, every array a test gives a wrapper, and every array a wrapper allocates
# (np.empty is replaced for the test), is NaN-filled and lies between two guard zones that
# run() checks after each call. The emulator fences the arrays passed to a kernel itself;
# these zones also catch writes through addresses that a kernel finds in a table (optim.cu),
# which would otherwise corrupt the heap.

_real_empty = np.empty
_fenced = []  # (buffer, zone number) of every fenced array of the running test


def fenced_empty(shape, dtype=float, order="C", **kwargs):
    """np.empty's array, NaN-filled, in the middle of a buffer with guard zones on both sides."""
    dtype = np.dtype(dtype)
    if order != "C" or kwargs or dtype.kind not in "fiucb" or dtype.itemsize == 0:
        return _real_empty(shape, dtype, order, **kwargs)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    zone = 100 + 2 * len(_fenced)  # numbers apart from the emulator's own zones (0, 1, ...)
    buffer = _real_empty(size + 2 * emulator.GUARD, np.uint8)
    buffer[:emulator.GUARD] = emulator.guard_zone(zone)
    buffer[-emulator.GUARD:] = emulator.guard_zone(zone + 1)
    inside = buffer[emulator.GUARD:emulator.GUARD + size]
    inside[...] = 0xFF  # NaN
    _fenced.append((buffer, zone))
    return inside.view(dtype).reshape(shape)


def check_fences():
    for buffer, zone in _fenced:
        before, after = buffer[:emulator.GUARD], buffer[-emulator.GUARD:]
        changed = (np.count_nonzero(before != emulator.guard_zone(zone)),
                   np.count_nonzero(after != emulator.guard_zone(zone + 1)))
        assert not any(changed), (f"a kernel wrote next to an array of {buffer.size - 2 * emulator.GUARD}"
                                  f" bytes: {changed[0]} bytes before it, {changed[1]} after")


def _nan_empty(real_empty):
    """cupy.empty whose arrays come filled with ones bits (NaN), as fenced_empty's."""
    def empty(*args, **kwargs):
        a = real_empty(*args, **kwargs)
        if a.size and a.dtype.kind in "fiucb":
            a.reshape(-1).view(np.uint8).fill(0xFF)
        return a
    return empty


@pytest.fixture
def emulated(emulated_kernels, monkeypatch):
    """minigrad.backends.cuda with its kernels built for the CPU (conftest's emulated_kernels): the
    wrappers then run on NumPy arrays. The arrays they allocate start as NaN, between guard
    zones."""
    monkeypatch.setattr(np, "empty", fenced_empty)
    _fenced.clear()
    yield
    _fenced.clear()


class Device:
    """Where a test runs the wrappers: put(a) gives them a copy of a NumPy array, get(a)
    brings a result back as NumPy."""

    def __init__(self, name, xp):
        self.name, self.xp = name, xp

    def empty(self, shape, dtype):
        """A NaN-filled array (fenced on the emulator): what out=/d= views are cut from."""
        return fenced_empty(shape, dtype) if self.xp is np else _nan_empty(self.xp.empty)(shape, dtype)

    def put(self, a):
        if a is None:
            return None
        out = self.empty(a.shape, a.dtype)
        out[...] = self.xp.asarray(a)
        return out

    def get(self, a):
        return backends.to_numpy(a)


def _device(request, monkeypatch):
    if request.param.startswith("emulated"):
        request.getfixturevalue("emulated")
        monkeypatch.setattr(emulator, "reverse_threads", request.param == "emulated-reversed")
        return Device(request.param, np)
    try:
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no CuPy, no driver, no device
        pytest.skip(f"no usable GPU for the cuda case: {type(e).__name__}: {e}")
    if count == 0:
        pytest.skip("no usable GPU for the cuda case: CuPy sees no device")
    monkeypatch.setattr(cupy, "empty", _nan_empty(cupy.empty))
    _fenced.clear()
    cuda.clear_cache()
    request.addfinalizer(cuda.clear_cache)
    return Device("cuda", cupy)


@pytest.fixture(params=["emulated", "cuda"])
def device(request, monkeypatch):
    return _device(request, monkeypatch)


@pytest.fixture(params=["emulated", "emulated-reversed", "cuda"])
def device_sync(request, monkeypatch):
    """`device` for kernels with __syncthreads(): also with the threads in reverse order."""
    return _device(request, monkeypatch)


def run(name, *args, **kwargs):
    """minigrad.backends.cuda.<name>(*args, **kwargs), which must launch at least one kernel."""
    before = cuda.launches
    result = getattr(cuda, name)(*args, **kwargs)
    assert result is not NotImplemented, f"cuda.{name} returned NotImplemented: the reference would run"
    assert cuda.launches > before, f"cuda.{name} launched no kernel"
    check_fences()
    return result


def test_every_primitive_has_a_wrapper_and_a_test():
    assert backends.PRIMITIVES, "backends.PRIMITIVES is empty: no primitive registered"
    for name, (family, _) in backends.PRIMITIVES.items():
        assert callable(getattr(cuda, name, None)), f"primitive {name} ({family}) has no wrapper cuda.{name}"
        assert name in TESTED, f"primitive {name} ({family}) has no test in {__name__}"


# -- elementwise.cu --------------------------------------------------------------------------

SHAPES = [(1,), (3,), (17, 33), (2, 3, 67)]
ACTIVATIONS = ["tanh", "sigmoid", "relu", "exp"]


def inputs(rng, shape, dtype, scale=3.0):
    """Normal numbers with, where there is room, exact zeros and the sigmoid's far tails."""
    x = scale * rng.standard_normal(shape)
    flat = x.reshape(-1)
    flat[::7] = 0.0
    flat[3::11] = 40.0
    flat[5::13] = -40.0
    return x.astype(dtype)


@covers("activation")
@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + ["transposed"])
def test_activation(device, rng, shape, dtype, name):
    x = inputs(rng, (33, 17), dtype).T if shape == "transposed" else inputs(rng, shape, dtype)
    y = run("activation", device.put(x), name)
    close(device.get(y), reference("activation")(x.copy(), name), dtype)


@covers("activation_backward")
@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_activation_backward(device, rng, shape, dtype, name):
    x = inputs(rng, shape, dtype)
    saved = x if name == "relu" else reference("activation")(x, name)  # relu reads x, the others y
    g = rng.standard_normal(shape).astype(dtype)
    dx = run("activation_backward", device.put(g), device.put(saved), name)
    close(device.get(dx), reference("activation_backward")(g, saved, name), dtype)


BROADCAST_PAIRS = [((5, 13, 24, 16), (5, 1, 24, 1)), ((4, 1), (4, 5)), ((3,), (2, 3)),
                   ((2, 3), (3,)), ((1,), (7,)), ((17, 33), (17, 33)), ((3, 1, 5), (1, 4, 1)),
                   ((2, 3, 4, 5), (5,)), ((67,), (1,))]


@covers("binary")
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", BROADCAST_PAIRS, ids=str)
def test_binary(device, rng, shapes, dtype, op):
    x = rng.standard_normal(shapes[0]).astype(dtype)
    y = (rng.uniform(0.5, 2.0, shapes[1]) * rng.choice([-1, 1], shapes[1])).astype(dtype)  # no 0: div
    out = run("binary", device.put(x), device.put(y), op)
    close(device.get(out), reference("binary")(x, y, op), dtype)


VIEWS = {  # x, y from a (35, 33) and b (33, 35): views the kernel reads through strides
    "x transposed": lambda a, b, xp: (a.T, b),
    "y reversed": lambda a, b, xp: (a.T, b[::-1, ::-1]),
    "y every other": lambda a, b, xp: (a[:, :17], b.T[:, ::2]),
    "y broadcast row": lambda a, b, xp: (a, xp.broadcast_to(b.T[:1], a.shape)),
    "x a column": lambda a, b, xp: (a[:, 4:5], b.T),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("view", VIEWS)
def test_binary_reads_views_through_their_strides(device, rng, dtype, view):
    a = device.put(rng.standard_normal((35, 33)).astype(dtype))
    b = device.put(rng.standard_normal((33, 35)).astype(dtype))
    x, y = VIEWS[view](a, b, device.xp)
    expected = reference("binary")(device.get(x), device.get(y), "sub")
    close(device.get(run("binary", x, y, "sub")), expected, dtype)


# -- reduce.cu -------------------------------------------------------------------------------

SUMS = [((1,), (0,)), ((7,), (0,)), ((1000,), (0,)), ((3, 5), (0,)), ((3, 5), (1,)),
        ((3, 5), (0, 1)), ((3, 300), (1,)), ((300, 3), (0,)), ((2, 3, 4), (0, 2)),
        ((4, 33, 2), (1,)), ((5, 13, 24, 16), (1, 3)), ((5, 13, 24, 16), (0, 1, 2, 3)),
        ((67, 33), (1,))]


@covers("sum_axes")
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, axes", SUMS, ids=str)
def test_sum_axes(device_sync, rng, shape, axes, dtype, keepdims):
    a = rng.standard_normal(shape).astype(dtype)
    out = run("sum_axes", device_sync.put(a), axes, keepdims)
    scale = np.abs(a).sum(axis=axes).max()
    close(device_sync.get(out), reference("sum_axes")(a, axes, keepdims), dtype, scale)


# -- matmul.cu -------------------------------------------------------------------------------

@covers("matmul")
@pytest.mark.parametrize("layout", ["x y", "x.T y", "x y.T", "x.T y.T", "x sliced"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M, K, N", [(1, 1, 1), (3, 17, 5), (33, 67, 17), (67, 33, 65), (1, 40, 3)])
def test_matmul(device_sync, rng, M, K, N, dtype, layout):
    """Inner sizes that are no multiple of the 32-wide tile; transposed views (W.T, g.T)
    that the kernel reads in place, and a strided one that the wrapper copies."""
    x = rng.standard_normal((M, K)).astype(dtype)
    y = rng.standard_normal((K, N)).astype(dtype)
    dx = device_sync.put(x.T.copy()).T if "x.T" in layout else device_sync.put(x)
    dy = device_sync.put(y.T.copy()).T if "y.T" in layout else device_sync.put(y)
    if layout == "x sliced":  # every other column of a wider array
        wide = np.repeat(x, 2, axis=1)
        wide[:, 1::2] = np.nan
        dx = device_sync.put(wide)[:, ::2]
    with backends.using(matmul="kernel"):  # on a GPU, "auto" may pick cuBLAS for the shape
        out = run("matmul", dx, dy)
    close(device_sync.get(out), reference("matmul")(x, y), dtype, scale=(np.abs(x) @ np.abs(y)).max())


@covers("matmul_add")
@pytest.mark.parametrize("layout", ["x y", "x y.T"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M, K, N", [(1, 1, 1), (3, 17, 5), (33, 67, 17)])
def test_matmul_add(device_sync, rng, M, K, N, dtype, layout):
    """out += x @ y into a time step's view of a buffer (as the sequence ops add the recurrent
    product into the gates): added to what was there, nothing written outside the view."""
    x = rng.standard_normal((M, K)).astype(dtype)
    y = rng.standard_normal((K, N)).astype(dtype)
    before = rng.standard_normal((M, N)).astype(dtype)
    dy = device_sync.put(y.T.copy()).T if "y.T" in layout else device_sync.put(y)
    buffer, view = in_buffer(device_sync, before)
    with backends.using(matmul="kernel"):  # on a GPU, "auto" may pick cuBLAS for the shape
        out = run("matmul_add", device_sync.put(x), dy, view)
    assert _same(out, view), "not written into out="
    assert_only_step_written(device_sync, buffer)
    close(device_sync.get(out), reference("matmul_add")(x, y, before.copy()), dtype,
          scale=(np.abs(x) @ np.abs(y)).max() + np.abs(before).max())


# -- loss.cu ---------------------------------------------------------------------------------

LOSS_SHAPES = [(1, 1), (3, 5), (17, 33), (5, 300), (2, 1000)]


@covers("softmax_xent")
@pytest.mark.parametrize("targets", [np.int64, np.int32])
@pytest.mark.parametrize("logit_scale", [1.0, 30.0])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("K, C", LOSS_SHAPES)
def test_softmax_xent(device_sync, rng, K, C, dtype, logit_scale, targets):
    x = (logit_scale * rng.standard_normal((K, C))).astype(dtype)
    t = rng.integers(0, C, K).astype(targets)
    losses, lse = run("softmax_xent", device_sync.put(x), device_sync.put(t))
    expected_losses, expected_lse = reference("softmax_xent")(x, t)
    close(device_sync.get(losses), expected_losses, dtype, scale=logit_scale)
    close(device_sync.get(lse), expected_lse, dtype, scale=logit_scale)


@covers("softmax_xent_backward")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("K, C", LOSS_SHAPES)
def test_softmax_xent_backward(device, rng, K, C, dtype):
    x = (3 * rng.standard_normal((K, C))).astype(dtype)
    t = rng.integers(0, C, K)
    scale = rng.standard_normal(K).astype(dtype)
    grad = run("softmax_xent_backward", *map(device.put, (x, t, scale)))
    close(device.get(grad), reference("softmax_xent_backward")(x, t, scale), dtype)


# -- the cells' pointwise parts: elementwise.cu (Elman), lstm.cu, gru.cu -----------------------
#
# The sequence ops call these with out=/d= views of their (T, B, ...) buffers, and with
# inputs that are views of them: so do the tests ("views"), and check that nothing but the
# view was written. Step 1 of T = 3 is the one used.

CELL_SHAPES = [(1, 1), (3, 17), (5, 67), (2, 130)]  # (B, H): B * H and 4H past a block of 256
STEP = 1


def in_buffer(device, a, T=3):
    """a placed at step STEP of a NaN-filled (T, ...) buffer: (the buffer, the view)."""
    buffer = device.empty((T,) + a.shape, a.dtype)
    buffer[STEP] = device.put(a)
    return buffer, buffer[STEP]


def assert_only_step_written(device, buffer):
    """The other steps still hold their ones bits (bits, not isnan: a NaN read from past
    another array differs from them)."""
    others = np.delete(device.get(buffer), STEP, axis=0)
    assert (others.view(np.uint8) == 0xFF).all(), "a kernel wrote outside the step's view of its buffer"


# The Elman cell's pointwise part is activation (tanh or relu) into out=: a new array, a
# view of a (T, B, H) buffer (rnn's Hs[t + 1]), or the pre-activation itself (rnn_cell's).

@covers("activation")
@pytest.mark.parametrize("out", ["new", "view", "in place"])
@pytest.mark.parametrize("kind", ["tanh", "relu"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, H", CELL_SHAPES)
def test_elman_activation_into_out(device, rng, B, H, dtype, kind, out):
    a = inputs(rng, (B, H), dtype)
    expected = reference("activation")(a.copy(), kind)
    if out == "new":
        h_new = run("activation", device.put(a), kind)
    elif out == "view":
        buffer = device.empty((3, B, H), dtype)
        h_new = run("activation", device.put(a), kind, out=buffer[STEP])
        assert _same(h_new, buffer[STEP]), "not written into out="
        assert_only_step_written(device, buffer)
    else:  # rnn_cell's: the pre-activation overwritten
        da = device.put(a)
        h_new = run("activation", da, kind, out=da)
        close(device.get(da), expected, dtype)
    close(device.get(h_new), expected, dtype)


@covers("activation_backward")
@pytest.mark.parametrize("out", ["new", "view"])
@pytest.mark.parametrize("kind", ["tanh", "relu"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, H", CELL_SHAPES)
def test_elman_activation_backward_into_out(device, rng, B, H, dtype, kind, out):
    a = inputs(rng, (B, H), dtype)
    h_new = reference("activation")(a.copy(), kind)
    saved = a if kind == "relu" else h_new  # relu' reads the input, tanh' the output
    g = rng.standard_normal((B, H)).astype(dtype)
    args = [device.put(v) for v in (g, saved)]
    if out == "new":
        da = run("activation_backward", *args, kind)
    else:  # rnn's: D[t]
        D = device.empty((3, B, H), dtype)
        da = run("activation_backward", *args, kind, out=D[STEP])
        assert _same(da, D[STEP]), "not written into out="
        assert_only_step_written(device, D)
    close(device.get(da), reference("activation_backward")(g, saved, kind), dtype)


@covers("lstm_step")
@pytest.mark.parametrize("layout", ["new", "views"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, H", CELL_SHAPES)
def test_lstm(device, rng, B, H, dtype, layout):
    act = inputs(rng, (B, 4 * H), dtype, scale=2.0)
    c = rng.standard_normal((B, H)).astype(dtype)
    expected_act = act.copy()  # the reference activates its act in place, as the kernel does
    expected = reference("lstm_step")(expected_act, c.copy())
    if layout == "new":
        d_act = device.put(act)
        got = run("lstm_step", d_act, device.put(c))
    else:  # lstm's: act = A[t], c = Cs[t], out = (Hs[t + 1], Cs[t + 1], TC[t])
        A, d_act = in_buffer(device, act)
        Cs, d_c = in_buffer(device, c, T=4)
        Hs, TC = device.empty((4, B, H), dtype), device.empty((3, B, H), dtype)
        got = run("lstm_step", d_act, d_c, out=(Hs[STEP + 1], Cs[STEP + 1], TC[STEP]))
        for view, array in zip(got, (Hs[STEP + 1], Cs[STEP + 1], TC[STEP])):
            assert device.get(view).shape == (B, H) and _same(view, array), "not written into out="
        assert_only_step_written(device, A)
        assert_only_step_written(device, TC)
        for k in (0, 1, 3):
            assert (device.get(Hs[k]).view(np.uint8) == 0xFF).all(), "a kernel wrote outside Hs[t + 1]"
        for k in (0, 3):
            assert (device.get(Cs[k]).view(np.uint8) == 0xFF).all(), "a kernel wrote outside Cs[t + 1]"
        close(device.get(d_c), c, dtype)  # the state read, not written
    close(device.get(d_act), expected_act, dtype)
    for a, b in zip(got, expected):  # h', c', tanh(c')
        close(device.get(a), b, dtype)


def _same(a, b):
    """Whether two arrays are the same memory (a view returned as the out= it was given)."""
    if isinstance(a, np.ndarray):
        return a.ctypes.data == b.ctypes.data and a.shape == b.shape
    return a.data.ptr == b.data.ptr and a.shape == b.shape


@covers("lstm_step_backward")
@pytest.mark.parametrize("gc", ["array", "None", "0"])
@pytest.mark.parametrize("d", ["new", "view"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, H", CELL_SHAPES)
def test_lstm_backward(device, rng, B, H, dtype, d, gc):
    act = inputs(rng, (B, 4 * H), dtype, scale=2.0)
    c = rng.standard_normal((B, H)).astype(dtype)
    _, _, tc = reference("lstm_step")(act, c)  # act is now activated, as the backward reads it
    gh = rng.standard_normal((B, H)).astype(dtype)
    g_c = {"array": rng.standard_normal((B, H)).astype(dtype), "None": None, "0": 0}[gc]
    expected_d, expected_gc = reference("lstm_step_backward")(gh, 0 if g_c is None else g_c, act, c, tc)
    args = [device.put(gh), g_c if gc != "array" else device.put(g_c), *map(device.put, (act, c, tc))]
    if d == "new":
        got_d, got_gc = run("lstm_step_backward", *args)
    else:  # lstm's: out = G_a[t]
        D = device.empty((3, B, 4 * H), dtype)
        got_d, got_gc = run("lstm_step_backward", *args, out=D[STEP])
        assert _same(got_d, D[STEP]), "not written into out="
        assert_only_step_written(device, D)
    close(device.get(got_d), expected_d, dtype)
    close(device.get(got_gc), expected_gc, dtype)


@covers("gru_step")
@pytest.mark.parametrize("layout", ["new", "views", "views and out="])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, H", CELL_SHAPES)
def test_gru(device, rng, B, H, dtype, layout):
    a_ih = inputs(rng, (B, 3 * H), dtype, scale=2.0)
    a_hh = inputs(rng, (B, 3 * H), dtype, scale=2.0)
    h = rng.standard_normal((B, H)).astype(dtype)
    expected = reference("gru_step")(a_ih.copy(), a_hh.copy(), h.copy())
    if layout == "new":
        got = run("gru_step", *map(device.put, (a_ih, a_hh, h)))
    else:  # gru's: a_ih = A_ih[t], a_hh = A_hh[t], h = Hs[t]; out = (Hs[t + 1], RZ[t], N[t])
        views = [in_buffer(device, a)[1] for a in (a_ih, a_hh, h)]
        if layout == "views":
            got = run("gru_step", *views)
        else:
            buffers = [device.empty((3, B, n), dtype) for n in (H, 2 * H, H)]
            got = run("gru_step", *views, out=tuple(b[STEP] for b in buffers))
            for buffer, g in zip(buffers, got):
                assert _same(g, buffer[STEP]), "not written into out="
                assert_only_step_written(device, buffer)
    for a, b in zip(got, expected):
        close(device.get(a), b, dtype)


@covers("gru_step_backward")
@pytest.mark.parametrize("d", ["new", "views", "views, gh added into"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, H", CELL_SHAPES)
def test_gru_backward(device, rng, B, H, dtype, d):
    a_ih = inputs(rng, (B, 3 * H), dtype, scale=2.0)
    a_hh = inputs(rng, (B, 3 * H), dtype, scale=2.0)
    h = rng.standard_normal((B, H)).astype(dtype)
    _, rz, cand = reference("gru_step")(a_ih, a_hh, h)
    g = rng.standard_normal((B, H)).astype(dtype)
    expected = reference("gru_step_backward")(g, a_hh, rz, cand, h)
    args = [device.put(a) for a in (g, a_hh, rz, cand, h)]
    if d == "new":
        got = run("gru_step_backward", *args)
    else:  # gru's: d_ih = D_ih[t], d_hh = D_hh[t], and the direct gradient added into G[t - 1]
        D_ih, D_hh = device.empty((3, B, 3 * H), dtype), device.empty((3, B, 3 * H), dtype)
        gh = None
        if "added" in d:
            before = rng.standard_normal((B, H)).astype(dtype)
            G, gh = in_buffer(device, before)
            expected = expected[:2] + (expected[2] + before,)
        got = run("gru_step_backward", *args, g_a_ih=D_ih[STEP], g_a_hh=D_hh[STEP], g_h=gh)
        assert _same(got[0], D_ih[STEP]) and _same(got[1], D_hh[STEP]), "not written into g_a_ih=, g_a_hh="
        assert_only_step_written(device, D_ih)
        assert_only_step_written(device, D_hh)
        if gh is not None:
            assert _same(got[2], gh), "not added into gh="
            assert_only_step_written(device, G)
    for a, b in zip(got, expected):
        close(device.get(a), b, dtype)


# -- window.cu -------------------------------------------------------------------------------------
#
# A whole window in one launch, against the step loops. (T, B, H): a single step, odd sizes,
# gates past a warp, and weights past the 48 KiB a block has without opting in (Elman 130,
# LSTM 70: 66 KiB and 77 KiB in float32). The buffers the kernels fill start as NaN, and
# Hs[0] (h0), Cs[0] (c0) and G must come out as they went in.

WINDOWS = [(1, 1, 1), (4, 3, 17), (3, 2, 67)]
WIDE = {"elman_window": (2, 2, 130), "lstm_window": (2, 2, 70)}


def window_inputs(rng, T, B, H, gates, dtype):
    """Input projections A (T, B, gates*H), the first state(s) and W_hh (gates*H, H), scaled
    so that the recurrence neither explodes nor dies out over a few steps."""
    A = inputs(rng, (T, B, gates * H), dtype, scale=1.0)
    h0, c0 = (rng.standard_normal((B, H)).astype(dtype) for _ in range(2))
    W = (rng.standard_normal((gates * H, H)) / np.sqrt(H)).astype(dtype)
    return A, h0, c0, W


def states(device, first, T, dtype):
    """A NaN-filled (T + 1, B, H) buffer on the device with `first` at [0], as the layers make."""
    buffer = device.empty((T + 1,) + first.shape, dtype)
    buffer[0] = device.put(first)
    return buffer


def elman_window_case(rng, T, B, H, dtype, relu):
    """The forward's inputs and the reference's results: (A, h0, W), (A completed, Hs)."""
    A, h0, _, W = window_inputs(rng, T, B, H, 1, dtype)
    Hs = np.empty((T + 1, B, H), dtype)
    Hs[0] = h0
    A_done = A.copy()
    reference("elman_window")(A_done, Hs, W, relu)
    return (A, h0, W), (A_done, Hs)


@covers("elman_window")
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T, B, H", WINDOWS + [WIDE["elman_window"]])
def test_elman_window(device_sync, rng, T, B, H, dtype, relu):
    (A, h0, W), (A_done, Hs_expected) = elman_window_case(rng, T, B, H, dtype, relu)
    dA, dHs = device_sync.put(A), states(device_sync, h0, T, dtype)
    got = run("elman_window", dA, dHs, device_sync.put(W), relu)
    assert _same(got, dHs), "Hs is not filled in place"
    close(device_sync.get(dA), A_done, dtype, scale=H)         # the completed pre-activations
    close(device_sync.get(dHs), Hs_expected, dtype, scale=H)   # Hs[0] = h0 unchanged, h_1..h_T


@covers("elman_window_backward")
@pytest.mark.parametrize("need_h0", [True, False])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T, B, H", WINDOWS + [WIDE["elman_window"]])
def test_elman_window_backward(device_sync, rng, T, B, H, dtype, relu, need_h0):
    (_, _, W), (A, Hs) = elman_window_case(rng, T, B, H, dtype, relu)
    G = rng.standard_normal((T, B, H)).astype(dtype)
    D = np.empty((T, B, H), dtype)
    gh0 = reference("elman_window_backward")(G.copy(), Hs, A, W, relu, D, need_h0)
    dG, dD = device_sync.put(G), device_sync.empty((T, B, H), dtype)
    got = run("elman_window_backward", dG, *map(device_sync.put, (Hs, A, W)), relu, dD, need_h0)
    close(device_sync.get(dD), D, dtype, scale=H)
    assert (got is None) == (not need_h0)
    if need_h0:
        close(device_sync.get(got), gh0, dtype, scale=H)
    np.testing.assert_array_equal(device_sync.get(dG), G, err_msg="G was written")


def lstm_window_case(rng, T, B, H, dtype):
    """The forward's inputs and the reference's results: (A, h0, c0, W), (A activated, Hs, Cs, TC)."""
    A, h0, c0, W = window_inputs(rng, T, B, H, 4, dtype)
    Hs, Cs, TC = np.empty((T + 1, B, H), dtype), np.empty((T + 1, B, H), dtype), np.empty((T, B, H), dtype)
    Hs[0], Cs[0] = h0, c0
    A_done = A.copy()
    reference("lstm_window")(A_done, Hs, Cs, TC, W)
    return (A, h0, c0, W), (A_done, Hs, Cs, TC)


@covers("lstm_window")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T, B, H", WINDOWS + [WIDE["lstm_window"]])
def test_lstm_window(device_sync, rng, T, B, H, dtype):
    (A, h0, c0, W), expected = lstm_window_case(rng, T, B, H, dtype)
    dA, dHs, dCs = device_sync.put(A), states(device_sync, h0, T, dtype), states(device_sync, c0, T, dtype)
    dTC = device_sync.empty((T, B, H), dtype)
    got = run("lstm_window", dA, dHs, dCs, dTC, device_sync.put(W))
    assert _same(got, dHs), "Hs is not filled in place"
    for mine, theirs in zip((dA, dHs, dCs, dTC), expected):  # gates activated, h, c, tanh(c)
        close(device_sync.get(mine), theirs, dtype, scale=H)


@covers("lstm_window_backward")
@pytest.mark.parametrize("need_h0", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T, B, H", WINDOWS + [WIDE["lstm_window"]])
def test_lstm_window_backward(device_sync, rng, T, B, H, dtype, need_h0):
    (_, _, _, W), (A, _, Cs, TC) = lstm_window_case(rng, T, B, H, dtype)
    G = rng.standard_normal((T, B, H)).astype(dtype)
    gc = rng.standard_normal((B, H)).astype(dtype)
    D = np.empty((T, B, 4 * H), dtype)
    gh0, gc0 = reference("lstm_window_backward")(G.copy(), gc, A, Cs, TC, W, D, need_h0)
    dG, dD = device_sync.put(G), device_sync.empty((T, B, 4 * H), dtype)
    got_h0, got_c0 = run("lstm_window_backward", dG, *map(device_sync.put, (gc, A, Cs, TC, W)),
                         dD, need_h0)
    close(device_sync.get(dD), D, dtype, scale=4 * H)
    close(device_sync.get(got_c0), gc0, dtype, scale=4 * H)
    assert (got_h0 is None) == (not need_h0)
    if need_h0:
        close(device_sync.get(got_h0), gh0, dtype, scale=4 * H)
    np.testing.assert_array_equal(device_sync.get(dG), G, err_msg="G was written")


@pytest.mark.parametrize("name, gates, limit", [("elman_window", 1, {np.float32: 240, np.float64: 169}),
                                                ("lstm_window", 4, {np.float32: 119, np.float64: 84})])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_window_whose_weights_do_not_fit_goes_to_the_step_loop(emulated, rng, name, gates, limit, dtype):
    """Past the shared memory of a block (an H100's 227 KiB on the emulator) the wrappers
    return NotImplemented before launching anything, and the reference, the step loop, runs;
    up to it, they launch. So does forcing the cells onto NumPy."""
    def call(H):
        T, B = 2, 1
        A, h0, c0, W = window_inputs(rng, T, B, H, gates, dtype)
        Hs, Cs = states(Device("emulated", np), h0, T, dtype), states(Device("emulated", np), c0, T, dtype)
        args = (A, Hs, W, False) if gates == 1 else (A, Hs, Cs, np.empty((T, B, H), dtype), W)
        G, D = np.zeros((T, B, H), dtype), np.empty(A.shape, dtype)
        back = ((G, Hs, A, W, False, D, True) if gates == 1 else (G, c0, A, Cs, args[3], W, D, True))
        before = cuda.launches
        results = getattr(cuda, name)(*args), getattr(cuda, name + "_backward")(*back)
        return results, cuda.launches - before

    results, launched = call(limit[dtype])
    assert all(r is not NotImplemented for r in results) and launched == 2
    for H, paths in ((limit[dtype] + 1, {}), (3, {"cells": "numpy"})):
        with backends.using(**paths):
            results, launched = call(H)
        assert all(r is NotImplemented for r in results) and launched == 0, (H, paths)


# -- optim.cu ------------------------------------------------------------------------------------
#
# One launch updates a group of parameters of different shapes (one empty). The weights and
# gradients must come out untouched (records on the tape hold the old weights); the
# optimizer's state arrays are updated in place and returned.

GROUP = [(3,), (17, 5), (1,), (0,), (2, 3, 67)]


def group(rng, dtype, positive=False):
    arrays = [rng.standard_normal(shape) for shape in GROUP]
    return [(np.abs(a) if positive else a).astype(dtype) for a in arrays]


def check_step(device, got, expected, inputs, device_inputs, dtype):
    """got and expected: tuples of lists of arrays (or None); the inputs must be unchanged."""
    for mine, theirs in zip(got, expected):
        assert (mine is None) == (theirs is None)
        for a, b in zip(mine or [], theirs or []):
            close(device.get(a), b, dtype)
    for a, da in zip(inputs, device_inputs):
        np.testing.assert_array_equal(device.get(da), a, err_msg="a weight or gradient was changed")


@covers("sgd_step")
@pytest.mark.parametrize("momentum, weight_decay, nesterov, dampening", [
    (0.0, 0.0, False, 0.0), (0.9, 0.0, False, 0.0), (0.9, 0.01, True, 0.0), (0.0, 0.01, False, 0.0),
    (0.9, 0.01, False, 0.3)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_step(device, rng, dtype, momentum, weight_decay, nesterov, dampening):
    ws, gs, bufs = group(rng, dtype), group(rng, dtype), group(rng, dtype) if momentum else None
    expected = reference("sgd_step")(ws, gs, bufs, 0.1, momentum, weight_decay, nesterov, dampening)
    d_ws, d_gs = [device.put(w) for w in ws], [device.put(g) for g in gs]
    d_bufs = [device.put(b) for b in bufs] if momentum else None
    got = run("sgd_step", d_ws, d_gs, d_bufs, 0.1, momentum, weight_decay, nesterov, dampening)
    check_step(device, got, expected, ws + gs, d_ws + d_gs, dtype)


@covers("adam_step")
@pytest.mark.parametrize("t", [1, 7])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_step(device, rng, dtype, weight_decay, t):
    ws, gs, ms, vs = group(rng, dtype), group(rng, dtype), group(rng, dtype), group(rng, dtype, positive=True)
    expected = reference("adam_step")(ws, gs, ms, vs, t, 1e-2, 0.9, 0.999, 1e-8, weight_decay)
    d_ws, d_gs, d_ms, d_vs = ([device.put(a) for a in arrays] for arrays in (ws, gs, ms, vs))
    got = run("adam_step", d_ws, d_gs, d_ms, d_vs, t, 1e-2, 0.9, 0.999, 1e-8, weight_decay)
    check_step(device, got, expected, ws + gs, d_ws + d_gs, dtype)


def test_adam_step_leaves_amsgrad_to_the_reference(device, rng):
    """amsgrad (max_vs given) is not in the kernel: its wrapper declines before launching."""
    ws, gs, ms, vs, max_vs = (group(rng, F64, positive=True) for _ in range(5))
    d = [[device.put(a) for a in arrays] for arrays in (ws, gs, ms, vs, max_vs)]
    assert cuda.adam_step(*d[:4], 3, 1e-2, 0.9, 0.999, 1e-8, 0.0, max_vs=d[4]) is NotImplemented


@covers("adagrad_step")
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("dtype", DTYPES)
def test_adagrad_step(device, rng, dtype, weight_decay):
    ws, gs, ss = group(rng, dtype), group(rng, dtype), group(rng, dtype, positive=True)
    expected = reference("adagrad_step")(ws, gs, ss, 1e-2, 1e-10, weight_decay)
    d_ws, d_gs, d_ss = ([device.put(a) for a in arrays] for arrays in (ws, gs, ss))
    got = run("adagrad_step", d_ws, d_gs, d_ss, 1e-2, 1e-10, weight_decay)
    check_step(device, got, expected, ws + gs, d_ws + d_gs, dtype)
