"""What `minigrad train` shows while it runs, and how it is stopped: the progress display
(a bar on a terminal, a plain line every few seconds elsewhere), warnings as one line each,
the --log file, and Ctrl-C."""
import json
import math
import os
import signal
import sys
import threading
import time

from ..bptt import DroppedLossWarning


class OneLine:
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


def progress(total, done, quiet):
    """The progress display on stderr: a tqdm bar with the loss, the validation bits per
    character and steps/s on a terminal; elsewhere (a log file, a pipe) a plain line at most
    every PLAIN_EVERY seconds, so that logs stay readable; nothing with --quiet."""
    if quiet:
        return _NoBar()
    if not sys.stderr.isatty():
        return _Lines(total, done)
    return _Bar(total, done)


PLAIN_EVERY = 10.0


def _status(loss, val):
    parts = {} if loss is None else {"loss": f"{loss:.4f}"}
    if val is not None:
        parts["val"] = f"{val / math.log(2):.3f} bpc"
    return parts


class _Bar:
    def __init__(self, total, done):
        from tqdm import tqdm  # here: only the command needs it
        self.tqdm = tqdm(total=total, initial=done, unit="step", file=sys.stderr, dynamic_ncols=True,
                         mininterval=0.25)
        self.val = None

    def update(self, n):
        self.tqdm.update(n)

    def show(self, step, loss, val):
        self.val = val if val is not None else self.val
        parts = _status(loss, self.val)
        if parts:
            self.tqdm.set_postfix(parts, refresh=False)

    def write(self, text, file):
        self.tqdm.write(text, file=file)

    def close(self):
        self.tqdm.close()


class _NoBar:
    def update(self, n):
        pass

    def show(self, step, loss, val):
        pass

    def write(self, text, file):
        print(text, file=file)

    def close(self):
        pass


class _Lines(_NoBar):
    """Progress as plain lines: `step 1200/15000 (8%), loss 0.4321, val 2.345 bpc, 3050 step/s`."""

    def __init__(self, total, done):
        self.total, self.done, self.started, self.last = total, done, time.perf_counter(), None
        self.first, self.loss, self.val, self.said = done, None, None, None

    def show(self, step, loss, val):
        self.done, now = step, time.perf_counter()
        self.loss = loss if loss is not None else self.loss
        self.val = val if val is not None else self.val
        if (self.last is None or now - self.last >= PLAIN_EVERY) and self.done - self.first:
            self._say(now)

    def _say(self, now):
        self.last, self.said = now, self.done
        rate = (self.done - self.first) / max(now - self.started, 1e-9)
        parts = [f"{k} {v}" for k, v in _status(self.loss, self.val).items()]
        print(", ".join([f"step {self.done}/{self.total} ({100 * self.done // max(self.total, 1)}%)",
                         *parts, f"{rate:.0f} step/s"]), file=sys.stderr, flush=True)

    def close(self):
        if self.said != self.done and self.done - self.first:
            self._say(time.perf_counter())


class Log:
    """--log FILE: one JSON object per unit, each line appended with one write to a file
    opened with O_APPEND, so that a reader (or a crash) never sees half a line."""

    def __init__(self, path):
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as e:
            raise OSError(f"cannot write {path}: {e.strerror}") from None

    def write(self, record):
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        os.write(self.fd, (json.dumps(clean) + "\n").encode())

    def close(self):
        os.close(self.fd)


class CtrlC:
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
