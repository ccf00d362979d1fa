"""`minigrad train` and `minigrad sample`: train a small recurrent network with a truncation
policy, and generate from a trained character model.

The model is PyTorch's: stacked sequence layers (nn.RNN, nn.LSTM or nn.GRU) and a linear
readout, run a segment of steps at a time (`segments=True`, the fast path). A generated
task's unit is one fresh sequence, one `train_sequence` call; a text's units are fed, one
after another, to one TBPTT stream per pass over the text, so that windows reach back
across units. Between units everything is consistent (model, optimizer, stream, position,
random generator), so that is where checkpoints are written, and a resumed run continues
exactly where the checkpoint left off, inside a window included.
"""
import contextlib
import math
import os
import resource
import sys
import time
import warnings

import numpy as np

from .. import io, optim
from ..backends import devices
from ..bptt import BPTT, TBPTT, train_sequence
from ..nn import GRU, LSTM, RNN, Dropout, Linear, Module
from ..tape import no_grad
from ..tensor import Tensor, _make
from .progress import CtrlC, Log, OneLine, progress
from .tasks import OneHot, make_task

LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
OPTIMIZERS = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW, "adagrad": optim.Adagrad}
DEFAULT_LR = {"sgd": 0.1, "adam": 0.01, "adamw": 0.01, "adagrad": 0.05}
SAVE_EVERY = 5.0  # seconds between checkpoints (and one after the first unit and at the end)
VALIDATE_EVERY = 10.0  # seconds of training between validations (of a text), at least


class SequenceModel(Module):
    """Stacked recurrent layers and a linear readout, PyTorch's modules:

        x (T, B, I) -> rnn: nn.RNN / nn.LSTM / nn.GRU (I, H, num_layers=layers, dropout)
                    -> dropout (p) -> head: nn.Linear (H, O) -> (T, B, O)

    `dropout` acts between the layers (nn.LSTM's dropout) and on the last layer's output,
    so that it regularizes a single layer too. With `classes` (the symbol and text tasks),
    x is (T, B) class indices, one-hot encoded once per segment: the model is then exactly
    nn.LSTM(classes, H) on one-hot inputs, the per-step cell model's weights in PyTorch's
    names. The state is the layers' (layers, B, H), an (h, c) pair of them for an LSTM.
    All weights are drawn from rng, which then draws the dropout masks.
    """

    def __init__(self, cell, input_size, hidden, output_size, *, layers=1, dropout=0.0,
                 classes=False, dtype="float32", rng=None):
        self.rnn = LAYERS[cell](input_size, hidden, num_layers=layers,
                                dropout=dropout if layers > 1 else 0.0, dtype=dtype, rng=rng)
        self.drop = Dropout(dropout, rng=rng)
        self.head = Linear(hidden, output_size, dtype=dtype, rng=rng)
        self.classes = input_size if classes else None

    def forward(self, state, xs):
        """(new state, outputs (T, B, O)) for the steps xs: (T, B, I) values or (T, B) classes."""
        if self.classes is not None:
            x = xs.data if isinstance(xs, Tensor) else xs
            xp = devices.array_module(x)
            w = self.head.weight
            xs = _make(xp.eye(self.classes, dtype=w.dtype)[x], w.device)
        hs, state = self.rnn(xs, state)
        if self.drop.p:
            hs = self.drop(hs)
        return state, self.head(hs)


def _steps_of(x):
    """A unit's inputs as the model takes them: a OneHot's class indices, else the values."""
    return x.indices if isinstance(x, OneHot) else x


