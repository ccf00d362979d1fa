"""The CPU emulator of CUDA kernels (tests/emulator.py), on small kernels written here.

The kernel tests trust the emulator to run a kernel as a GPU would; these tests earn that
trust: guarded indexing over partial blocks, shared memory and barriers, 2-D and 3-D grids,
array views, both precisions, and the mistakes it must catch rather than forgive.
"""
import numpy as np
import pytest

import emulator

pytestmark = pytest.mark.skipif(bool(emulator.UNAVAILABLE), reason=str(emulator.UNAVAILABLE))
DTYPES = [np.float32, np.float64]
SUFFIX = {np.float32: "f32", np.float64: "f64"}

SOURCE = r"""
// y = a x + y, one thread per element, guarded: the last block is partial.
template <typename T>
__device__ void saxpy(T a, const T* __restrict__ x, T* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}
extern "C" __global__ void saxpy_f32(float a, const float* __restrict__ x, float* __restrict__ y, int n) {
    saxpy(a, x, y, n);
}
extern "C" __global__ void saxpy_f64(double a, const double* __restrict__ x, double* __restrict__ y, int n) {
    saxpy(a, x, y, n);
}

// out[b] = the sum of block b's elements: a tree over shared memory, one barrier per level.
template <typename T>
__device__ void block_sums(const T* x, T* out, int n) {
    __shared__ T buf[256];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    buf[threadIdx.x] = i < n ? x[i] : T(0);
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) buf[threadIdx.x] += buf[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = buf[0];
}
extern "C" __global__ void block_sums_f32(const float* x, float* out, int n) { block_sums(x, out, n); }
extern "C" __global__ void block_sums_f64(const double* x, double* out, int n) { block_sums(x, out, n); }

// out = a^T for a (rows, cols) with row stride lda: a 2-D grid of 2-D blocks, through a
// shared tile, so that reads and writes both go along rows.
template <typename T>
__device__ void transpose(const T* a, T* out, int rows, int cols, long long lda) {
    __shared__ T tile[16][17];
    int c = blockIdx.x * 16 + threadIdx.x, r = blockIdx.y * 16 + threadIdx.y;
    if (r < rows && c < cols) tile[threadIdx.y][threadIdx.x] = a[r * lda + c];
    __syncthreads();
    int oc = blockIdx.y * 16 + threadIdx.x, orow = blockIdx.x * 16 + threadIdx.y;
    if (orow < cols && oc < rows) out[(long long)orow * rows + oc] = tile[threadIdx.x][threadIdx.y];
}
extern "C" __global__ void transpose_f32(const float* a, float* out, int rows, int cols, long long lda) {
    transpose(a, out, rows, cols, lda);
}
extern "C" __global__ void transpose_f64(const double* a, double* out, int rows, int cols, long long lda) {
    transpose(a, out, rows, cols, lda);
}

// Every thread writes where it is: checks the six indices and the two sizes.
extern "C" __global__ void where_f64(double* out) {
    unsigned block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    unsigned thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    double* o = out + 6 * (block * blockDim.x * blockDim.y * blockDim.z + thread);
    o[0] = blockIdx.x; o[1] = blockIdx.y; o[2] = blockIdx.z;
    o[3] = threadIdx.x; o[4] = threadIdx.y; o[5] = threadIdx.z;
}

// The mistakes the emulator must catch.
extern "C" __global__ void unguarded_f32(float* x, int n) { x[blockIdx.x * blockDim.x + threadIdx.x] = 1; }
extern "C" __global__ void copy_one_too_many_f32(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = x[i];  // y[n] = x[n]: a NaN from past x, written past y
}
extern "C" __global__ void shifted_f32(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i + 1];  // y[n - 1] reads past x
}
extern "C" __global__ void early_return_f32(float* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;  // wrong before a barrier: the block's other threads wait forever
    __syncthreads();
    x[i] = 1;
}
extern "C" __global__ void no_barrier_f32(float* x) {  // reads a neighbour's write unordered
    __shared__ float s[64];
    s[threadIdx.x] = threadIdx.x;
    x[threadIdx.x] = s[63 - threadIdx.x];
}
extern "C" __global__ void unwritten_shared_f64(double* x) {  // reads shared memory no one wrote
    __shared__ double s[64];
    if (threadIdx.x < 32) s[threadIdx.x] = 1;
    __syncthreads();
    x[threadIdx.x] = s[threadIdx.x];
}

// Dynamic shared memory (the launch's shared_mem bytes): each block reversed through it.
extern "C" __global__ void reverse_blocks_f64(const double* x, double* out) {
    double* buf = dynamic_shared<double>();
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    buf[threadIdx.x] = x[i];
    __syncthreads();
    out[i] = buf[blockDim.x - 1 - threadIdx.x];
}
extern "C" __global__ void dynamic_unwritten_f64(double* x) {  // reads what no one wrote
    x[threadIdx.x] = dynamic_shared<double>()[threadIdx.x];
}
extern "C" __global__ void dynamic_one_too_far_f64(double* x) {  // one element per thread, shifted
    dynamic_shared<double>()[threadIdx.x + 1] = 1;
    x[threadIdx.x] = 0;
}

// Types of every kind, for the argument checks; a deep stack, for the fibers.
extern "C" __global__ void kinds_f64(double* out, int i, long long j, unsigned long long k,
                                     float f, double d) {
    double local[2048];  // 16 KiB on the thread's stack
    for (int m = 0; m < 2048; ++m) local[m] = m;
    out[threadIdx.x] = i + j + k + f + d + local[2047];
}

#if 0
extern "C" __global__ void hidden_f32(float* x) {}  // compiled out: not an entry point
#endif
"""


