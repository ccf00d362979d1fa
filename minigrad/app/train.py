"""`minigrad train`: train a small recurrent network on a task with a truncation policy.

The loop is `train_sequence` once per unit of the task (a fresh sequence for the
built-in tasks, the next piece of the streams for --text), with the recurrent
state carried from unit to unit. Between units everything is consistent (model,
optimizer, position, state, random generator), so that is where checkpoints are
written, and a resumed run continues exactly where the checkpoint left off.
"""
import math
import os
import resource
import signal
import sys
import threading
import time
import warnings

import numpy as np

from .. import io, optim
from ..backends import devices
from ..bptt import BPTT, TBPTT, DroppedLossWarning, train_sequence
from ..nn import GRUCell, Linear, LSTMCell, Module, RNNCell
from ..tape import no_grad
from .tasks import make_task
from ..tensor import Tensor, _make

CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
OPTIMIZERS = {"sgd": optim.SGD, "adam": optim.Adam, "adagrad": optim.Adagrad}
DEFAULT_LR = {"sgd": 0.1, "adam": 0.01, "adagrad": 0.05}
SAVE_EVERY = 5.0  # seconds between checkpoints (and one after the first unit and at the end)


class SequenceModel(Module):
    """A recurrent cell and a linear readout: step(state, x) -> (new state, output)."""

    def __init__(self, cell, input_size, hidden, output_size, dtype, rng):
        self.cell = CELLS[cell](input_size, hidden, dtype=dtype, rng=rng)
        self.head = Linear(hidden, output_size, dtype=dtype, rng=rng)

    def step(self, state, x):
        new = self.cell(x, state)
        return new, self.head(new[0] if isinstance(new, tuple) else new)


