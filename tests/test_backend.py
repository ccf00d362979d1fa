"""minigrad.backends: devices, the per-family paths, and the dispatch between a kernel and its
NumPy reference."""
import inspect

import numpy as np
import pytest

import minigrad as mg
from minigrad import backends, nn
from minigrad.backends import cuda
from minigrad.nn import functional as F
from minigrad.optim import SGD


# -- paths -------------------------------------------------------------------------

def test_use_sets_a_path_and_returns_the_previous_one():
    assert backends.path("matmul") == "auto"
    assert backends.use("matmul", "numpy") == "auto"
    try:
        assert backends.path("matmul") == "numpy"
    finally:
        backends.use("matmul", "auto")


def test_using_restores_the_paths_even_after_an_error():
    with pytest.raises(KeyError):
        with backends.using(cells="numpy", matmul="kernel"):
            assert (backends.path("cells"), backends.path("matmul")) == ("numpy", "kernel")
            raise KeyError
    assert (backends.path("cells"), backends.path("matmul")) == ("auto", "auto")


@pytest.mark.parametrize("family, path, message", [
    ("conv", "numpy", "backends.use: unknown op family 'conv'; expected one of matmul, elementwise"),
    ("matmul", "cublas",
     "backends.use: unknown path 'cublas' for matmul; expected one of auto, kernel, numpy"),
])
def test_unknown_families_and_paths_raise(family, path, message):
    with pytest.raises(ValueError, match=message):
        backends.use(family, path)


# -- the dispatch between a NumPy reference and its kernel ---------------------------

@pytest.fixture
def spy(monkeypatch):
    """Route NumPy arrays to the kernel path, with minigrad.backends.cuda.binary replaced by a spy."""
    calls = []

    def binary(x, y, op):
        calls.append(op)
        return np.full(np.broadcast_shapes(x.shape, y.shape), 7.0, x.dtype)
    monkeypatch.setattr(backends.dispatch, "KERNELS_ON_NUMPY", True)
    monkeypatch.setattr(cuda, "binary", binary)
    return calls


def test_numpy_arrays_run_the_reference():
    x = mg.tensor([1.0, 2.0])
    np.testing.assert_array_equal((x + x).data, [2.0, 4.0])


def test_kernel_path_calls_the_wrapper_of_the_same_name(spy):
    x = mg.tensor([1.0, 2.0])
    np.testing.assert_array_equal((x * x).data, [7.0, 7.0])
    assert spy == ["mul"]


def test_a_family_forced_to_numpy_runs_the_reference(spy):
    x = mg.tensor([1.0, 2.0])
    with backends.using(elementwise="numpy"):
        np.testing.assert_array_equal((x * x).data, [1.0, 4.0])
    assert spy == []


def test_dtypes_without_kernels_run_the_reference(spy):
    i = mg.tensor(np.array([1, 2, 3]))
    np.testing.assert_array_equal((i + i).data, [2, 4, 6])
    assert spy == []


def test_a_wrapper_returning_notimplemented_hands_over_to_the_reference(monkeypatch):
    monkeypatch.setattr(backends.dispatch, "KERNELS_ON_NUMPY", True)
    monkeypatch.setattr(cuda, "binary", lambda x, y, op: NotImplemented)
    x = mg.tensor([1.0, 2.0])
    np.testing.assert_array_equal((x - x * 2).data, [-1.0, -2.0])


def test_every_primitive_has_a_cuda_wrapper_with_its_signature():
    assert set(backends.PRIMITIVES) == {
        "matmul", "matmul_add", "binary", "activation", "activation_backward", "sum_axes",
        "softmax_xent", "softmax_xent_backward", "lstm_step", "lstm_step_backward", "gru_step",
        "gru_step_backward", "elman_window", "elman_window_backward", "lstm_window",
        "lstm_window_backward", "sgd_step", "adam_step", "adagrad_step"}
    for name, (family, reference) in backends.PRIMITIVES.items():
        assert family in backends.FAMILIES
        wrapper = getattr(cuda, name, None)
        assert wrapper is not None, f"minigrad.backends.cuda has no wrapper {name}"
        assert inspect.signature(wrapper) == inspect.signature(reference), name