@pytest.fixture(scope="module")
def module():
    return emulator.compile(SOURCE, "test_emulator.cu")


def blocks(n, threads):
    return (n + threads - 1) // threads


def tolerance(dtype):
    return dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)


def test_finds_the_entry_points(module):
    assert sorted(module.names) == sorted([
        "saxpy_f32", "saxpy_f64", "block_sums_f32", "block_sums_f64", "transpose_f32",
        "transpose_f64", "where_f64", "unguarded_f32", "copy_one_too_many_f32", "shifted_f32",
        "early_return_f32", "no_barrier_f32", "unwritten_shared_f64", "reverse_blocks_f64",
        "dynamic_unwritten_f64", "dynamic_one_too_far_f64", "kinds_f64"])
    with pytest.raises(AttributeError, match="has no kernel 'hidden_f32'; its entry points are"):
        module.get_function("hidden_f32")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 3, 255, 256, 257, 1000])
def test_saxpy_guards_the_last_block(module, rng, dtype, n):
    x = rng.standard_normal(n).astype(dtype)
    buffer = rng.standard_normal(n + 5).astype(dtype)  # y is a view: the 5 after it stay
    y, rest = buffer[:n], buffer[n:].copy()
    expected = dtype(2.5) * x + y
    module.get_function(f"saxpy_{SUFFIX[dtype]}")((blocks(n, 256),), (256,), (dtype(2.5), x, y, np.int32(n)))
    np.testing.assert_allclose(y, expected, **tolerance(dtype))
    np.testing.assert_array_equal(buffer[n:], rest)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, threads", [(1, 32), (17, 32), (300, 128), (1000, 256)])
