"""python -m benchmarks.gpu_exercise: launch every CUDA kernel entry point, compare each with its NumPy reference.

    python -m benchmarks.gpu_exercise              # on a GPU (CuPy)
    python -m benchmarks.gpu_exercise --no-pool    # CuPy's memory pool off: every array its own
                                                   # cudaMalloc, so that compute-sanitizer's
                                                   # memcheck sees a write past an array's end
    python -m benchmarks.gpu_exercise --fake       # on the CPU: the tests' fake CuPy and the
                                                   # CPU emulator of the kernels (a self-test)

Run from the repository root. The entry points are read from the kernel sources
(`extern "C" __global__` in kernels/*.cu, each compiled as name_f32 and name_f64) and checked
against minigrad.backends.cuda.KERNELS; each is launched through its launch wrapper, in
float32 and float64, on small odd sizes (partial blocks and tiles), the window kernels also
past the 48 KiB of dynamic shared memory a block has without opting in. Every result is
compared with the primitive's NumPy reference (minigrad.backends.dispatch.PRIMITIVES).

It is the program that gpu_check.sh runs under compute-sanitizer, so it is short: the
thorough kernel tests are tests/test_kernels.py. The exit status is 0 only when every entry
point ran, every primitive was exercised, and every result matched its reference.
"""
import argparse
import contextlib
import re
import sys
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import minigrad  # noqa: F401  (registers every primitive in dispatch.PRIMITIVES)
from minigrad import backends
from minigrad.backends import cuda, dispatch

