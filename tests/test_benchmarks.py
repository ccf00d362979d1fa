"""The benchmark suite cannot rot: every workload runs here at tiny sizes, the NumPy floor
computes the same numbers as minigrad, and the report command works end to end."""
import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from benchmarks import floor, jax_impl, report, torch_impl, workloads
from benchmarks.test_workloads import _peak_bytes

ROOT = Path(__file__).resolve().parent.parent
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_JAX = importlib.util.find_spec("jax") is not None


# -- the floor and minigrad do the same maths ---------------------------------------------

@pytest.mark.parametrize("w", workloads.RECURRENT, ids=lambda w: w.name)
def test_floors_and_minigrad_train_to_the_same_weights(w):
    # float64, smoke sizes: three updates of TBPTT(4, 4); the floors are written by hand, so
    # agreeing to rounding error checks them all (and train_sequence, the cells, the layers
    # and the optimizers)
    w = w.smoke()
    data = workloads.recurrent_data(w, np.float64)
    weights = workloads.recurrent_weights(w, np.float64)
    hand = floor.numpy_recurrent(w, weights, data)()
    for other in (workloads.minigrad_recurrent, workloads.minigrad_sequence, floor.numpy_recurrent_window):
        _assert_same_training(other, w, weights, data, hand)


def _assert_same_training(implementation, w, weights, data, hand):
    """implementation trains w to the weights `hand` (which did train), to rounding error."""
    ours = implementation(w, weights, data)()
    assert ours.keys() == hand.keys() == weights.keys()
    for name in weights:
        assert not np.allclose(hand[name], weights[name]), f"{name} did not train"
        np.testing.assert_allclose(ours[name], hand[name], rtol=1e-10, atol=1e-13,
                                   err_msg=f"{implementation.__name__}: {name}")


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_the_stacked_floor_and_minigrad_train_to_the_same_weights(dropout):
    # W6 (2-layer LSTM) at smoke sizes in float64; with dropout, the floor draws the masks
    # minigrad's layer draws, from the generator it holds after its initial weights
    w = replace(workloads.W6.smoke(), dropout=dropout)
    data = workloads.recurrent_data(w, np.float64)
    weights = workloads.recurrent_weights(w, np.float64)
    hand = floor.numpy_recurrent_window(w, weights, data)()
    _assert_same_training(workloads.minigrad_sequence, w, weights, data, hand)
    if dropout:  # the masks changed the training
        without = floor.numpy_recurrent_window(replace(w, dropout=0.0), weights, data)()
        assert not np.allclose(hand["weight_ih_l0"], without["weight_ih_l0"])


def test_the_dropout_generator_skips_the_draws_minigrads_layer_makes_first():
    # nn.LSTM(rng=LAYER_SEED) draws its initial weights as recurrent_weights(seed=LAYER_SEED)
    # does: the same values in the same order, after which dropout_generator stands
    from minigrad import nn
    w = workloads.W6.smoke()
    layer = nn.LSTM(w.input, w.hidden, num_layers=2, dropout=0.2, dtype=np.float64,
                    rng=workloads.LAYER_SEED)
    drawn = workloads.recurrent_weights(w, np.float64, seed=workloads.LAYER_SEED)
    assert [name for name, _ in layer.named_parameters()] == list(drawn)[:-2]  # all but the head
    for name, p in layer.named_parameters():
        np.testing.assert_array_equal(p.numpy(), drawn[name], err_msg=name)


@pytest.mark.skipif(not HAS_TORCH, reason=torch_impl.MISSING)
@pytest.mark.parametrize("w", workloads.RECURRENT + workloads.STACKED, ids=lambda w: w.name)
def test_pytorch_trains_to_the_floors_weights_without_dropout(w):
    # PyTorch draws its own dropout masks: compared with dropout 0
    w = replace(w.smoke(), dropout=0.0)
    data = workloads.recurrent_data(w, np.float64)
    weights = workloads.recurrent_weights(w, np.float64)
    hand = floor.numpy_recurrent_window(w, weights, data)()
    _assert_same_training(torch_impl.torch_fused, w, weights, data, hand)


