"""The benchmark suite: every workload, every implementation, timed by pytest-benchmark.

Run it with `pytest benchmarks` (add --benchmark-compare to compare with the last
saved run), or `python -m benchmarks.report` for the table of medians and ratios.
Each benchmark's extra_info says what one unit of work is (a time step, an op) and
how many units a round does; the report divides by that.

A timing only counts if the timed run did the workload's work, so each benchmark checks
its result: the trained weights against the NumPy floor's (W7's: against the other
implementation's, minigrad's or PyTorch's), the chain's gradient against
its derivative computed forward in float64, and each policy's peak memory against what
its window may hold. (tests/test_benchmarks.py checks the same maths at tiny sizes in
float64; here it is the timed run, at the sizes and in the dtype that were timed.)
"""
import functools
import time
import tracemalloc

import numpy as np
import pytest

from . import floor, jax_impl, limit, torch_impl, workloads

RECURRENT = {"minigrad": workloads.minigrad_recurrent, "numpy": floor.numpy_recurrent,
             "minigrad-seq": workloads.minigrad_sequence, "numpy-window": floor.numpy_recurrent_window,
             "torch-cell": torch_impl.torch_cell_loop, "torch-fused": torch_impl.torch_fused,
             "jax": jax_impl.jax_recurrent}
# W6 (stacked layers), W8 and the LSTM sweeps: the sequence-layer form only
LAYER_FORM = {name: RECURRENT[name] for name in ("minigrad-seq", "numpy-window", "torch-fused", "jax")}
CHAIN = {"minigrad": workloads.minigrad_chain, "numpy": floor.numpy_chain,
         "torch": torch_impl.torch_chain}
# W7, the character language model: minigrad's Stream against PyTorch's fused nn.LSTM
CHARLM = {"minigrad-stream": workloads.minigrad_charlm, "torch-fused": torch_impl.torch_charlm}


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


def _missing(impl):
    """Why `impl` cannot run here (its library is not installed), or None."""
    if impl.startswith("torch") and torch_impl.torch is None:
        return torch_impl.MISSING
    if impl == "jax" and not jax_impl.load():
        return jax_impl.MISSING
    return None


def _needs(impl):
    if _missing(impl):
        pytest.skip(_missing(impl))


def _describe(benchmark, w, impl, units, **extra):
    """What the report needs: the workload, the implementation, and the units of work a round does."""
    benchmark.group = w.name
    benchmark.extra_info.update(workload=w.name, impl=impl, unit=w.unit, units=units,
                                about=w.about, **extra)


@pytest.mark.parametrize("impl", list(RECURRENT))
def test_recurrent(benchmark, smoke, recurrent, impl):
    """W1-W3: microseconds per time step (forward, backward and update)."""
    _train(benchmark, smoke, recurrent, impl, RECURRENT)


@pytest.mark.parametrize("impl", list(LAYER_FORM))
def test_stacked(benchmark, smoke, stacked, impl):
    """W6, a 2-layer LSTM with dropout: microseconds per time step, as W1-W3."""
    _train(benchmark, smoke, stacked, impl, LAYER_FORM)


@pytest.mark.parametrize("impl", list(LAYER_FORM))
def test_large(benchmark, smoke, large, impl):
    """W8, a large LSTM (256 -> 512, batch 64, TBPTT(50, 50)): microseconds per time step, as W1-W3."""
    _train(benchmark, smoke, large, impl, LAYER_FORM)


@pytest.mark.parametrize("impl", list(LAYER_FORM))
def test_sweep(benchmark, smoke, sweep, impl):
    """The LSTM sweeps (W2 at hidden 64-1024, batch 32, and at batch 8-64, hidden 128):
    microseconds per time step of the layer form, as W1-W3; the report has a table of them."""
    _train(benchmark, smoke, sweep, impl, LAYER_FORM)


# Side by side: a workload's implementations alternated round by round, so that each ratio
# compares runs made within seconds of each other. (The benchmarks above run each
# implementation's rounds in a block; on a shared machine whose speed drifts by a quarter from
# one minute to the next, two blocks can meet different loads.) The first round warms up;
# then at least SIDE_ROUNDS, a whole number of rotations, so that each implementation runs
# first equally often.
SIDE_ROUNDS = 7


