"""The built-in tasks of `minigrad train`: data, units, losses and scores against hand computation.

Each task is checked the slow, obvious way: targets rebuilt with plain loops over
the generated inputs, the text layout read character by character off the file,
losses and scores computed with `math` on tiny examples, and the step losses'
gradients against finite differences (gradcheck, float64). make_task is checked
on argparse-like namespaces.
"""
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest

import minigrad as mg
from minigrad.app.tasks import AddingTask, DelayTask, OneHot, TextTask, make_task


def neg_log_softmax(row, k):
    """-log softmax(row)[k], straight from the definition."""
    return math.log(sum(math.exp(v) for v in row)) - row[k]


def dense(onehot):
    """The (T, B, V) array that a OneHot stands for, built step by step."""
    return np.stack([onehot[t] for t in range(len(onehot))])


# -- DelayTask ----------------------------------------------------------------------

def test_delay_inputs_are_one_hot_and_targets_are_the_symbol_delay_steps_ago():
    task = DelayTask(delay=3, length=10, batch=5, symbols=4, dtype="float32")
    x, y = task.sample(np.random.default_rng(1))
    assert isinstance(x, OneHot) and len(x) == 10
    inputs = dense(x)
    assert inputs.shape == (10, 5, 4) and inputs.dtype == np.float32
    assert y.shape == (10, 5) and y.dtype.kind == "i"
    assert set(np.unique(inputs)) <= {0.0, 1.0}
    np.testing.assert_array_equal(inputs.sum(axis=-1), 1)   # exactly one 1 per row
    for t in range(10):
        for b in range(5):
            expected = -1 if t < 3 else int(np.argmax(inputs[t - 3, b]))
            assert y[t, b] == expected
    assert len(np.unique(inputs.argmax(-1))) == 4            # all symbols are used


def test_delay_units_are_fresh_batches_of_one_sequence():
    task = DelayTask(delay=2, length=7, batch=3)
    x, y, fresh = task.unit(0, np.random.default_rng(0))
    assert fresh is True and len(x) == 7 and x[0].shape == (3, 4) and y.shape == (7, 3)
    assert task.unit_steps(5) == 7 and task.steps_before(3) == 21
    assert task.units(7, None) == 1 and task.units(8, None) == 2 and task.units(70, 3) == 10
    ex, ey = task.evaluation_set(np.random.default_rng(0))
    assert len(ex) == 7 and ex[0].shape == (256, 4) and ey.shape == (7, 256)


def test_delay_data_depends_only_on_the_seed():
    task = DelayTask(delay=2, length=20, batch=8)
    (x1, y1), (x2, y2) = task.sample(np.random.default_rng(7)), task.sample(np.random.default_rng(7))
    np.testing.assert_array_equal(dense(x1), dense(x2))
    np.testing.assert_array_equal(y1, y2)
    x3, y3 = task.sample(np.random.default_rng(8))
    assert not np.array_equal(dense(x1), dense(x3)) and not np.array_equal(y1, y3)