@pytest.mark.skipif(not HAS_JAX, reason=jax_impl.MISSING)
@pytest.mark.parametrize("w", workloads.RECURRENT + workloads.STACKED + workloads.LARGE, ids=lambda w: w.name)
def test_jax_trains_to_the_floors_weights(w):
    # float64 (jax's x64 mode, for this test only), smoke sizes: the compiled window step
    # (scan, value_and_grad, the update) against the window floor; W6 with its dropout, since
    # JAX is given the floor's masks
    import jax
    w = w.smoke()
    data = workloads.recurrent_data(w, np.float64)
    weights = workloads.recurrent_weights(w, np.float64)
    hand = floor.numpy_recurrent_window(w, weights, data)()
    with jax.enable_x64(True):
        _assert_same_training(jax_impl.jax_recurrent, w, weights, data, hand)
        assert jax_impl.jax_recurrent(w, weights, data).extra_info["compile_s"] > 0


@pytest.mark.skipif(not HAS_TORCH, reason=torch_impl.MISSING)
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-4), (np.float64, 1e-10)])
def test_pytorch_and_minigrad_train_the_char_lm_to_the_same_weights(dtype, rtol):
    # W7 at smoke sizes: two feeds of 8 steps, four windows of TBPTT(4, 4), so that the
    # stream's whole segments, its one-step segments at the end of each feed and a window
    # reaching back across feeds all run; Adam and clipping (the norm is above 1 here).
    # Each weight within rtol of how far it moved (float32: about 1e-6 measured).
    w = workloads.W7.smoke()
    data, weights = workloads.charlm_data(w), workloads.charlm_weights(w, dtype)
    assert list(weights) == w.weight_names()
    ours = workloads.minigrad_charlm(w, weights, data)()
    theirs = torch_impl.torch_charlm(w, weights, data)()
    assert ours.keys() == theirs.keys() == weights.keys()
    for name, start in weights.items():
        assert ours[name].dtype == theirs[name].dtype == dtype, name
        moved = np.linalg.norm(theirs[name] - start)
        assert moved > 0, f"{name} did not train"
        assert np.linalg.norm(ours[name] - theirs[name]) <= rtol * moved, name


def test_the_char_lm_clips_in_its_smoke_run(monkeypatch):
    # the comparison above covers clipping only if some update's gradient norm exceeds the limit
    # (the stream clips with scale_grad_norm_, which keeps the norm to itself; clip_grad_norm_
    # scales the same way and returns it)
    from minigrad import bptt
    from minigrad.optim import clip_grad_norm_
    w = workloads.W7.smoke()
    norms = []

    def recording(params, max_norm):
        norms.append(clip_grad_norm_(params, max_norm))
    monkeypatch.setattr(bptt, "scale_grad_norm_", recording)
    workloads.minigrad_charlm(w, workloads.charlm_weights(w, np.float64), workloads.charlm_data(w))()
    assert len(norms) == w.steps // w.k and max(norms) > w.clip


def test_the_char_lm_is_what_the_issue_fixes():
    w = workloads.W7
    assert (w.vocab, w.hidden, w.layers, w.batch, w.k, w.feed, w.lr, w.clip) == (96, 256, 2, 32, 50, 100, 2e-3, 1.0)
    assert w.steps % w.feed == 0 and w.feed % w.k == 0  # whole feeds, whole windows
    xs, ys = workloads.charlm_data(w)
    assert xs.shape == ys.shape == (w.steps, w.batch) and xs.dtype == np.int64
    np.testing.assert_array_equal(xs[1:], ys[:-1])  # the next character


@pytest.mark.parametrize("w", workloads.RECURRENT + workloads.STACKED + workloads.LARGE + workloads.SWEEP,
                         ids=lambda w: w.name)
def test_the_full_workloads_are_what_the_issue_fixes(w):
    sizes = {"W1": (32, 20), "W2": (32, 20), "W3": (1, 25), "W6": (32, 20), "W8": (64, 50)}
    assert (w.batch, w.k) == sizes.get(w.name, (w.batch, 20))
    assert w.steps % w.k == 0  # every window full, as the floor and PyTorch loops assume


def test_w8_is_the_issues_large_lstm():
    w8 = workloads.W8
    assert (w8.cell, w8.input, w8.hidden, w8.output, w8.batch, w8.k) == ("lstm", 256, 512, 64, 64, 50)
    assert (w8.loss, w8.optimizer, w8.layers) == ("mse", "sgd", 1)