def check(args):
    """Options that no later step would catch, checked before anything runs."""
    for name in ("hidden", "batch", "layers"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("steps", "epochs", "length", "sample", "warmup"):
        value = getattr(args, name)
        least = 0 if name in ("sample", "warmup") else 1
        if value is not None and value < least:
            raise ValueError(f"--{name} must be >= {least}, got {value}")
    if not 0 <= args.dropout < 1:
        raise ValueError(f"--dropout must be at least 0 and below 1, got {args.dropout}")
    if args.val_fraction is not None and args.text is None:
        raise ValueError("--val-fraction needs --text (the built-in tasks have their own held-out set)")
    if args.val_fraction is not None and not 0 <= args.val_fraction <= 0.5:
        raise ValueError(f"--val-fraction must be between 0 and 0.5, got {args.val_fraction}")
    if args.epochs is not None and args.text is None:
        raise ValueError("--epochs needs --text (the built-in tasks never run out of data: use --steps)")
    if args.epochs is not None and args.steps is not None:
        raise ValueError("give --epochs or --steps, not both")
    if args.lr is not None and not (args.lr > 0 and math.isfinite(args.lr)):
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    if args.clip is not None and not (args.clip > 0 and math.isfinite(args.clip)):
        raise ValueError(f"--clip must be > 0, got {args.clip}")
    if not (args.temperature > 0 and math.isfinite(args.temperature)):
        raise ValueError(f"--temperature must be > 0, got {args.temperature}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise RuntimeError("--plot needs matplotlib: pip install \"minigrad[plot]\"") from None
    if args.sample is not None and args.text is None:
        raise ValueError("--sample needs --text (the built-in tasks have no text to sample)")
    # Files that could not be written after training: refused before it, in the user's words.
    for name in ("save", "plot", "log"):
        path = getattr(args, name)
        if path:
            check_writable(path)
    if args.plot and _plot_format(args.plot) not in _plot_formats():
        raise ValueError(f"--plot {args.plot}: matplotlib writes {', '.join(sorted(_plot_formats()))}, "
                         "chosen by the file's extension")


def check_writable(path):
    """Refuse, in the user's words, a file that could not be written in its folder."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise OSError(f"cannot write {path}: it is a directory; give a file name in it")
    if not os.path.isdir(folder):
        raise OSError(f"cannot write {path}: No such file or directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OSError(f"cannot write {path}: Permission denied")


def pick_device(requested):
    """(device, why) for --device auto|cpu|cuda|cuda:N; cuda without a usable GPU raises
    (with the details), auto without one says so in a few words and takes the CPU."""
    if requested == "cpu":
        return "cpu", "asked for"
    if requested != "auto":
        return devices.parse_device(requested), "asked for"
    try:
        return devices.parse_device("cuda"), "auto: a usable GPU"
    except (RuntimeError, ValueError) as e:
        missing = "CuPy is not installed" in str(e) or "No module named" in str(e)
        return "cpu", "CuPy not installed" if missing else "no GPU found"


# The training settings a checkpoint keeps beside the model and the optimizer. On --resume
# each is the checkpoint's unless the command line gives it; one given applies from the
# resume on, and is saved. The seed is the exception: the checkpoint's random state goes
# on, so a --seed given then would change nothing, and is refused. lr None: the optimizer's
# default (DEFAULT_LR); k1 and k2 None: the task's (TBPTT(5, 10), a text's TBPTT(50, 50)).
TRAINING = {"policy": "tbptt", "k1": None, "k2": None, "recompute": False, "clip": 1.0, "seed": 0,
            "lr": None, "lr_schedule": "none", "warmup": 0}
WINDOWS = {"delay": (5, 10), "adding": (5, 10), "text": (50, 50)}


def training_settings(args, saved, task):
    """(settings, notes): each of TRAINING from the command line if given, else from the
    checkpoint `saved` (None when not resuming) if it has it, else the default; the notes
    say where the command line changes a resumed run's settings."""
    kept = {} if saved is None else saved.get("training", {})
    k1, k2 = WINDOWS[task.name]
    defaults = {**TRAINING, "k1": k1, "k2": k2, "lr": DEFAULT_LR[args.optimizer]}
    settings, notes = {}, []
    for name, default in defaults.items():
        given = getattr(args, name)
        settings[name] = kept.get(name, default) if given is None else given
        if given is None or saved is None or kept.get(name, given) == given:
            continue
        if name == "seed":
            raise ValueError(f"--seed {given} does nothing with --resume: the checkpoint's random "
                             f"state (seed {kept[name]}) goes on; drop it")
        show = (lambda v: f"{v:g}") if isinstance(given, float) else str
        notes.append(f"--{name.replace('_', '-')} {show(given)} replaces the checkpoint's "
                     f"{show(kept[name])} from here on")
    # Options that would do nothing in this combination: said, rather than ignored.
    if settings["policy"] == "bptt":
        for name in ("k1", "k2", "recompute"):
            if getattr(args, name) not in (None, False):
                raise ValueError(f"--{name} does nothing with --policy bptt (one update per unit, "
                                 "through all of it); drop it, or use --policy tbptt")
    return settings, notes


def lr_factor(settings, step, total):
    """The learning rate's factor at update `step` (0, 1, ...) of the run's `total`: a linear
    warmup over the first --warmup updates, then --lr-schedule: none (1), cosine (from 1
    down to 0 at the end, half a cosine wave) or step (x0.1 at half the run and again at
    three quarters)."""
    warmup, schedule = settings["warmup"], settings["lr_schedule"]
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "none" or total <= warmup:
        return 1.0
    done = min(1.0, (step - warmup) / (total - warmup))
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * done))
    return 0.1 ** ((done >= 0.5) + (done >= 0.75))


