"""python -m benchmarks.gpu_micro OUT.json: small GPU measurements that explain the benchmark table.

    python -m benchmarks.gpu_micro micro.json           # on a GPU (CuPy; PyTorch optional)
    python -m benchmarks.gpu_micro micro.json --fake    # on the CPU: the tests' fake CuPy and the
                                                        # kernels' emulator, tiny sizes; checks
                                                        # that every section runs, measures nothing

Four sections, each independent (an error is printed, recorded, and the next one runs):
1. the host's cost of a launch (no synchronization): minigrad's launch wrappers and its
   dispatch, against CuPy's floor (a bare RawKernel, a CuPy ufunc, cupy.dot);
2. minigrad's tiled matmul kernel against cuBLAS's GEMM (and cupy.dot plus an addition, the
   reference of matmul_add), in GPU time per call with the queue kept full (a spin kernel
   holds the GPU while the host enqueues the calls), at the shapes of the GPU workloads'
   products, and what matmul's "auto" path picks for each, three times;
3. minigrad's kernel launches per TBPTT window of the sequence layer (W1, W2 at several
   hidden sizes), by entry point: what the layer costs in launches;
4. PyTorch's fused layer (cuDNN) with TF32 allowed (PyTorch's default for cuDNN) and not,
   and how far the trained weights differ: whether the cuDNN column is float32 work.
"""
import argparse
import json
import sys
import time
import traceback
from dataclasses import replace

import numpy as np

from minigrad import backends
from minigrad.backends import cuda, primitives

from . import gpu_exercise, torch_impl, workloads

F32 = np.float32


class Device:
    """What the sections need of the GPU, or of the fake one: the array module, a barrier,
    and a way to keep the GPU busy while the host enqueues work."""

    def __init__(self, cp, fake):
        self.cp, self.fake = cp, fake
        self.spin = self.noop = None
        if not fake:  # the fake compiles no CUDA of its own: these two need a real GPU
            self.spin = cp.RawKernel(r'''
extern "C" __global__ void spin(long long ns) {
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < (unsigned long long)ns);
}''', "spin")
            self.noop = cp.RawKernel(
                r'extern "C" __global__ void noop(float* x, int n) { if (threadIdx.x == 0 && n < 0) x[0] = 0; }',
                "noop")

    def sync(self):
        if not self.fake:
            self.cp.cuda.Device().synchronize()

    def describe(self):
        if self.fake:
            return {"name": "fake CuPy on the CPU (tests/test_fake_gpu.py): no GPU times"}
        cp = self.cp
        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.runtime.getDevice())
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        return {"name": name, "sms": props.get("multiProcessorCount"), "cupy": cp.__version__,
                "shared_memory_optin": cuda.shared_memory_limit(cp.cuda.runtime.getDevice())}


def gpu_us_per_call(device, fn, n=40, spin_ms=30):
    """(GPU microseconds per call, host microseconds per call, whether the GPU time is valid):
    the spin kernel holds the GPU while the host enqueues n calls, so that the events bracket
    back-to-back kernels, not the host's gaps between them. Valid if the host enqueued them
    all before the spin ended."""
    cp = device.cp
    fn()
    device.sync()
    if device.spin is not None:
        device.spin((1,), (1,), (np.int64(spin_ms * 1_000_000),))
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    host = (time.perf_counter() - t0) / n * 1e6
    stop.record()
    stop.synchronize()
    gpu = cp.cuda.get_elapsed_time(start, stop) / n * 1e3
    return gpu, host, device.spin is not None and host * n < spin_ms * 1000


def host_us_per_call(device, fn, n=2000):
    """Host microseconds per call, nothing waited for (the GPU runs behind)."""
    fn()
    device.sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    host = (time.perf_counter() - t0) / n * 1e6
    device.sync()
    return host


# -- the sections ------------------------------------------------------------------------------