def test_the_sweeps_are_w2_at_each_hidden_size_and_batch():
    points = {(w.hidden, w.batch): w for w in workloads.SWEEP}
    assert set(points) == ({(h, 32) for h in (64, 128, 256, 512, 1024)}
                           | {(128, b) for b in (8, 16, 32, 64)})
    assert len(workloads.SWEEP) == len(points) == 8  # (128, 32) once
    for (hidden, batch), w in points.items():
        assert w.name == f"S-H{hidden}-B{batch}" and report.SWEEP_NAME.fullmatch(w.name)
        assert replace(w, name="W2", hidden=128, batch=32, steps=400, about=workloads.W2.about) == workloads.W2
        assert w.steps >= 40 and (hidden < 512 or w.steps <= 100)  # fewer steps where they cost more


def test_w6_is_w2_with_a_second_layer_and_dropout():
    w6 = workloads.W6
    assert (w6.layers, w6.dropout) == (2, 0.2)
    assert replace(w6, name="W2", layers=1, dropout=0.0, about=workloads.W2.about) == workloads.W2


def test_floor_chain_and_minigrad_chain_give_the_same_gradient():
    w = workloads.W5.smoke()
    data = workloads.chain_data(w, np.float64)
    ours = workloads.minigrad_chain(w, data)()["x.grad"]
    hand = floor.numpy_chain(w, data)()["x.grad"]
    np.testing.assert_allclose(ours, hand, rtol=1e-12)
    assert np.abs(hand).max() > 1e-3  # the chain does not vanish at this length


def test_w4_memory_grows_under_bptt_and_stays_flat_under_tbptt():
    w = workloads.W4.smoke()
    policies = workloads.scaling_policies(w)

    def peak(label, n):
        cell = w.cell_workload(n)
        run = workloads.minigrad_recurrent(cell, workloads.recurrent_weights(cell),
                                           workloads.recurrent_data(cell), policy=policies[label])
        return _peak_bytes(run)
    short, long = w.lengths
    assert peak("BPTT", long) > 1.5 * peak("BPTT", short)
    assert peak("TBPTT(10, 10)", long) < 1.2 * peak("TBPTT(10, 10)", short)


# -- the suite and the report run -----------------------------------------------------------

def test_the_suite_and_the_report_run_in_smoke_mode(tmp_path):
    out = tmp_path / "run.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.report", "--smoke", "--no-autosave",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    names = {b["name"] for b in data["benchmarks"]}
    for workload in ("W1", "W2", "W3"):
        assert f"test_recurrent[{workload}-minigrad]" in names
        assert f"test_recurrent[{workload}-numpy]" in names
        assert f"test_recurrent[{workload}-minigrad-seq]" in names
        assert f"test_recurrent[{workload}-numpy-window]" in names
    assert "test_stacked[W6-minigrad-seq]" in names and "test_stacked[W6-numpy-window]" in names
    assert "test_large[W8-minigrad-seq]" in names and "test_large[W8-numpy-window]" in names
    for point in workloads.SWEEP:
        assert f"test_sweep[{point.name}-minigrad-seq]" in names
        assert f"test_sweep[{point.name}-numpy-window]" in names
    assert "test_chain[W5-minigrad]" in names
    assert "test_charlm[W7-minigrad-stream]" in names
    assert {"test_limit[W1]", "test_limit[W2]", "test_limit[W3]", "test_stacked_limit[W6]",
            "test_large_limit[W8]"} <= names
    assert "| workload | minigrad layer | NumPy window floor | at-shape limit |" in proc.stdout
    assert "test_scaling[BPTT-n24]" in names
    assert "| W1 | cells, per step | time step |" in proc.stdout
    assert "| W1 | layer, per window | time step |" in proc.stdout and "| W5 | ops | op |" in proc.stdout
    assert "| W6 | layer, per window | time step |" in proc.stdout and "| W6 / W2 |" in proc.stdout
    assert "| W8 | layer, per window | time step |" in proc.stdout
    assert sum(line.startswith("| W8 |") for line in proc.stdout.splitlines()) == 3  # side by side, limit
    for w in workloads.RECURRENT + workloads.STACKED + workloads.LARGE + workloads.CHARLM + workloads.SWEEP:
        assert f"test_side_by_side[{w.name}]" in names
    assert "Side by side: each workload's implementations alternated round by round" in proc.stdout
    assert "minigrad cells / per-step floor" in proc.stdout  # a goal, judged
    assert "LSTM sweeps, µs per time step of the layer form" in proc.stdout
    assert "| S-H1024-B32 | 1024 | 32 |" in proc.stdout and "| S-H128-B8 | 128 | 8 |" in proc.stdout
    assert "- The hidden sweep at batch 32: minigrad / PyTorch fused" in proc.stdout or not HAS_TORCH
    assert "The character language model, µs per time step:" in proc.stdout
    assert sum(line.startswith("| W7 |") for line in proc.stdout.splitlines()) == 2  # its table, side by side
    assert "**Smoke sizes**" in proc.stdout
    assert "1 thread(s)" in proc.stdout
    if not HAS_TORCH:
        assert "PyTorch is not installed" in proc.stderr
        assert "PyTorch not installed" in proc.stdout
    info = data["machine_info"]["minigrad"]
    if HAS_JAX:  # a peer on every layer-form workload, on one thread, its compiling reported
        for name in ("test_recurrent[W1-jax]", "test_recurrent[W3-jax]", "test_stacked[W6-jax]",
                     "test_large[W8-jax]", "test_sweep[S-H64-B32-jax]"):
            assert name in names
        assert jax_impl.ONE_THREAD in info["xla_flags"] and info["jax"] in proc.stdout
        assert "- JAX: `jax.jit` of one window's step" in proc.stdout
        compiling = [b["extra_info"]["compile_s"] for b in data["benchmarks"] if b["extra_info"]["impl"] == "jax"]
        assert compiling and all(s > 0 for s in compiling)
    else:
        assert "JAX is not installed" in proc.stderr
        assert "JAX not installed" in proc.stdout and info["jax"] is None
    assert not out.with_name(out.name + ".partial").exists()