def check(args):
    """Options that no later step would catch, checked before anything runs."""
    for name in ("hidden", "batch"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("steps", "epochs", "length", "sample"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "sample" else 1):
            raise ValueError(f"--{name} must be >= {0 if name == 'sample' else 1}, got {value}")
    if args.epochs is not None and args.text is None:
        raise ValueError("--epochs needs --text (the built-in tasks never run out of data: use --steps)")
    if args.epochs is not None and args.steps is not None:
        raise ValueError("give --epochs or --steps, not both")
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    if args.clip is not None and not args.clip > 0:
        raise ValueError(f"--clip must be > 0, got {args.clip}")
    if not args.temperature > 0:
        raise ValueError(f"--temperature must be > 0, got {args.temperature}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise RuntimeError("--plot needs matplotlib: pip install \"minigrad[plot]\"") from None
    if args.sample is not None and args.text is None:
        raise ValueError("--sample needs --text (the built-in tasks have no text to sample)")
    # Files that could not be written after training: refused before it, in the user's words.
    for name in ("save", "plot"):
        path = getattr(args, name)
        if not path:
            continue
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            raise OSError(f"cannot write {path}: it is a directory; give a file name in it")
        if not os.path.isdir(folder):
            raise OSError(f"cannot write {path}: No such file or directory")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OSError(f"cannot write {path}: Permission denied")
    if args.plot and _plot_format(args.plot) not in _plot_formats():
        raise ValueError(f"--plot {args.plot}: matplotlib writes {', '.join(sorted(_plot_formats()))}, "
                         "chosen by the file's extension")


def pick_device(requested):
    """(device, why) for --device auto|cpu|cuda; cuda without a usable GPU raises."""
    if requested == "cpu":
        return "cpu", "asked for"
    if requested == "cuda":
        return devices.parse_device("cuda"), "asked for"
    try:
        return devices.parse_device("cuda"), "auto: a usable GPU"
    except (RuntimeError, ValueError) as e:
        reason = str(e).split(": ", 1)[-1].split(";")[0]
        return "cpu", f"auto; no usable GPU: {reason}"


# The training settings a checkpoint keeps beside the model and the optimizer (whose state
# holds the lr). On --resume each is the checkpoint's unless the command line gives it; one
# given applies from the resume on, and is saved. The seed is the exception: the checkpoint's
# random state goes on, so a --seed given then would change nothing, and is refused.
TRAINING = {"policy": "tbptt", "k1": 5, "k2": 10, "recompute": False, "clip": 1.0, "seed": 0}


def training_settings(args, saved):
    """(settings, notes): each of TRAINING from the command line if given, else from the
    checkpoint `saved` (None when not resuming) if it has it, else the default; the notes
    say where the command line changes a resumed run's settings."""
    kept = {} if saved is None else saved.get("training", {})
    settings, notes = {}, []
    for name, default in TRAINING.items():
        given = getattr(args, name)
        settings[name] = kept.get(name, default) if given is None else given
        if given is None or saved is None or kept.get(name, given) == given:
            continue
        if name == "seed":
            raise ValueError(f"--seed {given} does nothing with --resume: the checkpoint's random "
                             f"state (seed {kept[name]}) goes on; drop it")
        notes.append(f"--{name} {given} replaces the checkpoint's {kept[name]} from here on")
    # Options that would do nothing in this combination: said, rather than ignored.
    if settings["policy"] == "bptt":
        for name in ("k1", "k2", "recompute"):
            if getattr(args, name) not in (None, False):
                raise ValueError(f"--{name} does nothing with --policy bptt (one update per unit, "
                                 "through all of it); drop it, or use --policy tbptt")
    return settings, notes


GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def check_size(args, settings, task):
    """Refuse, before anything is allocated, a run that cannot fit: a batch that leaves the
    text's streams shorter than a window, or a model whose estimated memory exceeds what the
    machine has available (on the CPU; a GPU's own memory is not estimated)."""
    tbptt = settings["policy"] == "tbptt"
    window = max(settings["k1"], settings["k2"]) if tbptt else task.length  # steps held at once
    if args.text and len(task.inputs) < window:  # under BPTT a window is a unit (--length)
        most = max(1, (task.characters - 1) // window)  # the most streams of a window each
        what = "a window" if tbptt else "a unit, --length"
        raise ValueError(f"--batch {args.batch} leaves streams of {len(task.inputs)} steps in "
                         f"{args.text}, fewer than {what} ({window}); use --batch {most} or less"
                         f"{'' if tbptt else ' or a smaller --length'}")
    h, i, o = args.hidden, task.input_size, task.output_size
    itemsize = np.dtype(args.dtype).itemsize
    gates = GATES[args.cell]
    params = gates * h * (i + h + 2) + o * (h + 1)
    slots = {"sgd": 0, "adam": 2, "adagrad": 1}[args.optimizer]
    # the weights, their gradients, the optimizer's state, the new weights of an update (out of
    # place) beside the old, and about two more of the update's and clipping's temporaries
    weights = params * (5 + slots) * itemsize
    steps = window + (settings["k1"] if settings["recompute"] else 0)
    activations = 2 * steps * args.batch * ((gates + 6) * h + i + o) * itemsize  # forward and backward
    need, have = weights + activations, _available_memory()
    if have is not None and need > have:
        gib = 2.0 ** 30
        raise ValueError(f"the model ({args.cell}, hidden {h}, batch {args.batch}) needs about "
                         f"{need / gib:.1f} GiB (weights, gradients and optimizer state "
                         f"{weights / gib:.1f}, a window's activations {activations / gib:.1f}); "
                         f"{have / gib:.1f} GiB are available: use a smaller --hidden or --batch")


def _available_memory():
    """Bytes of memory available to a new allocation, or None if unknown: Linux's
    MemAvailable, or less if a container's limit (cgroup v2 memory.max) leaves less."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
        with open("/sys/fs/cgroup/memory.max") as f, open("/sys/fs/cgroup/memory.current") as g:
            limit = f.read().strip()
            if limit != "max":
                limits.append(int(limit) - int(g.read()))
    except (OSError, ValueError, IndexError):
        pass
    if limits:
        return min(limits)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def make_policy(settings):
    if settings["policy"] == "bptt":
        return BPTT()
    return TBPTT(settings["k1"], settings["k2"], recompute=settings["recompute"])


def run(args, out=None):
    """Train as the command line says, printing to `out` (stdout); returns the exit status.
    Warnings, from the first check to the last sample, are one line each (see _OneLine)."""
    with warnings.catch_warnings():
        warnings.showwarning = _OneLine()
        return _run(args, out or sys.stdout)


class _OneLine:
    """warnings.showwarning for the command: each warning one line on stderr, the first time
    its text comes (NumPy's overflow warnings come at every step), above the progress bar;
    the k2 < k1 note without train_sequence's prefix. Which warnings show is still up to the
    warning filters: `python -W error -m minigrad train` makes them errors (one line too)."""

    def __init__(self):
        self.said = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if text in self.said:
            return
        self.said.add(text)
        from tqdm import tqdm  # here: only the command needs it
        if issubclass(category, DroppedLossWarning):
            tqdm.write(f"minigrad train: note: {text.split(': ', 1)[-1]}", file=sys.stderr)
        else:
            tqdm.write(f"minigrad train: warning: {text}", file=sys.stderr)


def _run(args, out):
    check(args)
    device, why = pick_device(args.device)
    saved = load_checkpoint(args.resume) if args.resume else None
    settings, notes = training_settings(args, saved)
    task = make_task(args)
    policy = make_policy(settings)
    check_size(args, settings, task)
    rng = np.random.default_rng(settings["seed"])
    model = SequenceModel(args.cell, task.input_size, args.hidden, task.output_size, args.dtype, rng)
    model.to(device)
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    optimizer = OPTIMIZERS[args.optimizer](model.parameters(), lr=lr)
    config = {**task.config(), "cell": args.cell, "hidden": args.hidden, "batch": args.batch,
              "dtype": args.dtype, "optimizer": args.optimizer}
    position = {"unit": 0, "steps": 0}
    state, history = None, {"steps": [], "loss": []}
    if saved is not None:
        position, state, history = resume(args.resume, saved, config, task, model, optimizer, rng)
        kept = optimizer.param_groups[0]["lr"]
        if args.lr is not None and args.lr != kept:  # as the other settings: from here on, saved
            notes.append(f"--lr {args.lr:g} replaces the checkpoint's {kept:g} from here on")
            for group in optimizer.param_groups:
                group["lr"] = args.lr
        lr = optimizer.param_groups[0]["lr"]
    clip = settings["clip"]

    steps = args.steps if args.steps is not None else (None if args.text else 15000)
    total_units = task.units(steps, args.epochs if args.epochs is not None else 1)
    total_steps = task.steps_before(total_units)
    print(f"minigrad train: {task.describe()}", file=out, flush=True)
    print(f"  {args.cell} cell, hidden {args.hidden}, batch {args.batch}, {policy}, {args.optimizer} "
          f"lr {lr:g}{f', clip {clip:g}' if clip else ''}, {args.dtype}, device {device} ({why})",
          file=out, flush=True)
    if position["unit"]:
        print(f"  resumed from {args.resume} at step {position['steps']}", file=out, flush=True)
    for note in notes:
        print(f"minigrad train: note: {note}", file=sys.stderr)

    def step(h, x, y):
        h, output = model.step(h, x)
        return h, task.step_loss(output, y)

    bar = _progress(total_steps, position["steps"], args.quiet)
    started, last_save, trained = time.perf_counter(), None, 0
    # the checkpoint on disk and its step: the one resumed from, if it is also the one saved to
    saved_at = position["steps"] if args.resume and args.save and args.resume == args.save else None
    ctrl_c = _CtrlC(bar)
    try:
        for unit in range(position["unit"], total_units):
            x, y, fresh = task.unit(unit, rng)
            if device != devices.CPU:  # the unit's data goes to the GPU once, not step by step
                # dtype: x may be a lazy OneHot, which tensor() would read as Python floats (float32)
                x, y = Tensor(x, dtype=args.dtype, device=device), Tensor(y, device=device)
            if fresh:
                state = None
            result = train_sequence(step, state, x, y, policy=policy, optimizer=optimizer,
                                    clip_grad_norm=clip)
            state = result.state
            position = {"unit": unit + 1, "steps": position["steps"] + len(x)}
            trained += len(x)
            loss = sum(result.losses) / len(x)  # per step
            history["steps"].append(position["steps"])
            history["loss"].append(loss)
            if math.isfinite(loss) and not all(bool(model_finite(p)) for p in model.parameters()):
                loss = float("nan")  # the update after the last loss made the weights non-finite
            if not math.isfinite(loss):  # stop before a save could keep the non-finite weights
                kept = (f"; the last checkpoint, at step {saved_at}, is kept" if saved_at is not None
                        else "; no checkpoint was written" if args.save else "")
                raise RuntimeError(f"the loss became {loss} at step {position['steps']}{kept}; "
                                   "try a smaller --lr or --clip")
            bar.update(len(x))
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if args.save and (last_save is None or time.perf_counter() - last_save >= SAVE_EVERY
                              or unit + 1 == total_units or ctrl_c.pressed):
                save(args.save, config, settings, model, optimizer, position, state, rng, history)
                last_save, saved_at = time.perf_counter(), position["steps"]
            if ctrl_c.pressed:  # the unit is done, and saved: stop here
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        bar.close()
        kept = (f"; the last checkpoint, at step {saved_at}, is in {args.save}" if saved_at is not None
                else "; no checkpoint was written" if args.save else "")
        print(f"minigrad train: interrupted at step {position['steps']}{kept}", file=sys.stderr)
        return 130
    finally:
        ctrl_c.restore()
        bar.close()
    elapsed = time.perf_counter() - started

    report(task, model, history, trained, elapsed, args, out)
    if args.plot:
        plot(args.plot, history, task, policy)
        print(f"loss curve written to {args.plot}", file=out)
    if args.save:
        print(f"checkpoint written to {args.save} (step {position['steps']})", file=out)
    count = 200 if args.sample is None else args.sample  # characters to sample (--text only)
    if args.text and count:
        print(f"sample ({count} characters, temperature {args.temperature:g}):", file=out)
        print(sample(task, model, count, args.temperature, np.random.default_rng(settings["seed"] + 1)),
              file=out)
    return 0


class _CtrlC:
    """Ctrl-C during training: the first finishes the unit, which is saved, and stops (nothing
    trained is lost); a second stops at once, keeping the last checkpoint (KeyboardInterrupt,
    as Python's own). Installed only in the main thread, where Python delivers signals."""

    def __init__(self, bar):
        self.pressed, self.bar = False, bar
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        self.bar.write("minigrad train: stopping after this unit (Ctrl-C again: at once)", file=sys.stderr)

    def restore(self):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


def _progress(total, done, quiet):
    """A tqdm bar on stderr with the loss and steps/s (or nothing with --quiet)."""
    if quiet:
        return _NoBar()
    from tqdm import tqdm  # here: only the command needs it
    return tqdm(total=total, initial=done, unit="step", file=sys.stderr, dynamic_ncols=True,
                mininterval=0.25)


class _NoBar:
    def update(self, n):
        pass

    def write(self, text, file):
        print(text, file=file)

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass


def evaluate(task, model):
    """The task's score of the model on held-out data (its own seed), without recording."""
    x, y = task.evaluation_set(np.random.default_rng(2**31 - 1))
    device = model.head.weight.device
    state, outputs = None, []
    with no_grad():
        for t in range(len(x)):
            state, output = model.step(state, _make(devices.to_device(np.asarray(x[t]), device), device))
            outputs.append(devices.to_numpy(output.data))
    return task.score(np.stack(outputs), y)


def report(task, model, history, trained, elapsed, args, out):
    score = evaluate(task, model)
    recent = history["loss"][-max(1, len(history["loss"]) // 10):]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if not trained:
        print(f"nothing left to train: the run is already at step {history['steps'][-1]} "
              "(raise --steps or --epochs to go on)", file=out)
    print(f"final training loss {np.mean(recent):.4f} per step (mean of the last "
          f"{len(recent)} units)", file=out)
    print(f"held-out: accuracy {100 * score['accuracy']:.1f}%, loss {score['loss']:.4f}; "
          f"baseline ({score['baseline']}): accuracy {100 * score['baseline_accuracy']:.1f}%, "
          f"loss {score['baseline_loss']:.4f}", file=out)
    if trained:
        print(f"time {elapsed / trained * 1e3:.3f} ms per step ({trained} steps in {elapsed:.1f} s); "
              f"peak memory {peak:.0f} MiB", file=out)


def sample(task, model, count, temperature, rng):
    """count characters generated one at a time from the model, starting from a random one."""
    dtype = model.head.weight.dtype
    char = int(rng.integers(task.classes))
    chars, state = [task.vocab[char]], None
    eye = np.eye(task.classes, dtype=dtype)
    device = model.head.weight.device
    with no_grad():
        for _ in range(count - 1):
            state, logits = model.step(state, _make(devices.to_device(eye[char][None], device), device))
            z = devices.to_numpy(logits.data)[0].astype(np.float64) / temperature
            p = np.exp(z - z.max())
            char = int(rng.choice(task.classes, p=p / p.sum()))
            chars.append(task.vocab[char])
    return "".join(chars)


def save(path, config, settings, model, optimizer, position, state, rng, history):
    """One checkpoint, written atomically (see minigrad.io)."""
    arrays = None if state is None else (
        tuple(t.numpy() for t in state) if isinstance(state, tuple) else state.numpy())
    io.save(path, config=config, training=settings, model=model.state_dict(), optimizer=optimizer.state_dict(),
            position=position, state=arrays, rng=rng.bit_generator.state, history=history)


def model_finite(p):
    """Whether every entry of the parameter p is finite (a NumPy or CuPy bool)."""
    return devices.array_module(p.data).isfinite(p.data).all()


def load_checkpoint(path):
    """A checkpoint of `minigrad train`, its fields checked (see resume)."""
    saved = io.load(path)
    missing = [k for k in ("config", "model", "optimizer", "position", "state", "rng", "history")
               if k not in saved]  # "training" came later: older checkpoints lack it
    if missing:
        raise ValueError(f"{path} is not a minigrad train checkpoint (it lacks {', '.join(missing)})")
    _check_fields(path, saved)
    return saved


def resume(path, saved, config, task, model, optimizer, rng):
    """Restore the checkpoint `saved` (read from path) into model, optimizer and rng; returns
    (position, state, history). Checks that it was made for this task and model first."""
    differ = [f"{k} {saved['config'].get(k)!r} (this run: {v!r})" for k, v in config.items()
              if saved["config"].get(k) != v]
    if differ:
        raise ValueError(f"{path} was made for another run: {'; '.join(differ)}")
    unit, steps = saved["position"]["unit"], saved["position"]["steps"]
    if task.steps_before(unit) != steps:  # units have known lengths: the two must agree
        raise ValueError(f"{path}: its position is malformed (unit {unit} starts at step "
                         f"{task.steps_before(unit)} of this task, not {steps})")
    _check_state(path, saved["state"], config, model)
    for field, restore in (("model", model.load_state_dict), ("optimizer", optimizer.load_state_dict),
                           ("rng", lambda value: setattr(rng.bit_generator, "state", value))):
        try:
            restore(saved[field])
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
            why = " ".join(str(e).split())  # one line (load_state_dict's spans several)
            raise ValueError(f"{path}: its {field} is malformed ({why})") from None
    state = saved["state"]
    if state is not None:
        device = model.head.weight.device
        state = (tuple(Tensor(a, device=device) for a in state) if isinstance(state, tuple)
                 else Tensor(state, device=device))
    return saved["position"], state, saved["history"]


def _check_state(path, state, config, model):
    """The saved recurrent state: None, or the cell's state (one array, or (h, c) for an LSTM)
    of shape (batch, hidden) and the model's dtype, every entry finite."""
    shape, dtype = (config["batch"], config["hidden"]), model.head.weight.dtype
    arity = 2 if config["cell"] == "lstm" else 1
    parts = state if isinstance(state, tuple) else (state,)
    if state is None:
        return
    if len(parts) != arity or not all(isinstance(a, np.ndarray) for a in parts):
        raise ValueError(f"{path}: its state is malformed (expected "
                         f"{'a tuple of 2 arrays (h, c)' if arity == 2 else 'one array'} "
                         f"for --cell {config['cell']})")
    for a in parts:
        if a.shape != shape or a.dtype != dtype:
            raise ValueError(f"{path}: its state is malformed (an array of shape {a.shape} and "
                             f"dtype {a.dtype}; this model's is {shape}, {dtype})")
        if not np.isfinite(a).all():
            raise ValueError(f"{path}: its state is malformed (it holds NaN or inf)")


def _check_fields(path, saved):
    """The checkpoint's bookkeeping, checked before anything is restored: a field that is
    there but mangled is an error naming it, as one that is missing."""
    def bad(field, why):
        return ValueError(f"{path}: its {field} is malformed ({why})")

    def count(value):
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0
    if not isinstance(saved["config"], dict):
        raise bad("config", f"a {type(saved['config']).__name__}, not a dict")
    training = saved.get("training", {})
    if not isinstance(training, dict) or not set(training) <= set(TRAINING):
        raise bad("training", f"expected a dict of {', '.join(TRAINING)}")
    valid = {"policy": lambda v: v in ("bptt", "tbptt"),
             "k1": lambda v: count(v) and v >= 1, "k2": lambda v: count(v) and v >= 1,
             "recompute": lambda v: isinstance(v, bool), "seed": count,
             "clip": lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                            and math.isfinite(v) and v > 0)}
    for key, value in training.items():
        if not valid[key](value):
            raise bad("training", f"{key} {value!r}")
    position = saved["position"]
    if not isinstance(position, dict) or set(position) != {"unit", "steps"}:
        raise bad("position", "expected {'unit': ..., 'steps': ...}")
    for key in ("unit", "steps"):
        if not count(position[key]):
            raise bad("position", f"{key} must be an integer >= 0, got {position[key]!r}")
    history = saved["history"]
    if (not isinstance(history, dict) or set(history) != {"steps", "loss"}
            or not all(isinstance(history[k], list) for k in history)
            or len(history["steps"]) != len(history["loss"])):
        raise bad("history", "expected {'steps': [...], 'loss': [...]} of one length")
    if not all(count(n) for n in history["steps"]) or not all(
            isinstance(v, (float, int)) and not isinstance(v, bool) for v in history["loss"]):
        raise bad("history", "its steps must be integers >= 0 and its losses numbers")
    optimizer = saved["optimizer"]
    if (not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict)
            or not isinstance(optimizer.get("param_groups"), list)
            or not all(isinstance(g, dict) and isinstance(g.get("params"), list)
                       for g in optimizer["param_groups"])):
        raise bad("optimizer", "expected {'state': {...}, 'param_groups': [{'params': [...], ...}]}")


def _plot_format(path):
    """--plot's format: its file's extension, lower case ("png" for curve.PNG)."""
    return os.path.splitext(path)[1].lstrip(".").lower()


def _plot_formats():
    """The formats matplotlib writes without a display (its Agg canvas's)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    return set(FigureCanvasAgg.get_supported_filetypes())


def plot(path, history, task, policy):
    """The loss curve, in the format of the path's extension, written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(history["steps"], history["loss"], lw=1)
    ax.set_xlabel("time step")
    ax.set_ylabel("training loss per step")
    ax.set_yscale("log" if min(history["loss"], default=1) > 0 else "linear")
    ax.set_title(f"{task.name}, {policy}")
    fig.tight_layout()
    try:
        with io.atomic_file(path, "wb") as f:
            fig.savefig(f, format=_plot_format(path))
    finally:
        plt.close(fig)
