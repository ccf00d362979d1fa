"""DLPack: Tensor.__dlpack__/__dlpack_device__ and minigrad.from_dlpack share memory, never copy.

Every exchange is checked by writing through one side and reading the other. NumPy is the
partner on the CPU; a fake CUDA producer checks from_dlpack's dispatch to CuPy on any machine
(the fake CuPy of tests/test_fake_gpu.py); the real CuPy path needs a GPU and skips without one.
PyTorch speaks the same protocol (torch.from_dlpack(t), minigrad.from_dlpack(torch_tensor));
the tests do not import it.
"""
import re

import numpy as np
import pytest

import minigrad as mg
from minigrad import backends
from minigrad.tensor import from_dlpack
from test_fake_gpu import FakeCudaArray, fake_cupy

DTYPES = [np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_]


def arange(shape, dtype):
    return (np.arange(int(np.prod(shape))) % 3).astype(dtype).reshape(shape)


# -- NumPy <-> minigrad ----------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_round_trip_keeps_dtype_shape_values_and_memory(dtype):
    a = arange((2, 3), dtype)
    t = mg.from_dlpack(a)
    assert isinstance(t, mg.Tensor) and t.device == "cpu" and t.is_leaf and not t.requires_grad
    assert t.dtype == a.dtype and t.shape == (2, 3)
    assert np.shares_memory(t.data, a)
    back = np.from_dlpack(t)
    assert back.dtype == a.dtype and np.shares_memory(back, a)
    np.testing.assert_array_equal(back, a)


def test_writing_through_one_side_shows_in_the_other():
    a = np.zeros((2, 3), np.float32)
    t = mg.from_dlpack(a)
    a[0, 1] = 5.0
    assert t.numpy()[0, 1] == 5.0
    view = np.from_dlpack(t)
    view[1, 2] = -1.0
    assert a[1, 2] == -1.0 and t.numpy()[1, 2] == -1.0


@pytest.mark.parametrize("view", [lambda a: a.T, lambda a: a[::2, 1::3], lambda a: a[:, ::-1],
                                  lambda a: np.asfortranarray(a), lambda a: a[1:, 2:]])
def test_non_contiguous_views_keep_their_strides_and_memory(view):
    base = np.arange(24.0).reshape(4, 6)
    v = view(base)
    t = mg.from_dlpack(v)
    assert t.shape == v.shape and t.data.strides == v.strides and np.shares_memory(t.data, v)
    np.testing.assert_array_equal(t.numpy(), v)
    np.testing.assert_array_equal((t * 2).numpy(), v * 2)   # ops read the strides right
    out = np.from_dlpack(t)
    assert out.strides == v.strides and np.shares_memory(out, v)