def _bench(workload, impl, median, units, **extra):
    return {"name": f"{workload}-{impl}", "stats": {"median": median},
            "extra_info": {"workload": workload, "impl": impl, "units": units,
                           "unit": "op" if workload == "W5" else "time step", **extra}}


def test_the_table_divides_by_the_units_and_judges_the_targets():
    data = {"datetime": "2026-11-21T10:00:00", "machine_info": {"minigrad": {"threads": 1, "cpu": "TestCPU"}},
            "benchmarks": [
                _bench("W1", "minigrad", 0.048, 400),      # 120 us per step
                _bench("W1", "numpy", 0.040, 400),         # 100
                _bench("W1", "torch-cell", 0.080, 400),    # 200
                _bench("W1", "minigrad-seq", 0.032, 400),  # 80
                _bench("W1", "numpy-window", 0.020, 400),  # 50: 1.6x, above 1.25
                _bench("W3", "minigrad", 0.200, 1000),     # 200
                _bench("W3", "numpy", 0.100, 1000),        # 100: 2x, above 1.5
                _bench("W5", "minigrad", 0.003, 1000),     # 3 us per op
                _bench("W5", "torch", 0.001, 1000),        # 1: 3x, above 2
                _bench("W1", "torch-fused", 0.040, 400),   # 100
                _bench("W1", "jax", 0.064, 400, compile_s=0.5),  # 160
            ]}
    text = report.render(data)
    assert "Measured 2026-11-21 on TestCPU, 1 thread(s)" in text
    assert "JAX" not in text.splitlines()[0]  # a run saved before JAX joined the suite
    w1, w1_layer = [line for line in text.splitlines() if line.startswith("| W1 |")]
    # (PyTorch fused and JAX run whole windows: set against the layer only)
    assert "| cells, per step | time step | 120 | 100 | 200 | 100 | 160 | 1.20× | 0.60× | - | - |" in w1
    assert "≤ 1.25× floor: met" in w1 and "< 1× PyTorch eager: met" in w1
    assert "| layer, per window | time step | 80.0 | 50.0 | 200 | 100 | 160 | 1.60× | 0.40× | 0.80× | 0.50× |" in w1_layer
    assert "≤ 1.25× floor: missed" in w1_layer and "< 1× PyTorch eager: met" in w1_layer
    assert "compiled and run once before timing; that took (not in the times): W1 0.50 s." in text
    w3 = next(line for line in text.splitlines() if line.startswith("| W3 |"))
    assert "2.00×" in w3 and "≤ 1.5× floor: missed" in w3
    w5 = next(line for line in text.splitlines() if line.startswith("| W5 |"))
    assert "| ops | op |" in w5 and "3.00×" in w5 and "≤ 2× PyTorch eager: missed" in w5


