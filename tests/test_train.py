"""`minigrad train`: it learns, it is reproducible, it resumes exactly, and it fails in one line.

In-process runs (`main([...])`) keep the suite fast; the tests about exit codes,
stderr and Ctrl-C run the real command in a subprocess.
"""
import json
import re
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import minigrad as mg
from minigrad import backends
from minigrad.app.cli import main


def run(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "minigrad", "train", *args], capture_output=True,
                          text=True, **kwargs)


def train(capsys, *args):
    """Run `minigrad train --quiet ARGS` in this process; (exit status, stdout)."""
    status = main(["train", "--quiet", *args])
    return status, capsys.readouterr().out


def accuracy(out):
    found = re.search(r"held-out: accuracy ([\d.]+)%.*baseline .*: accuracy ([\d.]+)%", out)
    return float(found.group(1)), float(found.group(2))


def one_line_error(done, code=1):
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


# -- learning ------------------------------------------------------------------

def test_the_default_run_learns_the_delay_task(capsys):
    status, out = train(capsys)
    assert status == 0
    assert "delay: output the symbol seen 5 steps ago" in out and "TBPTT(5, 10)" in out
    ours, baseline = accuracy(out)
    assert baseline < 30 and ours > 95  # chance is 25% with 4 symbols
    assert re.search(r"time [\d.]+ ms per step \(15000 steps in [\d.]+ s\); peak memory \d+ MiB", out)


def test_k2_shorter_than_the_memory_need_fails_and_longer_succeeds(capsys):
    """Delay 3 needs gradient across 3 steps: TBPTT(2, 2) cannot carry it, TBPTT(2, 6) can."""
    common = ["--delay", "3", "--length", "30", "--steps", "6000", "--k1", "2"]
    _, short = train(capsys, *common, "--k2", "2")
    _, long = train(capsys, *common, "--k2", "6")
    assert accuracy(short)[0] < 40
    assert accuracy(long)[0] > 90


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("policy", [["--policy", "bptt"], ["--k1", "3", "--k2", "7"],
                                    ["--k1", "3", "--k2", "7", "--recompute"], ["--k1", "4", "--k2", "2"]])
def test_cells_and_policies(capsys, cell, policy):
    status, out = train(capsys, "--cell", cell, "--steps", "200", "--hidden", "8", *policy)
    assert status == 0
    expected = {"bptt": "BPTT()", "--recompute": "TBPTT(3, 7, recompute=True)", "2": "TBPTT(4, 2)"}
    shown = next((v for k, v in expected.items() if k == policy[-1] or k == policy[1]), "TBPTT(3, 7)")
    assert f"{cell}, hidden 8, 1 layer," in out and shown in out
    assert "final training loss" in out


def test_optimizers_and_the_adding_task(capsys):
    for optimizer in ["sgd", "adagrad"]:
        status, out = train(capsys, "--task", "adding", "--optimizer", optimizer, "--steps", "200",
                            "--dtype", "float64")
        assert status == 0 and f"{optimizer} lr" in out and "float64" in out
        assert "baseline (always 1, the expected sum)" in out


def test_dropped_losses_are_noted_once(tmp_path):
    done = run("--k1", "5", "--k2", "2", "--steps", "200", "--quiet")
    assert done.returncode == 0
    notes = [line for line in done.stderr.splitlines() if "note:" in line]
    assert notes == ["minigrad train: note: TBPTT(5, 2) drops the losses of 30 of 50 steps: steps "
                     "before a window (k2 < k1) are run but never back-propagated"]


def test_an_overflow_is_one_warning_line_and_a_non_finite_loss_one_error_line(tmp_path):
    """NumPy's overflow warning was taken for k2 < k1's note and crashed the run (IndexError);
    now each warning is one line, and the loss that becomes inf stops the run (issue 19)."""
    done = run("--optimizer", "sgd", "--lr", "1e38", "--steps", "3000", "--quiet",
               "--save", str(tmp_path / "ck.npz"))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert all(line.startswith("minigrad train: warning: ") for line in lines[:-1])
    assert len(set(lines)) == len(lines)  # each warning once
    assert re.fullmatch(r"minigrad train: error: the loss became (inf|nan) at step \d+; no checkpoint "
                        r"was written; try a smaller --lr or --clip", lines[-1]), lines[-1]
    assert not (tmp_path / "ck.npz").exists()


def test_warnings_after_training_are_one_line_too_and_w_error_makes_them_errors(capsys, monkeypatch):
    """Warnings were caught only around train_sequence: one from the held-out evaluation came as
    Python's two-line form; and catching them overrode `-W error` (issue 19)."""
    from minigrad.app import train as trainer
    real = trainer.evaluate

    def warning_evaluate(task, model):
        for _ in range(3):
            warnings.warn("overflow encountered in exp", RuntimeWarning)
        return real(task, model)
    monkeypatch.setattr(trainer, "evaluate", warning_evaluate)
    assert main(["train", "--quiet", "--steps", "100"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["minigrad train: warning: overflow encountered in exp"]
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "minigrad", "train",
                           "--optimizer", "sgd", "--lr", "1e38", "--steps", "3000", "--quiet"],
                          capture_output=True, text=True)
    assert re.fullmatch(r"minigrad train: error: overflow encountered in \w+", one_line_error(done))