def planned_updates(task, policy, units):
    """The updates a run of `units` units makes, the length of the learning-rate schedule:
    ceil(n / k1) for a generated task's unit of n steps, one per unit under BPTT; for a
    text, ceil(steps / k1) for each whole pass (its flush included) and steps // k1 for the
    units of a last, partial one."""
    if policy.k1 is None:
        return units
    if task.name != "text":
        return units * -(-task.length // policy.k1)
    passes, rest = divmod(units, task.per_epoch)
    return passes * -(-len(task.inputs) // policy.k1) + task.steps_before(rest) // policy.k1


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
    h, i, o, n = args.hidden, task.input_size, task.output_size, args.layers
    itemsize = np.dtype(args.dtype).itemsize
    gates = GATES[args.cell]
    params = gates * h * (i + h + 2) + (n - 1) * gates * h * (2 * h + 2) + o * (h + 1)
    slots = {"sgd": 0, "adam": 2, "adamw": 2, "adagrad": 1}[args.optimizer]
    # the weights, their gradients, the optimizer's state, the new weights of an update (out of
    # place) beside the old, and about two more of the update's and clipping's temporaries
    weights = params * (5 + slots) * itemsize
    steps = window + (settings["k1"] if settings["recompute"] else 0)
    activations = 2 * steps * args.batch * ((gates + 6) * h * n + i + 2 * o) * itemsize
    need, have = weights + activations, _available_memory()
    if have is not None and need > have:
        gib = 2.0 ** 30
        raise ValueError(f"the model ({args.cell}, hidden {h}, {n} layer{'s' if n > 1 else ''}, "
                         f"batch {args.batch}) needs "
                         f"about {need / gib:.1f} GiB (weights, gradients and optimizer state "
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


def policy_settings(policy):
    """The settings make_policy reads, of a policy."""
    if policy.k1 is None:
        return {"policy": "bptt", "k1": None, "k2": None, "recompute": False}
    return {"policy": "tbptt", "k1": policy.k1, "k2": policy.k2, "recompute": policy.recompute}


def make_policy(settings):
    if settings["policy"] == "bptt":
        return BPTT()
    return TBPTT(settings["k1"], settings["k2"], recompute=settings["recompute"])


def run(args, out=None):
    """Train as the command line says, printing to `out` (stdout); returns the exit status.
    Warnings, from the first check to the last sample, are one line each (see progress.OneLine)."""
    with warnings.catch_warnings():
        warnings.showwarning = OneLine()
        return _run(args, out or sys.stdout)


def _run(args, out):
    check(args)
    device, why = pick_device(args.device)
    saved = load_checkpoint(args.resume) if args.resume else None
    task = make_task(args)
    settings, notes = training_settings(args, saved, task)
    policy = make_policy(settings)
    check_size(args, settings, task)
    rng = np.random.default_rng(settings["seed"])
    model = build_model(args.cell, task, args.hidden, args.layers, args.dropout, args.dtype, rng)
    model.to(device)
    optimizer = OPTIMIZERS[args.optimizer](model.parameters(), lr=settings["lr"])
    config = {**task.config(), "cell": args.cell, "hidden": args.hidden, "layers": args.layers,
              "dropout": args.dropout, "batch": args.batch, "dtype": args.dtype,
              "optimizer": args.optimizer}
    steps = args.steps if args.steps is not None else (None if args.text else 15000)
    total_units = task.units(steps, args.epochs if args.epochs is not None else 1)
    training = Training(args, config, task, settings, policy, model, optimizer, rng, device,
                        total_units)
    if saved is not None:
        training.resume(args.resume, saved)
    layers = f"{args.layers} layers" if args.layers > 1 else "1 layer"
    dropout = f", dropout {args.dropout:g}" if args.dropout else ""
    schedule = "" if settings["lr_schedule"] == "none" else f" {settings['lr_schedule']}"
    warmup = f", warmup {settings['warmup']}" if settings["warmup"] else ""
    clip = settings["clip"]
    print(f"minigrad train: {task.describe()}", file=out, flush=True)
    print(f"  {args.cell}, hidden {args.hidden}, {layers}{dropout}, batch {args.batch}, {policy}, "
          f"{args.optimizer} lr {settings['lr']:g}{schedule}{warmup}{f', clip {clip:g}' if clip else ''}, "
          f"{args.dtype}, device {device} ({why})", file=out, flush=True)
    if training.position["unit"]:
        print(f"  resumed from {args.resume} at step {training.position['steps']}", file=out, flush=True)
    if training.deferred:  # the pass under way keeps its policy: say when the new one starts
        notes = [note.replace("from here on", "from the next pass over the text")
                 if note.startswith(("--policy", "--k1", "--k2", "--recompute")) else note for note in notes]
    for note in notes + training.notes:
        print(f"minigrad train: note: {note}", file=sys.stderr)

    status = training.loop()
    if status:
        return status
    report(training, out)
    if args.plot:
        plot(args.plot, training.history, task, policy)
        print(f"loss curve written to {args.plot}", file=out)
    if args.save in training.wrote:
        print(f"checkpoint written to {args.save} (step {training.position['steps']})", file=out)
        if args.save and best_path(args.save) in training.wrote:
            print(f"best validation model written to {best_path(args.save)} (step {training.best[0]}, "
                  f"{training.best[1] / math.log(2):.3f} bits per character)", file=out)
    count = 200 if args.sample is None else args.sample  # characters to sample (--text only)
    if args.text and count:
        print(f"sample ({count} characters, temperature {args.temperature:g}):", file=out)
        print(generate(model, task.vocab, count, args.temperature,
                       np.random.default_rng(settings["seed"] + 1)), file=out)
    return 0


def build_model(cell, task, hidden, layers, dropout, dtype, rng):
    return SequenceModel(cell, task.input_size, hidden, task.output_size, layers=layers,
                         dropout=dropout, classes=task.name != "adding", dtype=dtype, rng=rng)


def best_path(path):
    """Where --save PATH keeps the best validation model: run.npz -> run.best.npz."""
    root, ext = os.path.splitext(path)
    return f"{root}.best{ext}"


class Training:
    """The loop of `minigrad train` and what it carries from unit to unit: the position, the
    history, a text's stream, and the random states that resuming that stream needs."""

    def __init__(self, args, config, task, settings, policy, model, optimizer, rng, device, total_units):
        self.args, self.config, self.task, self.settings = args, config, task, settings
        self.policy, self.model, self.optimizer, self.rng = policy, model, optimizer, rng
        self.device, self.total_units = device, total_units
        self.total_steps = task.steps_before(total_units)
        self.total_updates = planned_updates(task, policy, total_units)
        self.notes = []      # what resume() has to say
        self.deferred = False  # resumed inside a pass that goes on under another policy
        self.last_lr = None  # the learning rate of the last update made
        self.position = {"unit": 0, "steps": 0, "updates": 0}
        self.history = {"steps": [], "loss": [], "val_steps": [], "val_loss": []}
        self.best = None     # (step, validation loss) of the model in best_path(--save)
        self.wrote = set()   # the files this run wrote: the last checkpoint, the best model
        self.score = None    # (step, the task's score) of the last validation
        self.stream = None   # a text's stream over the current pass over the text
        self.m = 0           # steps fed to it
        self.ran = 0         # steps its segments ran (stored mode: each step once, in order)
        self.draws = {}      # step s -> the rng's state before the segment from s (the dropout masks)
        self.random = model.drop.p > 0  # whether a segment draws from rng: else no draws to keep
        self.pending = [0.0, 0]  # losses, and the steps they cover, since the last history point
        self.trained, self.training_time, self.validation_time = 0, 0.0, 0.0
        self._schedule(optimizer)

    def _schedule(self, optimizer):
        """Set the learning rate before every update (the optimizer's step), from the updates
        made so far: --warmup and --lr-schedule count updates (see lr_factor)."""
        step = optimizer.step

        def scheduled_step(*args, **kwargs):
            factor = lr_factor(self.settings, self.position["updates"], self.total_updates)
            for group in optimizer.param_groups:
                group["lr"] = self.last_lr = self.settings["lr"] * factor
            self.position["updates"] += 1
            return step(*args, **kwargs)
        optimizer.step = scheduled_step

    # -- one unit -----------------------------------------------------------------------

    def segment(self, state, xs, ys):
        """The step function of train_sequence and the stream: steps a..b at once."""
        if self.random and self.stream is not None and not self.stream.policy.recompute:
            self.draws[self.ran + 1] = self.rng.bit_generator.state
            self.ran += len(xs)
        state, outputs = self.model(state, xs)
        return state, self.task.loss(outputs, ys)

    def unit(self, unit):
        """Train on one unit; returns its length in steps."""
        x, y, fresh = self.task.unit(unit, self.rng)
        x = Tensor(_steps_of(x), device=self.device)  # the unit goes to the device once
        y = Tensor(y, device=self.device)
        if self.task.name == "text":
            losses, covered = self._feed(x, y, fresh, self.task.steps_after(unit))
        else:  # a fresh sequence: one call
            result = train_sequence(self.segment, None, x, y, policy=self.policy, optimizer=self.optimizer,
                                    clip_grad_norm=self.settings["clip"], segments=True)
            losses = result.losses
            covered = sum(w.end - w.first_loss + 1 for w in self.policy.windows(len(x)))
        self.position["unit"] = unit + 1
        self.position["steps"] += len(x)
        self.pending[0] += sum(losses)
        self.pending[1] += covered
        return len(x)

    def _feed(self, x, y, fresh, more):
        """A text's unit into the pass's stream, `more` steps of the pass after it (a promise
        that lets the stream run the unit's last steps in whole segments); the losses of the
        updates made, and the steps whose losses they summed. The stream is flushed at the
        pass's end (no window reaches across passes) and, under BPTT, after every unit (one
        update per unit, through all of it, the state carried on); a run that stops inside a
        pass keeps its stream in the checkpoint, and the steps since the last update are
        trained when it resumes."""
        if fresh or self.stream is None:
            self._new_stream()
        policy, before = self.stream.policy, self.m
        k1, k2 = policy.k1, policy.k2
        bptt = k1 is None
        losses = self.stream.feed(x, y, more=0 if bptt else more)
        self.m += len(x)
        covered = 0 if bptt else (self.m // k1 - before // k1) * min(k1, k2)
        if bptt or not more:
            final = self.stream.flush()
            if final is not None:
                losses.append(final)
                covered += len(x) if bptt else min(self.m - self.m // k1 * k1, k2)
            self.m = self.ran = 0
            self.draws = {}
            if not more:
                self.stream = None
        else:
            reach = max(k1, k2) + k2
            for s in [s for s in self.draws if s < self.m - reach]:
                del self.draws[s]  # no window reaches back there: the stream never re-runs it
        return losses, covered

    def _new_stream(self, policy=None):
        self.stream = (policy or self.policy).stream(self.segment, self.optimizer, segments=True,
                                                     clip_grad_norm=self.settings["clip"])
        self.m = self.ran = 0
        self.draws = {}

    def _history_point(self):
        """The mean loss per step since the last point, or None if no update came since."""
        total, covered = self.pending
        if not covered:
            return None
        self.pending = [0.0, 0]
        loss = total / covered
        self.history["steps"].append(self.position["steps"])
        self.history["loss"].append(loss)
        return loss

    # -- the loop -----------------------------------------------------------------------

    def loop(self):
        """Train from the position to the end; 0, or 130 when interrupted."""
        args = self.args
        bar = progress(self.total_steps, self.position["steps"], args.quiet)
        started = time.perf_counter()
        last_save = last_validation = None
        validation_cost = 0.0
        # the checkpoint on disk and its step: the one resumed from, if it is also the one saved to
        saved_at = self.position["steps"] if args.resume and args.save and args.resume == args.save else None
        log = Log(args.log) if args.log else None
        ctrl_c = CtrlC(bar)
        try:
            for unit in range(self.position["unit"], self.total_units):
                begun = time.perf_counter()
                steps = self.unit(unit)
                self.trained += steps
                self.training_time += time.perf_counter() - begun
                loss = self._history_point()
                if loss is not None and math.isfinite(loss) and not all(
                        bool(model_finite(p)) for p in self.model.parameters()):
                    loss = float("nan")  # the update after the last loss made the weights non-finite
                if loss is not None and not math.isfinite(loss):  # stop before a save keeps it
                    kept = (f"; the last checkpoint, at step {saved_at}, is kept" if saved_at is not None
                            else "; no checkpoint was written" if args.save else "")
                    raise RuntimeError(f"the loss became {loss} at step {self.position['steps']}{kept}; "
                                       "try a smaller --lr or --clip")
                bar.update(steps)
                now, val = time.perf_counter(), None
                last = unit + 1 == self.total_units
                since = now - (started if last_validation is None else last_validation)
                if last or since >= max(VALIDATE_EVERY, 10 * validation_cost):  # at most 1/10 of the time
                    val = self.validate()
                    if val is not None:
                        validation_cost = time.perf_counter() - now
                        self.validation_time += validation_cost
                    last_validation = time.perf_counter()
                bar.show(self.position["steps"], loss, val)
                if args.save and (last_save is None or time.perf_counter() - last_save >= SAVE_EVERY
                                  or last or ctrl_c.pressed):
                    self.save(args.save)
                    last_save, saved_at = time.perf_counter(), self.position["steps"]
                if log is not None:
                    log.write({"step": self.position["steps"], "loss": loss, "val_loss": val,
                               "lr": self.last_lr,
                               "elapsed": round(time.perf_counter() - started, 3),
                               "steps_per_s": round(self.trained / max(self.training_time, 1e-9), 1)})
                if ctrl_c.pressed:  # the unit is done, and saved: stop here
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            bar.close()
            kept = (f"; the last checkpoint, at step {saved_at}, is in {args.save}" if saved_at is not None
                    else "; no checkpoint was written" if args.save else "")
            print(f"minigrad train: interrupted at step {self.position['steps']}{kept}", file=sys.stderr)
            return 130
        finally:
            ctrl_c.restore()
            bar.close()
            if log is not None:
                log.close()
        return 0

    def validate(self):
        """A text's validation loss in nats per character (None for a generated task, or
        --val-fraction 0), kept in the history; with --save, a new best model is written to
        best_path(--save) at once."""
        if self.task.name != "text" or self.task.validation is None:
            return None
        self.score = (self.position["steps"], evaluate(self.task, self.model))
        loss = self.score[1]["loss"]
        self.history["val_steps"].append(self.position["steps"])
        self.history["val_loss"].append(loss)
        if math.isfinite(loss) and (self.best is None or loss < self.best[1]):
            self.best = (self.position["steps"], loss)
            if self.args.save:
                self.save(best_path(self.args.save))
        return loss

    # -- checkpoints --------------------------------------------------------------------

    def save(self, path):
        """One checkpoint, written atomically (see minigrad.io). A text's stream is saved with
        the rng's state before the first step it would re-run on load (the dropout masks)."""
        stream = draws = policy = None
        if self.stream is not None:
            stream = self.stream.state_dict()
            policy = policy_settings(self.stream.policy)
            if self.random and not self.stream.policy.recompute and stream["first"] <= stream["m"]:
                if stream["first"] not in self.draws:  # cannot happen: _feed keeps what can be reached
                    raise RuntimeError(f"cannot save {path}: the random state before step "
                                       f"{stream['first']} of the pass was not kept")
                draws = self.draws[stream["first"]]  # steps that load_state_dict re-runs
        io.save(path, trainer=2, config=self.config, training=self.settings,
                model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                position=self.position, plan=self.total_updates, stream=stream,
                stream_policy=policy, draws=draws, rng=self.rng.bit_generator.state,
                history=self.history, best=self.best)
        self.wrote.add(path)

    def resume(self, path, saved):
        """Restore the checkpoint `saved` (read from path): model, optimizer, rng, position,
        history and a text's stream. Checks that it was made for this task and model first."""
        differ = [f"{k} {saved['config'].get(k)!r} (this run: {v!r})" for k, v in self.config.items()
                  if saved["config"].get(k) != v]
        if differ:
            raise ValueError(f"{path} was made for another run: {'; '.join(differ)}")
        unit, steps = saved["position"]["unit"], saved["position"]["steps"]
        if self.task.steps_before(unit) != steps:  # units have known lengths: the two must agree
            raise ValueError(f"{path}: its position is malformed (unit {unit} starts at step "
                             f"{self.task.steps_before(unit)} of this task, not {steps})")
        rng = self.rng.bit_generator
        for field, restore in (("model", self.model.load_state_dict),
                               ("optimizer", self.optimizer.load_state_dict),
                               ("rng", lambda value: setattr(rng, "state", value)),
                               ("stream", self._resume_stream)):
            try:
                restore(saved[field] if field != "stream" else saved)
            except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
                why = " ".join(str(e).split())  # one line (load_state_dict's spans several)
                raise ValueError(f"{path}: its {field} is malformed ({why})") from None
        self.position, self.history = saved["position"], saved["history"]
        # the best model's file lies beside the checkpoint resumed from: kept on if saved to it
        self.best = saved["best"] if self.args.save == path else None
        self.total_updates = self._plan_from(unit, saved["position"]["updates"])
        if saved["plan"] != self.total_updates and (self.settings["lr_schedule"] != "none"):
            self.notes.append(f"the --lr-schedule now spans {self.total_updates} updates (the "
                              f"checkpoint's run planned {saved['plan']}): the learning rate "
                              "follows the new length from here on")

    def _plan_from(self, unit, made):
        """The updates the run will have made at its end, `made` at unit `unit`: the rest of
        a pass under way under its stream's policy, then the other units under this run's."""
        end = max(unit, self.total_units)
        now = self.stream.policy if self.stream is not None else self.policy
        rest = unit if self.stream is None else -(-unit // self.task.per_epoch) * self.task.per_epoch
        rest = min(rest, end)
        return (made + planned_updates(self.task, now, rest) - planned_updates(self.task, now, unit)
                + planned_updates(self.task, self.policy, end) - planned_updates(self.task, self.policy, rest))

    def _resume_stream(self, saved):
        """The text's stream as it was: its reachable steps re-run with the dropout masks they
        had (the rng's state before the first of them), then the rng where the run left it."""
        sd = saved["stream"]
        if sd is None:
            return
        if self.task.name != "text":
            raise ValueError("a stream in a checkpoint of a generated task")
        now = self.rng.bit_generator.state
        if saved["draws"] is not None:
            self.rng.bit_generator.state = saved["draws"]
        # The pass under way goes on under the policy its stream was made with; a --k1, --k2,
        # --recompute or --policy given now takes over at the next pass.
        policy = make_policy(saved["stream_policy"])
        if repr(policy) != repr(self.policy):
            self.deferred = True
            self.notes.append(f"the pass over the text under way goes on under {policy}; "
                              f"{self.policy} from the next pass")
        self._new_stream(policy)
        self.ran = int(sd["first"]) - 1
        try:
            self.stream.load_state_dict(sd)
        finally:
            self.rng.bit_generator.state = now
        self.m = int(sd["m"])


@contextlib.contextmanager
def _evaluating(model):
    """The model in evaluation mode (no dropout), recording nothing; training mode after."""
    model.eval()
    try:
        with no_grad():
            yield
    finally:
        model.train()


def evaluate(task, model):
    """The task's score of the model on its held-out data (a text: the validation split),
    run a few hundred steps at a time, in evaluation mode and without recording."""
    x, y = task.evaluation_set(np.random.default_rng(2**31 - 1))
    x = _steps_of(x)
    device = model.head.weight.device
    state, outputs = None, []
    with _evaluating(model):
        for a in range(0, len(x), 500):
            state, output = model(state, Tensor(np.asarray(x[a:a + 500]), device=device))
            outputs.append(devices.to_numpy(output.data))
    score = task.score(np.concatenate(outputs), y)
    if task.name == "text":  # the baseline that knows only the training text's frequencies
        score.update(baseline_loss=task.baseline(), baseline="unigram entropy of the training text",
                     baseline_accuracy=float((y == task.frequencies.argmax()).mean()))
    return score


def report(training, out):
    task, history = training.task, training.history
    recent = history["loss"][-max(1, len(history["loss"]) // 10):]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if not training.trained:
        print(f"nothing left to train: the run is already at step {training.position['steps']} "
              "(raise --steps or --epochs to go on)", file=out)
    if recent:
        print(f"final training loss {np.mean(recent):.4f} per step (mean of the last "
              f"{len(recent)} of {len(history['loss'])} measurements)", file=out)
    if task.name != "text":
        score = evaluate(task, training.model)
        print(f"held-out: accuracy {100 * score['accuracy']:.1f}%, loss {score['loss']:.4f}; "
              f"baseline ({score['baseline']}): accuracy {100 * score['baseline_accuracy']:.1f}%, "
              f"loss {score['baseline_loss']:.4f}", file=out)
    elif task.validation is None:
        print("validation: none (--val-fraction 0 holds nothing out)", file=out)
    else:
        ln2 = math.log(2)
        at, score = training.score or (None, None)
        if at != training.position["steps"]:  # none yet of the model as it is
            score = evaluate(task, training.model)
        print(f"validation (the last {100 * task.val_fraction:g}% of the text, {len(task.validation)} "
              f"characters): accuracy {100 * score['accuracy']:.1f}%, loss {score['loss']:.4f} nats, "
              f"{score['loss'] / ln2:.3f} bits per character; baseline ({score['baseline']}): "
              f"accuracy {100 * score['baseline_accuracy']:.1f}%, loss {score['baseline_loss']:.4f} "
              f"nats, {score['baseline_loss'] / ln2:.3f} bits per character", file=out)
    if training.trained:
        elapsed = training.training_time
        extra = (f", validation {training.validation_time:.1f} s more" if training.validation_time else "")
        print(f"time {elapsed / training.trained * 1e3:.3f} ms per step ({training.trained} steps in "
              f"{elapsed:.1f} s{extra}); peak memory {peak:.0f} MiB", file=out)


def generate(model, vocab, count, temperature, rng, prime=""):
    """count characters generated one at a time by the character model, after `prime` (run
    through the model first) or, without one, starting from a random character (counted)."""
    index = {c: i for i, c in enumerate(vocab)}
    device = model.head.weight.device

    def run(state, ids):
        return model(state, Tensor(np.array(ids, dtype=np.int64)[:, None], device=device))

    chars = []
    with _evaluating(model):
        if prime:
            state, logits = run(None, [index[c] for c in prime])
        else:
            chars.append(vocab[int(rng.integers(len(vocab)))])
            state, logits = run(None, [index[chars[0]]])
        while len(chars) < count:
            z = devices.to_numpy(logits.data)[-1, 0].astype(np.float64) / temperature
            p = np.exp(z - z.max())
            char = int(rng.choice(len(vocab), p=p / p.sum()))
            chars.append(vocab[char])
            state, logits = run(state, [char])
    return "".join(chars)


def sample_command(args, out=None):
    """`minigrad sample CHECKPOINT`: text from a character model saved by `minigrad train --text`."""
    out = out or sys.stdout
    if args.length < 1:
        raise ValueError(f"--length must be >= 1, got {args.length}")
    if not (args.temperature > 0 and math.isfinite(args.temperature)):
        raise ValueError(f"--temperature must be > 0, got {args.temperature}")
    saved = load_checkpoint(args.checkpoint)
    config = saved["config"]
    if config.get("task") != "text":
        raise ValueError(f"{args.checkpoint} is a checkpoint of the {config.get('task')} task: only a "
                         "character model (minigrad train --text) can be sampled")
    vocab = config["vocab"]
    unknown = sorted(set(args.prime) - set(vocab))
    if unknown:
        raise ValueError(f"--prime: {', '.join(map(repr, unknown))} not in the model's vocabulary "
                         f"(the {len(vocab)} characters of its training text)")
    V = len(vocab)
    model = SequenceModel(config["cell"], V, config["hidden"], V, layers=config["layers"],
                          dropout=config["dropout"], classes=True, dtype=config["dtype"], rng=0)
    try:
        model.load_state_dict(saved["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{args.checkpoint}: its model is malformed ({' '.join(str(e).split())})") from None
    text = generate(model, vocab, args.length, args.temperature, np.random.default_rng(args.seed),
                    prime=args.prime)
    print(args.prime + text, file=out)
    return 0


def model_finite(p):
    """Whether every entry of the parameter p is finite (a NumPy or CuPy bool)."""
    return devices.array_module(p.data).isfinite(p.data).all()


FIELDS = ("trainer", "config", "training", "model", "optimizer", "position", "plan", "stream",
          "stream_policy", "draws", "rng", "history", "best")


def load_checkpoint(path):
    """A checkpoint of `minigrad train`, its fields checked (see Training.resume)."""
    saved = io.load(path)
    if "trainer" not in saved and {"config", "model", "state"} <= set(saved):
        raise ValueError(f"{path} was written by an earlier minigrad train (per-step cells, no "
                         "stream): it cannot be resumed or sampled; train again")
    missing = [k for k in FIELDS if k not in saved]
    if missing:
        raise ValueError(f"{path} is not a minigrad train checkpoint (it lacks {', '.join(missing)})")
    _check_fields(path, saved)
    return saved


def _check_fields(path, saved):
    """The checkpoint's bookkeeping, checked before anything is restored: a field that is
    there but mangled is an error naming it, as one that is missing."""
    def bad(field, why):
        return ValueError(f"{path}: its {field} is malformed ({why})")

    def count(value):
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0

    def number(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if saved["trainer"] != 2:
        raise bad("trainer", f"format {saved['trainer']!r}; this minigrad reads format 2")
    if not isinstance(saved["config"], dict):
        raise bad("config", f"a {type(saved['config']).__name__}, not a dict")
    training = saved["training"]
    if not isinstance(training, dict) or set(training) != set(TRAINING):
        raise bad("training", f"expected a dict of {', '.join(TRAINING)}")
    valid = {"policy": lambda v: v in ("bptt", "tbptt"),
             "k1": lambda v: count(v) and v >= 1, "k2": lambda v: count(v) and v >= 1,
             "recompute": lambda v: isinstance(v, bool), "seed": count,
             "clip": lambda v: v is None or (number(v) and v > 0),
             "lr": lambda v: number(v) and v > 0, "lr_schedule": lambda v: v in ("none", "cosine", "step"),
             "warmup": count}
    for key, value in training.items():
        if not valid[key](value):
            raise bad("training", f"{key} {value!r}")
    position = saved["position"]
    if not isinstance(position, dict) or set(position) != {"unit", "steps", "updates"}:
        raise bad("position", "expected {'unit': ..., 'steps': ..., 'updates': ...}")
    if not count(saved["plan"]):
        raise bad("plan", f"{saved['plan']!r}, not a count of updates")
    for key in ("unit", "steps", "updates"):
        if not count(position[key]):
            raise bad("position", f"{key} must be an integer >= 0, got {position[key]!r}")
    history = saved["history"]
    keys = {"steps": count, "loss": number, "val_steps": count, "val_loss": number}
    if (not isinstance(history, dict) or set(history) != set(keys)
            or not all(isinstance(history[k], list) for k in history)
            or len(history["steps"]) != len(history["loss"])
            or len(history["val_steps"]) != len(history["val_loss"])):
        raise bad("history", "expected {'steps': [...], 'loss': [...], 'val_steps': [...], "
                             "'val_loss': [...]}, each pair of one length")
    for key, ok in keys.items():
        if not all(ok(v) or key.endswith("loss") and isinstance(v, float) for v in history[key]):
            what = "numbers" if key.endswith("loss") else "integers >= 0"
            raise bad("history", f"its {key} must be {what}")
    best = saved["best"]
    if best is not None and not (isinstance(best, (list, tuple)) and len(best) == 2 and count(best[0])
                                 and number(best[1])):
        raise bad("best", "expected None or (step, validation loss)")
    optimizer = saved["optimizer"]
    if (not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict)
            or not isinstance(optimizer.get("param_groups"), list)
            or not all(isinstance(g, dict) and isinstance(g.get("params"), list)
                       for g in optimizer["param_groups"])):
        raise bad("optimizer", "expected {'state': {...}, 'param_groups': [{'params': [...], ...}]}")
    if saved["stream"] is not None and not isinstance(saved["stream"], dict):
        raise bad("stream", f"a {type(saved['stream']).__name__}, not a dict")
    if saved["stream"] is not None and saved["config"].get("task") != "text":
        raise bad("stream", "a stream in a checkpoint of a generated task")
    policy = saved["stream_policy"]
    if saved["stream"] is not None and not (
            isinstance(policy, dict) and set(policy) == {"policy", "k1", "k2", "recompute"}
            and (policy["policy"] == "bptt" and policy["k1"] is None and policy["k2"] is None
                 or policy["policy"] == "tbptt" and count(policy["k1"]) and count(policy["k2"])
                 and policy["k1"] >= 1 and policy["k2"] >= 1)
            and isinstance(policy["recompute"], bool)):
        raise bad("stream_policy", "expected {'policy': 'bptt' or 'tbptt', 'k1': ..., 'k2': ..., "
                                   "'recompute': ...} beside a stream")


def _plot_format(path):
    """--plot's format: its file's extension, lower case ("png" for curve.PNG)."""
    return os.path.splitext(path)[1].lstrip(".").lower()


def _plot_formats():
    """The formats matplotlib writes without a display (its Agg canvas's)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    return set(FigureCanvasAgg.get_supported_filetypes())


def plot(path, history, task, policy):
    """The training loss curve, and a text's validation curve, in the format of the path's
    extension, written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(history["steps"], history["loss"], lw=1, label="training")
    if history["val_steps"]:
        ax.plot(history["val_steps"], history["val_loss"], "o-", lw=1, ms=3, label="validation")
        ax.legend()
    ax.set_xlabel("time step")
    ax.set_ylabel("loss per step" + (" (nats per character)" if task.name == "text" else ""))
    ax.set_yscale("log" if min(history["loss"] + history["val_loss"], default=1) > 0 else "linear")
    ax.set_title(f"{task.name}, {policy}")
    fig.tight_layout()
    try:
        with io.atomic_file(path, "wb") as f:
            fig.savefig(f, format=_plot_format(path))
    finally:
        plt.close(fig)
