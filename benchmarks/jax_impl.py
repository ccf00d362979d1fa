"""JAX baselines of the recurrent workloads (CPU), when jax is installed.

For W1-W3, W6, W8 and the LSTM sweeps, written as a JAX user writes it to be fast: one
function per TBPTT window, compiled once with `jax.jit`, that projects the window's inputs
in one matmul, runs the recurrence with `jax.lax.scan`, takes `jax.value_and_grad` of the
window's loss and applies the update; the state it ends in is the next window's input (an
array passed on, so no gradient crosses windows). Same weights, same data, same losses
and updates as the other implementations; W6's dropout uses the masks the NumPy floor
draws (drawn before timing and passed in), so JAX ends with the same weights too.

Compiling is not timed: prepare compiles the window step once per workload and window
length and runs it once, and the run's `extra_info` carries the seconds that took
(`compile_s`; the report prints it).

jax is imported on first use (load()), not with this module: XLA reads its flags
(XLA_FLAGS, which the suite's conftest sets for one thread) only when jax is imported.
"""
import functools
import time

import numpy as np

from .workloads import dropout_generator

jax = jnp = None  # the modules, once load() has imported them

MISSING = "JAX is not installed (pip install jax): its baselines are skipped"
# XLA's CPU flag for one thread: its matmuls and convolutions without Eigen's thread pool.
# (The often-quoted intra_op_parallelism_threads=1 is not one of XLA's flags: XLA ignores
# it without the leading dashes and rejects it with them.)
ONE_THREAD = "--xla_cpu_multi_thread_eigen=false"


def load():
    """Import jax (the first call; XLA reads XLA_FLAGS then); False when it is not installed."""
    global jax, jnp
    if jax is None:
        try:
            import jax
            import jax.numpy as jnp
        except ImportError:
            return False
    return True


def version():
    """jax's version, or None when it is not installed."""
    return jax.__version__ if load() else None


def jax_recurrent(w, weights, data):
    """TBPTT(k, k) training of w's cell (or stacked cells) and readout: a compiled window
    step per window, the weights, Adagrad's sums and the state carried from one to the next."""
    if not load():
        raise RuntimeError(f"jax_recurrent: {MISSING}")
    xs, ys = data
    dtype = weights["head.weight"].dtype
    cpu = jax.devices("cpu")[0]
    # on the CPU before timing, as the other implementations hold their data; the weights
    # copied, since each window's step takes its inputs' buffers for its outputs (donated)
    windows = [jax.device_put(window, cpu) for window in _windows(w, xs, ys, dtype)]
    p = jax.device_put(weights, cpu, may_alias=False)
    sums = {k: jnp.zeros_like(v) for k, v in p.items()} if w.optimizer == "adagrad" else {}
    start = p, sums, jax.device_put(_zero_state(w, dtype), cpu)
    steps, compile_s = {}, 0.0  # the compiled step for each window length (one when k divides steps)
    for window in windows:
        if len(window[0]) not in steps:
            steps[len(window[0])], seconds = _compiled(w, start, window)
            compile_s += seconds

    def run():
        p, sums, state = start
        for X, Y, masks in windows:
            p, sums, state, _ = steps[len(X)](p, sums, state, X, Y, masks)
        return {k: np.array(v) for k, v in p.items()}  # the copy waits for the last step
    run.extra_info = {"compile_s": compile_s}
    return run


def _windows(w, xs, ys, dtype):
    """(X, Y, masks) for each window of k steps: inputs (T, B, I), targets (T, B, O) or (T, B)
    classes, and one dropout mask (T, B, H) of 0 and 1 per layer above the first, drawn as the
    window floor draws them (an entry kept where a uniform draw is >= dropout)."""
    draws = dropout_generator(w)
    for start in range(0, w.steps, w.k):
        X, Y = xs[start:start + w.k], ys[start:start + w.k]
        if w.loss == "ce":
            Y = Y.astype(np.int32)  # class indices (jax's default integers are 32-bit)
        shape = X.shape[:2] + (w.hidden,)
        masks = tuple((draws.random(shape) >= w.dropout).astype(dtype)
                      for _ in range(w.layers - 1) if w.dropout)
        yield X, Y, masks


def _zero_state(w, dtype):
    """The state before the first window, per layer: h, or (h, c) for an LSTM; zeros (B, H)."""
    zero = np.zeros((w.batch, w.hidden), dtype)
    return tuple((zero, zero) if w.cell == "lstm" else zero for _ in range(w.layers))


