"""python -m benchmarks.layout_ab WORKLOAD [ROUNDS]: the sequence layers' feature-major
layout (on the CPU, dispatch.feature_major) against batch-major throughout, alternated round
by round in one process, one BLAS thread.

WORKLOAD is a workload's name (W1, W2, W3, W6, W8) or an LSTM shape "I,H,B,K,STEPS" (W2's
maths at input I, hidden H, batch B, TBPTT(K, K), STEPS steps). Prints each layout's median
µs per step, the median of the within-round ratios, and the largest difference of the
trained weights (benchmarks/results/2026-12-04-feature-major.md was measured so).
"""
import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before NumPy loads OpenBLAS: a limit set later may not hold

import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402
import threadpoolctl  # noqa: E402

from minigrad.nn import recurrent  # noqa: E402

from . import workloads  # noqa: E402


def workload(spec):
    if "," not in spec:
        return getattr(workloads, spec)
    inputs, hidden, batch, k, steps = map(int, spec.split(","))
    return replace(workloads.W2, name=spec, input=inputs, hidden=hidden, batch=batch, k=k, steps=steps)


def main(argv):
    w = workload(argv[0])
    rounds = int(argv[1]) if len(argv) > 1 else 5
    weights, data = workloads.recurrent_weights(w), workloads.recurrent_data(w)
    layouts = {"batch-major": lambda array: False, "feature-major": recurrent.feature_major}
    times, trained = {name: [] for name in layouts}, {}
    with threadpoolctl.threadpool_limits(1):
        for r in range(rounds + 1):  # round 0 warms up
            for name, decide in layouts.items():
                recurrent.feature_major = decide
                try:
                    run = workloads.minigrad_sequence(w, weights, data)
                    start = time.perf_counter()
                    trained[name] = run()
                    seconds = time.perf_counter() - start
                finally:
                    recurrent.feature_major = layouts["feature-major"]
                if r:
                    times[name].append(seconds / w.steps * 1e6)
    ratio = statistics.median(f / b for f, b in zip(times["feature-major"], times["batch-major"]))
    diff = max(float(np.abs(trained["feature-major"][k] - trained["batch-major"][k]).max()) for k in weights)
    print(f"{w.name}: " + "  ".join(f"{name} {statistics.median(t):.1f} us/step" for name, t in times.items())
          + f"  feature-major / batch-major {ratio:.3f}  largest weight difference {diff:.1e}")


if __name__ == "__main__":
    main(sys.argv[1:])