def test_a_non_finite_loss_keeps_the_last_finite_checkpoint(capsys, tmp_path, monkeypatch):
    """The third unit's loss is NaN: the run stops before saving, and the checkpoint on disk is
    the second unit's, which still loads."""
    from minigrad.app import train as trainer
    calls = []

    def nan_at_the_third(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            result.losses = [float("nan")]
        return result
    real = trainer.train_sequence
    monkeypatch.setattr(trainer, "train_sequence", nan_at_the_third)
    monkeypatch.setattr(trainer, "SAVE_EVERY", 0.0)  # a checkpoint after every unit
    path = tmp_path / "ck.npz"
    status = main(["train", "--quiet", "--steps", "500", "--save", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err[-1] == ("minigrad train: error: the loss became nan at step 150; the last checkpoint, "
                       "at step 100, is kept; try a smaller --lr or --clip")
    assert mg.load(path)["position"]["steps"] == 100


def test_weights_that_became_non_finite_stop_the_run_as_a_non_finite_loss(capsys, tmp_path, monkeypatch):
    """The third unit's last update leaves an inf weight though its loss was finite: the run
    stops before saving it, as for a non-finite loss."""
    from minigrad.app import train as trainer
    calls = []

    def inf_after_the_third(step, state, x, y, *, optimizer, **options):
        result = real(step, state, x, y, optimizer=optimizer, **options)
        calls.append(1)
        if len(calls) == 3:
            p = optimizer.param_groups[0]["params"][0]
            p.data = np.full(p.shape, np.inf, p.dtype)
        return result
    real = trainer.train_sequence
    monkeypatch.setattr(trainer, "train_sequence", inf_after_the_third)
    monkeypatch.setattr(trainer, "SAVE_EVERY", 0.0)
    path = tmp_path / "ck.npz"
    assert main(["train", "--quiet", "--steps", "500", "--save", str(path)]) == 1
    assert capsys.readouterr().err.strip().endswith(
        "the loss became nan at step 150; the last checkpoint, at step 100, is kept; try a smaller "
        "--lr or --clip")
    assert mg.load(path)["position"]["steps"] == 100


def test_the_same_seed_gives_the_same_losses_bit_for_bit(capsys, tmp_path):
    for name in ["a", "b"]:
        train(capsys, "--steps", "500", "--seed", "7", "--save", str(tmp_path / f"{name}.npz"))
    a, b = mg.load(tmp_path / "a.npz"), mg.load(tmp_path / "b.npz")
    assert a["history"]["loss"] == b["history"]["loss"]
    train(capsys, "--steps", "500", "--seed", "8", "--save", str(tmp_path / "c.npz"))
    assert mg.load(tmp_path / "c.npz")["history"]["loss"] != a["history"]["loss"]


# -- text ------------------------------------------------------------------------

@pytest.fixture
def text(tmp_path):
    path = tmp_path / "fox.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    return path


def test_text_trains_validates_on_held_out_text_and_samples(capsys, text, tmp_path):
    log = tmp_path / "run.jsonl"
    status, out = train(capsys, "--text", str(text), "--epochs", "25", "--k1", "10", "--k2", "20",
                        "--sample", "60", "--temperature", "0.5", "--log", str(log))
    assert status == 0
    # 1800 characters, the last 90 held out: 32 streams of (1710 - 1) // 32 = 53 steps
    assert "text: next character of" in out and "32 streams of 53 steps, 28 symbols" in out
    lines = out.splitlines()
    sample = lines[lines.index(next(x for x in lines if x.startswith("sample (60 characters"))) + 1]
    assert len(sample) == 60 and set(sample) <= set(text.read_text())
    found = re.search(r"validation \(the last 5% of the text, 90 characters\): accuracy ([\d.]+)%, loss "
                      r"([\d.]+) nats, ([\d.]+) bits per character; baseline \(unigram entropy of the "
                      r"training text\): accuracy ([\d.]+)%, loss ([\d.]+) nats, ([\d.]+) bits", out)
    assert found, out
    acc, nats, bits, base_acc, base_nats, base_bits = map(float, found.groups())
    assert bits == pytest.approx(nats / np.log(2), abs=2e-3)
    assert bits < base_bits - 1 and acc > base_acc + 20  # it learned, measured on unseen text
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 25 and records[-1]["step"] == 25 * 53    # one per unit: a pass here
    assert set(records[0]) == {"step", "loss", "val_loss", "lr", "elapsed", "steps_per_s"}
    assert records[-1]["val_loss"] == pytest.approx(nats, abs=1e-4)


# -- checkpoints -----------------------------------------------------------------

@pytest.mark.parametrize("data", [
    ["--length", "20"],
    ["--text", "TEXT", "--length", "20"],
    ["--text", "TEXT", "--length", "20", "--k1", "10", "--k2", "30", "--layers", "2", "--dropout", "0.3"],
    ["--text", "TEXT", "--length", "20", "--k1", "10", "--k2", "30", "--recompute", "--dropout", "0.3"],
    ["--text", "TEXT", "--length", "20", "--policy", "bptt", "--cell", "gru"],
], ids=["delay", "text", "text-stored-dropout", "text-recompute-dropout", "text-bptt"])
def test_an_interrupted_and_resumed_run_equals_an_uninterrupted_one(capsys, tmp_path, text, data):
    """Resumed inside a pass over the text, the stream goes on exactly: windows that reach back
    before the checkpoint, the dropout masks of the steps they re-run, and the rng after them."""
    data = ["--hidden", "16", *[str(text) if d == "TEXT" else d for d in data]]
    whole, part = str(tmp_path / "whole.npz"), str(tmp_path / "part.npz")
    train(capsys, *data, "--steps", "200", "--save", whole)
    train(capsys, *data, "--steps", "80", "--save", part)
    stopped = mg.load(part)["position"]["steps"]  # the text: units of 20, 20, 13 steps per pass
    assert stopped == (80 if "--text" not in data else 93)
    if "--text" in data:  # inside a pass: the stream's state is in the checkpoint
        assert mg.load(part)["stream"]["m"] == (0 if "bptt" in data else 40)  # BPTT: flushed per unit
    status, out = train(capsys, *data, "--steps", "200", "--resume", part, "--save", part)
    assert status == 0 and f"resumed from {part} at step {stopped}" in out
    a, b = mg.load(whole), mg.load(part)
    assert a["history"]["loss"] == b["history"]["loss"] and a["position"] == b["position"]
    for key in a["model"]:
        np.testing.assert_array_equal(a["model"][key], b["model"][key])
    assert a["rng"] == b["rng"]


def test_a_corrupt_checkpoint_is_one_line_and_overwrites_nothing(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    line = one_line_error(run("--resume", str(bad), "--save", str(bad)))
    assert line == f"minigrad train: error: load: {bad} is not a readable minigrad file (not an .npz file)"
    assert bad.read_bytes() == b"not a checkpoint"


def test_a_truncated_checkpoint_is_one_line(capsys, tmp_path):
    good = tmp_path / "good.npz"
    train(capsys, "--steps", "100", "--save", str(good))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:2000])
    assert "is not a readable minigrad file" in one_line_error(run("--resume", str(cut)))


@pytest.mark.parametrize("field, mangle, says", [
    ("position", lambda v: {**v, "unit": -5}, "its position is malformed (unit must be an integer >= 0, got -5)"),
    ("position", lambda v: {"unit": 1}, "its position is malformed (expected {'unit': ..., 'steps': ..., "
     "'updates': ...})"),
    ("plan", lambda v: -1, "its plan is malformed (-1, not a count of updates)"),
    ("position", lambda v: {**v, "unit": 10**18},
     "its position is malformed (unit 1000000000000000000 starts at step 50000000000000000000 of this "
     "task, not 100)"),
    ("stream", lambda v: {"format": "minigrad.Stream/1"},
     "its stream is malformed (a stream in a checkpoint of a generated task)"),
    ("stream", lambda v: [1], "its stream is malformed (a list, not a dict)"),
    ("trainer", lambda v: 3, "its trainer is malformed (format 3; this minigrad reads format 2)"),
    ("best", lambda v: (1, "x"), "its best is malformed (expected None or (step, validation loss))"),
    ("training", lambda v: {**v, "lr_schedule": "linear"}, "its training is malformed (lr_schedule 'linear')"),
    ("history", lambda v: {**v, "loss": v["loss"][:-1]}, "its history is malformed"),
    ("config", lambda v: [1, 2], "its config is malformed (a list, not a dict)"),
    ("optimizer", lambda v: {"state": {}}, "its optimizer is malformed (expected {'state'"),
    ("optimizer", lambda v: {**v, "param_groups": [{"params": [0, 1]}]}, "its optimizer is malformed ("),
    ("rng", lambda v: {"bit_generator": "nonsense"}, "its rng is malformed ("),
    ("model", lambda v: {}, "its model is malformed ("),
    ("training", lambda v: {**v, "policy": "foo"}, "its training is malformed (policy 'foo')"),
    ("training", lambda v: {**v, "clip": float("nan")}, "its training is malformed (clip nan)"),
    ("training", lambda v: {**v, "k1": 0}, "its training is malformed (k1 0)"),
    ("optimizer", lambda v: {**v, "param_groups": [{**v["param_groups"][0], "lr": float("inf")}]},
     "its optimizer is malformed (Adam: lr must be finite, got inf)"),
])
def test_a_checkpoint_with_a_mangled_field_is_one_line_naming_it(capsys, tmp_path, field, mangle, says):
    """A checkpoint that loads but whose bookkeeping is wrong (issue 19): one line, the field."""
    path = tmp_path / "run.npz"
    train(capsys, "--steps", "100", "--save", str(path))
    saved = mg.load(path)
    saved[field] = mangle(saved[field])
    mg.save(path, **saved)
    status = main(["train", "--quiet", "--steps", "200", "--resume", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1, err
    assert err[0].startswith(f"minigrad train: error: {path}: {says}"), err[0]


def test_resume_takes_the_checkpoints_settings_unless_the_command_line_changes_them(capsys, tmp_path):
    """Printed as used, used as saved (issue 19): --lr, --k2, --clip given on --resume apply from
    the resume on with a note, and are saved; not given, the checkpoint's; --seed is refused."""
    path = tmp_path / "run.npz"
    train(capsys, "--steps", "100", "--lr", "0.05", "--k2", "6", "--clip", "0.5", "--save", str(path))
    saved = mg.load(path)
    assert saved["training"] == {"policy": "tbptt", "k1": 5, "k2": 6, "recompute": False, "clip": 0.5,
                                 "seed": 0, "lr": 0.05, "lr_schedule": "none", "warmup": 0}
    status = main(["train", "--quiet", "--steps", "200", "--resume", str(path), "--save", str(path)])
    out, err = capsys.readouterr()
    assert status == 0 and "TBPTT(5, 6), adam lr 0.05, clip 0.5," in out and "note:" not in err
    status = main(["train", "--quiet", "--steps", "300", "--resume", str(path), "--save", str(path),
                   "--lr", "0.02", "--k2", "8"])
    out, err = capsys.readouterr()
    assert status == 0 and "TBPTT(5, 8), adam lr 0.02, clip 0.5," in out
    assert err.splitlines() == ["minigrad train: note: --k2 8 replaces the checkpoint's 6 from here on",
                                "minigrad train: note: --lr 0.02 replaces the checkpoint's 0.05 from here on"]
    saved = mg.load(path)
    assert saved["training"]["k2"] == 8 and saved["optimizer"]["param_groups"][0]["lr"] == 0.02
    assert main(["train", "--quiet", "--steps", "400", "--resume", str(path), "--seed", "3"]) == 1
    assert capsys.readouterr().err.strip() == ("minigrad train: error: --seed 3 does nothing with "
                                               "--resume: the checkpoint's random state (seed 0) goes "
                                               "on; drop it")


def test_a_text_checkpoint_with_a_mangled_stream_is_one_line_naming_it(capsys, tmp_path, text):
    path = tmp_path / "run.npz"
    train(capsys, "--text", str(text), "--length", "20", "--steps", "30", "--save", str(path))
    saved = mg.load(path)
    assert saved["stream"]["m"] == 40
    del saved["stream"]["m"]
    mg.save(path, **saved)
    status = main(["train", "--quiet", "--text", str(text), "--length", "20", "--steps", "60",
                   "--resume", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and err == [f"minigrad train: error: {path}: its stream is malformed "
                                   "(Stream.load_state_dict: the state dict lacks m)"]


def test_a_checkpoint_of_the_earlier_per_step_trainer_is_refused_in_one_line(capsys, tmp_path):
    path = tmp_path / "old.npz"
    mg.save(path, config={}, model={}, optimizer={}, position={"unit": 1, "steps": 50}, state=None,
            rng={}, history={"steps": [], "loss": []})
    assert main(["train", "--quiet", "--resume", str(path)]) == 1
    assert capsys.readouterr().err.strip() == (f"minigrad train: error: {path} was written by an earlier "
                                               "minigrad train (per-step cells, no stream): it cannot be "
                                               "resumed or sampled; train again")


def test_a_checkpoint_for_another_model_is_refused(capsys, tmp_path):
    path = tmp_path / "run.npz"
    train(capsys, "--steps", "100", "--save", str(path))
    before = path.read_bytes()
    line = one_line_error(run("--resume", str(path), "--save", str(path), "--hidden", "16", "--cell", "gru"))
    assert "was made for another run" in line and "hidden 32 (this run: 16)" in line
    assert "cell 'lstm' (this run: 'gru')" in line
    assert path.read_bytes() == before


def test_plot_is_written(capsys, tmp_path):
    png = tmp_path / "loss.png"
    status, out = train(capsys, "--steps", "300", "--plot", str(png))
    assert status == 0 and f"loss curve written to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]  # no temporary left
    svg = tmp_path / "loss.svg"
    status, out = train(capsys, "--steps", "50", "--plot", str(svg))  # the format: the extension's
    assert status == 0 and b"<svg" in svg.read_bytes()[:1000]


def test_a_texts_plot_draws_the_validation_curve_beside_the_training_one(capsys, tmp_path, text,
                                                                        monkeypatch):
    from minigrad.app import train as trainer
    monkeypatch.setattr(trainer, "VALIDATE_EVERY", 0.0)
    svg = tmp_path / "curves.svg"
    status, _ = train(capsys, "--text", str(text), "--epochs", "4", "--sample", "0", "--plot", str(svg))
    drawn = svg.read_text()
    assert status == 0 and "training" in drawn and "validation" in drawn  # the legend's labels
    assert "nats per character" in drawn
    train(capsys, "--steps", "50", "--plot", str(svg))  # a generated task: no validation curve
    assert "validation" not in svg.read_text()


def test_off_a_terminal_progress_is_a_plain_line_at_most_every_few_seconds(tmp_path):
    """stderr to a file or a pipe: no carriage returns, a line at the first unit, at most one
    per PLAIN_EVERY (10 s) after it, and one at the end."""
    done = run("--steps", "3000")
    assert done.returncode == 0 and "\r" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert 2 <= len(lines) <= 4, lines
    assert re.fullmatch(r"step 50/3000 \(1%\), loss [\d.]+, \d+ step/s", lines[0]), lines
    assert re.fullmatch(r"step 3000/3000 \(100%\), loss [\d.]+, \d+ step/s", lines[-1]), lines


def test_on_a_terminal_the_progress_bar_shows_loss_validation_and_speed(capsys, monkeypatch, text):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["train", "--text", str(text), "--epochs", "2", "--sample", "0"]) == 0
    err = capsys.readouterr().err
    assert "step/s" in err and "loss=" in err and "val=" in err and " bpc" in err and "106/106" in err


def _start_and_interrupt(tmp_path, *extra, signals=1):
    """Start a long run saving to tmp_path/run.npz, wait for its first checkpoint, then send
    `signals` Ctrl-Cs; returns (the process, its stderr lines, the checkpoint's path)."""
    path = tmp_path / "run.npz"
    proc = subprocess.Popen([sys.executable, "-m", "minigrad", "train", "--quiet", "--steps", "10000000",
                             "--save", str(path), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    for _ in range(signals):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    return proc, err.strip().splitlines(), path


def test_ctrl_c_finishes_the_unit_saves_it_and_stops(tmp_path):
    """Nothing trained is lost (issue 19: up to 5 s were): the checkpoint is the last step run."""
    _, lines, path = _start_and_interrupt(tmp_path)
    assert lines[0] == "minigrad train: stopping after this unit (Ctrl-C again: at once)"
    found = re.fullmatch(r"minigrad train: interrupted at step (\d+); the last checkpoint, at step (\d+), "
                         rf"is in {re.escape(str(path))}", lines[1])
    assert len(lines) == 2 and found and found.group(1) == found.group(2)
    assert mg.load(path)["position"]["steps"] == int(found.group(1))
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]


def test_a_second_ctrl_c_stops_at_once_keeping_the_last_checkpoint(tmp_path):
    # units of 2000 steps of a larger model: the second Ctrl-C comes while one runs
    _, lines, path = _start_and_interrupt(tmp_path, "--hidden", "128", "--length", "2000", signals=2)
    found = re.fullmatch(r"minigrad train: interrupted at step (\d+); the last checkpoint, at step (\d+), "
                         rf"is in {re.escape(str(path))}", lines[-1])
    assert found and int(found.group(2)) <= int(found.group(1))
    assert mg.load(path)["position"]["steps"] == int(found.group(2))
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]


# -- errors ----------------------------------------------------------------------

def test_a_run_that_cannot_fit_is_refused_before_anything_is_allocated(tmp_path):
    """--hidden 100000000 ran 60-80 s and printed a traceback, --hidden 20000 was killed without
    a word, --batch 100000 on a 300 KB text ran 100000 streams of 2 steps (issue 19)."""
    started = time.monotonic()
    line = one_line_error(run("--hidden", "100000000", "--quiet"))
    assert re.fullmatch(r"minigrad train: error: the model \(lstm, hidden 100000000, 1 layer, batch 32\) needs "
                        r"about [\d.]+ GiB \(weights, gradients and optimizer state [\d.]+, a window's "
                        r"activations [\d.]+\); [\d.]+ GiB are available: use a smaller --hidden or "
                        r"--batch", line), line
    assert time.monotonic() - started < 30
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox. " * 15000)  # 315,000 characters, 299,250 not held out
    line = one_line_error(run("--text", str(text), "--batch", "100000", "--quiet"))
    assert line == (f"minigrad train: error: --batch 100000 leaves streams of 2 steps in {text}, fewer "
                    f"than a window (50); use --batch 5984 or less")
    line = one_line_error(run("--text", str(text), "--batch", "100000", "--policy", "bptt", "--quiet"))
    assert line == (f"minigrad train: error: --batch 100000 leaves streams of 2 steps in {text}, fewer "
                    f"than a unit, --length (100); use --batch 2992 or less or a smaller --length")


def test_errors_are_one_line_with_a_non_zero_exit(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"abc\xffdef")
    cases = [
        (["--text", str(tmp_path / "missing.txt")], 1,
         f"cannot read {tmp_path / 'missing.txt'}: No such file"),
        (["--text", str(empty)], 1, f"{empty} is empty"),
        (["--text", str(binary)], 1, f"{binary} is not UTF-8 text (byte 0xff at offset 3)"),
        (["--k1", "0"], 1, "TBPTT: k1 must be an integer >= 1, got 0"),
        (["--k2", "-3"], 1, "TBPTT: k2 must be an integer >= 1, got -3"),
        (["--hidden", "0"], 1, "--hidden must be >= 1, got 0"),
        (["--cell", "transformer"], 2, "argument --cell: invalid choice: 'transformer'"),
        (["--epochs", "2"], 1, "--epochs needs --text"),
        (["--steps", "5", "--epochs", "2"], 2, "not allowed with argument"),
        (["--lr", "-1"], 1, "--lr must be > 0"),
        (["--delay", "60"], 1, "--delay must be between 1 and --length - 1 (49), got 60"),
        (["--save", str(tmp_path / "no" / "run.npz")], 1, "cannot write"),
        (["--resume", str(tmp_path / "none.npz")], 1, "No such file or directory"),
        (["--k1", "x"], 2, "invalid int value: 'x'"),
        (["--device", "cuda:x"], 2, "--device: expected auto, cpu, cuda or cuda:N, got 'cuda:x'"),
        # options that would do nothing, and files that could not be written after training
        (["--policy", "bptt", "--k2", "20"], 1, "--k2 does nothing with --policy bptt"),
        (["--policy", "bptt", "--recompute"], 1, "--recompute does nothing with --policy bptt"),
        (["--sample", "50"], 1, "--sample needs --text"),
        (["--save", str(tmp_path)], 1, f"cannot write {tmp_path}: it is a directory"),
        (["--plot", str(tmp_path / "curve.xyz")], 1, f"--plot {tmp_path / 'curve.xyz'}: matplotlib "
                                                      "writes"),
    ]
    if not backends.cuda_available():  # here --device cuda must fail in one line saying why
        cases.append((["--device", "cuda"], 1, "device 'cuda': CuPy is "))
    for args, code, message in cases:
        line = one_line_error(run(*args, "--quiet"), code)
        assert message in line, (args, line)
    assert not [p for p in tmp_path.iterdir() if p.name not in ("empty.txt", "binary.txt")]


def test_auto_device_says_which_it_picked(capsys):
    status, out = train(capsys, "--steps", "50")
    assert status == 0 and re.search(r"device cpu \((no GPU found|CuPy not installed)\)\n", out), out
    _, out = train(capsys, "--steps", "50", "--device", "cpu")
    assert "device cpu (asked for)" in out


def test_python_dash_m_and_help():
    done = subprocess.run([sys.executable, "-m", "minigrad", "train", "--help"], capture_output=True,
                          text=True)
    assert done.returncode == 0
    for option in ["--task", "--delay", "--text", "--cell", "--policy", "--k1", "--k2", "--recompute",
                   "--optimizer", "--clip", "--epochs", "--steps", "--dtype", "--device", "--save",
                   "--resume", "--plot", "--quiet", "--sample", "--temperature"]:
        assert option in done.stdout


def test_resuming_a_finished_run_says_there_is_nothing_left(capsys, tmp_path):
    path = str(tmp_path / "run.npz")
    train(capsys, "--steps", "100", "--save", path)
    status, out = train(capsys, "--steps", "100", "--resume", path)
    assert status == 0
    assert "nothing left to train: the run is already at step 100 (raise --steps" in out
    assert "ms per step" not in out


# -- the model, the options of issue 20, minigrad sample ----------------------------------

@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_built_in_tasks_losses_are_those_of_the_per_step_cell_model(capsys, tmp_path, cell):
    """The trainer runs nn.LSTM (RNN, GRU) a segment at a time on one-hot inputs built per
    segment; with the same weights, the per-step cell and readout, on the lazy one-hot steps,
    trained unit by unit with train_sequence, give the same losses and weights."""
    from minigrad.app.tasks import DelayTask
    from minigrad.app.train import build_model
    from minigrad.bptt import TBPTT, train_sequence
    from minigrad.nn import GRUCell, LSTMCell, RNNCell
    path = tmp_path / "run.npz"
    status, _ = train(capsys, "--cell", cell, "--steps", "150", "--dtype", "float64", "--save", str(path))
    assert status == 0
    task = DelayTask(delay=5, length=50, batch=32, dtype="float64")
    rng = np.random.default_rng(0)  # the trainer's: the weights, then the data
    layer = build_model(cell, task, 32, 1, 0.0, "float64", rng)
    step_cell = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}[cell](4, 32, dtype="float64")
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(step_cell, name).data = getattr(layer.rnn, name + "_l0").data
    head = layer.head
    opt = mg.optim.Adam(step_cell.parameters() + head.parameters(), lr=0.01)

    def step(h, x, y):
        h = step_cell(x, h)
        return h, task.step_loss(head(h[0] if isinstance(h, tuple) else h), y)
    losses = []
    for unit in range(3):
        x, y, _ = task.unit(unit, rng)
        result = train_sequence(step, None, [x[t] for t in range(len(x))], y, policy=TBPTT(5, 10),
                                optimizer=opt, clip_grad_norm=1.0)
        losses.append(sum(result.losses) / len(x))
    saved = mg.load(path)
    np.testing.assert_allclose(saved["history"]["loss"], losses, rtol=1e-9)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        np.testing.assert_allclose(saved["model"][f"rnn.{name}_l0"], getattr(step_cell, name).data,
                                   rtol=1e-7, atol=1e-10)


def test_layers_dropout_and_adamw_train_and_are_saved(capsys, tmp_path):
    path = tmp_path / "run.npz"
    status, out = train(capsys, "--layers", "2", "--dropout", "0.1", "--optimizer", "adamw",
                        "--hidden", "16", "--steps", "4000", "--save", str(path))
    assert status == 0 and "lstm, hidden 16, 2 layers, dropout 0.1, batch 32" in out and "adamw lr 0.01" in out
    assert accuracy(out)[0] > 90
    saved = mg.load(path)
    assert saved["config"]["layers"] == 2 and saved["config"]["dropout"] == 0.1
    assert saved["model"]["rnn.weight_ih_l1"].shape == (64, 16)
    assert saved["optimizer"]["param_groups"][0]["weight_decay"] == 0.01


def test_lr_factor_warmup_and_schedules_by_hand():
    from minigrad.app.train import lr_factor

    def f(schedule, warmup, step, total=100):
        return lr_factor({"lr_schedule": schedule, "warmup": warmup}, step, total)
    assert [f("none", 4, s) for s in (0, 1, 3, 4, 99)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert f("cosine", 0, 0) == 1.0 and f("cosine", 0, 50) == pytest.approx(0.5)
    assert f("cosine", 0, 100) == pytest.approx(0.0, abs=1e-15)
    assert f("cosine", 20, 60) == pytest.approx(0.5)  # half way through the 80 steps after warmup
    assert f("cosine", 20, 10) == pytest.approx(11 / 20)
    assert [f("step", 0, s) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_the_schedule_sets_every_updates_lr_and_the_log_shows_it(capsys, tmp_path):
    """--warmup and --lr-schedule count updates: 500 steps of units of 50 under TBPTT(5, 10)
    are 100 updates, 10 per unit; the log shows the lr of each unit's last update."""
    log = tmp_path / "run.jsonl"
    status, out = train(capsys, "--steps", "500", "--lr-schedule", "cosine", "--warmup", "25",
                        "--log", str(log))
    assert status == 0 and "adam lr 0.01 cosine, warmup 25, clip 1" in out
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(50, 501, 50))
    last = [10 * u + 9 for u in range(10)]  # each unit's last update, counted from 0
    expected = [0.01 * ((j + 1) / 25 if j < 25 else 0.5 * (1 + np.cos(np.pi * (j - 25) / 75))) for j in last]
    np.testing.assert_allclose([r["lr"] for r in records], expected, rtol=1e-12)
    assert all(r["loss"] > 0 and r["steps_per_s"] > 0 and r["val_loss"] is None for r in records)
    train(capsys, "--steps", "100", "--log", str(log))  # a second run appends
    assert len(log.read_text().splitlines()) == 12


def test_a_resume_that_changes_the_runs_length_says_the_schedule_follows_it(capsys, tmp_path):
    path = tmp_path / "run.npz"
    train(capsys, "--steps", "100", "--lr-schedule", "step", "--save", str(path))
    assert mg.load(path)["plan"] == 20 and mg.load(path)["position"]["updates"] == 20
    assert main(["train", "--quiet", "--steps", "200", "--resume", str(path)]) == 0
    assert capsys.readouterr().err.strip() == (
        "minigrad train: note: the --lr-schedule now spans 40 updates (the checkpoint's run planned "
        "20): the learning rate follows the new length from here on")


def test_the_best_validation_model_is_kept_beside_the_last(capsys, tmp_path, text, monkeypatch):
    from minigrad.app import train as trainer
    monkeypatch.setattr(trainer, "VALIDATE_EVERY", 0.0)  # as often as 10x its cost allows
    path = tmp_path / "run.npz"
    status, out = train(capsys, "--text", str(text), "--epochs", "6", "--lr", "0.05", "--save", str(path))
    assert status == 0
    last, best = mg.load(path), mg.load(tmp_path / "run.best.npz")
    val = last["history"]["val_loss"]
    assert len(val) >= 2 and best["position"]["steps"] == last["history"]["val_steps"][int(np.argmin(val))]
    assert best["best"][1] == min(val) == last["best"][1]
    assert f"best validation model written to {tmp_path / 'run.best.npz'} (step {best['position']['steps']}" in out


def test_minigrad_sample_generates_from_a_saved_character_model(capsys, tmp_path, text):
    path = tmp_path / "run.npz"
    train(capsys, "--text", str(text), "--epochs", "25", "--k1", "10", "--k2", "20", "--save", str(path))
    assert main(["sample", str(path), "--prime", "the quick ", "--length", "30", "--seed", "1",
                 "--temperature", "0.3"]) == 0
    out = capsys.readouterr().out.rstrip("\n")
    assert len(out) == 40 and out.startswith("the quick ") and set(out) <= set(text.read_text())
    assert main(["sample", str(path), "--prime", "the quick ", "--length", "30", "--seed", "1",
                 "--temperature", "0.3"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == out  # the seed fixes it
    assert main(["sample", str(path), "--length", "25"]) == 0
    assert len(capsys.readouterr().out.rstrip("\n")) == 25
    line = one_line_error(subprocess.run([sys.executable, "-m", "minigrad", "sample", str(path),
                                          "--prime", "QZ"], capture_output=True, text=True))
    assert line == ("minigrad sample: error: --prime: 'Q', 'Z' not in the model's vocabulary (the 28 "
                    "characters of its training text)")
    delay = tmp_path / "delay.npz"
    train(capsys, "--steps", "50", "--save", str(delay))
    assert main(["sample", str(delay)]) == 1
    assert capsys.readouterr().err.strip() == (f"minigrad sample: error: {delay} is a checkpoint of the "
                                               "delay task: only a character model (minigrad train "
                                               "--text) can be sampled")


def test_version():
    done = subprocess.run([sys.executable, "-m", "minigrad", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"minigrad {mg.__version__}"


@pytest.mark.parametrize("option, says", [
    (["--dropout", "1"], "--dropout must be at least 0 and below 1, got 1.0"),
    (["--layers", "0"], "--layers must be >= 1, got 0"),
    (["--warmup", "-1"], "--warmup must be >= 0, got -1"),
    (["--text", "any.txt", "--val-fraction", "0.6"], "--val-fraction must be between 0 and 0.5, got 0.6"),
    (["--val-fraction", "0.1"], "--val-fraction needs --text (the built-in tasks have their own held-out set)"),
    (["--temperature", "inf"], "--temperature must be > 0, got inf"),
])
def test_new_options_out_of_range_are_one_line(option, says):
    assert one_line_error(run(*option)) == f"minigrad train: error: {says}"


def test_the_readmes_megabyte_of_text_beats_the_unigram_baseline_on_held_out_text(capsys, tmp_path,
                                                                               monkeypatch):
    """The README's character model, smaller (hidden 64, batch 16, 8000 steps of TBPTT(25, 25):
    320 updates, a few seconds): the text
    it assembles from Python's standard library is about 1 MB on every machine, and the
    validation bits per character, on its last 5%, fall clearly below the unigram entropy."""
    from pathlib import Path
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    code = re.search(r'python -c "(.*?)"\n', readme, re.S).group(1).replace("\\\n", "")
    monkeypatch.chdir(tmp_path)
    exec(code, {})
    text = (tmp_path / "stdlib.txt").read_text(encoding="utf-8")
    assert len(text) == 10**6 and len(set(text)) > 80
    assert re.search(r"minigrad train --text stdlib.txt --layers 2 --hidden 256 --steps 10000 "
                     r"--lr 0.005 --save lm.npz\nminigrad sample lm.best.npz", readme)
    status, out = train(capsys, "--text", "stdlib.txt", "--layers", "2", "--hidden", "64", "--batch", "16",
                        "--k1", "25", "--k2", "25", "--steps", "8000", "--lr", "0.02", "--sample", "0")
    assert status == 0
    found = re.search(r"validation \(the last 5% of the text, 50000 characters\): .* ([\d.]+) bits per "
                      r"character; baseline \(unigram entropy of the training text\): .* ([\d.]+) bits", out)
    bits, baseline = float(found.group(1)), float(found.group(2))
    assert baseline > 4 and bits < baseline - 1, (bits, baseline)  # 3.1 against 4.6 here


def test_a_texts_passes_are_train_sequence_on_each_pass(capsys, tmp_path, text):
    """The stream the trainer feeds unit by unit (with its promises, flushed at each pass's
    end) makes the updates of train_sequence on each whole pass: same weights, and the units'
    reported losses sum to the pass's update losses."""
    from minigrad.app.tasks import TextTask
    from minigrad.app.train import build_model
    from minigrad.bptt import TBPTT, train_sequence
    path = tmp_path / "run.npz"
    status, _ = train(capsys, "--text", str(text), "--length", "20", "--k1", "10", "--k2", "20",
                      "--epochs", "2", "--dtype", "float64", "--hidden", "16", "--sample", "0",
                      "--save", str(path))
    assert status == 0
    task = TextTask(str(text), length=20, batch=32, dtype="float64", val_fraction=0.05)
    model = build_model("lstm", task, 16, 1, 0.0, "float64", np.random.default_rng(0))
    opt = mg.optim.Adam(model.parameters(), lr=0.01)

    def segment(state, xs, ys):
        state, outputs = model(state, xs)
        return state, task.loss(outputs, ys)
    sums = []
    for _ in range(2):  # 53 steps a pass: units of 20, 20, 13
        result = train_sequence(segment, None, task.inputs, task.targets, policy=TBPTT(10, 20),
                                optimizer=opt, clip_grad_norm=1.0, segments=True)
        sums.append(sum(result.losses))
    saved = mg.load(path)
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(saved["model"][name], value, rtol=1e-9, atol=1e-12)
    covered = [20, 20, 13] * 2  # the steps whose losses each unit's updates summed
    reported = [loss * n for loss, n in zip(saved["history"]["loss"], covered)]
    np.testing.assert_allclose([sum(reported[:3]), sum(reported[3:])], sums, rtol=1e-9)
    assert saved["position"]["updates"] == 12 and saved["plan"] == 12


def test_bptt_on_a_text_updates_once_per_unit_and_carries_the_state(capsys, tmp_path, text):
    path = tmp_path / "run.npz"
    status, _ = train(capsys, "--text", str(text), "--length", "20", "--policy", "bptt",
                      "--epochs", "2", "--sample", "0", "--save", str(path))
    saved = mg.load(path)
    assert status == 0 and saved["position"]["updates"] == 6 and saved["history"]["steps"] == [
        20, 40, 53, 73, 93, 106]


def test_a_policy_changed_inside_a_pass_takes_over_at_the_next_pass(capsys, tmp_path, text):
    path = tmp_path / "run.npz"
    train(capsys, "--text", str(text), "--length", "20", "--steps", "30", "--k1", "10", "--k2", "20",
          "--save", str(path))
    status = main(["train", "--quiet", "--text", str(text), "--length", "20", "--steps", "120",
                   "--k1", "5", "--k2", "20", "--resume", str(path), "--save", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 0 and err == [
        "minigrad train: note: --k1 5 replaces the checkpoint's 10 from the next pass over the text",
        "minigrad train: note: the pass over the text under way goes on under TBPTT(10, 20); "
        "TBPTT(5, 20) from the next pass"]
    # the first pass under TBPTT(10, 20): 4 updates in 40 steps, 2 in the last 13 (50, the
    # flush); then under TBPTT(5, 20) a pass of 53 steps (11) and a unit of 20 (4)
    saved = mg.load(path)
    assert saved["position"]["steps"] == 126 and saved["position"]["updates"] == 4 + 2 + 11 + 4
    assert saved["stream_policy"] == {"policy": "tbptt", "k1": 5, "k2": 20, "recompute": False}
    assert saved["plan"] == saved["position"]["updates"]  # the schedule's length: the updates made


def test_the_report_names_only_files_this_run_wrote(capsys, tmp_path, text):
    first, other = tmp_path / "a.npz", tmp_path / "c.npz"
    train(capsys, "--text", str(text), "--epochs", "1", "--sample", "0", "--save", str(first))
    assert (tmp_path / "a.best.npz").exists()
    status, out = train(capsys, "--text", str(text), "--epochs", "1", "--sample", "0", "--resume",
                        str(first), "--save", str(other))
    assert status == 0 and "nothing left to train" in out and "written" not in out
    assert not other.exists() and not (tmp_path / "c.best.npz").exists()
    status, out = train(capsys, "--text", str(text), "--epochs", "2", "--sample", "0", "--resume",
                        str(first), "--save", str(other))
    assert f"checkpoint written to {other}" in out and (tmp_path / "c.best.npz").exists()
    assert f"best validation model written to {tmp_path / 'c.best.npz'}" in out


@pytest.mark.parametrize("change", [["--k1", "25"], ["--policy", "bptt"]])
def test_a_resume_under_another_policy_plans_the_updates_it_will_make(capsys, tmp_path, change):
    """The schedule's length after a resume is the updates made plus those still to come under
    the new policy: the cosine reaches 0 at the run's end, not before (it did: lr 0 for the
    whole second half)."""
    path, log = tmp_path / "run.npz", tmp_path / "run.jsonl"
    train(capsys, "--steps", "500", "--lr-schedule", "cosine", "--save", str(path))
    status, _ = train(capsys, "--steps", "1000", "--resume", str(path), "--save", str(path),
                      "--log", str(log), *change)
    saved = mg.load(path)
    per_unit = 2 if change[0] == "--k1" else 1  # units of 50 steps
    assert status == 0 and saved["plan"] == saved["position"]["updates"] == 100 + 10 * per_unit
    lrs = [json.loads(line)["lr"] for line in log.read_text().splitlines()]
    assert all(lr > 0 for lr in lrs[:-1]) and lrs[0] > lrs[-2]  # decreasing to the end, not 0 before