TESTS = Path(__file__).resolve().parent.parent / "tests"
# rtol, atol per precision. Looser than tests/test_kernels.py's: a GPU's tanh and exp may
# differ from NumPy's by a few ulps, and this program is a driver for the sanitizers and a
# smoke check, not the precise test.
TOLERANCES = {np.dtype(np.float32): (1e-4, 1e-5), np.dtype(np.float64): (1e-10, 1e-11)}
_ENTRY = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(')


class Problem(Exception):
    """A call that cannot be checked: its wrapper declined (NotImplemented) or launched nothing."""


class EmulatorUnavailable(RuntimeError):
    """The CPU emulator of the kernels cannot run on this machine (the message says why)."""


# -- where the kernels run ---------------------------------------------------------------------

@contextlib.contextmanager
def fake_gpu():
    """Device "cuda" on the CPU, made as tests/test_fake_gpu.py's `fake_gpu` fixture makes it in
    its "kernels" variant: the tests' fake CuPy where minigrad looks for CuPy, and every kernel
    source compiled by tests/emulator.py and launched on the fake arrays' memory. Yields the
    fake cupy module; everything is put back on exit.

    EmulatorUnavailable, with the emulator's own reason, where it cannot run (no g++, not Linux).
    """
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import emulator
    if emulator.UNAVAILABLE:
        raise EmulatorUnavailable(emulator.UNAVAILABLE)
    import pytest
    import test_fake_gpu as fake

    # pytest's MonkeyPatch, as the fixture uses, outside a test: the same three changes,
    # undone in reverse order on exit.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backends.devices, "_cupy", fake.fake_cupy)
        patch.setitem(sys.modules, "cupy", fake.fake_cupy)  # nothing imports the real one
        patch.setattr(cuda, "compiler",
                      lambda source, file: fake._OnFakeMemory(emulator.compile(source, file)))
        cuda.clear_cache()
        try:
            yield fake.fake_cupy
        finally:
            cuda.clear_cache()


def real_gpu(no_pool=False):
    """CuPy on GPU 0 (RuntimeError saying what is missing otherwise). no_pool: CuPy's memory
    pools off, for compute-sanitizer's memcheck: a pool hands out slices of big blocks, and a
    write past one slice lands in the next, which memcheck cannot tell from a correct write."""
    cp = backends.cupy()
    if no_pool:
        cp.cuda.set_allocator(None)
        cp.cuda.set_pinned_memory_allocator(None)
    return cp


# -- what there is to launch -------------------------------------------------------------------

def entry_points(folder=None):
    """{file: [entry point, ...]} of every .cu file in `folder` (the kernels minigrad loads,
    cuda.KERNELS_DIR, by default), comments left out."""
    folder = cuda.KERNELS_DIR if folder is None else folder
    found = {}
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.name.endswith(".cu"):
            source = re.sub(r"/\*.*?\*/", " ", path.read_text(), flags=re.S)
            found[path.name] = _ENTRY.findall(re.sub(r"//[^\n]*", " ", source))
    return found


def table_problems(found):
    """Where cuda.KERNELS (each entry point without _f32/_f64, by file) and the sources disagree."""
    problems = []
    for file in sorted(set(found) | set(cuda.KERNELS)):
        defined = {name[:-4] for name in found.get(file, ())}
        listed = set(cuda.KERNELS.get(file, ()))
        if defined - listed:
            problems.append(f"kernels/{file} defines {sorted(defined - listed)}, which cuda.KERNELS "
                            "does not list: launch() cannot find them")
        if listed - defined:
            problems.append(f"cuda.KERNELS lists {sorted(listed - defined)} in {file}, which "
                            f"{'does not define them' if file in found else 'does not exist'}")
    return problems


# -- one run: launching, comparing, keeping count ---------------------------------------------

class Run:
    """The arrays' module (CuPy or the fake), and what the run launched, called and found wrong."""

    def __init__(self, xp, seed=0):
        self.xp = xp
        self.rng = np.random.default_rng(seed)
        self.launched = Counter()  # entry point (lstm_step_f32) -> launches
        self.called = set()        # the launch wrappers called
        self.problems = []

    def put(self, a):
        """A copy of the NumPy array `a` on the device (None stays None)."""
        return None if a is None else self.xp.asarray(a)

    def get(self, a):
        return backends.to_numpy(a)

    def call(self, name, *args, **kwargs):
        """cuda.<name>(*args, **kwargs), which must launch at least one kernel."""
        self.called.add(name)
        before = cuda.launches
        out = getattr(cuda, name)(*args, **kwargs)
        if out is NotImplemented:
            raise Problem(f"cuda.{name} returned NotImplemented: the reference would run, not the kernel")
        if cuda.launches == before:
            raise Problem(f"cuda.{name} launched no kernel")
        return out

    def check(self, what, got, want, dtype, scale=1.0):
        """Record a problem unless the device result `got` equals the reference's `want`
        within the dtype's tolerance (atol times `scale`, the size of the terms summed)."""
        got, want = self.get(got), np.asarray(want)
        rtol, atol = TOLERANCES[np.dtype(dtype)]
        if got.shape != want.shape or got.dtype != want.dtype:
            self.problems.append(f"{what}: expected {want.dtype} {want.shape}, got {got.dtype} {got.shape}")
        elif not np.allclose(got, want, rtol=rtol, atol=atol * max(scale, 1.0), equal_nan=True):
            error = np.nanmax(np.abs(got.astype(np.float64) - want))
            self.problems.append(f"{what}: differs from its reference by up to {error:.3g}")

    def normal(self, shape, dtype, scale=1.0):
        return (scale * self.rng.standard_normal(shape)).astype(dtype)

    def inputs(self, shape, dtype, scale=3.0):
        """Normal numbers with, where there is room, exact zeros and the sigmoid's far tails."""
        x = scale * self.rng.standard_normal(shape)
        flat = x.reshape(-1)
        flat[::7] = 0.0
        flat[3::11] = 40.0
        flat[5::13] = -40.0
        return x.astype(dtype)


def reference(name):
    """The NumPy reference of the primitive `name`."""
    return dispatch.PRIMITIVES[name][1]


# -- the cases, one function per kernel file ---------------------------------------------------

def elementwise(run, dtype):
    t = np.dtype(dtype).name
    for name in cuda.ACTIVATIONS:
        x = run.inputs((17, 33), dtype)
        run.check(f"activation {name} {t}", run.call("activation", run.put(x), name),
                  reference("activation")(x.copy(), name), dtype)
        xt = run.inputs((33, 17), dtype)  # a transposed view, read through its strides
        run.check(f"activation {name} transposed {t}", run.call("activation", run.put(xt).T, name),
                  reference("activation")(xt.T.copy(), name), dtype)
        saved = x if name == "relu" else reference("activation")(x, name)  # relu' reads x, the others y
        g = run.normal(x.shape, dtype)
        run.check(f"activation_backward {name} {t}",
                  run.call("activation_backward", run.put(g), run.put(saved), name),
                  reference("activation_backward")(g, saved, name), dtype)
    a = run.inputs((5, 67), dtype)  # the Elman cell's: h' = tanh(a) written over a
    d_a = run.put(a)
    run.call("activation", d_a, "tanh", out=d_a)
    run.check(f"activation tanh in place {t}", d_a, reference("activation")(a.copy(), "tanh"), dtype)
    for x_shape, y_shape in (((3, 5, 4, 6), (3, 1, 4, 1)), ((4, 1), (4, 5)), ((67,), (1,))):
        x = run.normal(x_shape, dtype)
        y = (run.rng.uniform(0.5, 2, y_shape) * run.rng.choice([-1, 1], y_shape)).astype(dtype)  # no 0: div
        for op in cuda.BINARY_OPS:
            run.check(f"binary {op} {x_shape} {y_shape} {t}", run.call("binary", run.put(x), run.put(y), op),
                      reference("binary")(x, y, op), dtype)
    a, b = run.normal((35, 33), dtype), run.normal((33, 35), dtype)
    run.check(f"binary of strided views {t}", run.call("binary", run.put(a).T, run.put(b)[::-1, ::-1], "sub"),
              reference("binary")(a.T, b[::-1, ::-1], "sub"), dtype)


def matmul(run, dtype):
    t = np.dtype(dtype).name
    with backends.using(matmul="kernel"):  # "auto" may measure cuBLAS faster and launch nothing
        for M, K, N in ((33, 67, 17), (1, 40, 3), (67, 33, 65)):
            x, y = run.normal((M, K), dtype), run.normal((K, N), dtype)
            scale = (np.abs(x) @ np.abs(y)).max()
            want = reference("matmul")(x, y)
            run.check(f"matmul {M}x{K}x{N} {t}", run.call("matmul", run.put(x), run.put(y)), want, dtype, scale)
            run.check(f"matmul x.T {M}x{K}x{N} {t}", run.call("matmul", run.put(x.T.copy()).T, run.put(y)),
                      want, dtype, scale)
            run.check(f"matmul y.T {M}x{K}x{N} {t}", run.call("matmul", run.put(x), run.put(y.T.copy()).T),
                      want, dtype, scale)
            # into the middle step of a (3, M, N) buffer, as the layers add h W_hh^T into A[t]
            before = run.normal((M, N), dtype)
            buffer = run.put(np.stack([before, before, before]))
            run.call("matmul_add", run.put(x), run.put(y.T.copy()).T, buffer[1])
            want = np.stack([before, reference("matmul_add")(x, y, before.copy()), before])
            run.check(f"matmul_add {M}x{K}x{N} {t}", buffer, want, dtype, scale + np.abs(before).max())


def reduce(run, dtype):
    t = np.dtype(dtype).name
    # (3, 300) over its rows takes sum_axes_rows (one block per output); the others sum_axes_cols
    for shape, axes, keepdims in (((3, 300), (1,), False), ((300, 3), (0,), False),
                                  ((5, 13, 24, 16), (1, 3), True), ((1000,), (0,), False)):
        a = run.normal(shape, dtype)
        run.check(f"sum_axes {shape} {axes} {t}", run.call("sum_axes", run.put(a), axes, keepdims),
                  reference("sum_axes")(a, axes, keepdims), dtype, np.abs(a).sum(axis=axes).max())


def loss(run, dtype):
    t = np.dtype(dtype).name
    for K, C in ((17, 33), (2, 1000), (3, 5)):
        x = run.normal((K, C), dtype, scale=3.0)
        target = run.rng.integers(0, C, K)
        losses, lse = run.call("softmax_xent", run.put(x), run.put(target))
        want_losses, want_lse = reference("softmax_xent")(x, target)
        run.check(f"softmax_xent losses {K}x{C} {t}", losses, want_losses, dtype, 3)
        run.check(f"softmax_xent lse {K}x{C} {t}", lse, want_lse, dtype, 3)
        scale = run.normal(K, dtype)
        run.check(f"softmax_xent_backward {K}x{C} {t}",
                  run.call("softmax_xent_backward", run.put(x), run.put(target), run.put(scale)),
                  reference("softmax_xent_backward")(x, target, scale), dtype)


def lstm(run, dtype):
    t = np.dtype(dtype).name
    B, H = 5, 67
    act, c = run.inputs((B, 4 * H), dtype, 2.0), run.normal((B, H), dtype)
    act_done = act.copy()  # the reference activates its act in place, as the kernel does
    forward = reference("lstm_step")(act_done, c.copy())  # h', c', tanh(c')
    d_act = run.put(act)
    for what, mine, theirs in zip(("h'", "c'", "tanh(c')"), run.call("lstm_step", d_act, run.put(c)), forward):
        run.check(f"lstm_step {what} {t}", mine, theirs, dtype)
    run.check(f"lstm_step activated gates {t}", d_act, act_done, dtype)
    tc, g_h = forward[2], run.normal((B, H), dtype)
    for g_c in (run.normal((B, H), dtype), None):  # None: nothing used c', read as zeros
        want = reference("lstm_step_backward")(g_h, 0 if g_c is None else g_c, act_done, c, tc)
        got = run.call("lstm_step_backward", *map(run.put, (g_h, g_c, act_done, c, tc)))
        for what, mine, theirs in zip(("g_a", "g_c_prev"), got, want):
            run.check(f"lstm_step_backward {what} g_c={'None' if g_c is None else 'array'} {t}",
                      mine, theirs, dtype)


def gru(run, dtype):
    t = np.dtype(dtype).name
    B, H = 5, 67
    a_ih, a_hh = run.inputs((B, 3 * H), dtype, 2.0), run.inputs((B, 3 * H), dtype, 2.0)
    h = run.normal((B, H), dtype)
    want = reference("gru_step")(a_ih.copy(), a_hh.copy(), h.copy())
    for what, mine, theirs in zip(("h'", "rz", "n"), run.call("gru_step", *map(run.put, (a_ih, a_hh, h))), want):
        run.check(f"gru_step {what} {t}", mine, theirs, dtype)
    _, rz, cand = want
    g, before = run.normal((B, H), dtype), run.normal((B, H), dtype)
    g_ih, g_hh, g_h = reference("gru_step_backward")(g, a_hh, rz, cand, h)
    G = run.put(np.stack([before, before]))  # g_h is added into G[1], as gru adds into G[t - 1]
    got = run.call("gru_step_backward", *map(run.put, (g, a_hh, rz, cand, h)), g_h=G[1])
    run.check(f"gru_step_backward g_a_ih {t}", got[0], g_ih, dtype)
    run.check(f"gru_step_backward g_a_hh {t}", got[1], g_hh, dtype)
    run.check(f"gru_step_backward g_h added {t}", G, np.stack([before, before + g_h]), dtype)


def window(run, dtype):
    """Small windows, and windows whose W_hh is past 48 KiB of shared memory (Elman H = 130:
    66 KiB in float32, 132 KiB in float64; LSTM H = 70: 77 and 153 KiB), so that the kernels
    opt in to more (max_dynamic_shared_size_bytes)."""
    t = np.dtype(dtype).name
    for T, B, H in ((3, 2, 17), (2, 2, 130)):
        A = run.inputs((T, B, H), dtype, 1.0)
        W = (run.normal((H, H), dtype) / np.sqrt(H)).astype(dtype)
        Hs = np.full((T + 1, B, H), np.nan, dtype)
        Hs[0] = run.normal((B, H), dtype)
        for relu in (False, True):
            A_done, Hs_done = A.copy(), Hs.copy()
            reference("elman_window")(A_done, Hs_done, W, relu)
            d_A, d_Hs = run.put(A), run.put(Hs)
            run.call("elman_window", d_A, d_Hs, run.put(W), relu)
            run.check(f"elman_window Hs H={H} relu={relu} {t}", d_Hs, Hs_done, dtype, H)
            run.check(f"elman_window A H={H} relu={relu} {t}", d_A, A_done, dtype, H)
            G = run.normal((T, B, H), dtype)
            D = np.empty((T, B, H), dtype)
            g_h0 = reference("elman_window_backward")(G.copy(), Hs_done, A_done, W, relu, D, True)
            d_D = run.put(np.full((T, B, H), np.nan, dtype))
            got = run.call("elman_window_backward", run.put(G), run.put(Hs_done), run.put(A_done), run.put(W),
                           relu, d_D, True)
            run.check(f"elman_window_backward G_a H={H} relu={relu} {t}", d_D, D, dtype, H)
            run.check(f"elman_window_backward g_h0 H={H} relu={relu} {t}", got, g_h0, dtype, H)
    for T, B, H in ((3, 2, 17), (2, 2, 70)):
        A = run.inputs((T, B, 4 * H), dtype, 1.0)
        W = (run.normal((4 * H, H), dtype) / np.sqrt(H)).astype(dtype)
        Hs, Cs = np.full((T + 1, B, H), np.nan, dtype), np.full((T + 1, B, H), np.nan, dtype)
        Hs[0], Cs[0] = run.normal((B, H), dtype), run.normal((B, H), dtype)
        TC = np.full((T, B, H), np.nan, dtype)
        done = [A.copy(), Hs.copy(), Cs.copy(), TC.copy()]
        reference("lstm_window")(*done, W)
        mine = [run.put(a) for a in (A, Hs, Cs, TC)]
        run.call("lstm_window", *mine, run.put(W))
        for what, m, d in zip(("A", "Hs", "Cs", "TC"), mine, done):
            run.check(f"lstm_window {what} H={H} {t}", m, d, dtype, 4 * H)
        A_done, _, Cs_done, TC_done = done
        G, g_c = run.normal((T, B, H), dtype), run.normal((B, H), dtype)
        D = np.empty((T, B, 4 * H), dtype)
        g_h0, g_c0 = reference("lstm_window_backward")(G.copy(), g_c, A_done, Cs_done, TC_done, W, D, True)
        d_D = run.put(np.full((T, B, 4 * H), np.nan, dtype))
        got = run.call("lstm_window_backward", run.put(G), run.put(g_c), run.put(A_done), run.put(Cs_done),
                       run.put(TC_done), run.put(W), d_D, True)
        run.check(f"lstm_window_backward G_a H={H} {t}", d_D, D, dtype, 4 * H)
        run.check(f"lstm_window_backward g_h0 H={H} {t}", got[0], g_h0, dtype, 4 * H)
        run.check(f"lstm_window_backward g_c0 H={H} {t}", got[1], g_c0, dtype, 4 * H)


def optim(run, dtype):
    """One launch per step updates a group of parameters of different shapes, one empty."""
    t = np.dtype(dtype).name
    shapes = [(3,), (17, 5), (1,), (0,), (2, 3, 67)]

    def group(positive=False):
        return [(np.abs(a) if positive else a).astype(dtype) for a in (run.rng.standard_normal(s) for s in shapes)]

    def on_device(arrays):
        return [run.put(a) for a in arrays]

    def compare(what, got, want):
        for role, mine, theirs in zip(what.split(", "), got, want):
            for m, w in zip(mine, theirs):
                run.check(f"{role} {t}", m, w, dtype)

    ws, gs, bufs = group(), group(), group()
    compare("sgd_step weights, sgd_step momentum buffers",
            run.call("sgd_step", on_device(ws), on_device(gs), on_device(bufs), 0.1, 0.9, 0.01, True),
            reference("sgd_step")(ws, gs, bufs, 0.1, 0.9, 0.01, True))
    ms, vs = group(), group(positive=True)
    compare("adam_step weights, adam_step m, adam_step v",
            run.call("adam_step", on_device(ws), on_device(gs), on_device(ms), on_device(vs),
                     3, 1e-2, 0.9, 0.999, 1e-8, 0.01),
            reference("adam_step")(ws, gs, ms, vs, 3, 1e-2, 0.9, 0.999, 1e-8, 0.01))
    ss = group(positive=True)
    compare("adagrad_step weights, adagrad_step sums of squares",
            run.call("adagrad_step", on_device(ws), on_device(gs), on_device(ss), 1e-2, 1e-10, 0.05),
            reference("adagrad_step")(ws, gs, ss, 1e-2, 1e-10, 0.05))


# The cases of each kernel file (cuda.KERNELS's keys): a file without one is reported.
CASES = {"elementwise.cu": elementwise, "matmul.cu": matmul, "reduce.cu": reduce, "loss.cu": loss,
         "lstm.cu": lstm, "gru.cu": gru, "window.cu": window, "optim.cu": optim}


# -- the whole run -----------------------------------------------------------------------------

@dataclass
class Report:
    """What a run found: the entry points the sources define, those launched, the primitives
    exercised, and every problem (as sentences)."""
    entry_points: set
    launched: Counter
    exercised: set
    problems: list = field(default_factory=list)

    @property
    def missing(self):
        """The entry points that were never launched."""
        return sorted(self.entry_points - set(self.launched))

    @property
    def ok(self):
        return not self.missing and not self.problems

    def summary(self):
        ran = self.entry_points & set(self.launched)  # (cuBLAS's GEMMs are counted as launches too)
        return (f"EXERCISE: {sum(self.launched.values())} launches of {len(ran)} of the "
                f"{len(self.entry_points)} entry points; missing: {', '.join(self.missing) or 'none'}; "
                f"problems: {len(self.problems)}")


def exercise(xp, out=sys.stdout):
    """Launch every entry point through its wrapper on arrays of `xp` (CuPy, or the fake) in
    float32 and float64, compare with the references, and return a Report. A case that raises
    is reported and the others go on."""
    found = entry_points()
    report = Report({name for names in found.values() for name in names}, Counter(), set(),
                    table_problems(found))
    run = Run(xp)

    def count(entry):
        run.launched[entry] += 1
    cuda.on_launch.append(count)
    try:
        for file in sorted(set(found) | set(CASES)):
            case = CASES.get(file)
            if case is None:
                report.problems.append(f"kernels/{file}: no case in benchmarks/gpu_exercise.py launches it")
                continue
            for dtype in (np.float32, np.float64):
                before, problems = sum(run.launched.values()), len(run.problems)
                try:
                    case(run, dtype)
                except Exception as e:  # reported; the next case runs
                    where = traceback.extract_tb(e.__traceback__)[-1]
                    run.problems.append(f"{file} {np.dtype(dtype).name}: {type(e).__name__}: {e} "
                                        f"(at {Path(where.filename).name}:{where.lineno})")
                verdict = "ok" if len(run.problems) == problems else "PROBLEM"
                print(f"{verdict:8s}{file:16s}{np.dtype(dtype).name:8s}"
                      f"{sum(run.launched.values()) - before:4d} launches", file=out, flush=True)
    finally:
        cuda.on_launch.remove(count)
    report.launched, report.exercised = run.launched, run.called
    report.problems += run.problems
    report.problems += [f"primitive {name}: its wrapper cuda.{name} was not exercised"
                        for name in sorted(set(dispatch.PRIMITIVES) - run.called)]
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_exercise",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--fake", action="store_true",
                        help="on the CPU: the tests' fake CuPy and the kernels' CPU emulator (a self-test)")
    parser.add_argument("--no-pool", action="store_true",
                        help="CuPy's memory pools off (for compute-sanitizer's memcheck)")
    args = parser.parse_args(argv)
    if args.fake:
        try:
            with fake_gpu() as fake:
                report = exercise(fake)
        except EmulatorUnavailable as e:
            print(f"gpu_exercise --fake: cannot run here: {e}", file=sys.stderr)
            return 2
    else:
        try:
            cp = real_gpu(args.no_pool)
        except RuntimeError as e:
            print(f"gpu_exercise: {e}", file=sys.stderr)
            return 2
        report = exercise(cp)
        cp.cuda.Device().synchronize()  # an asynchronous launch error surfaces here, not later
    print(report.summary())
    for problem in report.problems:
        print("  PROBLEM", problem)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
