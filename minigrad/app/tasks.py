"""Built-in sequence tasks for `minigrad train`, generated on the fly from a seed.

Each task hands the trainer *units*, as (inputs, targets, fresh) with time on the
first axis and `fresh` saying whether the recurrent state starts again from zero: a
whole sequence for the generated tasks, the next --length steps of the streams for
a text (fed to one TBPTT stream, so windows cross units). Symbol inputs come as a
lazy OneHot, whose `indices` the trainer's model one-hot encodes once per segment. A
task also defines the loss of one time step (`step_loss`) and of a segment of steps
(`loss`), and how to score a trained model against a trivial baseline.

- DelayTask ("delay"): output the symbol seen `delay` steps ago. Memory need: delay
  steps, so TBPTT needs k2 > delay to learn it, and stays at chance below.
- AddingTask ("adding"): two of `length` numbers are marked; at the last step, output
  their sum. Memory need: up to the whole sequence.
- TextTask (--text FILE): predict the next character of a text, B streams over its
  first part, the state carried from one unit to the next (the classic "batchify"
  layout); the last part (--val-fraction) is held out for validation.
"""
import hashlib

import numpy as np

from ..backends.devices import array_module
from ..nn import functional as F
from ..tensor import Tensor


class OneHot:
    """A lazy (T, B, V) one-hot sequence: step k is made when asked for, so nothing of
    size T * B * V is ever stored (a text of a million characters stays small)."""

    def __init__(self, indices, classes, dtype):
        self.indices, self.eye = indices, np.eye(classes, dtype=dtype)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, k):
        return self.eye[self.indices[k]]


class _Classes:
    """What the character and symbol tasks share: one-hot inputs, class targets (-1 for none)."""

    def step_loss(self, logits, y):
        """Cross-entropy summed over the batch entries that have a target, divided by the
        batch size: each update's loss is then the mean over streams of the summed steps."""
        t = y.data
        batch = t.shape[0]
        valid = t >= 0
        if valid.all():
            return F.cross_entropy(logits, t, reduction="sum") * (1.0 / batch)
        losses = F.cross_entropy(logits, array_module(t).where(valid, t, 0), reduction="none")
        mask = Tensor(valid.astype(logits.dtype))
        return (losses * mask).sum() * (1.0 / batch)

    def loss(self, logits, y):
        """The losses of a segment of steps at once: logits (T, B, V), y (T, B) class indices
        (-1: no target); the cross-entropy summed over steps and entries, divided by B (so
        the sum of step_loss over the segment's steps, up to rounding)."""
        return F.cross_entropy(logits, y, ignore_index=-1, reduction="sum") * (1.0 / logits.shape[1])

    def score(self, outputs, targets):
        """accuracy, mean loss, and the same for the trivial baseline of always predicting the
        most frequent target (its loss: the entropy of the target frequencies)."""
        valid = targets >= 0
        logits, t = outputs[valid], targets[valid]
        freq = np.bincount(t, minlength=logits.shape[-1]) / t.size
        nz = freq[freq > 0]
        return {"accuracy": float((logits.argmax(-1) == t).mean()),
                "loss": float(F.cross_entropy(Tensor(logits), t).data),
                "baseline_accuracy": float(freq.max()),
                "baseline_loss": float(-(nz * np.log(nz)).sum()),
                "baseline": "always the most frequent symbol"}


