"""Tensors that live on a GPU: moving them, mixing devices, training on "cuda" against the CPU.

Every test here needs a usable CUDA GPU and skips, saying so, without one. (The kernels
themselves are tested on every machine: tests/test_kernels.py and the `on_backend` suites.)
"""
import subprocess
import sys

import numpy as np
import pytest

import minigrad as mg
from minigrad import backends, nn
from minigrad.optim import SGD
from helpers import train_layer

pytestmark = pytest.mark.skipif(not backends.cuda_available(),
                                reason="needs a usable CUDA GPU (CuPy and a driver); this machine has none")


def test_tensors_move_and_gradients_travel_back():
    x = mg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    y = x.to("cuda")
    assert y.device == "cuda:0" and not isinstance(y.data, np.ndarray)
    (y * y).sum().backward()
    assert isinstance(x.grad, np.ndarray)
    np.testing.assert_allclose(x.grad, 2 * np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(y.numpy(), x.data)
    assert "device='cuda:0'" in repr(y)


def test_mixing_devices_raises_naming_both():
    a, b = mg.ones(3), mg.ones(3, device="cuda")
    with pytest.raises(RuntimeError, match=r"add: inputs on different devices \(cpu, cuda:0\)"):
        a + b
    with pytest.raises(RuntimeError, match=r"matmul: inputs on different devices \(cuda:0, cpu\)"):
        mg.ones(2, 2, device="cuda") @ mg.ones(2, 2)


def test_creation_on_cuda_gives_the_cpu_numbers():
    np.testing.assert_array_equal(mg.randn(3, 4, rng=5, device="cuda").numpy(), mg.randn(3, 4, rng=5).data)
    assert mg.tensor(mg.zeros(2, device="cuda").data).device == "cuda:0"  # CuPy data stays put


@pytest.mark.parametrize("paths", [{}, {f: "kernel" for f in backends.FAMILIES},
                                   {f: "numpy" for f in backends.FAMILIES}],
                         ids=["auto", "kernels", "cupy-library"])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_training_on_cuda_gives_the_cpu_losses_and_weights(kind, paths):
    """TBPTT(3, 5) over a layer, segments at a time, with Adam: float64 on both devices."""
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((12, 4, 3))
    ys = rng.integers(0, 5, (12, 4))
    results = []
    for device in ("cpu", "cuda"):
        with backends.using(**paths):
            losses, params = train_layer(kind, device, xs, ys, hidden=8)
        results.append((losses, [p.numpy() for p in params]))
    (cpu_losses, cpu_weights), (gpu_losses, gpu_weights) = results
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-10)
    for got, want in zip(gpu_weights, cpu_weights):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_an_optimizer_follows_its_parameters_to_another_device():
    net = nn.Linear(3, 2, dtype="float64", rng=0)
    optimizer = SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = mg.tensor(np.ones((4, 3)))
    for device in ("cpu", "cuda", "cuda", "cpu"):
        net.to(device)
        optimizer.zero_grad()
        net(x.to(device)).sum().backward()
        optimizer.step()
        assert all(p.device == backends.parse_device(device) for p in net.parameters())
        for state in optimizer.state.values():
            assert backends.device_of(state["momentum_buffer"]) == backends.parse_device(device)


def test_minigrad_train_runs_on_cuda():
    done = subprocess.run([sys.executable, "-m", "minigrad", "train", "--device", "cuda", "--steps", "200",
                           "--quiet"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "device cuda:0 (asked for)" in done.stdout and "held-out: accuracy" in done.stdout
