#!/usr/bin/env bash
# gpu_check.sh: every GPU-side check of minigrad, in one run of at most 8 minutes.
#
#   bash benchmarks/gpu_check.sh               # on a machine with a GPU: CuPy, pytest and
#                                              # pytest-benchmark installed (PyTorch optional);
#                                              # needs no package index
#   bash benchmarks/gpu_check.sh --self-test   # on any machine, in well under a minute: what runs
#                                              # without a GPU, through the tests' fake CuPy and
#                                              # the CPU emulator of the kernels (tests/README.md)
#
# Settings, from the environment: OUT, the folder for the results (default ./gpu-check-out;
# for --self-test a new temporary folder); BUDGET, seconds for the whole run (default 450);
# PYTHON (default python3).
#
# Steps. Each runs under `timeout` and may fail without stopping the others; a step that
# would start with less than 20 s of the budget left is skipped, and each is cut to what is
# left, so the run ends within BUDGET plus a few seconds:
#   0 environment: the GPU, the driver, the libraries
#   1 install minigrad (pip, editable, no dependencies, no index)
#   2 registers, shared memory and spills of every kernel, from ptxas (if nvcc is there)
#   3 every kernel entry point, in float32 and float64, against its NumPy reference
#     (python -m benchmarks.gpu_exercise)
#   4 the tests that need a GPU: test_kernels.py's cuda cases, test_cuda.py, test_nvrtc.py,
#     test_dlpack.py's and test_readme.py's GPU tests
#   5 the GPU benchmarks (test_recurrent_gpu, test_window_gpu) to gpu-bench.json, and the
#     report's GPU table (python -m benchmarks.report --from ...) to gpu-bench.md
#   6 compute-sanitizer on step 3's program: memcheck (CuPy's memory pool off), racecheck,
#     synccheck; initcheck after step 7, if time is left
#   7 micro-measurements to micro.json (python -m benchmarks.gpu_micro): launch costs, our
#     matmul against cuBLAS and what "auto" picks, launches per window, cuDNN with TF32
#   8 the cuda cases of the suites that run on every backend (conftest.py's `on_backend`),
#     with what time is left
#   9 the summary (also in summary.txt)
# With --self-test: 1 is skipped (nothing is installed); 3, 5 and 7 run on the fake GPU (5 at
# --smoke sizes); the pytest runs of 4 and 8 only collect their tests (on a CPU they would
# skip), which shows that the selections still name tests; 6 runs step 3's program without
# the sanitizer.
#
# OUT holds summary.txt, gpu-bench.json, gpu-bench.md, micro.json and logs.tar.gz, the logs
# of every step (the folder logs/ while the run lasts). The exit status is 0 when no step
# failed or ran out of time (skipped ones, and test runs stopped by the budget, do not count).
set -u
SELF_TEST=""
case "${1:-}" in
    --self-test) SELF_TEST=1 ;;
    "") ;;
    *) echo "usage: bash benchmarks/gpu_check.sh [--self-test]" >&2; exit 2 ;;
esac