def test_the_stacked_table_divides_the_stacked_workload_by_the_one_it_stacks():
    benches = [_bench("W6", "minigrad-seq", 0.090, 400),   # 225 us per step
               _bench("W6", "numpy-window", 0.064, 400),   # 160
               _bench("W6", "torch-fused", 0.036, 400),    # 90
               _bench("W2", "minigrad-seq", 0.040, 400),   # 100
               _bench("W2", "numpy-window", 0.032, 400),   # 80
               _bench("W2", "torch-fused", 0.020, 400)]    # 50
    text = report.render({"benchmarks": benches})
    assert "| W6 | layer, per window | time step | 225 | 160 | - | 90.0 | - | 1.41× | - | 2.50× | - | - |" in text
    assert "| W2 | 100 | 80.0 | 50.0 | - | 1.25× | 2.00× | - |" in text
    assert "| W6 | 225 | 160 | 90.0 | - | 1.41× | 2.50× | - |" in text
    assert "| W6 / W2 | 2.25× | 2.00× | 1.80× | - | | | |" in text
    with_jax = report.render({"benchmarks": benches + [_bench("W6", "jax", 0.072, 400),    # 180
                                                       _bench("W2", "jax", 0.030, 400)]})  # 75
    assert "| W6 | 225 | 160 | 90.0 | 180 | 1.41× | 2.50× | 1.25× |" in with_jax
    assert "| W6 / W2 | 2.25× | 2.00× | 1.80× | 2.40× | | | |" in with_jax
    assert "What stacking costs" not in report.render({"benchmarks": benches[:3]})  # W2 not run


def test_the_sweep_table_gives_the_ratios_and_leaves_the_goal_to_the_side_by_side_table():
    benches = []
    for name, mine, fused in (("S-H64-B32", 0.040, 0.040),     # 100 us per step: 1.0x
                              ("S-H1024-B32", 0.048, 0.040),   # 120: 1.2x
                              ("S-H128-B8", 0.060, 0.040)):    # 150: 1.5x, not in the hidden sweep
        benches += [_bench(name, "minigrad-seq", mine, 400), _bench(name, "numpy-window", 0.032, 400),
                    _bench(name, "torch-fused", fused, 400), _bench(name, "jax", 0.080, 400, compile_s=1.25)]
    benches.append(_bench("W2", "minigrad-seq", 0.040, 400))
    text = report.render({"benchmarks": benches})
    lines = text.splitlines()
    assert "LSTM sweeps, µs per time step of the layer form" in text
    rows = [line for line in lines if line.startswith("| S-")]
    assert [row.split(" | ")[0] for row in rows] == ["| S-H64-B32", "| S-H1024-B32", "| S-H128-B8"]
    assert rows[0] == "| S-H64-B32 | 64 | 32 | 100 | 1.25× | 1.00× | 0.50× |"
    assert rows[1] == "| S-H1024-B32 | 1024 | 32 | 120 | 1.50× | 1.20× | 0.60× |"
    assert rows[2] == "| S-H128-B8 | 128 | 8 | 150 | 1.88× | 1.50× | 0.75× |"
    assert "- The hidden sweep at batch 32: minigrad / PyTorch fused at most 1.20× (S-H1024-B32)" in text
    assert "met" not in text and "missed" not in text  # judged side by side only
    assert "that took (not in the times): S-H64-B32 1.25 s, S-H1024-B32 1.25 s, S-H128-B8 1.25 s." in text
    assert not any(line.startswith("| S-") for line in report.main_table(benches).splitlines())
    alone = report.render({"benchmarks": [_bench("S-H64-B32", "minigrad-seq", 0.040, 400)]})  # no PyTorch
    assert "| S-H64-B32 | 64 | 32 | 100 | - | - | - |" in alone
    assert "The hidden sweep" not in alone  # not measured


def test_the_limit_table_sets_the_layer_and_the_floor_against_the_products_alone():
    benches = [_bench("W2", "minigrad-seq", 0.040, 400),    # 100 us per step
               _bench("W2", "numpy-window", 0.032, 400),    # 80
               _bench("W2", "numpy-matmuls", 0.020, 400),   # 50
               _bench("W1", "minigrad-seq", 0.020, 400)]    # no limit measured: no row
    text = report.render({"benchmarks": benches})
    assert "The at-shape limit: the window floor's matrix products alone" in text
    assert "| W2 | 100 | 80.0 | 50.0 | 2.00× | 1.60× |" in text
    assert "| W1 | 50.0 | -" not in text
    assert "at-shape limit" not in report.render({"benchmarks": benches[:2]})