# -- devices -------------------------------------------------------------------------

@pytest.mark.parametrize("given", [None, "cpu"])
def test_cpu_is_the_device_of_numpy_data(given):
    t = mg.tensor(np.ones(2), device=given)
    assert t.device == "cpu" and isinstance(t.data, np.ndarray)
    assert t.to("cpu") is t and t.cpu() is t
    assert backends.device_of(t.data) == "cpu" and backends.to_numpy(t.data) is t.data


# -- a launch's arguments, typed from the kernel's signature -------------------------

def test_each_entry_points_scalar_parameters_are_read_from_its_signature():
    """By hand from the sources: matmul.cu's `int M, int N, int K, ...` after three pointers;
    reduce.cu's `long long` sizes; optim.cu's hyper-parameters in the entry's precision."""
    found = {}
    for file in cuda.KERNELS:
        found.update(cuda._scalar_parameters((cuda.KERNELS_DIR / file).read_text(), file))
    assert set(found) == {f"{n}_{p}" for names in cuda.KERNELS.values() for n in names for p in ("f32", "f64")}
    assert found["matmul_f32"] == (9, tuple((k, np.int32, True) for k in range(3, 9)))
    assert found["sum_axes_cols_f64"] == (5, ((2, np.int64, True), (3, np.int64, True), (4, np.int64, True)))
    assert found["adagrad_step_f32"] == (6, ((1, np.int32, True), (2, np.int64, True), (3, np.float32, False),
                                             (4, np.float32, False), (5, np.float32, False)))
    assert found["adagrad_step_f64"][1][2:] == ((3, np.float64, False), (4, np.float64, False),
                                                (5, np.float64, False))
    assert cuda._scalar_parameters('extern "C" __global__ void k(void) {}', "k.cu") == {"k": (0, ())}


def test_a_launch_passes_each_scalar_as_its_parameter_and_refuses_a_wrong_count(monkeypatch):
    monkeypatch.setitem(cuda._scalars, "k_f64", (4, ((1, np.int64, True), (2, np.int32, True),
                                                     (3, np.float64, False))))
    x = np.ones(3)
    args = cuda._c_arguments("k_f64", (x, 5, 7, 0.5))
    assert args[0] is x and [type(a) for a in args[1:]] == [np.int64, np.int32, np.float64]
    assert args[1:] == (5, 7, 0.5)
    with pytest.raises(TypeError, match="launch: k_f64 takes 4 arguments, got 3"):
        cuda._c_arguments("k_f64", (x, 5, 7))
    for past in (2**31, np.int64(2**40)):  # past a C int: an error, not a wrapped number
        with pytest.raises(OverflowError):
            cuda._c_arguments("k_f64", (x, 5, past, 0.5))
    with pytest.raises(TypeError):  # a float for an integer parameter: not truncated
        cuda._c_arguments("k_f64", (x, 3.7, 7, 0.5))


def test_a_kernel_parameter_of_a_type_launch_cannot_pass_is_an_error_naming_it():
    source = 'extern "C" __global__ void k_f32(const float* x, unsigned short n) {}'
    with pytest.raises(RuntimeError, match=r"k.cu: k_f32's parameter `unsigned short n` has a type"):
        cuda._scalar_parameters(source, "k.cu")


# -- the launches of a training step -------------------------------------------------

# The fused step kernels, forward and backward; the Elman cell's is its activation (elementwise.cu).
STEP_KERNELS = [(nn.RNN, "activation", "activation_backward"), (nn.LSTM, "lstm_step", "lstm_step_backward"),
                (nn.GRU, "gru_step", "gru_step_backward")]
# The whole-window kernels (window.cu) of the layers that have one.
WINDOW_KERNELS = {nn.RNN: "elman_window", nn.LSTM: "lstm_window"}


