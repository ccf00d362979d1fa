"""python -m benchmarks.report: run the benchmark suite and print a table of medians and ratios.

    python -m benchmarks.report                 # every workload, 1 thread
    python -m benchmarks.report --threads 2     # BLAS and PyTorch with 2 threads (XLA: its default)
    python -m benchmarks.report --smoke         # tiny sizes, one round: does it all run?
    python -m benchmarks.report --readme        # also put the table into README.md
    python -m benchmarks.report --repeat 3      # the suite 3 times: medians over the runs

It saves pytest-benchmark's JSON (--json, by default .benchmarks/latest.json) and the run
in pytest-benchmark's storage (.benchmarks/), so that a later `pytest benchmarks
--benchmark-compare` compares with it. `--from PATH ...` prints the table of saved JSON
without running anything. Results worth keeping go to benchmarks/results/ (see its README).

A benchmark runs its rounds one after the other, so on a shared machine two benchmarks can
meet different loads; --repeat N runs the whole suite N times and takes each benchmark's
median over the runs, so that a ratio compares times taken throughout the same minutes.
"""
import argparse
import copy
import datetime
import fnmatch
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

from .workloads import SWEEP_BATCH

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
README_START = "<!-- benchmark table: start (python -m benchmarks.report --readme writes it) -->"
README_END = "<!-- benchmark table: end -->"

# Rows of the main table, per workload: (how minigrad runs it, minigrad's implementation,
# the floor it is compared with). The PyTorch columns are the same in every row.
VARIANTS = (("cells, per step", "minigrad", "numpy"),
            ("layer, per window", "minigrad-seq", "numpy-window"))
# The targets: workload -> (largest minigrad / floor, largest minigrad / PyTorch eager)
TARGETS = {"W1": (1.25, 1.0), "W2": (1.25, 1.0), "W3": (1.5, None), "W5": (None, 2.0)}
# A language model (W7) -> the largest minigrad / PyTorch fused; it has a table of its own:
# minigrad as its trainer runs it (a Stream) against the same model in PyTorch, no floor.
LANGUAGE_MODELS = {"W7": 1.3}
LANGUAGE_MODEL_COLUMNS = (("minigrad", "minigrad-stream"), ("PyTorch fused", "torch-fused"))
# A stacked workload -> the one-layer workload it stacks: their ratio is what the layers cost.
STACKED = {"W6": "W2"}
STACKED_COLUMNS = (("minigrad", "minigrad-seq"), ("NumPy floor", "numpy-window"),
                   ("PyTorch fused", "torch-fused"), ("JAX", "jax"))
# The LSTM sweeps (workloads.SWEEP, named S-H{hidden}-B{batch}) have a table of their own.
SWEEP_NAME = re.compile(r"S-H(\d+)-B(\d+)")
# The speed goals, judged on the side-by-side table only (implementations alternated round
# by round): (workloads, minigrad's implementation, the other, the largest ratio). Issue 21's,
# and W7's from issue 20. The
# issue's "W6" (LSTM 256-512, batch 64, T 50) is the suite's W8; the suite's W6, the stacked
# W2, is held to W2's goal. "S-H*-B32" is the hidden sweep at batch 32 (its S-H128-B32 is W2
# again, held to the sweep's 1.1x).
SIDE_GOALS = (("W1", "minigrad-seq", "torch-fused", 0.75), ("W1", "minigrad-seq", "jax", 0.9),
              ("W1", "minigrad", "numpy", 1.2),
              ("W2", "minigrad-seq", "torch-fused", 1.0), ("W6", "minigrad-seq", "torch-fused", 1.0),
              ("W8", "minigrad-seq", "torch-fused", 1.0),
              ("W3", "minigrad-seq", "jax", 1.0), ("W3", "minigrad-seq", "numpy-window", 1.25),
              ("W3", "minigrad", "numpy", 1.5),
              (f"S-H*-B{SWEEP_BATCH}", "minigrad-seq", "torch-fused", 1.1),
              ("W7", "minigrad-stream", "torch-fused", LANGUAGE_MODELS["W7"]))  # issue 20's