def test_the_limit_replays_exactly_the_floors_products_at_their_shapes_and_layouts():
    """record_products sees every np.dot of a window floor's round, with the weights as
    transposed views where the floor passes W.T; replay makes the same products again."""
    from benchmarks import floor, limit
    w = workloads.W2.smoke()
    data, weights = workloads.recurrent_data(w), workloads.recurrent_weights(w)
    calls = limit.record_products(floor.numpy_recurrent_window(w, weights, data))
    B, H, G = w.batch, w.hidden, 4 * w.hidden
    recurrent = (((B, H), "<f4", False), ((H, G), "<f4", True))  # h W_hh^T: W_hh (G, H) viewed as .T
    windows = -(-w.steps // w.k)  # a window's steps each make one recurrent product forward
    assert calls.count(recurrent) == w.steps and len(calls) > w.steps
    assert all(dtype == "<f4" for a, b in calls for _, dtype, _ in (a, b))
    operands = limit.prepare(calls)
    assert len(operands) == len(calls) and windows >= 1
    for (a, b), (x, y) in zip(calls, operands):
        assert (x.shape, x.dtype.str, not x.flags.c_contiguous) == a
        assert (y.shape, y.dtype.str, not y.flags.c_contiguous) == b
    assert limit.replay(operands) > 0


def test_the_language_model_table_gives_the_ratio_and_leaves_the_target_to_the_side_by_side_table():
    benches = [_bench("W7", "minigrad-stream", 1.2, 400),   # 3000 us per step
               _bench("W7", "torch-fused", 1.0, 400),       # 2500: 1.2x
               _bench("W1", "minigrad", 0.048, 400)]
    text = report.render({"benchmarks": benches})
    assert "The character language model, µs per time step:" in text
    assert "| W7 | 3000 | 2500 | 1.20× | ≤ 1.3× PyTorch fused, judged side by side |" in text
    assert sum(line.startswith("| W7 |") for line in text.splitlines()) == 1  # not in the main table
    slow = report.render({"benchmarks": [_bench("W7", "minigrad-stream", 1.4, 400),
                                         _bench("W7", "torch-fused", 1.0, 400),
                                         _bench("W7", "side-by-side", 1.0, 400, side_by_side={
                                             "minigrad-stream": [3500, 3500], "torch-fused": [2500, 2500]})]})
    assert "| W7 | 3500 | 2500 | 1.40× |" in slow
    assert "minigrad stream / PyTorch fused 1.40× ≤ 1.3×: missed" in slow  # judged side by side
    assert "| workload | minigrad runs |" not in slow  # no main table without its workloads
    alone = report.render({"benchmarks": [_bench("W7", "minigrad-stream", 1.2, 400)]})
    assert "| W7 | 3000 | - | - |" in alone  # PyTorch not installed


def test_the_gpu_table_judges_the_layer_against_pytorch_on_the_same_gpu():
    gpu = {"device": "cuda"}
    data = {"machine_info": {"minigrad": {"gpu": "NVIDIA H100, CuPy 14"}},
            "benchmarks": [
                _bench("W1", "minigrad", 0.040, 400),                # the CPU run: its own table
                _bench("W2-h64", "minigrad", 0.012, 400, **gpu),      # 30 us per step
                _bench("W2-h64", "minigrad-seq", 0.004, 400, **gpu),  # 10
                _bench("W2-h64", "minigrad-seq-steps", 0.008, 400, **gpu),
                _bench("W2-h64", "torch-cell", 0.016, 400, **gpu),    # 40: 0.25x
                _bench("W2-h64", "torch-fused", 0.002, 400, **gpu),   # 5: 2x, above 1.5
                _bench("W1-h256", "minigrad-seq", 0.010, 400, **gpu),   # 25
                _bench("W1-h256", "torch-cell", 0.008, 400, **gpu),     # 20: 1.25x, not faster
            ]}
    text = report.render(data)
    assert "On the GPU (NVIDIA H100, CuPy 14), µs per time step:" in text
    w2 = next(line for line in text.splitlines() if line.startswith("| W2-h64 |"))
    assert "| 30.0 | 10.0 | 20.0 | 40.0 | 5.0 | 0.25× | 2.00× |" in w2
    assert "< 1× eager: met" in w2 and "≤ 1.5× cuDNN: missed" in w2
    w1 = next(line for line in text.splitlines() if line.startswith("| W1-h256 |"))
    assert "| - | 25.0 | - | 20.0 | - | 1.25× | - |" in w1
    assert "< 1× eager: missed" in w1 and "≤ 1.5× cuDNN: -" in w1
    assert sum(line.startswith("| W1 |") for line in text.splitlines()) == 1  # in the CPU table only


def test_the_scaling_table_shows_the_spread_and_the_cost_model():
    rows = []
    for label, per_step in (("TBPTT(10, 10)", (100, 104)), ("TBPTT(10, 40)", (160, 160)),
                            ("TBPTT(10, 40, recompute)", (400, 400))):
        for n, t in zip((500, 8000), per_step):
            rows.append(_bench("W4", "minigrad", t * n * 1e-6, n, policy=label, n=n,
                               peak_bytes=2 ** 20 * (1 + n / 8000)))
    text = report.render({"benchmarks": rows})
    line = next(line for line in text.splitlines() if line.startswith("| TBPTT(10, 10) |"))
    assert "| 100 | 104 | 4.0% |" in line
    # F + B = 104 and F + 4B = 160 at n = 8000: B = 18.7, F = 85.3, 5F + 4B = 501.3
    assert "F = 85.3 µs" in text and "B = 18.7 µs" in text and "5F + 4B = 501.3 µs" in text
    assert "| TBPTT(10, 40) | 1.06 | 2.00 | 88.2% |" in text  # MiB, and the memory spread


def test_the_readme_table_is_replaced_between_its_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{report.README_START}\nold table\n{report.README_END}\n\nafter\n")
    report.write_readme(readme, "| new | table |")
    text = readme.read_text()
    assert "old table" not in text and "| new | table |" in text
    assert text.startswith("# Title") and text.endswith("after\n")
    readme.write_text("no markers here\n")
    with pytest.raises(report.ReportError, match="no benchmark table markers"):
        report.write_readme(readme, "x")


def test_the_real_readme_has_the_markers():
    text = (ROOT / "README.md").read_text()
    assert text.index(report.README_START) < text.index(report.README_END)


def test_several_runs_give_each_benchmark_its_median_over_them(tmp_path, capsys):
    paths = []
    for i, median in enumerate((0.040, 0.100, 0.048)):  # W1-minigrad: 100, 250, 120 us per step
        path = tmp_path / f"run{i}.json"
        path.write_text(json.dumps({"machine_info": {"minigrad": {"threads": 1}},
                                    "benchmarks": [_bench("W1", "minigrad", median, 400),
                                                   _bench("W1", "numpy", 0.040, 400)]}))
        paths.append(str(path))
    assert report.main(["--from", *paths]) == 0
    out = capsys.readouterr().out
    assert "Medians over 3 runs of the suite" in out
    assert "| W1 | cells, per step | time step | 120 | 100 | - | - | - | 1.20× |" in out
    combined = report.combine([report.load(path) for path in paths])
    assert combined["benchmarks"][0]["extra_info"]["run_medians"] == [0.040, 0.100, 0.048]


@pytest.mark.parametrize("argv, message", [
    (["--from", "no/such/file.json"], "cannot read no/such/file.json"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
    (["--repeat", "0"], "--repeat must be >= 1, got 0"),
])
def test_report_errors_are_one_line_and_exit_1(argv, message, capsys):
    assert report.main(argv) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and message in err


def test_report_rejects_a_json_that_is_not_a_benchmark_run(tmp_path, capsys):
    path = tmp_path / "other.json"
    path.write_text('{"something": 1}')
    assert report.main(["--from", str(path)]) == 1
    assert "not a pytest-benchmark JSON file" in capsys.readouterr().err


def test_the_report_runs_the_suite_without_blas_overrides_and_says_so(capsys):
    from benchmarks import report
    env = report.benchmark_environment({"PATH": "/bin", "OPENBLAS_CORETYPE": "Haswell",
                                        "OPENBLAS_L2_SIZE": "262144", "OPENBLAS_NUM_THREADS": "1"})
    assert env == {"PATH": "/bin", "OPENBLAS_NUM_THREADS": "1"}  # the thread count is not an override
    err = capsys.readouterr().err.splitlines()
    assert err == [f"note: the benchmark run unsets {name} (it slows OpenBLAS on some machines); the "
                   "report records the kernel that ran" for name in ("OPENBLAS_CORETYPE=Haswell",
                                                                      "OPENBLAS_L2_SIZE=262144")]


def test_the_blas_line_names_the_kernel_and_any_override(monkeypatch):
    from benchmarks import conftest
    info = [{"user_api": "blas", "internal_api": "openblas", "num_threads": 1, "version": "0.3.31",
             "architecture": "Haswell"}]
    monkeypatch.setattr(conftest.threadpoolctl, "threadpool_info", lambda: info)
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.delenv("OPENBLAS_L2_SIZE", raising=False)
    assert conftest.blas() == "openblas 0.3.31, Haswell kernel, 1 thread(s)"
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert conftest.blas() == "openblas 0.3.31, Haswell kernel, 1 thread(s); set: OPENBLAS_CORETYPE=Haswell"


def test_the_side_by_side_table_takes_medians_of_the_ratios_within_rounds():
    """Implementations alternated round by round: a goal is judged on the median of the
    within-round ratios, which a slow round for everyone leaves alone, not on the ratio of
    the medians (here 0.8 against 300 / 250 = 1.2)."""
    layer = [100, 100, 300, 300, 300]     # two fast rounds, then the machine slows down
    fused = [125, 125, 400, 250, 250]     # within rounds: 0.8, 0.8, 0.75, 1.2, 1.2
    jax = [50, 50, 150, 150, 150]
    sweep = {"minigrad-seq": [110, 110, 110], "torch-fused": [100, 100, 100]}
    data = {"datetime": "2026-12-04T10:00:00", "machine_info": {"minigrad": {"threads": 1, "cpu": "TestCPU"}},
            "benchmarks": [
                _bench("W2", "side-by-side", 1.0, 400,
                       side_by_side={"minigrad-seq": layer, "torch-fused": fused, "jax": jax}),
                _bench("S-H64-B32", "side-by-side", 1.0, 400, side_by_side=sweep),
                _bench("S-H64-B8", "side-by-side", 1.0, 400, side_by_side=sweep),
            ]}
    text = report.render(data)
    w2 = next(line for line in text.splitlines() if line.startswith("| W2 |"))
    assert "| 300 | 250 | 150 |" in w2  # the medians of each implementation's times
    assert "minigrad layer / PyTorch fused 0.80× ≤ 1×: met" in w2  # median of (0.8, 0.8, 0.75, 1.2, 1.2)
    h64 = next(line for line in text.splitlines() if line.startswith("| S-H64-B32 |"))
    assert "minigrad layer / PyTorch fused 1.10× ≤ 1.1×: met" in h64
    b8 = next(line for line in text.splitlines() if line.startswith("| S-H64-B8 |"))
    assert b8.endswith("| - |")  # no goal at batch 8
    assert "W2" not in report.main_table(data["benchmarks"])  # not a benchmark of one implementation


def test_several_runs_pool_their_side_by_side_rounds_and_unequal_rounds_are_an_error():
    """--repeat N: the side-by-side table judges every run's rounds, not the first run's."""
    def run(layer, fused):
        return {"datetime": "2026-12-04T10:00:00", "machine_info": {"minigrad": {"threads": 1}},
                "benchmarks": [_bench("W2", "side-by-side", 1.0, 400,
                                      side_by_side={"minigrad-seq": layer, "torch-fused": fused})]}
    combined = report.combine([run([90, 90], [100, 100]), run([120, 120, 120], [100, 100, 100])])
    assert combined["benchmarks"][0]["extra_info"]["side_by_side"] == {
        "minigrad-seq": [90, 90, 120, 120, 120], "torch-fused": [100] * 5}
    w2 = next(line for line in report.render(combined).splitlines() if line.startswith("| W2 |"))
    assert "minigrad layer / PyTorch fused 1.20× ≤ 1×: missed" in w2  # the first run alone: 0.90×
    with pytest.raises(report.ReportError, match="W2's implementations ran different numbers of rounds"):
        report.render(run([90, 90], [100]))


def test_the_layout_comparison_runs_and_both_layouts_train_alike(capsys):
    from benchmarks import layout_ab
    layout_ab.main(["3,5,3,4,8", "1"])  # LSTM 3 -> 5, batch 3, TBPTT(4, 4), 8 steps, one round
    out = capsys.readouterr().out
    assert "feature-major / batch-major" in out
    assert float(out.split("largest weight difference ")[1]) < 1e-5