def _training_step_launches(layer, monkeypatch):
    """The kernels one TBPTT window of `layer` (T = 7) with a linear readout, cross-entropy
    and SGD launches on the kernel path (emulated), by name, in order."""
    monkeypatch.setattr(backends.dispatch, "KERNELS_ON_NUMPY", True)
    names = []
    monkeypatch.setattr(cuda, "on_launch", [names.append])
    T, B, n_in, H, C = 7, 3, 4, 5, 6
    rng = np.random.default_rng(0)
    rnn, head = layer(n_in, H, rng=0), nn.Linear(H, C, rng=1)
    params = rnn.parameters() + head.parameters()
    optimizer = SGD(params, lr=0.1, momentum=0.9)
    xs = mg.tensor(rng.standard_normal((T, B, n_in)).astype(np.float32))
    ys = rng.integers(0, C, (T, B))
    hs, _ = rnn(xs)
    loss = F.cross_entropy(head(hs), ys)
    loss.backward()
    optimizer.step()
    return T, lambda kernel: sum(n.startswith(kernel + "_f") for n in names), names


@pytest.mark.parametrize("layer, fwd, bwd", STEP_KERNELS, ids=["RNN", "LSTM", "GRU"])
def test_a_training_step_of_a_sequence_layer_launches_few_kernels(emulated_kernels, monkeypatch,
                                                                   layer, fwd, bwd):
    """Step by step (the window kernel off): per time step one matmul and one fused kernel
    each way."""
    with backends.using(window="numpy"):
        T, count, names = _training_step_launches(layer, monkeypatch)
    assert count(fwd) == T and count(bwd) == T
    # forward: the window's input projections, T recurrent products, the readout;
    # backward: T recurrent products, dx, dW_ih, dW_hh, and the readout's two.
    assert count("matmul") <= 2 * T + 6
    assert count("sgd_step") == 1  # every parameter in one launch
    assert len(names) <= 4 * T + 16, sorted(set(names))


@pytest.mark.parametrize("layer", list(WINDOW_KERNELS), ids=["RNN", "LSTM"])
def test_the_window_kernel_makes_a_training_step_a_few_launches_whatever_its_length(
        emulated_kernels, monkeypatch, layer):
    """With the window kernel (the default where the weights fit): one launch for the whole
    recurrence each way, and no per-step kernel at all."""
    T, count, names = _training_step_launches(layer, monkeypatch)
    window = WINDOW_KERNELS[layer]
    assert count(window) == 1 and count(window + "_backward") == 1
    fwd, bwd = {nn.RNN: STEP_KERNELS[0], nn.LSTM: STEP_KERNELS[1]}[layer][1:]
    assert count(fwd) == count(bwd) == 0
    # forward: the input projections, the readout; backward: dx, dW_ih, dW_hh, the readout's two
    assert count("matmul") <= 6
    assert len(names) <= 16, names


def test_for_array_resolves_a_numpy_arrays_calls_to_the_reference_once(monkeypatch):
    """The window loops resolve their per-step primitives once: NumPy arrays go straight to
    the references (what the wrapper would call anyway); anything else, and NumPy arrays
    while the kernels are forced onto them (the emulator tests), keep the deciding wrapper."""
    from minigrad.backends import dispatch, primitives
    a = np.zeros((2, 3))
    assert dispatch.for_array(primitives.matmul_add, a) is primitives.matmul_add.numpy
    assert dispatch.for_array(primitives.lstm_step, [a]) is primitives.lstm_step  # not an array: decide per call
    monkeypatch.setattr(dispatch, "KERNELS_ON_NUMPY", True)
    assert dispatch.for_array(primitives.matmul_add, a) is primitives.matmul_add


# -- the sequence ops' memory layout on the CPU -----------------------------------------

def test_matmul_add_into_an_out_stored_transposed_adds_the_product_in_place(rng, monkeypatch):
    """A feature-major time step (out's memory is out.T's): out += x @ y is computed as
    out^T += y^T x^T (BLAS then writes in out's order), gives x @ y added to what was there,
    and is written into out's own memory."""
    from minigrad.backends import primitives
    products = []

    class Spy:  # NumPy, with a record of the operands each product gets
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def dot(a, b):
            products.append((a.shape, b.shape))
            return np.dot(a, b)
    monkeypatch.setattr(primitives, "array_module", lambda a: Spy())
    x, y = rng.standard_normal((4, 7)), rng.standard_normal((7, 5))
    memory = rng.standard_normal((2, 5, 4))  # two steps, each (5, 4) in memory: out is (4, 5)
    before = memory.copy()
    out = memory[1].T
    assert out.flags.f_contiguous and not out.flags.c_contiguous
    result = primitives.matmul_add.numpy(x, y.T.copy().T, out)  # y stored transposed, as W_hh.T
    assert result is out
    assert products == [((5, 7), (7, 4))]  # y^T x^T
    np.testing.assert_allclose(memory[1].T, before[1].T + x @ y, rtol=1e-12, atol=1e-12)
    assert np.array_equal(memory[0], before[0])  # the other step untouched
    products.clear()
    plain = rng.standard_normal((4, 5))
    primitives.matmul_add.numpy(x, y, plain)
    assert products == [((4, 7), (7, 5))]  # a C-contiguous out: x @ y as written