def launch_cost(device, small):
    cp, rng = device.cp, np.random.default_rng(0)
    B, H, n = (4, 8, 3) if small else (64, 256, 2000)
    x = cp.asarray(rng.standard_normal((B, H)), F32)
    W = cp.asarray(rng.standard_normal((H, H)), F32)
    A = cp.zeros((20, B, H), F32)
    act = cp.asarray(rng.standard_normal((B, 4 * H)), F32)
    c = cp.asarray(rng.standard_normal((B, H)), F32)
    outs = tuple(cp.empty((B, H), F32) for _ in range(3))
    b = cp.asarray(rng.standard_normal(H), F32)
    cases = {
        "cupy ufunc a += b (CuPy's elementwise)": lambda: cp.add(A[3], b, out=A[3]),
        "cupy.dot (cuBLAS, allocates)": lambda: cp.dot(x, W.T),
        "cuda.matmul_add (minigrad's tiled kernel)": lambda: cuda.matmul_add(x, W.T, A[3]),
        "primitives.matmul_add (through dispatch)": lambda: primitives.matmul_add(x, W.T, A[3]),
        "cuda.activation tanh, out= (the Elman cell)": lambda: cuda.activation(A[3], "tanh", out=A[4]),
        "cuda.lstm_step, out=": lambda: cuda.lstm_step(act, c, out=outs),
        "primitives.binary add (broadcast)": lambda: primitives.binary(x, b, "add"),
        "primitives.sum_axes (rows)": lambda: primitives.sum_axes(x, (0,)),
    }
    if device.noop is not None:
        cases = {"bare RawKernel call (CuPy's floor)": lambda: device.noop((1,), (32,), (x, np.int32(1))), **cases}
    results = {}
    with backends.using(matmul="kernel"):
        for name, fn in cases.items():
            results[name] = round(host_us_per_call(device, fn, n), 2)
            print(f"   {results[name]:8.2f} us  {name}")
    return results


def _shapes(small):
    """(label, x's shape, the stored y's shape, whether y is used transposed): the products of
    a training step of the GPU workloads (W1, W2 at hidden 256 and 1024, batch 64)."""
    shapes = []
    for gates, cell in ((1, "rnn"), (4, "lstm")):
        for H in ((8,) if small else (256, 1024)):
            G, B, TB, I = gates * H, (4 if small else 64), (12 if small else 1280), (5 if small else 64)
            shapes += [(f"{cell} H={H} recurrent h W_hh^T", (B, H), (G, H), True),
                       (f"{cell} H={H} backward g_a W_hh", (B, G), (G, H), False),
                       (f"{cell} H={H} projection X W_ih^T", (TB, I), (G, I), True),
                       (f"{cell} H={H} weight gradient G_a^T Hs", (G, TB), (TB, H), False)]
    return shapes


def _auto_pick(x, y):
    """What matmul's "auto" path runs for x @ y, measured afresh: "kernel" (ours), "cublas"
    (a GEMM that minigrad launches) or "reference" (the wrapper declined: cupy.dot)."""
    launched = []
    cuda._matmul_choice.clear()
    cuda.on_launch.append(launched.append)
    try:
        with backends.using(matmul="auto"):
            declined = cuda.matmul(x, y) is NotImplemented
    finally:
        cuda.on_launch.remove(launched.append)
    if declined:
        return "reference"
    return "kernel" if any(entry.startswith("matmul_") for entry in launched) else "cublas"


def matmul_against_cublas(device, small):
    cp, rng = device.cp, np.random.default_rng(1)
    n = 2 if small else 40
    results = {}
    for label, x_shape, y_shape, transposed in _shapes(small):
        x = cp.asarray(rng.standard_normal(x_shape), F32)
        y_stored = cp.asarray(rng.standard_normal(y_shape), F32)
        y = y_stored.T if transposed else y_stored
        out = cp.empty((x.shape[0], y.shape[1]), F32)
        (xa, trans_x), (ya, trans_y) = cuda._operand(x), cuda._operand(y)  # as matmul reads them
        kernel = gpu_us_per_call(device, lambda: cuda._launch_matmul(xa, ya, out, trans_x, trans_y, 0,
                                                                     count=False), n)
        cublas = gpu_us_per_call(device, lambda: cp.cublas.gemm("N", "N", x, y, out=out), n)
        dot_add = gpu_us_per_call(device, lambda: out.__iadd__(cp.dot(x, y)), n)  # matmul_add's reference
        picks = [_auto_pick(x, y) for _ in range(3)]  # three times: on close shapes the pick is a race
        valid = kernel[2] and cublas[2]
        results[label] = {"kernel_gpu_us": round(kernel[0], 2), "cublas_gemm_gpu_us": round(cublas[0], 2),
                          "cupy_dot_then_add_gpu_us": round(dot_add[0], 2),
                          "kernel_host_us": round(kernel[1], 2), "cublas_host_us": round(cublas[1], 2),
                          "valid": valid, "auto_picks": picks}
        print(f"   {label:42s} kernel {kernel[0]:8.2f}  cuBLAS {cublas[0]:8.2f}  dot+add {dot_add[0]:8.2f} us"
              f"  (host {kernel[1]:.1f}/{cublas[1]:.1f} us)  auto picks {picks}"
              + ("" if valid else "  [not valid: the host outran the spin, or no spin]"))
    cuda._matmul_choice.clear()
    return results


