"""`minigrad train`: it learns, it is reproducible, it resumes exactly, and it fails in one line.

In-process runs (`main([...])`) keep the suite fast; the tests about exit codes,
stderr and Ctrl-C run the real command in a subprocess.
"""
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
    assert f"{cell} cell, hidden 8" in out and shown in out
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

    def inf_after_the_third(step, state, x, y, *, policy, optimizer, clip_grad_norm):
        result = real(step, state, x, y, policy=policy, optimizer=optimizer, clip_grad_norm=clip_grad_norm)
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


def test_text_trains_and_samples(capsys, text):
    status, out = train(capsys, "--text", str(text), "--epochs", "3", "--k1", "10", "--k2", "20",
                        "--sample", "60", "--temperature", "0.5")
    assert status == 0
    assert "text: next character of" in out and "32 streams of 56 steps, 28 symbols" in out
    lines = out.splitlines()
    sample = lines[lines.index(next(x for x in lines if x.startswith("sample (60 characters"))) + 1]
    assert len(sample) == 60 and set(sample) <= set(text.read_text())
    ours, baseline = accuracy(out)
    assert ours > baseline


# -- checkpoints -----------------------------------------------------------------

@pytest.mark.parametrize("data", [[], ["--text"]], ids=["delay", "text"])
def test_an_interrupted_and_resumed_run_equals_an_uninterrupted_one(capsys, tmp_path, text, data):
    data = ["--text", str(text), "--length", "20"] if data else ["--length", "20"]
    whole, part = str(tmp_path / "whole.npz"), str(tmp_path / "part.npz")
    train(capsys, *data, "--steps", "200", "--save", whole)
    train(capsys, *data, "--steps", "100", "--save", part)
    stopped = mg.load(part)["position"]["steps"]  # the text: units of 20, 20, 16 steps, 6 of them
    assert stopped == (100 if data[0] == "--length" else 112)
    status, out = train(capsys, *data, "--steps", "200", "--resume", part, "--save", part)
    assert status == 0 and f"resumed from {part} at step {stopped}" in out
    a, b = mg.load(whole), mg.load(part)
    assert a["history"]["loss"] == b["history"]["loss"] and a["position"] == b["position"]
    for key in a["model"]:
        np.testing.assert_array_equal(a["model"][key], b["model"][key])
    if data[0] == "--text":  # the recurrent state went on across the resume (the streams continue)
        for x, y in zip(a["state"], b["state"]):
            np.testing.assert_array_equal(x, y)


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
    ("position", lambda v: {"unit": 1}, "its position is malformed (expected {'unit': ..., 'steps': ...})"),
    ("position", lambda v: {**v, "unit": 10**18},
     "its position is malformed (unit 1000000000000000000 starts at step 50000000000000000000 of this "
     "task, not 100)"),
    ("state", lambda v: v[0], "its state is malformed (expected a tuple of 2 arrays (h, c) for --cell lstm)"),
    ("state", lambda v: (v[0], v[1][:, :3]), "its state is malformed (an array of shape (32, 3) and dtype "
     "float32; this model's is (32, 32), float32)"),
    ("state", lambda v: (v[0], v[1].astype(np.float64)), "its state is malformed (an array of shape "
     "(32, 32) and dtype float64"),
    ("state", lambda v: (v[0] * np.nan, v[1]), "its state is malformed (it holds NaN or inf)"),
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
                                 "seed": 0}
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


def test_the_progress_bar_shows_loss_and_speed():
    done = run("--steps", "300")
    assert done.returncode == 0
    assert "step/s" in done.stderr and "loss=" in done.stderr and "300/300" in done.stderr


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
    assert re.fullmatch(r"minigrad train: error: the model \(lstm, hidden 100000000, batch 32\) needs "
                        r"about [\d.]+ GiB \(weights, gradients and optimizer state [\d.]+, a window's "
                        r"activations [\d.]+\); [\d.]+ GiB are available: use a smaller --hidden or "
                        r"--batch", line), line
    assert time.monotonic() - started < 30
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox. " * 15000)  # 315,000 characters
    line = one_line_error(run("--text", str(text), "--batch", "100000", "--quiet"))
    assert line == (f"minigrad train: error: --batch 100000 leaves streams of 3 steps in {text}, fewer "
                    f"than a window (10); use --batch 31499 or less")
    line = one_line_error(run("--text", str(text), "--batch", "100000", "--policy", "bptt", "--quiet"))
    assert line == (f"minigrad train: error: --batch 100000 leaves streams of 3 steps in {text}, fewer "
                    f"than a unit, --length (100); use --batch 3149 or less or a smaller --length")


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
    assert status == 0 and "device cpu (auto; no usable GPU:" in out
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