LAYOUT_CASES = [(B, dtype, needs, contiguous, reverse)
                for B in (0, 1, 2, 5) for dtype in (np.float32, np.float64)
                for needs, contiguous, reverse in (("all", True, False), ("weights", False, True))]


@pytest.mark.parametrize("op", ["lstm", "rnn tanh", "rnn relu"])
@pytest.mark.parametrize("B, dtype, needs, contiguous, reverse", LAYOUT_CASES)
def test_sequence_ops_run_feature_major_on_the_cpu_with_the_batch_major_numbers(
        rng, monkeypatch, op, B, dtype, needs, contiguous, reverse):
    """On NumPy arrays with more than one batch row, the LSTM op keeps each step's gates,
    states and gradients feature-major ((n, B) in memory) and the Elman op its forward
    (dispatch.feature_major, nn/recurrent.py); its outputs, final state and every gradient
    are those of the batch-major layout (the one the kernels use) to rounding, and come back
    C-contiguous. Batches of 0 and 1 row, float32, states that need no gradient, an input
    that is a strided view, and the reversed direction included."""
    from minigrad.backends import dispatch, primitives
    from minigrad.nn import recurrent
    kind, *nonlinearity = op.split()
    G = 4 if kind == "lstm" else 1
    T, I, H = 6, 4, 5
    seen = []
    window = getattr(primitives, f"{'lstm' if G == 4 else 'elman'}_window")
    monkeypatch.setattr(primitives, window.__name__,  # notes whether A's steps are (n, B) in memory
                        lambda A, *rest: seen.append(A.strides[1] < A.strides[2]) or window(A, *rest))
    x = rng.standard_normal((T, B, 2 * I) if not contiguous else (T, B, I))
    x = x if contiguous else x[:, :, ::2]  # a strided view
    arrays = [x.astype(dtype)] + [rng.standard_normal(s).astype(dtype) for s in (
        [(B, H)] * (2 if G == 4 else 1) + [(G * H, I), (G * H, H), (G * H,), (G * H,)])]
    n_states = 2 if G == 4 else 1

    def run():
        ts = [mg.tensor(a, requires_grad=needs == "all" or k > n_states) for k, a in enumerate(arrays)]
        states = (ts[1], ts[2]) if G == 4 else ts[1]
        extra = {} if G == 4 else {"nonlinearity": nonlinearity[0]}
        hs, last = getattr(F, kind)(ts[0], states, *ts[n_states + 1:], reverse=reverse, **extra)
        h, c = last if G == 4 else (last, last)
        ((hs * hs).sum() + (h * c).sum() + c.sum()).backward()
        return [hs.data, h.data, c.data] + [t.grad for t in ts if t.requires_grad]

    fm = run()
    monkeypatch.setattr(recurrent, "feature_major", lambda a: False)
    bm = run()
    monkeypatch.setattr(recurrent, "feature_major", dispatch.feature_major)
    assert seen == [B > 1, False]  # feature-major where it applies, then batch-major
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for a, b in zip(fm, bm):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
        assert a.flags.c_contiguous


def test_feature_major_is_for_numpy_arrays_not_sent_to_the_kernels(monkeypatch):
    from minigrad.backends import dispatch
    assert dispatch.feature_major(np.zeros((2, 3)))
    monkeypatch.setattr(dispatch, "KERNELS_ON_NUMPY", True)
    assert not dispatch.feature_major(np.zeros((2, 3)))