SIDE_NAMES = {"minigrad": "minigrad cells", "numpy": "per-step floor", "minigrad-seq": "minigrad layer",
              "minigrad-stream": "minigrad stream", "numpy-window": "window floor",
              "torch-cell": "PyTorch eager", "torch-fused": "PyTorch fused", "jax": "JAX"}
# On a GPU, minigrad's sequence layer against PyTorch on the same GPU: faster than the eager
# cell loop, and at most this many times cuDNN's fused layer.
GPU_EAGER_MAX, GPU_CUDNN_MAX = 1.0, 1.5
GPU_COLUMNS = (("minigrad cells", "minigrad"), ("minigrad layer", "minigrad-seq"),
               ("layer, step by step", "minigrad-seq-steps"), ("PyTorch eager", "torch-cell"),
               ("PyTorch cuDNN", "torch-fused"))


class ReportError(Exception):
    """A problem to report in one line."""


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS and PyTorch threads (default 1)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--json", type=Path, default=ROOT / ".benchmarks" / "latest.json",
                        help="where to save pytest-benchmark's JSON (default .benchmarks/latest.json)")
    parser.add_argument("--no-autosave", action="store_true",
                        help="do not add the run to pytest-benchmark's storage (.benchmarks/)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run the suite N times; the table takes each benchmark's median "
                             "over the runs (default 1)")
    parser.add_argument("--from", dest="sources", type=Path, nargs="+", metavar="PATH",
                        help="print the table of saved JSON instead of running the suite (of "
                             "several runs: each benchmark's median over them)")
    parser.add_argument("--readme", action="store_true", help="write the table into README.md too")
    parser.add_argument("-k", dest="select", metavar="EXPR", help="run only the benchmarks pytest -k selects")
    args = parser.parse_args(argv)
    try:
        if args.threads < 1:
            raise ReportError(f"--threads must be >= 1, got {args.threads}")
        if args.repeat < 1:
            raise ReportError(f"--repeat must be >= 1, got {args.repeat}")
        paths = args.sources or run_suites(args)
        text = render(combine([load(path) for path in paths]))
        print(text)
        if args.readme:
            write_readme(ROOT / "README.md", text)
    except ReportError as e:
        print(f"benchmarks.report: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("benchmarks.report: interrupted", file=sys.stderr)
        return 130
    return 0


def run_suites(args):
    """Run the suite --repeat times, one run after the other; returns their JSON files. Several
    runs are saved as NAME.run1.json, ... beside --json, which then holds them combined."""
    env = benchmark_environment()  # said once, however many runs
    if args.repeat == 1:
        return [run_suite(args, args.json, env)]
    paths = [run_suite(args, args.json.with_suffix(f".run{i}.json"), env) for i in range(1, args.repeat + 1)]
    args.json.write_text(json.dumps(combine([load(path) for path in paths]), indent=4))
    print(f"saved the {args.repeat} runs combined in {args.json}", file=sys.stderr)
    return paths


def run_suite(args, path, env=None):
    """Run `pytest benchmarks` with the JSON going to a temporary file, moved to `path`
    only when the run succeeds (a failed run leaves the previous results as they were)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    cmd = [sys.executable, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider",
           "--benchmark-quiet", f"--benchmark-json={partial}", f"--threads={args.threads}"]
    if not args.no_autosave:
        cmd.append("--benchmark-autosave")
    if args.smoke:
        cmd.append("--smoke")
    if args.select:
        cmd += ["-k", args.select]
    print("running:", " ".join(cmd[2:]), file=sys.stderr, flush=True)
    code = subprocess.call(cmd, cwd=ROOT, stdout=sys.stderr, env=env)
    if code != 0 or not partial.exists():
        partial.unlink(missing_ok=True)
        raise ReportError(f"the benchmark run failed (pytest exit code {code}); see its output above")
    os.replace(partial, path)
    print(f"saved {path}", file=sys.stderr)
    return path


# Set on some machines (by a module system, a container image), these make OpenBLAS pick a
# slower kernel or blocking than it would by itself: NumPy measured up to 2x slower. The
# report runs the suite without them; the tests and CI are left as they are.
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def benchmark_environment(environ=None):
    """This process's environment without BLAS_OVERRIDES, for the suite's run; each one that
    was set is said once on stderr."""
    env = dict(os.environ if environ is None else environ)
    for name in BLAS_OVERRIDES:
        if name in env:
            print(f"note: the benchmark run unsets {name}={env.pop(name)} (it slows OpenBLAS "
                  "on some machines); the report records the kernel that ran", file=sys.stderr)
    return env


def load(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise ReportError(f"cannot read {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ReportError(f"{path} is not JSON: {e}") from None
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise ReportError(f"{path} is not a pytest-benchmark JSON file (no 'benchmarks')")
    return data


def combine(runs):
    """Several runs of the suite as one: the first run's JSON, each benchmark's median
    replaced by the median of its medians over the runs (those are kept in its extra_info,
    as run_medians) and machine_info["minigrad"]["runs"] saying how many there were."""
    if len(runs) == 1:
        return runs[0]
    medians = {}
    for data in runs:
        for b in data["benchmarks"]:
            medians.setdefault(b["name"], []).append(b["stats"]["median"])
    combined = copy.deepcopy(runs[0])
    for b in combined["benchmarks"]:
        b["stats"]["median"] = statistics.median(medians[b["name"]])
        b.setdefault("extra_info", {})["run_medians"] = medians[b["name"]]
        if "side_by_side" in b["extra_info"]:  # every run's rounds: each one's ratios stand alone
            b["extra_info"]["side_by_side"] = _side_rounds(runs, b["name"])
    combined.setdefault("machine_info", {}).setdefault("minigrad", {})["runs"] = len(runs)
    return combined


def _side_rounds(runs, name):
    """The side-by-side benchmark `name`'s times of every run, round after round."""
    rounds = {}
    for data in runs:
        for b in data["benchmarks"]:
            if b["name"] == name:
                for impl, times in b["extra_info"]["side_by_side"].items():
                    rounds.setdefault(impl, []).extend(times)
    return rounds


# -- the tables ---------------------------------------------------------------------------

def per_unit(bench):
    """Median seconds of a round divided by the units of work in it, in microseconds."""
    return bench["stats"]["median"] / bench["extra_info"]["units"] * 1e6


def render(data):
    """The whole report as markdown: where it ran, then the tables."""
    benches = [b for b in data["benchmarks"] if "workload" in b.get("extra_info", {})]
    if not benches:
        raise ReportError("the JSON holds no minigrad benchmarks")
    on_gpu = [b for b in benches if b["extra_info"].get("device") == "cuda"]
    on_cpu = [b for b in benches if b["extra_info"].get("device") != "cuda"]
    parts = [header(data)]
    if on_cpu:
        parts.append(main_table(on_cpu))
        parts.append(side_by_side_table(on_cpu))
        parts.append(stacked_table(on_cpu))
        parts.append(sweep_table(on_cpu))
        parts.append(limit_table(on_cpu))
        parts.append(language_model_table(on_cpu))
    scaling = [b for b in on_cpu if b["extra_info"]["workload"] == "W4"]
    if scaling:
        parts.append(scaling_tables(scaling))
    if on_gpu:
        parts.append(gpu_table(on_gpu, data.get("machine_info", {}).get("minigrad", {}).get("gpu")))
    return "\n\n".join(p for p in parts if p)


def header(data):
    info = data.get("machine_info", {})
    ours = info.get("minigrad", {})
    when = data.get("datetime", "")[:10] or datetime.date.today().isoformat()
    torch = ours.get("torch") or "not installed"
    # runs saved before JAX joined the suite do not mention it
    jax = f", JAX {ours.get('jax') or 'not installed'}" if "jax" in ours else ""
    runs = ours.get("runs", 1)
    medians = ("Medians of repeated runs; ratios are within this one run." if runs == 1 else
               f"Medians over {runs} runs of the suite, one after the other (of each run's median "
               f"of repeated rounds); ratios are within these runs.")
    lines = [f"Measured {when} on {ours.get('cpu') or info.get('processor') or 'an unknown CPU'}, "
             f"{ours.get('threads', '?')} thread(s) ({ours.get('blas', 'BLAS unknown')}); "
             f"Python {info.get('python_version', '?')}, NumPy {ours.get('numpy', '?')}, "
             f"PyTorch {torch}{jax}. " + medians]
    if ours.get("smoke"):
        lines.append("**Smoke sizes**: these numbers only show that everything runs.")
    return "\n".join(lines)


def _per_workload(benches):
    """workload -> {"unit": ..., "about": ..., impl: µs per unit}; W4 and the side-by-side
    runs have tables of their own."""
    rows = {}
    for b in benches:
        e = b["extra_info"]
        if e["workload"] != "W4" and "side_by_side" not in e:
            row = rows.setdefault(e["workload"], {"unit": e["unit"], "about": e.get("about", "")})
            row[e["impl"]] = per_unit(b)
    return rows


def main_table(benches):
    """W1-W3, W5, W6 and W8: microseconds per unit, by implementation, and the ratios the
    targets use.

    A recurrent workload has two rows: minigrad's cells (one call of the user's step and
    a record per op per time step) against the per-step floor, and minigrad's sequence
    layer (train_sequence(segments=True): a record per op per window) against the floor
    that batches a window the same way (W6 and W8 run in the layer form only, so they have
    the second only). The language models and the LSTM sweeps have their own tables."""
    rows = {name: row for name, row in _per_workload(benches).items()
            if name not in LANGUAGE_MODELS and not SWEEP_NAME.fullmatch(name)}
    if not rows:
        return ""
    heads = ["minigrad", "NumPy floor", "PyTorch eager", "PyTorch fused", "JAX"]
    ratios = ["minigrad / floor", "minigrad / PyTorch eager", "minigrad / PyTorch fused", "minigrad / JAX"]
    lines = ["| workload | minigrad runs | µs per | " + " | ".join(heads + ratios) + " | target |",
             "|---|---|---|" + "---:|" * (len(heads) + len(ratios)) + "---|"]
    for name in sorted(rows):
        row = rows[name]
        eager, fused, jax = row.get("torch-cell", row.get("torch")), row.get("torch-fused"), row.get("jax")
        for how, mine, floor in VARIANTS:
            mg, fl = row.get(mine), row.get(floor)
            if mg is None and fl is None:
                continue
            if row["unit"] != "time step":
                how = "ops"
            r_floor, r_eager = _over(mg, fl), _over(mg, eager)
            layer = mine == "minigrad-seq"  # PyTorch fused and JAX run whole windows: layer forms
            cells = [_us(t) for t in (mg, fl, eager, fused, jax)]
            cells += [_ratio(r) for r in (r_floor, r_eager, _over(mg, fused) if layer else None,
                                          _over(mg, jax) if layer else None)]
            lines.append(f"| {name} | {how} | {row['unit']} | " + " | ".join(cells)
                         + f" | {_verdict(name, r_floor, r_eager)} |")
    lines.append("")
    lines += [f"- {name}: {rows[name]['about']}" for name in sorted(rows) if rows[name]["about"]]
    if any("minigrad-seq" in row for row in rows.values()):
        lines.append("- cells, per step: nn.RNNCell/LSTMCell and a `step` per time step, against the "
                     "min-char-rnn-style floor (per-step matmuls). layer, per window: nn.RNN/LSTM and "
                     "train_sequence(segments=True), against a floor that batches a window the same way "
                     "(input projections and readout of the window in one matmul each). PyTorch: the "
                     "eager RNNCell/LSTMCell loop and fused nn.RNN/nn.LSTM.")
    lines += _compile_note(benches, sorted(rows))
    return "\n".join(lines)


def _compile_note(benches, names):
    """A line saying how long compiling JAX's window step took for each workload of `names`,
    in their order (not in the times), or none where JAX did not run."""
    seconds = {b["extra_info"]["workload"]: b["extra_info"]["compile_s"] for b in benches
               if b["extra_info"]["impl"] == "jax" and "compile_s" in b["extra_info"]}
    if not any(name in seconds for name in names):
        return []
    return ["- JAX: `jax.jit` of one window's step (`lax.scan` over its steps, `value_and_grad`, the "
            "update), compiled and run once before timing; that took (not in the times): "
            + ", ".join(f"{name} {seconds[name]:.2f} s" for name in names if name in seconds) + "."]


def stacked_table(benches):
    """What stacking costs: the layer form of each stacked workload and of the one-layer
    workload it stacks, in microseconds per time step, minigrad against the floor,
    PyTorch's fused layer and JAX, and the stacked one divided by the other, implementation
    by implementation. Empty when the run has no such pair."""
    rows = _per_workload(benches)
    lines = []
    for stacked, single in STACKED.items():
        if stacked not in rows or single not in rows:
            continue
        if not lines:
            lines = ["What stacking costs, µs per time step of the layer form:", "",
                     "| workload | " + " | ".join(head for head, _ in STACKED_COLUMNS)
                     + " | minigrad / floor | minigrad / PyTorch fused | minigrad / JAX |",
                     "|---|" + "---:|" * (len(STACKED_COLUMNS) + 3)]
        for name in (single, stacked):
            mg, fl, fused, jax = (rows[name].get(impl) for _, impl in STACKED_COLUMNS)
            lines.append(f"| {name} | " + " | ".join(_us(t) for t in (mg, fl, fused, jax))
                         + f" | {_ratio(_over(mg, fl))} | {_ratio(_over(mg, fused))} "
                         f"| {_ratio(_over(mg, jax))} |")
        ratios = [_over(rows[stacked].get(impl), rows[single].get(impl)) for _, impl in STACKED_COLUMNS]
        lines.append(f"| {stacked} / {single} | " + " | ".join(_ratio(r) for r in ratios) + " | | | |")
    return "\n".join(lines)


def sweep_table(benches):
    """The LSTM sweeps: minigrad's layer in microseconds per time step at each hidden size
    (batch SWEEP_BATCH) and each batch (hidden 128), and its ratios to the window floor,
    PyTorch's fused layer and JAX, each timed in a block of its own; issue 21's goal for
    the hidden sweep is judged on the side-by-side table. Empty without them."""
    points = {name: row for name, row in _per_workload(benches).items() if SWEEP_NAME.fullmatch(name)}
    if not points:
        return ""

    order = sorted(points, key=_sweep_order)
    lines = ["LSTM sweeps, µs per time step of the layer form (LSTM 64 -> hidden, readout to 64 + MSE, "
             "SGD, TBPTT(20, 20)):", "",
             "| point | hidden | batch | minigrad layer | minigrad / floor | minigrad / PyTorch fused "
             "| minigrad / JAX |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    hidden_sweep = {}  # its minigrad / PyTorch fused, by point
    for name in order:
        row, (hidden, batch) = points[name], _sweep_size(name)
        mg = row.get("minigrad-seq")
        r_fused = _over(mg, row.get("torch-fused"))
        if batch == SWEEP_BATCH:
            hidden_sweep[name] = r_fused
        lines.append(f"| {name} | {hidden} | {batch} | {_us(mg)} | {_ratio(_over(mg, row.get('numpy-window')))} "
                     f"| {_ratio(r_fused)} | {_ratio(_over(mg, row.get('jax')))} |")
    notes = []
    if hidden_sweep and None not in hidden_sweep.values():
        worst = max(hidden_sweep, key=hidden_sweep.get)
        notes.append(f"- The hidden sweep at batch {SWEEP_BATCH}: minigrad / PyTorch fused at most "
                     f"{_ratio(hidden_sweep[worst])} ({worst}); issue 21's goal for it is judged side by "
                     "side (the table above), where the implementations alternate round by round.")
    notes += _compile_note(benches, order)
    return "\n".join(lines + ([""] + notes if notes else []))


def _sweep_size(name):
    """(hidden, batch) of a sweep point, from its name: smoke runs keep the names, not the sizes."""
    return tuple(int(n) for n in SWEEP_NAME.fullmatch(name).groups())


def _sweep_order(name):
    """The sweep points' order: the hidden sweep by hidden size, then the other batches."""
    hidden, batch = _sweep_size(name)
    return batch != SWEEP_BATCH, batch, hidden


def side_by_side_table(benches):
    """The side-by-side runs (test_side_by_side): each workload's implementations alternated
    round by round. Per workload, each implementation's median µs per time step, and for each
    of issue 21's goals the median over the rounds of the ratio within the round, judged.
    Empty without them."""
    runs = {b["extra_info"]["workload"]: b["extra_info"]["side_by_side"] for b in benches
            if "side_by_side" in b["extra_info"]}
    if not runs:
        return ""
    columns = [impl for impl in SIDE_NAMES if any(impl in times for times in runs.values())]
    for name, times in runs.items():
        if len({len(t) for t in times.values()}) > 1:
            raise ReportError(f"side by side: {name}'s implementations ran different numbers of rounds "
                              f"({', '.join(f'{impl} {len(t)}' for impl, t in times.items())})")
    rounds = max(len(t) for times in runs.values() for t in times.values())
    warm = "no warm-up: smoke sizes" if rounds == 1 else "after a warm-up"
    lines = [f"Side by side: each workload's implementations alternated round by round ({rounds} "
             f"round(s), {warm}, the order rotated each round), µs per time step (medians), and "
             "the speed goals on the medians of the within-round ratios:", "",
             "| workload | " + " | ".join(SIDE_NAMES[c] for c in columns) + " | goals |",
             "|---|" + "---:|" * len(columns) + "---|"]

    def within(times, mine, other):  # the median over the rounds of mine / other
        a, b = times.get(mine), times.get(other)
        return statistics.median(x / y for x, y in zip(a, b)) if a and b else None
    sweep = {name for name in runs if SWEEP_NAME.fullmatch(name)}  # after the workloads, as their table orders them
    for name in sorted(set(runs) - sweep) + sorted(sweep, key=_sweep_order):
        times = runs[name]
        goals = []
        for pattern, mine, other, most in SIDE_GOALS:
            if fnmatch.fnmatchcase(name, pattern) and (mine in times or other in times):
                text = f"{SIDE_NAMES[mine]} / {SIDE_NAMES[other]} {_ratio(within(times, mine, other))} ≤ {most:g}×"
                goals.append((text, within(times, mine, other), most))
        cells = [_us(statistics.median(times[c])) if times.get(c) else "-" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_judge(goals)} |")
    return "\n".join(lines)


def limit_table(benches):
    """The at-shape limit (benchmarks/limit.py): the summed time of exactly the matrix
    products the window floor makes, at their shapes and layouts, on this machine's BLAS;
    minigrad's layer and the floor against it, in µs per time step. Empty without it."""
    rows = {name: row for name, row in _per_workload(benches).items() if "numpy-matmuls" in row}
    if not rows:
        return ""
    lines = ["The at-shape limit: the window floor's matrix products alone, µs per time step:", "",
             "| workload | minigrad layer | NumPy window floor | at-shape limit | minigrad / limit "
             "| floor / limit |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in sorted(rows):
        mg, fl, lim = (rows[name].get(impl) for impl in ("minigrad-seq", "numpy-window", "numpy-matmuls"))
        lines.append(f"| {name} | {_us(mg)} | {_us(fl)} | {_us(lim)} | {_ratio(_over(mg, lim))} "
                     f"| {_ratio(_over(fl, lim))} |")
    return "\n".join(lines)


def language_model_table(benches):
    """W7: microseconds per time step of minigrad (as `minigrad train --text` runs it) and of
    the same model in PyTorch, each timed in a block of its own, and their ratio; its target
    is judged on the side-by-side table. Empty without W7."""
    rows = {name: row for name, row in _per_workload(benches).items() if name in LANGUAGE_MODELS}
    if not rows:
        return ""
    lines = ["The character language model, µs per time step:", "",
             "| workload | " + " | ".join(head for head, _ in LANGUAGE_MODEL_COLUMNS)
             + " | minigrad / PyTorch fused | target |",
             "|---|" + "---:|" * (len(LANGUAGE_MODEL_COLUMNS) + 1) + "---|"]
    for name in sorted(rows):
        mg, fused = (rows[name].get(impl) for _, impl in LANGUAGE_MODEL_COLUMNS)
        lines.append(f"| {name} | {_us(mg)} | {_us(fused)} | {_ratio(_over(mg, fused))} | "
                     f"≤ {LANGUAGE_MODELS[name]:g}× PyTorch fused, judged side by side |")
    lines.append("")
    lines += [f"- {name}: {rows[name]['about']}" for name in sorted(rows) if rows[name]["about"]]
    return "\n".join(lines)


def gpu_table(benches, gpu):
    """The workloads run on a GPU: microseconds per time step of minigrad's cells, its
    sequence layer (with and without the whole-window kernel) and PyTorch on the same GPU,
    and the layer's ratios to PyTorch's eager cell loop and to cuDNN, judged."""
    rows = _per_workload(benches)
    lines = [f"On the GPU ({gpu or 'unknown'}), µs per time step:", "",
             "| workload | " + " | ".join(head for head, _ in GPU_COLUMNS)
             + " | layer / eager | layer / cuDNN | target |",
             "|---|" + "---:|" * (len(GPU_COLUMNS) + 2) + "---|"]
    for name in sorted(rows):
        row = rows[name]
        layer, eager, cudnn = row.get("minigrad-seq"), row.get("torch-cell"), row.get("torch-fused")
        r_eager, r_cudnn = _over(layer, eager), _over(layer, cudnn)
        verdict = _judge([(f"< {GPU_EAGER_MAX:g}× eager", r_eager, GPU_EAGER_MAX),
                          (f"≤ {GPU_CUDNN_MAX:g}× cuDNN", r_cudnn, GPU_CUDNN_MAX)])
        lines.append(f"| {name} | " + " | ".join(_us(row.get(impl)) for _, impl in GPU_COLUMNS)
                     + f" | {_ratio(r_eager)} | {_ratio(r_cudnn)} | {verdict} |")
    lines.append("")
    lines += [f"- {name}: {rows[name]['about']}" for name in sorted(rows) if rows[name]["about"]]
    return "\n".join(lines)


def _verdict(name, r_floor, r_eager):
    """'met' or 'missed' for the workload's targets; '-' where a ratio could not be measured."""
    floor_max, eager_max = TARGETS.get(name, (None, None))
    parts = []
    if floor_max is not None:
        parts.append((f"≤ {floor_max}× floor", r_floor, floor_max))
    if eager_max is not None:
        text = f"< {eager_max:g}×" if eager_max == 1.0 else f"≤ {eager_max:g}×"
        parts.append((text + " PyTorch eager", r_eager, eager_max))
    return _judge(parts)


def _judge(parts):
    """(text, ratio, limit) -> 'text: met', 'text: missed', or 'text: -' where the ratio
    could not be measured; joined by '; ', or '-' for no targets."""
    out = []
    for text, ratio, limit in parts:
        state = "-" if ratio is None else ("met" if ratio <= limit else "missed")
        out.append(f"{text}: {state}")
    return "; ".join(out) or "-"


def scaling_tables(benches):
    """W4: time per step and peak memory per policy and sequence length, with the spread
    (largest / smallest - 1) of the policies that should stay flat."""
    by_policy, lengths = {}, set()
    for b in benches:
        e = b["extra_info"]
        by_policy.setdefault(e["policy"], {})[e["n"]] = (per_unit(b), e["peak_bytes"])
        lengths.add(e["n"])
    lengths = sorted(lengths)
    ns = " | ".join(f"n = {n}" for n in lengths)
    about = benches[0]["extra_info"].get("about", "")
    time_lines = [f"W4, µs per time step ({about}):", "",
                  f"| policy | {ns} | spread |", "|---|" + "---:|" * (len(lengths) + 1)]
    mem_lines = ["W4, peak memory in MiB (tracemalloc, in a run of its own):", "",
                 f"| policy | {ns} | spread |", "|---|" + "---:|" * (len(lengths) + 1)]
    for policy, cells in by_policy.items():
        times = [cells.get(n, (None, None))[0] for n in lengths]
        mems = [cells.get(n, (None, None))[1] for n in lengths]
        time_lines.append(f"| {policy} | " + " | ".join(_us(t) for t in times) + f" | {_spread(times)} |")
        mem_lines.append(f"| {policy} | " + " | ".join("-" if m is None else f"{m / 2**20:.2f}" for m in mems)
                         + f" | {_spread(mems)} |")
    mem_lines += ["", "Part of the TBPTT rows' growth is what train_sequence returns: one loss per update, "
                  "a Python float in a list (about 32 bytes each: 25 KiB at n = 8000, k1 = 10). The tape "
                  "itself holds at most max(k1, k2) steps."]
    return "\n".join(time_lines + [""] + mem_lines + ["", cost_model(by_policy, lengths)])


def cost_model(by_policy, lengths):
    """k2 > k1 against the theory: per step, TBPTT(k1, k2) costs one forward step F and k2/k1
    backward steps B. From TBPTT(10, 10) = F + B and TBPTT(10, 40) = F + 4B at the largest n,
    solve for F and B and predict the recompute variant (k1 + k2 = 5 forward steps a step,
    one of them without recording, and 4 backward steps): at most 5F + 4B."""
    n = lengths[-1]
    try:
        t1 = by_policy["TBPTT(10, 10)"][n][0]
        t4 = by_policy["TBPTT(10, 40)"][n][0]
    except KeyError:
        return ""
    b = (t4 - t1) / 3
    f = t1 - b
    line = (f"Cost of k2 > k1 at n = {n}: TBPTT(10, 40) / TBPTT(10, 10) = {t4 / t1:.2f}; solving "
            f"F + B = {t1:.1f} and F + 4B = {t4:.1f} gives a forward step F = {f:.1f} µs and a backward "
            f"step B = {b:.1f} µs")
    recompute = by_policy.get("TBPTT(10, 40, recompute)", {}).get(n)
    if recompute:
        line += (f"; the recompute variant, predicted at most 5F + 4B = {5 * f + 4 * b:.1f} µs, "
                 f"measured {recompute[0]:.1f} µs")
    return line + "."


def _us(t):
    if t is None:
        return "-"
    t = round(t, 2)  # 99.999 is shown as 100, not 100.0
    return f"{t:.0f}" if t >= 100 else f"{t:.1f}" if t >= 1 else f"{t:.2f}"


def _over(a, b):
    """a / b, or None where either was not measured."""
    return a / b if a and b else None


def _ratio(r):
    return "-" if r is None else f"{r:.2f}×"


def _spread(values):
    values = [v for v in values if v is not None]
    if len(values) < 2 or min(values) <= 0:
        return "-"
    return f"{max(values) / min(values) - 1:.1%}"


def write_readme(path, table):
    """Replace the table between the README's markers, atomically."""
    from minigrad.io import atomic_file

    try:
        text = path.read_text()
    except OSError as e:
        raise ReportError(f"cannot read {path}: {e.strerror}") from None
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ReportError(f"{path} has no benchmark table markers ({README_START!r} ... {README_END!r})")
    new = text[:start + len(README_START)] + "\n" + table + "\n" + text[end:]
    with atomic_file(path, "w") as f:
        f.write(new)
    print(f"updated the table in {path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
