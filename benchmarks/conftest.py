"""Options of the benchmark suite: --threads (BLAS, PyTorch and XLA threads, 1 by default)
and --smoke (every workload at tiny sizes, one round: the normal test suite runs that).

The thread count is set once for the whole run, before any workload, so every
implementation runs with the same number of threads.
"""
import os
import platform

import numpy as np
import pytest
import threadpoolctl

from . import jax_impl, torch_impl, workloads

_limits = None  # kept alive for the whole run: threadpoolctl undoes the limit when it goes


def pytest_addoption(parser):
    group = parser.getgroup("minigrad benchmarks")
    group.addoption("--threads", type=int, default=1,
                    help="BLAS (and PyTorch and JAX) threads for every implementation (default 1)")
    group.addoption("--smoke", action="store_true",
                    help="tiny sizes and one round: checks that every workload runs")


def pytest_configure(config):
    global _limits
    threads = config.getoption("--threads", default=1)
    if threads < 1:
        raise pytest.UsageError(f"--threads must be >= 1, got {threads}")
    _limits = threadpoolctl.threadpool_limits(limits=threads)
    if torch_impl.torch is not None:
        torch_impl.torch.set_num_threads(threads)
    # XLA reads its flags once, when jax is imported (jax_impl imports it on first use, after
    # this). It has no flag for N threads: with more than one, it keeps its default (a thread
    # per core).
    if threads == 1:
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {jax_impl.ONE_THREAD}".strip()


def pytest_report_header(config):
    lines = [f"minigrad benchmarks: {config.getoption('--threads')} thread(s); "
             f"{'smoke sizes' if config.getoption('--smoke') else 'full sizes'}; {blas()}"]
    if torch_impl.torch is None:
        lines.append("note: " + torch_impl.MISSING)
    if not jax_impl.load():
        lines.append("note: " + jax_impl.MISSING)
    elif config.getoption("--threads") > 1:
        lines.append("note: JAX runs with XLA's default threads (one per core), not --threads")
    return lines


def pytest_benchmark_update_machine_info(config, machine_info):
    """What the report prints above its tables: the machine, the threads, the libraries."""
    machine_info["minigrad"] = {
        "threads": config.getoption("--threads"),
        "smoke": config.getoption("--smoke"),
        "blas": blas(),
        "numpy": np.__version__,
        "torch": getattr(torch_impl.torch, "__version__", None),
        "jax": jax_impl.version(),
        "xla_flags": os.environ.get("XLA_FLAGS") if jax_impl.jax else None,
        "cpu": cpu_name(),
        "gpu": gpu_name(),
    }


def gpu_name():
    """The GPU the cuda benchmarks use, with CuPy's version, or None without one."""
    from minigrad import backends
    if not backends.cuda_available():
        return None
    cp = backends.cupy()
    name = cp.cuda.runtime.getDeviceProperties(0)["name"]
    name = name.decode() if isinstance(name, bytes) else name
    return f"{name}, CuPy {cp.__version__}"


def blas():
    """The BLAS NumPy uses, the kernel it chose for this CPU and the threads it has now, e.g.
    'openblas 0.3.29, SkylakeX kernel, 1 thread(s)', and any OPENBLAS_CORETYPE or
    OPENBLAS_L2_SIZE that was set for the run (python -m benchmarks.report unsets them)."""
    infos = [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
    if not infos:
        return "BLAS unknown"
    def kernel(info):
        return f"{info['architecture']} kernel, " if info.get("architecture") else ""
    described = "; ".join(f"{i['internal_api']} {i.get('version') or ''}, {kernel(i)}"
                          f"{i['num_threads']} thread(s)" for i in infos)
    overrides = [f"{name}={os.environ[name]}" for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                 if name in os.environ]
    return described + (f"; set: {', '.join(overrides)}" if overrides else "")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@pytest.fixture
def smoke(request):
    return request.config.getoption("--smoke")


def pytest_generate_tests(metafunc):
    """Workloads at the sizes asked for (full, or tiny with --smoke)."""
    smoke = metafunc.config.getoption("--smoke")

    def sized(w):
        return w.smoke() if smoke else w
    fixtures = {"recurrent": workloads.RECURRENT, "stacked": workloads.STACKED,
                "large": workloads.LARGE, "sweep": workloads.SWEEP, "charlm": workloads.CHARLM,
                "chain": (workloads.W5,),
                # every workload the side-by-side table compares
                "side": (workloads.RECURRENT + workloads.STACKED + workloads.LARGE
                         + workloads.CHARLM + workloads.SWEEP)}
    for fixture, ws in fixtures.items():
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, [sized(w) for w in ws], ids=[w.name for w in ws])
    if "scaling" in metafunc.fixturenames:
        w4 = sized(workloads.W4)
        cases = [(w4, label, n) for label, *_ in w4.policies for n in w4.lengths]
        metafunc.parametrize("scaling", cases, ids=[f"{label}-n{n}" for _, label, n in cases])