_COMPILED = {}  # (workload, dtype, window length) -> (compiled step, seconds it took)


def _compiled(w, start, window):
    """The window step compiled for the shapes of `start` (weights, sums, state) and `window`
    (X, Y, masks), once per run of the suite: (step, seconds its tracing, compiling and
    first run took the first time)."""
    X = window[0]
    key = (w, X.dtype.str, len(X))
    if key not in _COMPILED:
        begin = time.perf_counter()
        # the weights, Adagrad's sums and the state are replaced by the step's outputs:
        # donated, so that XLA may write the new values into their buffers
        step = jax.jit(functools.partial(_window_step, w), donate_argnums=(0, 1, 2))
        compiled = step.lower(*start, *window).compile()
        # its first run sets up what the executable needs (measured: tens of ms, once), on
        # copies of the starting values, which the step takes over
        jax.block_until_ready(compiled(*jax.tree.map(jnp.array, start), *window))
        _COMPILED[key] = compiled, time.perf_counter() - begin
    return _COMPILED[key]


def _window_step(w, p, sums, state, X, Y, masks):
    """One TBPTT window: the loss and its gradient with respect to every weight, then the
    update. Returns (new weights, new sums, the state the window ends in, the loss)."""
    (loss, state), grads = jax.value_and_grad(_window_loss, argnums=1, has_aux=True)(
        w, p, state, X, Y, masks)
    p, sums = _update(w, p, grads, sums)
    return p, sums, state, loss


def _window_loss(w, p, state, X, Y, masks):
    """The window's loss, the sum over its steps of each step's mean (as minigrad and the
    floors), and the state it ends in. X (T, B, I); layer by layer, each layer's every h
    (T, B, H) is the next one's X through dropout (X * mask / (1 - dropout))."""
    layer = {"rnn": _elman_layer, "lstm": _lstm_layer}[w.cell]
    ends = []
    for k, suffix in enumerate(w.layer_suffixes):
        if k and w.dropout:
            X = X * masks[k - 1] / (1 - w.dropout)
        X, end = layer({name: p[name + suffix] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
                       X, state[k])
        ends.append(end)
    out = X @ p["head.weight"].T + p["head.bias"]               # (T, B, O): every step's readout
    B = X.shape[1]
    if w.loss == "mse":  # mean over batch and features, summed over steps
        loss = jnp.sum((out - Y) ** 2) / (B * out.shape[2])
    else:                # mean over the batch of -log softmax(out)[y], summed over steps
        log_p = jax.nn.log_softmax(out, axis=2)
        loss = -jnp.sum(jnp.take_along_axis(log_p, Y[:, :, None], axis=2)) / B
    return loss, tuple(ends)


def _elman_layer(q, X, h):
    """h_t = tanh(x_t W_ih^T + b_ih + b_hh + h_{t-1} W_hh^T); returns (every h_t (T, B, H), h_T)."""
    A = X @ q["weight_ih"].T + (q["bias_ih"] + q["bias_hh"])   # the input projections: one matmul

    def step(h, a):
        h = jnp.tanh(a + h @ q["weight_hh"].T)
        return h, h
    h, Hs = jax.lax.scan(step, h, A)
    return Hs, h


def _lstm_layer(q, X, state):
    """a = x_t W_ih^T + b_ih + b_hh + h W_hh^T split into the gates i, f, g, o;
    c' = sigmoid(f) c + sigmoid(i) tanh(g); h' = sigmoid(o) tanh(c').
    Returns (every h_t (T, B, H), (h_T, c_T))."""
    A = X @ q["weight_ih"].T + (q["bias_ih"] + q["bias_hh"])   # the input projections: one matmul

    def step(state, a):
        h, c = state
        i, f, g, o = jnp.split(a + h @ q["weight_hh"].T, 4, axis=1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h
    state, Hs = jax.lax.scan(step, state, A)
    return Hs, state


def _update(w, p, grads, sums):
    """SGD, or Adagrad with its running sums of squares, as floor._update."""
    if w.optimizer == "sgd":
        return {k: p[k] - w.lr * grads[k] for k in p}, sums
    sums = {k: sums[k] + grads[k] * grads[k] for k in p}
    return {k: p[k] - w.lr * grads[k] / (jnp.sqrt(sums[k]) + w.eps) for k in p}, sums
