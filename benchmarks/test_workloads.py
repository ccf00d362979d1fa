"""The benchmark suite: every workload, every implementation, timed by pytest-benchmark.

Run it with `pytest benchmarks` (add --benchmark-compare to compare with the last
saved run), or `python -m benchmarks.report` for the table of medians and ratios.
Each benchmark's extra_info says what one unit of work is (a time step, an op) and
how many units a round does; the report divides by that.
"""
import tracemalloc

import numpy as np
import pytest

from . import floor, torch_impl, workloads

RECURRENT = {"minigrad": workloads.minigrad_recurrent, "numpy": floor.numpy_recurrent,
             "minigrad-seq": workloads.minigrad_sequence, "numpy-window": floor.numpy_recurrent_window,
             "torch-cell": torch_impl.torch_cell_loop, "torch-fused": torch_impl.torch_fused}
CHAIN = {"minigrad": workloads.minigrad_chain, "numpy": floor.numpy_chain,
         "torch": torch_impl.torch_chain}


def _time(benchmark, smoke, prepare, rounds):
    """Time run() over fresh copies of the work (setup is not timed); returns one result."""
    results = []

    def setup():
        return (prepare(),), {}

    def target(run):
        results.append(run())
    benchmark.pedantic(target, setup=setup, rounds=1 if smoke else rounds,
                       warmup_rounds=0 if smoke else 1)
    return results[-1]


def _needs(impl):
    if impl.startswith("torch") and torch_impl.torch is None:
        pytest.skip(torch_impl.MISSING)


def _describe(benchmark, w, impl, units, **extra):
    """What the report needs: the workload, the implementation, and the units of work a round does."""
    benchmark.group = w.name
    benchmark.extra_info.update(workload=w.name, impl=impl, unit=w.unit, units=units,
                                about=w.about, **extra)


@pytest.mark.parametrize("impl", list(RECURRENT))
def test_recurrent(benchmark, smoke, recurrent, impl):
    """W1-W3: microseconds per time step (forward, backward and update)."""
    _needs(impl)
    w = recurrent
    data, weights = workloads.recurrent_data(w), workloads.recurrent_weights(w)
    _describe(benchmark, w, impl, w.units)
    trained = _time(benchmark, smoke, lambda: RECURRENT[impl](w, weights, data), rounds=11)
    assert all(np.isfinite(v).all() for v in trained.values())


def test_scaling(benchmark, smoke, scaling):
    """W4: time per step and peak memory of each policy as the sequence grows."""
    w, label, n = scaling
    cell = w.cell_workload(n)
    data, weights = workloads.recurrent_data(cell), workloads.recurrent_weights(cell)
    policy = workloads.scaling_policies(w)[label]

    def prepare():
        return workloads.minigrad_recurrent(cell, weights, data, policy=policy)
    peak = _peak_bytes(prepare())
    _describe(benchmark, w, "minigrad", n, policy=label, n=n, peak_bytes=peak)
    _time(benchmark, smoke, prepare, rounds=3)
    assert peak > 0


def _peak_bytes(run):
    """The most memory a run held at once beyond what it started with (tracemalloc sees
    every NumPy array), in a run of its own: tracing slows everything down."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("impl", list(CHAIN))
def test_chain(benchmark, smoke, chain, impl):
    """W5: microseconds per op of a long chain of tiny elementwise ops, forward + backward."""
    _needs(impl)
    w = chain
    data = workloads.chain_data(w)
    _describe(benchmark, w, impl, w.units)
    grad = _time(benchmark, smoke, lambda: CHAIN[impl](w, data), rounds=31)
    assert np.isfinite(grad["x.grad"]).all()


def _time_on_gpu(benchmark, smoke, w, impl, impls, workloads_name):
    """Time impls[impl] on workload w on the GPU: skipped, saying why, without one (or
    without PyTorch's CUDA for PyTorch's implementations)."""
    from minigrad import backends
    if not backends.cuda_available():
        pytest.skip(f"needs a usable CUDA GPU (CuPy and a driver): {w.about} "
                    f"(workloads.{workloads_name})")
    _needs(impl)
    if impl.startswith("torch") and not torch_impl.torch.cuda.is_available():
        pytest.skip("this PyTorch has no CUDA")
    w = w.smoke() if smoke else w
    data, weights = workloads.recurrent_data(w), workloads.recurrent_weights(w)
    _describe(benchmark, w, impl, w.units, device="cuda")
    # run() ends by copying the weights back, which waits for the GPU: the timing is honest.
    trained = _time(benchmark, smoke, lambda: impls[impl](w, weights, data, device="cuda"), rounds=5)
    assert all(np.isfinite(v).all() for v in trained.values())


GPU = {"minigrad": workloads.minigrad_recurrent, "minigrad-seq": workloads.minigrad_sequence,
       "torch-cell": torch_impl.torch_cell_loop, "torch-fused": torch_impl.torch_fused}


@pytest.mark.parametrize("impl", list(GPU))
@pytest.mark.parametrize("w", workloads.GPU, ids=[w.name for w in workloads.GPU])
def test_recurrent_gpu(benchmark, smoke, w, impl):
    """On a GPU: W1 and W2 at hidden 256 and 1024, batch 64, microseconds per time step;
    PyTorch's eager cell loop and its fused (cuDNN) layer on the same GPU."""
    _time_on_gpu(benchmark, smoke, w, impl, GPU, "GPU")


def _step_by_step(w, weights, data, device="cpu"):
    """minigrad-seq with the window kernel off: per time step one matmul and one cell kernel."""
    from minigrad import backends
    run = workloads.minigrad_sequence(w, weights, data, device=device)

    def stepwise():
        with backends.using(window="numpy"):
            return run()
    return stepwise


GPU_WINDOW = {"minigrad-seq": workloads.minigrad_sequence, "minigrad-seq-steps": _step_by_step,
              "torch-cell": torch_impl.torch_cell_loop, "torch-fused": torch_impl.torch_fused}


@pytest.mark.parametrize("impl", list(GPU_WINDOW))
@pytest.mark.parametrize("w", workloads.GPU_WINDOW, ids=[w.name for w in workloads.GPU_WINDOW])
def test_window_gpu(benchmark, smoke, w, impl):
    """On a GPU, at small hidden sizes: the sequence layer with its whole-window kernel
    (minigrad-seq) and step by step (minigrad-seq-steps), against PyTorch's eager cell loop
    and cuDNN; microseconds per time step."""
    _time_on_gpu(benchmark, smoke, w, impl, GPU_WINDOW, "GPU_WINDOW")