def test_a_view_made_by_a_minigrad_op_exports_without_a_copy():
    t = mg.tensor(np.arange(6.0).reshape(2, 3))
    tt = t.T
    out = np.from_dlpack(tt)
    assert out.shape == (3, 2) and np.shares_memory(out, t.data)
    np.testing.assert_array_equal(out, np.arange(6.0).reshape(2, 3).T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_a_0_d_array_stays_0_d(dtype):
    a = np.array(7, dtype)
    t = mg.from_dlpack(a)
    assert t.shape == () and t.item() == 7 and np.shares_memory(t.data, a)
    back = np.from_dlpack(t)
    assert back.shape == () and back.dtype == dtype


def test_a_tensor_that_requires_grad_exports_like_numpy_does():
    # NOTE: PyTorch refuses; minigrad hands out the same array as .numpy() and .detach().
    t = mg.tensor(np.arange(3.0), requires_grad=True)
    out = np.from_dlpack(t)
    assert np.shares_memory(out, t.numpy())
    (t * t).sum().backward()
    np.testing.assert_array_equal(t.grad, 2 * np.arange(3.0))


def test_an_optimizer_step_replaces_the_data_so_an_earlier_view_keeps_the_old_values():
    p = mg.tensor(np.ones(3), requires_grad=True)
    opt = mg.optim.SGD([p], lr=0.5)
    before = np.from_dlpack(p)
    (p * p).sum().backward()
    opt.step()
    np.testing.assert_array_equal(before, np.ones(3))        # not written into
    np.testing.assert_array_equal(np.from_dlpack(p), np.zeros(3))


def test_a_read_only_source_stays_read_only_and_still_computes():
    a = np.arange(4.0)
    a.flags.writeable = False
    t = mg.from_dlpack(a)
    assert not t.data.flags.writeable and np.shares_memory(t.data, a)
    with pytest.raises(ValueError, match="read-only"):
        t.numpy()[0] = 9.0
    t.requires_grad = True
    (t * t).sum().backward()                      # minigrad never writes into .data
    np.testing.assert_array_equal(t.grad, 2 * np.arange(4.0))
    np.testing.assert_array_equal(a, np.arange(4.0))
    assert not np.from_dlpack(t).flags.writeable   # passed on read-only (DLPack 1.0's flag)


def test_from_dlpack_does_not_go_through_tensor_which_copies(monkeypatch):
    def copying(*args, **kwargs):
        raise AssertionError("from_dlpack called Tensor(...), which copies")
    monkeypatch.setattr(mg.Tensor, "__init__", copying)
    a = np.arange(3.0)
    assert np.shares_memory(mg.from_dlpack(a).data, a)


def test_a_tensor_passes_the_standard_keywords_on_to_its_array():
    t = mg.tensor(np.arange(3.0))
    assert t.__dlpack_device__() == (1, 0)
    # As a consumer that speaks DLPack 1.0 asks: a versioned capsule, on the CPU, a copy.
    capsule = t.__dlpack__(max_version=(1, 0), dl_device=(1, 0), copy=True)
    assert "versioned" in repr(capsule)
    with pytest.raises(RuntimeError, match="stream"):   # NumPy's own refusal, passed through
        t.__dlpack__(stream=1)
    copied = np.from_dlpack(t, copy=True)
    assert not np.shares_memory(copied, t.data)


@pytest.mark.parametrize("dtype", [np.float16, np.complex64])
def test_dtypes_minigrad_lacks_are_refused_as_tensor_refuses_them(dtype):
    with pytest.raises(TypeError, match=re.escape(f"from_dlpack: dtype {np.dtype(dtype)} is not supported")):
        mg.from_dlpack(np.zeros(2, dtype))


@pytest.mark.parametrize("refusal", [BufferError("Can't export tensors that require gradient"),
                                     RuntimeError("Unsupported dtype in DLTensor.")])
def test_a_refusal_on_the_way_is_a_type_error_in_one_sentence(refusal):
    # What PyTorch says of a tensor that requires grad, and NumPy of a bfloat16 one.
    with pytest.raises(TypeError, match=re.escape(f"from_dlpack: numpy.from_dlpack cannot take this Producer "
                                                  f"(dtype float32): {refusal}")):
        mg.from_dlpack(Producer(np.zeros(2, np.float32), kind=1, refusal=refusal))


@pytest.mark.parametrize("obj", [[1.0, 2.0], 3.0, object()])
def test_what_does_not_speak_dlpack_is_a_type_error(obj):
    with pytest.raises(TypeError, match=re.escape("from_dlpack: expected an array that supports DLPack "
                                                  f"(__dlpack__ and __dlpack_device__), got {type(obj).__name__}")):
        mg.from_dlpack(obj)


def test_from_dlpack_is_exported_at_the_top_level():
    assert "from_dlpack" in mg.__all__ and mg.from_dlpack is from_dlpack


# -- the GPU path, on a fake CUDA producer ----------------------------------------------------

class Producer:
    """An array on DLPack device (kind, 0): what a CuPy or PyTorch CUDA tensor shows a consumer.
    The fake cupy.from_dlpack below takes its memory (`host`) as a fake GPU array, no copy;
    asked for a capsule, it raises `refusal`."""

    def __init__(self, host, kind=2, refusal=AssertionError("the fake cupy asks for no capsule")):
        self.host, self.kind, self.refusal = host, kind, refusal
        self.dtype = host.dtype

    def __dlpack_device__(self):
        return (self.kind, 0)

    def __dlpack__(self, **kwargs):
        raise self.refusal


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(backends.devices, "_cupy", fake_cupy)
    monkeypatch.setattr(fake_cupy, "from_dlpack", lambda obj: FakeCudaArray(obj.host), raising=False)


def test_a_cuda_producer_goes_to_cupy_from_dlpack_and_lands_on_its_gpu(fake_cuda):
    host = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    t = mg.from_dlpack(Producer(host))
    assert t.device == "cuda:0" and isinstance(t.data, FakeCudaArray) and t.data._a is host
    host[0, 0] = 42.0                              # the same memory
    assert t.numpy()[0, 0] == 42.0
    np.testing.assert_array_equal(t.to("cpu").numpy(), host)


@pytest.mark.parametrize("kind, name", [(10, "ROCm"), (3, "CUDA host"), (8, "Metal"), (99, "unknown")])
def test_other_device_types_are_a_value_error_naming_them(fake_cuda, kind, name):
    with pytest.raises(ValueError, match=re.escape(f"from_dlpack: the array is on DLPack device type {kind} "
                                                   f"({name}); minigrad takes CPU (1) and CUDA (2) arrays")):
        mg.from_dlpack(Producer(np.zeros(2), kind))


def test_a_cuda_producer_without_cupy_says_what_is_missing(no_cupy):
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        mg.from_dlpack(Producer(np.zeros(2)))


# -- the GPU path, on a real GPU ---------------------------------------------------------------

@pytest.mark.skipif(not backends.cuda_available(),
                    reason="needs a usable CUDA GPU (CuPy and a driver); this machine has none")
def test_cupy_and_minigrad_share_gpu_memory_both_ways():
    cp = backends.devices.cupy()
    a = cp.arange(12, dtype=cp.float32).reshape(3, 4)[:, ::2]   # a strided view too
    t = mg.from_dlpack(a)
    assert t.device == f"cuda:{a.device.id}" and t.data.data.ptr == a.data.ptr
    assert t.__dlpack_device__() == (2, a.device.id)
    a[0, 0] = 42.0
    assert t.numpy()[0, 0] == 42.0
    back = cp.from_dlpack(t)
    assert back.data.ptr == a.data.ptr and back.strides == a.strides
    np.testing.assert_array_equal(cp.asnumpy((t * 2).data), cp.asnumpy(a) * 2)


def test_a_read_only_tensor_exports_to_old_and_new_consumers():
    """minigrad.tensor's data is read-only (issue 19): a consumer that speaks DLPack 1.0
    (max_version, as numpy.from_dlpack) gets it shared and read-only; one of the old protocol
    (no keywords), which cannot be told, gets a copy rather than NumPy's BufferError."""
    t = mg.tensor(np.arange(3.0))
    shared = np.from_dlpack(t)
    assert np.shares_memory(shared, t.data) and not shared.flags.writeable
    capsule = t.__dlpack__()                           # the old protocol: no max_version
    assert type(capsule).__name__ == "PyCapsule"