def test_one_hot_stores_only_the_indices_and_the_identity():
    indices = np.array([[0, 2], [1, 1], [2, 0]])
    onehot = OneHot(indices, 3, np.float64)
    arrays = {name: v for name, v in vars(onehot).items() if isinstance(v, np.ndarray)}
    assert set(arrays) == {"indices", "eye"}
    assert arrays["indices"] is indices and arrays["eye"].shape == (3, 3)
    assert len(onehot) == 3
    np.testing.assert_array_equal(onehot[0], [[1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(onehot[-1], [[0, 0, 1], [1, 0, 0]])
    assert onehot[1].dtype == np.float64
    # a long sequence stays small: nothing of size T * B * V is kept
    big = DelayTask(delay=1, length=10_000, batch=64, symbols=50).sample(np.random.default_rng(0))[0]
    stored = sum(v.nbytes for v in vars(big).values() if isinstance(v, np.ndarray))
    assert stored == 10_000 * 64 * 8 + 50 * 50 * 4          # int64 indices and a float32 eye


@pytest.mark.parametrize("delay", [0, -1, 10, 11])
def test_delay_outside_one_to_length_minus_one_is_rejected(delay):
    message = f"--delay must be between 1 and --length - 1 (9), got {delay}"
    with pytest.raises(ValueError, match=re.escape(message)):
        DelayTask(delay=delay, length=10)


@pytest.mark.parametrize("targets", [[2, 0, 1, 2], [2, -1, 0, -1], [-1, -1, -1, -1]],
                         ids=["all valid", "some -1", "all -1"])
def test_delay_step_loss_is_the_cross_entropy_summed_over_valid_entries_over_batch(rng, targets):
    task = DelayTask(delay=1, length=5, batch=4, symbols=3)
    logits = mg.tensor(3 * rng.standard_normal((4, 3)), requires_grad=True)
    y = mg.tensor(np.array(targets))
    loss = task.step_loss(logits, y)
    expected = sum(neg_log_softmax(logits.data[b].tolist(), t) for b, t in enumerate(targets) if t >= 0) / 4
    assert loss.shape == () and loss.requires_grad
    assert loss.item() == pytest.approx(expected, rel=1e-12, abs=1e-15)
    loss.backward()
    # entries without a target get no gradient at all
    invalid = np.array(targets) < 0
    np.testing.assert_array_equal(logits.grad[invalid], 0)
    assert mg.gradcheck(lambda z: task.step_loss(z, y), [logits])


def test_delay_step_loss_keeps_float32():
    task = DelayTask(delay=1, length=5, batch=2, symbols=3)
    for targets in ([0, 1], [0, -1]):
        logits = mg.tensor(np.zeros((2, 3), np.float32), requires_grad=True)
        loss = task.step_loss(logits, mg.tensor(np.array(targets)))
        assert loss.dtype == np.float32
        assert loss.item() == pytest.approx(len([t for t in targets if t >= 0]) * math.log(3) / 2, rel=1e-6)


def test_delay_score_against_hand_values():
    task = DelayTask(delay=1, length=3, batch=2, symbols=3)
    outputs = np.array([[[100.0, -100.0, 0.0], [-50.0, 0.0, 50.0]],   # t = 0: no targets, ignored
                        [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
                        [[0.0, 0.0, 3.0], [0.0, 5.0, 1.0]]])
    targets = np.array([[-1, -1], [0, 2], [2, 2]])
    score = task.score(outputs, targets)
    # valid entries: ([2,0,0], 0) right, ([0,1,0], 2) wrong, ([0,0,3], 2) right, ([0,5,1], 2) wrong
    losses = [math.log(math.e**2 + 2) - 2, math.log(2 + math.e), math.log(2 + math.e**3) - 3,
              math.log(1 + math.e**5 + math.e) - 1]
    assert score["accuracy"] == 0.5
    assert score["loss"] == pytest.approx(sum(losses) / 4, rel=1e-12)
    assert score["baseline_accuracy"] == 0.75                          # symbol 2 is 3 of the 4
    assert score["baseline_loss"] == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)),
                                                   rel=1e-12)
    assert isinstance(score["baseline"], str)


# -- AddingTask ---------------------------------------------------------------------

@pytest.mark.parametrize("length", [2, 3, 8, 9])
def test_adding_has_one_marker_in_each_half_and_the_sum_at_the_last_step(length):
    task = AddingTask(length=length, batch=400, dtype="float64")
    x, y = task.sample(np.random.default_rng(length))
    assert x.shape == (length, 400, 2) and y.shape == (length, 400, 2)
    assert x.dtype == y.dtype == np.float64
    half = length // 2
    firsts, seconds = set(), set()
    for b in range(400):
        marked = [t for t in range(length) if x[t, b, 1] == 1]
        assert all(x[t, b, 1] == 0 for t in range(length) if t not in marked)
        assert len(marked) == 2
        first, second = marked
        assert first < half <= second
        firsts.add(first)
        seconds.add(second)
        assert y[-1, b, 0] == x[first, b, 0] + x[second, b, 0]
        assert all(0 <= x[t, b, 0] < 1 for t in range(length))
    # every allowed position occurs (no off-by-one at the ends of either half)
    assert firsts == set(range(half)) and seconds == set(range(half, length))
    np.testing.assert_array_equal(y[:, :, 1], np.repeat([[0.0]] * (length - 1) + [[1.0]], 400, axis=1))
    np.testing.assert_array_equal(y[:-1, :, 0], 0)


def test_adding_units_and_dtype():
    task = AddingTask(length=6, batch=3)
    x, y, fresh = task.unit(4, np.random.default_rng(0))
    assert fresh is True and x.dtype == y.dtype == np.float32
    assert task.unit_steps(0) == 6 and task.units(13, None) == 3
    assert (task.input_size, task.output_size) == (2, 1)
    with pytest.raises(ValueError, match="--length must be at least 2"):
        AddingTask(length=1)


def test_adding_step_loss_is_the_weighted_squared_error_over_batch(rng):
    task = AddingTask(length=4, batch=3)
    pred = mg.tensor(rng.standard_normal((3, 1)), requires_grad=True)
    target = np.array([[0.5, 1.0], [1.25, 0.0], [-0.75, 1.0]])      # the middle one has weight 0
    y = mg.tensor(target)
    loss = task.step_loss(pred, y)
    p = pred.data[:, 0]
    expected = ((p[0] - 0.5) ** 2 + (p[2] + 0.75) ** 2) / 3
    assert loss.shape == () and loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    assert pred.grad[1, 0] == 0
    assert mg.gradcheck(lambda z: task.step_loss(z, y), [pred])


def test_adding_score_against_hand_values():
    task = AddingTask(length=2, batch=4)
    answers = [1.0, 1.5, 0.98, 0.3]
    preds = [1.03, 1.45, 0.5, 0.3]
    outputs = np.array([[[9.0]] * 4, [[p] for p in preds]])             # the first step is ignored
    targets = np.array([[[9.0, 0.0]] * 4, [[a, 1.0] for a in answers]])
    score = task.score(outputs, targets)
    # errors 0.03, 0.05, 0.48, 0: within 0.04 are the first and the last
    assert score["accuracy"] == 0.5
    assert score["loss"] == pytest.approx((0.03**2 + 0.05**2 + 0.48**2 + 0) / 4, rel=1e-9)
    # always 1: errors 0, 0.5, 0.02, 0.7
    assert score["baseline_accuracy"] == 0.5
    assert score["baseline_loss"] == pytest.approx((0 + 0.25 + 0.02**2 + 0.49) / 4, rel=1e-9)


# -- TextTask -----------------------------------------------------------------------

TEXT = "the quick brown fox jumps over the lazy dog!\n"


def text_file(tmp_path, content, name="text.txt"):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def test_text_vocab_is_the_sorted_set_of_characters(tmp_path):
    task = TextTask(text_file(tmp_path, TEXT), length=4, batch=3)
    assert task.vocab == "".join(sorted(set(TEXT)))
    assert task.classes == task.input_size == task.output_size == len(set(TEXT))


@pytest.mark.parametrize("batch, length", [(3, 4), (1, 5), (4, 10), (2, 22), (5, 1)])
def test_text_streams_follow_the_batchify_layout(tmp_path, batch, length):
    task = TextTask(text_file(tmp_path, TEXT), length=length, batch=batch)
    per = (len(TEXT) - 1) // batch
    inputs, targets = [], []
    for unit in range(task.per_epoch):
        x, y, _ = task.unit(unit, None)
        assert len(x) == len(y) == task.unit_steps(unit)
        inputs.append(dense(x))
        targets.append(y)
    inputs, targets = np.concatenate(inputs), np.concatenate(targets)
    assert inputs.shape == (per, batch, task.classes) and targets.shape == (per, batch)
    np.testing.assert_array_equal(inputs.sum(-1), 1)
    for k in range(per):
        for b in range(batch):
            assert task.vocab[inputs[k, b].argmax()] == TEXT[b * per + k]
            assert task.vocab[targets[k, b]] == TEXT[b * per + k + 1]


def test_text_units_cover_each_epoch_with_a_shorter_last_one(tmp_path):
    task = TextTask(text_file(tmp_path, TEXT), length=4, batch=3)    # per = 44 // 3 = 14 steps
    assert task.per_epoch == 4
    assert [task.unit_steps(u) for u in range(9)] == [4, 4, 4, 2] * 2 + [4]
    fresh = [task.unit(u, None)[2] for u in range(9)]
    assert fresh == [True, False, False, False] * 2 + [True]
    # epoch 2 reads the same characters as epoch 1
    x0, y0, _ = task.unit(1, None)
    x1, y1, _ = task.unit(5, None)
    np.testing.assert_array_equal(dense(x0), dense(x1))
    np.testing.assert_array_equal(y0, y1)
    assert task.units(None, 1) == 4 and task.units(None, 3) == 12
    # Within the first pass no unit is short, so `steps` takes ceil(steps / length) units.
    for steps in (1, 3, 4, 5, 12, 13, 14):
        assert task.units(steps, 1) == math.ceil(steps / 4)
    # Beyond it the short last units count for what they are: the fewest units that
    # make at least `steps` steps (so --steps 100 really trains 100 steps or a few more).
    for steps in (15, 28, 29, 100):
        count = 0
        while sum(task.unit_steps(u) for u in range(count)) < steps:
            count += 1
        assert task.units(steps, 1) == count
    assert task.units(100, 1) == 29            # 7 passes of 14 steps, and one unit more
    for unit in range(30):
        assert task.steps_before(unit) == sum(task.unit_steps(u) for u in range(unit))
    assert task.units(10**15, 1) == 4 * (10**15 // 14) + 2   # 6 steps left: 2 units; at once


def test_text_units_when_the_length_divides_the_streams(tmp_path):
    task = TextTask(text_file(tmp_path, TEXT), length=7, batch=3)    # 14 steps = 2 units of 7
    assert task.per_epoch == 2
    assert [task.unit_steps(u) for u in range(4)] == [7, 7, 7, 7]
    assert [task.unit(u, None)[2] for u in range(4)] == [True, False, True, False]
    assert [task.steps_after(u) == 0 for u in range(4)] == [False, True, False, True]
    with pytest.raises(ValueError, match="no validation split"):
        task.evaluation_set(None)


def test_text_validation_is_the_end_of_the_text_never_in_the_streams(tmp_path):
    text = "ab" * 30 + "xyz" * 10 + "b" * 20       # 110 characters
    task = TextTask(text_file(tmp_path, text), length=5, batch=2, val_fraction=0.2)
    held = text[-22:]                                  # round(110 * 0.2)
    assert "".join(task.vocab[i] for i in task.validation) == held
    train = text[:-22]
    assert task.characters == len(train) == 88
    per = 87 // 2
    streams = "".join(task.vocab[i] for b in range(2) for i in task.inputs[:, b])
    assert streams == train[:2 * per]                  # the streams read the training part only
    x, y = task.evaluation_set(None)                   # 21 steps: one stream (fewer than 50 each)
    assert "".join(task.vocab[i] for i in x.indices[:, 0]) == held[:-1]
    assert "".join(task.vocab[i] for i in y[:, 0]) == held[1:]
    counts = {c: train.count(c) for c in set(train)}   # the unigram entropy of the training part
    expected = -sum(n / 88 * math.log(n / 88) for n in counts.values())
    assert task.baseline() == pytest.approx(expected, rel=1e-12)
    assert task.config()["val_fraction"] == 0.2
    with pytest.raises(ValueError, match=r"--val-fraction must be at least 0 and below 1, got 1.5"):
        TextTask(text_file(tmp_path, text), val_fraction=1.5)
    with pytest.raises(ValueError, match=r"110 characters \(55 held out\): too short for 30 streams"):
        TextTask(text_file(tmp_path, text), batch=30, val_fraction=0.5)


def test_long_validation_splits_into_streams_of_at_least_50_steps(tmp_path):
    text = "".join(np.random.default_rng(0).choice(list("abcde"), 2000))
    task = TextTask(text_file(tmp_path, text), length=5, batch=8, val_fraction=0.1)  # 200 held out
    x, y = task.evaluation_set(None)
    assert x.indices.shape == y.shape == (66, 3)      # 199 steps // 50 = 3 streams of 66
    held = np.array([task.vocab.index(c) for c in text[-200:]])
    np.testing.assert_array_equal(x.indices.T.ravel(), held[:198])
    np.testing.assert_array_equal(y.T.ravel(), held[1:199])


@pytest.mark.parametrize("make", ["delay", "adding"])
def test_a_segments_loss_is_the_sum_of_its_step_losses(make, rng):
    if make == "delay":
        task = DelayTask(delay=2, length=6, batch=3, symbols=4, dtype="float64")
        _, y = task.sample(rng)
        outputs = mg.tensor(rng.standard_normal((6, 3, 4)), requires_grad=True)
    else:
        task = AddingTask(length=6, batch=3, dtype="float64")
        _, y = task.sample(rng)
        outputs = mg.tensor(rng.standard_normal((6, 3, 1)), requires_grad=True)
    y = mg.tensor(y)
    by_step = sum(float(task.step_loss(outputs[t], y[t]).data) for t in range(6))
    assert float(task.loss(outputs, y).data) == pytest.approx(by_step, rel=1e-12)
    assert mg.gradcheck(lambda z: task.loss(z, y), [outputs])


def test_text_multi_byte_utf8_characters_are_single_symbols(tmp_path):
    text = "héllo wörld ✓"
    task = TextTask(text_file(tmp_path, text), length=4, batch=2)
    assert len(text) == 13 and task.vocab == "".join(sorted(set(text)))
    assert {"é", "ö", "✓"} <= set(task.vocab) and task.classes == len(set(text))
    per = 6
    streams = ["".join(task.vocab[i] for i in task.inputs[:, b]) for b in range(2)]
    assert streams == [text[:per], text[per:2 * per]]
    assert "".join(task.vocab[i] for i in task.targets[:, 1]) == text[per + 1:2 * per + 1]


def test_text_file_errors(tmp_path):
    with pytest.raises(OSError, match=re.escape(f"cannot read {tmp_path / 'missing.txt'}: No such file")):
        TextTask(tmp_path / "missing.txt")
    with pytest.raises(OSError, match="it is a directory"):
        TextTask(tmp_path)
    with pytest.raises(ValueError, match="is empty"):
        TextTask(text_file(tmp_path, b"", "empty.txt"))


@pytest.mark.parametrize("content, offset, byte", [
    (b"hello \xff world", 6, "ff"),
    ("héllo".encode() + b"\xff" + b"x" * 100, 6, "ff"),     # a byte offset, not a character count
    (b"\xff" + b"x" * 100, 0, "ff"),
    (b"x" * 100 + b"\xc3", 100, "c3"),                        # a sequence cut at the end of the file
])
def test_text_that_is_not_utf8_names_the_byte_and_its_offset(tmp_path, content, offset, byte):
    path = text_file(tmp_path, content, "binary.dat")
    message = f"{path} is not UTF-8 text (byte 0x{byte} at offset {offset})"
    with pytest.raises(ValueError, match=re.escape(message)):
        TextTask(path, batch=1)


def test_text_too_short_for_the_batch_names_batch(tmp_path):
    path = text_file(tmp_path, "abcdefgh")                   # 8 characters
    with pytest.raises(ValueError, match=r"too short for 4 streams \(--batch\); it needs at least 9"):
        TextTask(path, batch=4)
    task = TextTask(path, batch=3)                            # 2 * 3 + 1 = 7 <= 8: enough
    assert task.inputs.shape == (2, 3)


# -- make_task ----------------------------------------------------------------------

def args(**given):
    defaults = dict(task=None, text=None, delay=5, length=None, batch=4, dtype="float32")
    return SimpleNamespace(**{**defaults, **given})


def test_make_task_defaults_to_delay_with_length_50():
    task = make_task(args())
    assert isinstance(task, DelayTask)
    assert (task.delay, task.length, task.batch, task.dtype) == (5, 50, 4, np.float32)


def test_make_task_builds_each_task_with_its_default_length(tmp_path):
    delay = make_task(args(task="delay", delay=7, dtype="float64"))
    assert isinstance(delay, DelayTask) and (delay.delay, delay.length, delay.dtype) == (7, 50, np.float64)
    adding = make_task(args(task="adding", batch=9))
    assert isinstance(adding, AddingTask) and (adding.length, adding.batch) == (20, 9)
    text = make_task(args(text=text_file(tmp_path, TEXT), batch=2))
    assert isinstance(text, TextTask) and (text.length, text.batch) == (100, 2)


def test_make_task_passes_an_explicit_length(tmp_path):
    assert make_task(args(task="delay", length=12)).length == 12
    assert make_task(args(task="adding", length=3)).length == 3
    assert make_task(args(text=text_file(tmp_path, TEXT), length=6)).length == 6


def test_make_task_refuses_task_and_text_together(tmp_path):
    with pytest.raises(ValueError, match="give --task or --text, not both"):
        make_task(args(task="adding", text=text_file(tmp_path, TEXT)))


def test_make_task_passes_the_delay_check_through():
    with pytest.raises(ValueError, match="--delay"):
        make_task(args(delay=50))


def test_make_task_refuses_an_unknown_task():
    with pytest.raises(ValueError, match="unknown task 'copy'; the built-in tasks are delay and adding"):
        make_task(args(task="copy"))


def test_text_steps_after_a_unit_count_down_to_the_end_of_the_pass(tmp_path):
    task = TextTask(text_file(tmp_path, TEXT), length=4, batch=3)    # passes of 14 steps: 4, 4, 4, 2
    assert [task.steps_after(u) for u in range(6)] == [10, 6, 2, 0, 10, 6]