START=$(date +%s)
BUDGET=${BUDGET:-450}
RESERVE=15  # seconds kept for the summary
PY=${PYTHON:-python3}
case "$PY" in */*) PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY") ;; esac  # a path stays valid after the cd below
if [ -n "$SELF_TEST" ]; then
    OUT=${OUT:-$(mktemp -d -t gpu-check-self-test.XXXXXX)}
else
    OUT=${OUT:-$PWD/gpu-check-out}
fi
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
# what an earlier run left there would pass for this run's results
rm -rf "$OUT/logs" "$OUT/logs.tar.gz" "$OUT/summary.txt" "$OUT/gpu-bench.json" "$OUT/gpu-bench.md" "$OUT/micro.json"
mkdir "$OUT/logs"
LOGS="$OUT/logs"
STEPS="$LOGS/steps.txt"  # one line per step, for the summary
: > "$STEPS"
FAILED=0
LINKED=""
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.." || exit 2  # the repository root: the steps run python -m benchmarks.* and tests/

# What the self-test changes: the fake GPU for the programs, collecting instead of running tests.
FAKE=${SELF_TEST:+--fake}
COLLECT=${SELF_TEST:+--collect-only}

elapsed() { echo $(( $(date +%s) - START )); }
note() { echo "$*" | tee -a "$STEPS"; }

# step NAME LIMIT LOG CMD...: run CMD with at most LIMIT seconds (less if the budget is short),
# its output in LOG; one line in the summary. pytest runs given `-p benchmarks.gpu_check` stop
# starting tests a fifth of the limit before it (GPU_CHECK_STOP_AT), so that they still write
# their reports. Returns 0 when CMD ran and succeeded.
step() {
    local name=$1 limit=$2 log=$3; shift 3
    local left=$(( BUDGET - $(elapsed) - RESERVE ))
    if (( left < 20 )); then
        note "SKIP    $name (too little of the budget is left: $(elapsed) s of ${BUDGET} s spent)"
        return 1
    fi
    (( limit > left )) && limit=$left
    echo; echo "=== $name (at most ${limit} s, starting at $(elapsed) s)"
    local t0=$(date +%s)
    GPU_CHECK_STOP_AT=$(( t0 + limit - (limit / 5 > 10 ? limit / 5 : 10) )) \
        timeout --signal=INT --kill-after=10 "$limit" "$@" > "$log" 2>&1
    local rc=$?
    tail -n 25 "$log"
    local what=ok
    if (( rc == 124 || rc == 137 )); then what=TIMEOUT; FAILED=1
    elif tail -n 3 "$log" | grep -qE "[0-9]+ (failed|errors?)\b"; then what=FAIL; FAILED=1
    elif grep -q "Interrupted: the GPU check's time for this step ran out" "$log"; then what=PARTIAL
    elif (( rc != 0 )); then what=FAIL; FAILED=1
    fi
    note "$(printf '%-7s %-52s rc=%-3s %4s s  logs/%s' "$what" "$name" "$rc" "$(( $(date +%s) - t0 ))" "${log#$LOGS/}")"
    return $(( rc != 0 ))
}

# -- 0 environment ---------------------------------------------------------------------------------
{
    echo "date $(date -Is)  host $(hostname)  budget ${BUDGET} s"
    [ -n "$SELF_TEST" ] && echo "SELF-TEST: no GPU; the tests' fake CuPy and the kernels' emulator"
    echo "commit $(git rev-parse --short HEAD 2> /dev/null || echo unknown)," \
         "$(git status --porcelain 2> /dev/null | wc -l) file(s) changed"
    if command -v nvidia-smi > /dev/null; then
        timeout 20 nvidia-smi --format=csv \
            --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,persistence_mode
    else
        echo "nvidia-smi: not on PATH"
    fi
    timeout 60 "$PY" -m benchmarks.gpu_check environment
} > "$LOGS/environment.log" 2>&1
cat "$LOGS/environment.log"

# -- 1 install ---------------------------------------------------------------------------------------
if [ -n "$SELF_TEST" ]; then
    note "SKIP    1 install (the self-test installs nothing)"
else
    step "1 install (pip -e ., no dependencies, no index)" 120 "$LOGS/install.log" \
        "$PY" -m pip install --no-build-isolation --no-deps --no-index -e .
    # Without a working editable install, minigrad is imported from the repository root, where
    # its package data, minigrad.kernels (pyproject.toml: package-dir), is the folder kernels/.
    if ! "$PY" -c "import minigrad.kernels" 2> /dev/null && [ ! -e minigrad/kernels ]; then
        ln -s ../kernels minigrad/kernels && LINKED=1
        note "NOTE    the editable install is unusable: minigrad/kernels -> ../kernels, a link removed at the end"
    fi
fi
trap 'if [ -n "$LINKED" ]; then rm -f minigrad/kernels; fi' EXIT

# -- 2 ptxas resource usage ----------------------------------------------------------------------------
if command -v nvcc > /dev/null; then
    step "2 ptxas -v, sm_90, every kernel file" 60 "$LOGS/ptxas.log" bash -c '
        for f in kernels/*.cu; do
            echo "== $f"
            nvcc -cubin -arch=sm_90 -std=c++17 -I kernels -Xptxas -v -o /dev/null "$f" 2>&1 \
                | grep -E "error|Compiling entry|registers|spill"
            (( PIPESTATUS[0] == 0 )) || exit 1
        done'
else
    note "SKIP    2 ptxas (no nvcc on PATH)"
fi

# -- 3 every entry point, against its reference (also fills CuPy's cache of compiled kernels) --------
step "3 every kernel entry point against its reference" 120 "$LOGS/exercise.log" \
    "$PY" -m benchmarks.gpu_exercise $FAKE

# -- 4 the tests that need a GPU ------------------------------------------------------------------------
# "cuda" selects test_kernels.py's cuda cases (its emulated ones do not name it) and, by their
# module's name, all of test_cuda.py; "nvrtc" all of test_nvrtc.py; "gpu" the two tests named.
step "4 pytest: the tests that need a GPU" 150 "$LOGS/pytest-gpu.log" \
    "$PY" -m pytest -q -p no:cacheprovider -p no:randomly -p benchmarks.gpu_check -rfEs $COLLECT \
    --junitxml="$LOGS/junit-gpu.xml" -k "cuda or nvrtc or gpu" \
    tests/test_kernels.py tests/test_cuda.py tests/test_nvrtc.py \
    tests/test_dlpack.py::test_cupy_and_minigrad_share_gpu_memory_both_ways \
    tests/test_readme.py::test_the_gpu_example_runs_on_a_gpu

# -- 5 GPU benchmarks ----------------------------------------------------------------------------------
# --threads: the BLAS threads of the CPU floors each benchmark checks its trained weights against
# (at hidden 1024 they take seconds on one thread); the GPU's work does not use them.
if [ -n "$SELF_TEST" ]; then BENCH_FAKE="--smoke --fake-gpu"; else BENCH_FAKE=""; fi
step "5 GPU benchmarks to gpu-bench.json" 200 "$LOGS/benchmarks.log" \
    "$PY" -m pytest benchmarks -q -p no:cacheprovider -p no:randomly -p benchmarks.gpu_check -k gpu \
    --threads "$(nproc)" --benchmark-quiet --benchmark-json="$OUT/gpu-bench.json" $BENCH_FAKE
if [ -s "$OUT/gpu-bench.json" ] && step "5 the report's GPU table to gpu-bench.md" 60 "$LOGS/report.log" \
        "$PY" -m benchmarks.report --from "$OUT/gpu-bench.json"; then
    cp "$LOGS/report.log" "$OUT/gpu-bench.md"
fi

# -- 6 compute-sanitizer ----------------------------------------------------------------------------------
if [ -n "$SELF_TEST" ]; then
    SANITIZER=""
    note "NOTE    6 the self-test runs step 3's program without compute-sanitizer"
else
    SANITIZER=$("$PY" -m benchmarks.gpu_check sanitizer 2> /dev/null)
    [ -n "$SANITIZER" ] && note "NOTE    compute-sanitizer: $SANITIZER"
fi
# sanitize NAME LOG TOOL EXERCISER_ARGS [SANITIZER_ARGS...]: step 3's program under the tool
sanitize() {
    local name=$1 log=$2 tool=$3 args=$4; shift 4
    if [ -n "$SANITIZER" ]; then
        step "$name" 90 "$log" "$SANITIZER" --tool "$tool" --error-exitcode 99 "$@" \
            "$PY" -m benchmarks.gpu_exercise $args
    else
        step "$name" 90 "$log" "$PY" -m benchmarks.gpu_exercise $args $FAKE
    fi
}
if [ -n "$SANITIZER" ] || [ -n "$SELF_TEST" ]; then
    # memcheck sees a write past an array only where the array ends its allocation: pool off
    sanitize "6a sanitizer memcheck (CuPy's pool off)" "$LOGS/sanitizer-memcheck.log" memcheck --no-pool --leak-check no
    sanitize "6b sanitizer racecheck" "$LOGS/sanitizer-racecheck.log" racecheck "" --racecheck-report all
    sanitize "6c sanitizer synccheck" "$LOGS/sanitizer-synccheck.log" synccheck ""
else
    note "SKIP    6 compute-sanitizer (not on PATH, in /usr/local/cuda*, /opt/nvidia or NVIDIA's wheels)"
fi

# -- 7 micro-measurements ----------------------------------------------------------------------------------
step "7 micro-measurements to micro.json" 120 "$LOGS/micro.log" \
    "$PY" -m benchmarks.gpu_micro "$OUT/micro.json" $FAKE

# -- 6d initcheck, if time is left: the slowest tool, the least likely to find something -------------------
if [ -n "$SANITIZER" ] || [ -n "$SELF_TEST" ]; then
    sanitize "6d sanitizer initcheck (CuPy's pool off)" "$LOGS/sanitizer-initcheck.log" initcheck --no-pool
fi

# -- 8 the cuda cases of the on_backend suites --------------------------------------------------------------
# The files that use the fixture (as a test's argument, or in usefixtures), found afresh; each
# one's "cuda" cases copy their arrays to the GPU around every kernel call (conftest.py).
SUITES=$(grep -lE 'usefixtures\("on_backend"\)|\bon_backend\b[,)]' tests/test_*.py)
step "8 pytest: the on_backend suites' cuda cases" 150 "$LOGS/pytest-suites.log" \
    "$PY" -m pytest -q -p no:cacheprovider -p no:randomly -p benchmarks.gpu_check -rfE $COLLECT \
    --junitxml="$LOGS/junit-suites.xml" -k cuda $SUITES

# -- 9 summary -----------------------------------------------------------------------------------------------
{
    echo
    echo "================ SUMMARY ($(elapsed) s of ${BUDGET} s)${SELF_TEST:+ SELF-TEST} ================"
    cat "$STEPS"
    echo
    echo "-- pytest:"
    for f in pytest-gpu.log benchmarks.log pytest-suites.log; do
        [ -f "$LOGS/$f" ] &&
            echo "   $f: $(grep -E '(passed|failed|error|skipped|collected|no tests ran)' "$LOGS/$f" | tail -n 1)"
    done
    echo "-- exercise: $(grep -h '^EXERCISE' "$LOGS/exercise.log" 2> /dev/null)"
    for tool in memcheck racecheck synccheck initcheck; do
        f="$LOGS/sanitizer-$tool.log"
        [ -f "$f" ] && echo "-- $tool: $(grep -hE 'ERROR SUMMARY|RACECHECK SUMMARY|^EXERCISE' "$f" | tr '\n' ' ')"
    done
    if [ -s "$OUT/gpu-bench.md" ]; then
        echo
        echo "-- the GPU benchmarks (python -m benchmarks.report --from gpu-bench.json):"
        cat "$OUT/gpu-bench.md"
    fi
    if [ -f "$LOGS/micro.log" ]; then
        echo
        echo "-- micro-measurements (micro.json):"
        grep -E "^   |^== " "$LOGS/micro.log"
    fi
    echo
    echo "results in $OUT: $(cd "$OUT" && ls | grep -v '^logs' | tr '\n' ' ')logs.tar.gz"
} > "$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"
# The logs as one file: a results folder of a few files is easier to carry off a machine.
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$LOGS"
exit $FAILED