class _Generated:
    """A task of endless fresh sequences: each unit is one batch of them, the state starting
    from zero; `sample(rng, count)` makes them."""

    def unit(self, index, rng):
        x, y = self.sample(rng)
        return x, y, True

    def units(self, steps, epochs):
        return -(-steps // self.length)

    def unit_steps(self, index):
        return self.length

    def steps_before(self, unit):
        """The steps of units 0 .. unit-1 together."""
        return unit * self.length

    def evaluation_set(self, rng):
        return self.sample(rng, 256)  # held out: the caller's generator has its own seed


class DelayTask(_Generated, _Classes):
    name = "delay"

    def __init__(self, delay=5, length=50, batch=32, symbols=4, dtype="float32"):
        if delay < 1 or delay >= length:
            raise ValueError(f"--delay must be between 1 and --length - 1 ({length - 1}), got {delay}")
        self.delay, self.length, self.batch, self.classes = delay, length, batch, symbols
        self.input_size = self.output_size = symbols
        self.dtype = np.dtype(dtype)

    def describe(self):
        return f"delay: output the symbol seen {self.delay} steps ago ({self.classes} symbols)"

    def config(self):
        return {"task": self.name, "delay": self.delay, "length": self.length, "symbols": self.classes}

    def sample(self, rng, count=None):
        """count (default: the batch) fresh sequences: inputs (T, count, V), targets (T, count)."""
        symbols = rng.integers(0, self.classes, (self.length, count or self.batch))
        targets = np.full(symbols.shape, -1)
        targets[self.delay:] = symbols[:-self.delay]
        return OneHot(symbols, self.classes, self.dtype), targets


class AddingTask(_Generated):
    name = "adding"

    def __init__(self, length=20, batch=32, dtype="float32"):
        if length < 2:
            raise ValueError(f"--length must be at least 2 for the adding problem, got {length}")
        self.length, self.batch = length, batch
        self.input_size, self.output_size = 2, 1
        self.dtype = np.dtype(dtype)

    def describe(self):
        return f"adding: the sum of the 2 marked numbers among {self.length}, asked at the end"

    def config(self):
        return {"task": self.name, "length": self.length}

    def sample(self, rng, count=None):
        """inputs (T, count, 2): a number and a 0/1 marker; targets (T, count, 2): the answer
        and its weight, 1 at the last step only."""
        count = count or self.batch
        half = self.length // 2
        x = np.zeros((self.length, count, 2), dtype=self.dtype)
        x[:, :, 0] = rng.uniform(0, 1, (self.length, count))
        first = rng.integers(0, half, count)
        second = rng.integers(half, self.length, count)
        columns = np.arange(count)
        x[first, columns, 1] = x[second, columns, 1] = 1
        y = np.zeros((self.length, count, 2), dtype=self.dtype)
        y[-1, :, 0] = x[first, columns, 0] + x[second, columns, 0]
        y[-1, :, 1] = 1
        return x, y

    def step_loss(self, pred, y):
        """Weighted squared error, summed over the batch and divided by its size."""
        target, weight = y[:, 0], y[:, 1]
        d = pred.reshape(pred.shape[0]) - target
        return (d * d * weight).sum() * (1.0 / pred.shape[0])

    def loss(self, pred, y):
        """The losses of a segment of steps at once: pred (T, B, 1), y (T, B, 2); the weighted
        squared error summed over steps and entries, divided by B."""
        T, B = y.shape[0], y.shape[1]
        d = pred.reshape(T, B) - y[:, :, 0]
        return (d * d * y[:, :, 1]).sum() * (1.0 / B)

    def score(self, outputs, targets):
        """Mean squared error at the last step, and accuracy: |error| < 0.04, the usual
        criterion; the baseline always answers 1, the expected sum."""
        pred, answer = outputs[-1, :, 0], targets[-1, :, 0]
        return {"accuracy": float((np.abs(pred - answer) < 0.04).mean()),
                "loss": float(((pred - answer) ** 2).mean()),
                "baseline_accuracy": float((np.abs(1 - answer) < 0.04).mean()),
                "baseline_loss": float(((1 - answer) ** 2).mean()),
                "baseline": "always 1, the expected sum"}


class TextTask(_Classes):
    name = "text"

    def __init__(self, path, length=100, batch=32, dtype="float32", val_fraction=0.0):
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise OSError(f"cannot read {path}: No such file or directory") from None
        except IsADirectoryError:
            raise OSError(f"cannot read {path}: it is a directory") from None
        except OSError as e:
            raise OSError(f"cannot read {path}: {e.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path} is not UTF-8 text "
                             f"(byte 0x{raw[e.start]:02x} at offset {e.start})") from None
        if not text:
            raise ValueError(f"{path} is empty")
        if not 0 <= val_fraction < 1:
            raise ValueError(f"--val-fraction must be at least 0 and below 1, got {val_fraction}")
        # The last val_fraction of the characters: never trained on. At least 2 characters
        # (one input and its target) when asked for at all.
        held = 0 if val_fraction == 0 else max(2, round(len(text) * val_fraction))
        if len(text) - held < 2 * batch + 1:
            raise ValueError(f"{path} has {len(text)} characters{f' ({held} held out)' if held else ''}: "
                             f"too short for {batch} streams (--batch); it needs at least "
                             f"{2 * batch + 1 + held}")
        self.path, self.length, self.batch = path, length, batch
        self.vocab = "".join(sorted(set(text)))  # of the whole text: validation has no unknowns
        self.classes = self.input_size = self.output_size = len(self.vocab)
        self.dtype = np.dtype(dtype)
        self.digest = hashlib.sha256(raw).hexdigest()[:16]
        self.val_fraction = val_fraction
        index = {c: i for i, c in enumerate(self.vocab)}
        data = np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
        data, self.validation = data[:len(data) - held], (data[len(data) - held:] if held else None)
        self.characters = len(data)  # of the training part
        counts = np.bincount(data, minlength=self.classes)
        self.frequencies = counts / counts.sum()  # of the training part: the unigram baseline
        per = (len(data) - 1) // batch  # steps per stream
        # Stream b reads characters b*per .. (b+1)*per; the target is the next character.
        self.inputs = data[:batch * per].reshape(batch, per).T
        self.targets = data[1:batch * per + 1].reshape(batch, per).T
        self.per_epoch = -(-per // length)

    def describe(self):
        return (f"text: next character of {self.path} ({self.batch} streams of "
                f"{len(self.inputs)} steps, {self.classes} symbols)")

    def config(self):
        return {"task": self.name, "text": self.digest, "vocab": self.vocab, "length": self.length,
                "val_fraction": self.val_fraction}

    def unit(self, index, rng):
        k = index % self.per_epoch
        rows = slice(k * self.length, (k + 1) * self.length)
        return OneHot(self.inputs[rows], self.classes, self.dtype), self.targets[rows], k == 0

    def steps_after(self, index):
        """The steps of the pass that come after unit `index`."""
        k = index % self.per_epoch
        return len(self.inputs) - min(len(self.inputs), (k + 1) * self.length)

    def units(self, steps, epochs):
        """How many units make `epochs` passes, or at least `steps` steps (the last unit of
        each pass may be shorter)."""
        if steps is None:
            return epochs * self.per_epoch
        passes, rest = divmod(steps, len(self.inputs))  # in closed form: --steps may be huge
        return passes * self.per_epoch + -(-rest // self.length)

    def unit_steps(self, index):
        k = index % self.per_epoch
        return min(self.length, len(self.inputs) - k * self.length)

    def steps_before(self, unit):
        """The steps of units 0 .. unit-1 together (only a pass's last unit is short)."""
        passes, k = divmod(unit, self.per_epoch)
        return passes * len(self.inputs) + k * self.length

    def evaluation_set(self, rng):
        """The validation characters laid out as streams: inputs and targets (T, S), S at
        most the batch, each stream at least 50 steps where the split allows (a stream's
        first steps have no context, so fewer, longer streams measure the model better)."""
        if self.validation is None:
            raise ValueError("this text has no validation split (--val-fraction 0)")
        count = max(1, min(self.batch, (len(self.validation) - 1) // 50))
        per = (len(self.validation) - 1) // count
        v = self.validation
        return (OneHot(v[:count * per].reshape(count, per).T, self.classes, self.dtype),
                v[1:count * per + 1].reshape(count, per).T)

    def baseline(self):
        """The unigram entropy of the training characters, in nats: the loss per character
        of predicting every character by its frequency, with no context."""
        p = self.frequencies[self.frequencies > 0]
        return float(-(p * np.log(p)).sum())


def make_task(args):
    """The task the command line asks for."""
    if args.text is not None:
        if args.task is not None:
            raise ValueError("give --task or --text, not both")
        return TextTask(args.text, length=args.length or 100, batch=args.batch, dtype=args.dtype,
                        val_fraction=0.05 if getattr(args, "val_fraction", None) is None
                        else args.val_fraction)
    task = args.task or "delay"
    if task == "delay":
        return DelayTask(delay=args.delay, length=args.length or 50, batch=args.batch, dtype=args.dtype)
    if task == "adding":
        return AddingTask(length=args.length or 20, batch=args.batch, dtype=args.dtype)
    raise ValueError(f"unknown task {task!r}; the built-in tasks are delay and adding")


__all__ = ["DelayTask", "AddingTask", "TextTask", "OneHot", "make_task"]