def test_side_by_side(benchmark, smoke, side):
    """Every implementation of W1-W3, W6-W8 and the LSTM sweeps, one run each per round in
    an order that rotates from round to round; extra_info["side_by_side"] holds each one's
    microseconds per time step, round by round (the report takes the medians of the
    within-round ratios). Each run's weights are checked as the other benchmarks check them."""
    w = side
    charlm = w.name in {x.name for x in workloads.CHARLM}
    impls = (CHARLM if charlm else RECURRENT if w.name in {x.name for x in workloads.RECURRENT}
             else LAYER_FORM)
    names = [name for name in impls if not _missing(name)]
    if charlm:
        data, weights = workloads.charlm_data(w), workloads.charlm_weights(w)
    else:
        data, weights = workloads.recurrent_data(w), workloads.recurrent_weights(w)
    check = _check_charlm if charlm else _check_trained
    times = {name: [] for name in names}
    rounds = 1 if smoke else 1 + -(-SIDE_ROUNDS // len(names)) * len(names)

    def alternate():
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:  # (round 0: the warm-up)
                run = impls[name](w, weights, data)
                start = time.perf_counter()
                trained = run()
                seconds = time.perf_counter() - start
                if r or smoke:
                    times[name].append(seconds / w.units * 1e6)
                if r == rounds - 1:
                    check(w, name, weights, trained)
    benchmark.pedantic(alternate, rounds=1, iterations=1)
    _describe(benchmark, w, "side-by-side", w.units, side_by_side=times)


def test_limit(benchmark, smoke, recurrent):
    """The at-shape limit of W1-W3 (benchmarks/limit.py): exactly the matrix products of the
    window floor's round, at their shapes and layouts, timed alone; the report sets
    minigrad's layer against it."""
    _limit(benchmark, smoke, recurrent)


def test_stacked_limit(benchmark, smoke, stacked):
    """W6's at-shape limit, as W1-W3's."""
    _limit(benchmark, smoke, stacked)


def test_large_limit(benchmark, smoke, large):
    """W8's at-shape limit, as W1-W3's."""
    _limit(benchmark, smoke, large)


def _limit(benchmark, smoke, w):
    data, weights = workloads.recurrent_data(w), workloads.recurrent_weights(w)
    calls = limit.record_products(floor.numpy_recurrent_window(w, weights, data))
    assert calls, "the window floor made no products"
    _describe(benchmark, w, "numpy-matmuls", w.units, products=len(calls))
    benchmark.pedantic(limit.replay, setup=lambda: ((limit.prepare(calls),), {}),
                       rounds=1 if smoke else 11, warmup_rounds=0 if smoke else 1)


def _train(benchmark, smoke, w, impl, impls):
    _needs(impl)
    data, weights = workloads.recurrent_data(w), workloads.recurrent_weights(w)
    _describe(benchmark, w, impl, w.units)
    extra = {}

    def prepare():  # a run may say more about itself (JAX: the seconds its compiling took)
        run = impls[impl](w, weights, data)
        extra.update(getattr(run, "extra_info", {}))
        return run
    trained = _time(benchmark, smoke, prepare, rounds=11)
    benchmark.extra_info.update(extra)
    _check_trained(w, impl, weights, trained)


@functools.cache
def _floor(w, impl):
    """The weights the NumPy floor `impl` ("numpy" or "numpy-window") trains on the CPU from
    the workload's starting weights and data (float32, as timed)."""
    return RECURRENT[impl](w, workloads.recurrent_weights(w), workloads.recurrent_data(w))()


def _check_trained(w, impl, start, trained):
    """The timed run trained the workload: its weights, in the workload's dtype, are the
    NumPy floor's (the window floor's for the floor itself), up to float32 rounding.

    Where rounding decides the outcome, that cannot hold: in W3 at full size (Adagrad on
    random symbols) a gradient near zero has the sign of its rounding error and Adagrad
    moves its weight by a full lr all the same, so two correct implementations drift apart
    within ten updates (in float64 too). The two floors, written independently, tell: when
    they disagree as well, the run must at least have moved each weight as far as the floor.
    A stacked workload has one floor, the window's; PyTorch draws dropout masks of its own,
    so with dropout it too must only move each weight as far as the floor (JAX is given the
    floor's masks, so it must match).
    """
    stacked = w.layers > 1
    reference = _floor(w, "numpy-window" if impl == "numpy" or stacked else "numpy")

    def relative(a, b, name):  # |a - b| against how far b moved
        return np.linalg.norm(a[name] - b[name]) / np.linalg.norm(b[name] - start[name])
    assert trained.keys() == start.keys()
    for name, value in start.items():
        assert trained[name].dtype == value.dtype and trained[name].shape == value.shape, name
        assert not np.array_equal(trained[name], value), f"{impl}: {name} did not train"
    error, name = max((relative(trained, reference, name), name) for name in start)
    if error < 1e-3:
        return
    message = f"{impl}: {name} is not the floor's (off by {error:.1e} of the floor's change)"
    if not (impl.startswith("torch") and w.dropout):  # then only where the two floors disagree
        assert not stacked, message
        floors = _floor(w, "numpy"), _floor(w, "numpy-window")
        assert max(relative(*floors, name) for name in start) > 1e-4, message
    for name, value in start.items():  # rounding decides: as far as the floor, within 2x
        moved = np.linalg.norm(trained[name] - value) / np.linalg.norm(reference[name] - value)
        assert 0.5 < moved < 2, f"{impl}: {name} moved {moved:.2f}x as far as the floor's"


def test_scaling(benchmark, smoke, scaling):
    """W4: time per step and peak memory of each policy as the sequence grows."""
    w, label, n = scaling
    cell = w.cell_workload(n)
    data, weights = workloads.recurrent_data(cell), workloads.recurrent_weights(cell)
    policy = workloads.scaling_policies(w)[label]

    def prepare():
        return workloads.minigrad_recurrent(cell, weights, data, policy=policy)
    peak = _peak(w, label, n)
    _describe(benchmark, w, "minigrad", n, policy=label, n=n, peak_bytes=peak)
    _time(benchmark, smoke, prepare, rounds=3)
    # TBPTT(k1, k2) holds the records of at most max(k1, k2) steps (README, rule 5; with
    # recompute, fewer), a few versions of the parameters and one loss per update: at every n
    # its peak stays below BPTT's over a sequence of 3 max(k1, k2) steps, which BPTT's own
    # peak exceeds once n is longer than that.
    window = {other: max(k1, k2) for other, k1, k2, _ in w.policies if k1 is not None}
    if label in window:
        bound = _peak(w, "BPTT", 3 * window[label])
        assert peak < bound, f"{label} at n = {n}: {peak} bytes, above BPTT's at n = {3 * window[label]}"
    else:
        for other, steps in window.items():
            if n > 3 * steps:
                assert peak > _peak(w, "BPTT", 3 * steps), f"BPTT at n = {n} is within {other}'s bound"


@functools.cache
def _peak(w, label, n):
    """The peak memory of W4 under policy `label` at n steps (once per run of the suite)."""
    cell = w.cell_workload(n)
    data, weights = workloads.recurrent_data(cell), workloads.recurrent_weights(cell)
    policy = workloads.scaling_policies(w)[label]
    return _peak_bytes(workloads.minigrad_recurrent(cell, weights, data, policy=policy))


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
    grad = _time(benchmark, smoke, lambda: CHAIN[impl](w, data), rounds=31)["x.grad"]
    # The derivative of the chain computed forward, alongside it, in float64:
    # y' = tanh(y a + b)  ->  dy'/dx = (1 - y'^2) a dy/dx.
    x, a, b = (v.astype(np.float64) for v in data)
    y, dy = x, np.ones_like(x)
    for _ in range(w.ops // 3):
        y = np.tanh(y * a + b)
        dy = dy * (1 - y * y) * a
    assert grad.dtype == data[0].dtype and grad.shape == x.shape
    # float32; some entries vanish along the chain (below 1e-60 at full length): those only
    # need to be small
    np.testing.assert_allclose(grad, dy, rtol=1e-4, atol=1e-4 * np.abs(dy).max())


@pytest.mark.parametrize("impl", list(CHARLM))
def test_charlm(benchmark, smoke, charlm, impl):
    """W7, the character language model: microseconds per time step (forward, backward,
    clipping and Adam), minigrad as `minigrad train --text` runs it against PyTorch."""
    _needs(impl)
    w = charlm
    data, weights = workloads.charlm_data(w), workloads.charlm_weights(w)
    _describe(benchmark, w, impl, w.units)
    trained = _time(benchmark, smoke, lambda: CHARLM[impl](w, weights, data), rounds=11)
    _check_charlm(w, impl, weights, trained)


def _check_charlm(w, impl, weights, trained):
    """W7's run trained: checked against the other implementation (minigrad against itself
    without PyTorch); at full size in float32 the two end within about 1e-5 of how far the
    weights moved."""
    other = impl if torch_impl.torch is None else next(i for i in CHARLM if i != impl)
    reference = _charlm_reference(w, other)
    assert trained.keys() == weights.keys()
    for name, value in weights.items():
        assert trained[name].dtype == value.dtype and trained[name].shape == value.shape, name
        assert not np.array_equal(trained[name], value), f"{impl}: {name} did not train"
        error = (np.linalg.norm(trained[name] - reference[name])
                 / np.linalg.norm(reference[name] - value))
        assert error < 1e-3, f"{impl}: {name} is off by {error:.1e} of the reference's change"


@functools.cache
def _charlm_reference(w, impl):
    """The weights `impl` trains W7 (w) to from its starting weights and data, once per run."""
    return CHARLM[impl](w, workloads.charlm_weights(w), workloads.charlm_data(w))()


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
    _check_trained(w, impl, weights, trained)  # against the floors on the CPU


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