def test_block_reduction_through_shared_memory(module, rng, monkeypatch, dtype, n, threads, reverse):
    monkeypatch.setattr(emulator, "reverse_threads", reverse)  # barriers make the order irrelevant
    x = rng.standard_normal(n).astype(dtype)
    count = blocks(n, threads)
    out = np.full(count, np.nan, dtype)
    module.get_function(f"block_sums_{SUFFIX[dtype]}")((count,), (threads,), (x, out, np.int32(n)))
    padded = np.concatenate([x, np.zeros(count * threads - n, dtype)])
    np.testing.assert_allclose(out, padded.reshape(count, threads).sum(axis=1), **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, cols", [(1, 1), (3, 17), (17, 33), (33, 67)])
def test_transpose_on_a_2d_grid_of_a_view(module, rng, dtype, rows, cols):
    big = rng.standard_normal((rows + 2, cols + 3)).astype(dtype)
    a = big[1:rows + 1, 2:cols + 2]  # a view: the kernel gets its first element and row stride
    out = np.full((cols, rows), np.nan, dtype)
    grid = (blocks(cols, 16), blocks(rows, 16))
    module.get_function(f"transpose_{SUFFIX[dtype]}")(
        grid, (16, 16), (a, out, np.int32(rows), np.int32(cols), np.int64(big.shape[1])))
    np.testing.assert_array_equal(out, a.T)


def test_indices_of_a_3d_grid(module):
    grid, block = (3, 2, 2), (4, 3, 2)
    out = np.full((2, 2, 3, 2, 3, 4, 6), np.nan)  # blocks z, y, x, threads z, y, x, 6 numbers
    module.get_function("where_f64")(grid, block, (out,))
    bz, by, bx, tz, ty, tx = np.indices(out.shape[:-1])
    np.testing.assert_array_equal(out, np.stack([bx, by, bz, tx, ty, tz], axis=-1))


def test_scalars_of_every_kind_and_a_deep_stack(module):
    out = np.zeros(64)
    module.get_function("kinds_f64")(1, 64, (out, np.int32(-1), np.int64(2**40), np.uint64(2**63),
                                             np.float32(0.5), np.float64(0.25)))
    np.testing.assert_array_equal(out, float(-1 + 2**40 + 2**63) + 0.75 + 2047)


# -- what it catches ------------------------------------------------------------------

def test_a_write_outside_an_array_fails_the_launch(module):
    x = np.zeros(100, np.float32)
    with pytest.raises(emulator.EmulatorError, match=r"unguarded_f32: wrote outside the memory of "
                                                     r"`float\* x` \(0 bytes changed before it, 112 after\)"):
        module.get_function("unguarded_f32")((1,), (128,), (x, np.int32(100)))


def test_a_value_copied_past_the_end_is_caught(module):
    x, y = np.zeros(100, np.float32), np.zeros(100, np.float32)
    with pytest.raises(emulator.EmulatorError, match=r"copy_one_too_many_f32: wrote outside the memory "
                                                     r"of `float\* y` "
                                                     r"\(0 bytes changed before it, 1 after\)"):
        module.get_function("copy_one_too_many_f32")((1,), (128,), (x, y, np.int32(100)))


def test_a_read_past_the_end_reads_nan(module):
    x, y = np.arange(10, dtype=np.float32), np.zeros(10, np.float32)
    module.get_function("shifted_f32")((1,), (32,), (x, y, np.int32(10)))
    np.testing.assert_array_equal(y[:9], x[1:])
    assert np.isnan(y[9])


def test_read_only_memory_is_read_but_not_written(module):
    x = np.frombuffer(np.arange(4, dtype=np.float32).tobytes(), np.float32)  # read-only
    y = np.ones(4, np.float32)
    module.get_function("saxpy_f32")(1, 4, (np.float32(2), x, y, np.int32(4)))
    np.testing.assert_array_equal(y, [1, 3, 5, 7])
    with pytest.raises(emulator.EmulatorError,
                       match=r"saxpy_f32: wrote into the read-only memory of `float\* __restrict__ y`"):
        module.get_function("saxpy_f32")(1, 4, (np.float32(2), y, x, np.int32(4)))
    np.testing.assert_array_equal(x, [0, 1, 2, 3])


def test_a_barrier_not_every_thread_reaches_fails_the_launch(module):
    x = np.zeros(100, np.float32)
    fn = module.get_function("early_return_f32")
    with pytest.raises(emulator.EmulatorError, match="100 threads reached __syncthreads.. while 28 returned"):
        fn((1,), (128,), (x, np.int32(100)))
    fn((1,), (64,), (x, np.int32(100)))  # and the next launch starts afresh
    assert x[:64].sum() == 64


def test_a_missing_barrier_shows_in_either_thread_order(module, monkeypatch):
    expected = np.arange(63, -1, -1, dtype=np.float32)
    for reverse in (False, True):
        monkeypatch.setattr(emulator, "reverse_threads", reverse)
        x = np.zeros(64, np.float32)
        module.get_function("no_barrier_f32")(1, 64, (x,))
        assert not np.array_equal(x, expected)  # NaN where a thread read before the write


def test_unwritten_shared_memory_reads_nan(module):
    x = np.zeros(64)
    for _ in range(2):  # in every launch, not only the first
        module.get_function("unwritten_shared_f64")(1, 64, (x,))
        assert (x[:32] == 1).all() and np.isnan(x[32:]).all()


@pytest.mark.parametrize("threads", [1, 33, 1024])
def test_dynamic_shared_memory_beyond_48_kib_once_the_kernel_opts_in(module, rng, threads):
    x = rng.standard_normal(3 * threads)
    out = np.zeros_like(x)
    fn = module.get_function("reverse_blocks_f64")
    fn.max_dynamic_shared_size_bytes = emulator.SHARED_DEFAULT  # CUDA's default (the module is shared)
    fn(3, threads, (x, out), shared_mem=8 * threads)
    np.testing.assert_array_equal(out, x.reshape(3, threads)[:, ::-1].ravel())
    with pytest.raises(ValueError, match="may have 0 to 49152"):
        fn(3, threads, (x, out), shared_mem=64 * 1024)  # as on a GPU: refused until ...
    fn.max_dynamic_shared_size_bytes = emulator.SHARED_OPTIN  # ... the kernel opts in
    out[...] = 0
    fn(3, threads, (x, out), shared_mem=emulator.SHARED_OPTIN)
    np.testing.assert_array_equal(out, x.reshape(3, threads)[:, ::-1].ravel())
    with pytest.raises(ValueError, match="CUDA allows 0 to 232448 bytes per block"):
        fn.max_dynamic_shared_size_bytes = emulator.SHARED_OPTIN + 1


def test_unwritten_dynamic_shared_memory_reads_nan(module):
    x = np.zeros(16)
    for _ in range(2):
        module.get_function("dynamic_unwritten_f64")(1, 16, (x,), shared_mem=16 * 8)
        assert np.isnan(x).all()
        x[...] = 0


def test_a_write_past_the_dynamic_shared_memory_fails_the_launch(module):
    fn = module.get_function("dynamic_one_too_far_f64")
    fn(1, 16, (np.zeros(16),), shared_mem=17 * 8)  # room for the shift: fine
    with pytest.raises(emulator.EmulatorError, match="wrote outside its 128 bytes of dynamic shared"):
        fn(1, 16, (np.zeros(16),), shared_mem=16 * 8)


@pytest.mark.parametrize("args, message", [
    ((np.zeros(4, np.float32), 3), r"argument 1 \(`int n`\): expected a NumPy scalar of C type int "
                                   r"\(such as np.int32\(...\)\), got int: CuPy would guess its C type"),
    ((np.zeros(4, np.float32), np.float32(3)), "argument 1 .* C type int, got float32"),
    ((np.zeros(4, np.float32), np.int64(3)), "argument 1 .* C type int, got int64"),
    ((np.zeros(4, np.float64), np.int32(3)),
     r"argument 0 \(`float\* x`\): expected an array of float, got float64"),
    (([0.0] * 4, np.int32(3)), "argument 0 .*: expected a NumPy array, got list"),
    ((np.zeros(4, np.float32),), r"expected 2 arguments \(float\* x, int n\), got 1"),
    ([np.zeros(4, np.float32), np.int32(3)], "args must be a tuple, got list"),
])
def test_a_wrong_argument_is_a_type_error(module, args, message):
    with pytest.raises(TypeError, match=message):
        module.get_function("unguarded_f32")(1, 4, args)


@pytest.mark.parametrize("grid, block, kwargs, message", [
    (1, 2048, {}, "block .*: each size must be in 1..1024"),
    (1, (32, 32, 2), {}, "2048 threads; CUDA allows 1024"),
    ((1, 70000), 1, {}, "grid .*: each size must be in 1..65535"),
    (0, 1, {}, "grid .*: each size must be in 1.."),
    (1, 4, {"shared_mem": 48 * 1024 + 8}, r"shared_mem=49160 bytes .* 0 to 49152 \(CUDA's limit until"),
    (1, 4, {"shared_mem": -1}, "shared_mem=-1 bytes"),
])
def test_a_launch_outside_cuda_limits_is_a_value_error(module, grid, block, kwargs, message):
    with pytest.raises(ValueError, match=message):
        module.get_function("unguarded_f32")(grid, block, (np.zeros(4, np.float32), np.int32(4)), **kwargs)


def test_a_source_that_does_not_compile_shows_the_compiler_error():
    with pytest.raises(emulator.EmulatorError, match=r"(?s)compiling bad.cu failed.*bad.cu:3"):
        emulator.compile('\nextern "C" __global__ void f_f32(float* x) {\n  x[0] = undefined;\n}\n', "bad.cu")
    with pytest.raises(emulator.EmulatorError, match='none.cu has no extern "C" __global__ entry point'):
        emulator.compile("__device__ float twice(float x) { return 2 * x; }\n", "none.cu")


def test_headers_come_from_the_source_folder_and_are_part_of_the_cache_key(tmp_path):
    source = '#include "common.cuh"\nextern "C" __global__ void k_f64(double* x) { x[0] = VALUE; }\n'
    x = np.zeros(1)
    for value in (1, 2):
        (tmp_path / "common.cuh").write_text(f"#define VALUE {value}\n")
        emulator.compile(source, str(tmp_path / "k.cu")).get_function("k_f64")(1, 1, (x,))
        assert x[0] == value
    path = str(tmp_path / "k.cu")
    assert emulator.compile(source, path) is emulator.compile(source, path)