def launches_per_window(device, small):
    results = {}
    for base, sizes in ((workloads.W1, (8,) if small else (128, 256, 1024)),
                        (workloads.W2, (8,) if small else (100, 256, 1024))):
        for H in sizes:
            w = replace(base.smoke() if small else replace(base, batch=64, steps=60, k=20), hidden=H)
            data, weights = workloads.recurrent_data(w), workloads.recurrent_weights(w)
            workloads.minigrad_sequence(w, weights, data, device="cuda")()  # warm-up: compiles, matmul's picks
            run = workloads.minigrad_sequence(w, weights, data, device="cuda")
            names = {}

            def count(entry):
                names[entry] = names.get(entry, 0) + 1
            cuda.on_launch.append(count)
            try:
                device.sync()
                t0 = time.perf_counter()
                run()  # ends by copying the weights back: it waits for the GPU
                seconds = time.perf_counter() - t0
            finally:
                cuda.on_launch.remove(count)
            windows = -(-w.steps // w.k)
            per_window = {name: n / windows for name, n in sorted(names.items())}
            total = sum(per_window.values())
            results[f"{w.cell} H={H}"] = {"launches_per_window": total, "by_entry_point": per_window,
                                          "us_per_step_one_run": seconds / w.steps * 1e6}
            print(f"   {w.cell} H={H:5d}: {total:6.1f} launches per window, "
                  f"{seconds / w.steps * 1e6:8.1f} us per step (one run, not a benchmark)  {per_window}")
    return results


def cudnn_tf32(device, small):
    torch = torch_impl.torch
    missing = (torch_impl.MISSING if torch is None
               else None if torch.cuda.is_available() else "this PyTorch has no CUDA")
    if missing:
        print(f"   skipped: {missing}")
        return {"skipped": missing}
    results = {}
    allowed = torch.backends.cudnn.allow_tf32
    try:
        for w in workloads.GPU:
            w = w.smoke() if small else w
            data, weights = workloads.recurrent_data(w), workloads.recurrent_weights(w)
            row, trained = {}, {}
            for tf32 in (True, False):
                torch.backends.cudnn.allow_tf32 = tf32
                torch_impl.torch_fused(w, weights, data, device="cuda")()  # warm-up
                run = torch_impl.torch_fused(w, weights, data, device="cuda")
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                trained[tf32] = run()  # ends by copying the weights back
                row[f"tf32={tf32}"] = (time.perf_counter() - t0) / w.steps * 1e6
            row["max_weight_difference"] = float(max(np.abs(trained[True][k] - trained[False][k]).max()
                                                     for k in trained[True]))
            results[w.name] = row
            print(f"   {w.name}: cuDNN with TF32 {row['tf32=True']:7.1f} us per step, without "
                  f"{row['tf32=False']:7.1f}; the weights differ by up to {row['max_weight_difference']:.2e}")
    finally:
        torch.backends.cudnn.allow_tf32 = allowed
    return results


SECTIONS = {"host cost per launch (us, no synchronization)": launch_cost,
            "matmul: tiled kernel against cuBLAS, GPU us per call (queue full), and 'auto''s picks":
                matmul_against_cublas,
            "minigrad launches per window, sequence layer, 'auto' paths": launches_per_window,
            "PyTorch's fused layer (cuDNN): TF32 allowed (the default) and not, us per step": cudnn_tf32}


def measure(device, small=False):
    """Every section's results by its title; a section that raises holds {"error": ...}."""
    results = {"device": device.describe()}
    print("device:", results["device"])
    for title, section in SECTIONS.items():
        print(f"\n== {title}", flush=True)
        t0 = time.perf_counter()
        try:
            results[title] = section(device, small)
        except Exception as e:  # recorded; the next section runs
            traceback.print_exc()
            results[title] = {"error": f"{type(e).__name__}: {e}"}
        print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_micro", description=__doc__.split("\n")[0])
    parser.add_argument("out", help="where to write the results (JSON)")
    parser.add_argument("--fake", action="store_true",
                        help="on the CPU, through the tests' fake CuPy and the kernels' emulator, at "
                             "tiny sizes: checks that every section runs")
    args = parser.parse_args(argv)
    if args.fake:
        try:
            with gpu_exercise.fake_gpu() as fake:
                results = measure(Device(fake, fake=True), small=True)
        except gpu_exercise.EmulatorUnavailable as e:
            print(f"gpu_micro --fake: cannot run here: {e}", file=sys.stderr)
            return 2
    else:
        try:
            cp = backends.cupy()
        except RuntimeError as e:
            print(f"gpu_micro: {e}", file=sys.stderr)
            return 2
        results = measure(Device(cp, fake=False))
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1, default=str)
    print(f"\nwrote {args.out}")
    failed = [title for title, r in results.items() if isinstance(r, dict) and "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
