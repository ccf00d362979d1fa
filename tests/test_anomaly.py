"""minigrad.detect_anomaly(): a NaN or inf made by an op's forward or by its backward raises,
naming the op, its record and its inputs; off, nothing is checked (issue 19)."""
import numpy as np
import pytest

import minigrad as mg
from minigrad.nn import functional as F
from test_fake_gpu import fake_gpu, on_fake  # noqa: F401 (fake_gpu: a fixture, used by name)


def leaf(values):
    return mg.tensor(np.array(values, dtype=np.float64), requires_grad=True)


def test_an_op_that_makes_inf_raises_naming_it():
    x = leaf([0.0, 1.0])
    with mg.detect_anomaly():
        y = x * 2                                   # finite: goes on
        with pytest.raises(RuntimeError, match=r"^detect_anomaly: log \(record #\d+\) gave inf in "
                                               r"its output of shape \(2,\); its inputs: \(2,\), "
                                               r"all finite$"), np.errstate(divide="ignore"):
            y.log()
    assert y.op == "mul"


def test_the_message_says_when_an_input_already_held_it():
    x = leaf([np.nan, 1.0])
    with mg.detect_anomaly(), pytest.raises(RuntimeError, match=r"add \(record #\d+\) gave nan .*"
                                                                r"input 0 \(nan\) already held them"):
        x + 1.0


def test_ops_that_are_not_recorded_are_checked_too():
    x = mg.tensor([0.0])                            # requires no grad: nothing is recorded
    with mg.detect_anomaly(), np.errstate(divide="ignore"):
        with pytest.raises(RuntimeError, match=r"detect_anomaly: div \(not recorded\) gave inf"):
            1.0 / x
        assert (x < 1).numpy().all()               # boolean outputs are not numbers to check


def test_a_backward_that_makes_inf_raises_and_leaves_the_grads_alone():
    x = leaf([0.0, 4.0])
    w = leaf([1.0, 1.0])
    loss = (x * w).sqrt().sum()                     # sqrt'(0) = inf: only the backward sees it
    with mg.detect_anomaly(), np.errstate(divide="ignore"):
        with pytest.raises(RuntimeError, match=r"^detect_anomaly: the backward of sqrt \(record #\d+\) "
                                               r"gave inf in the gradient of its input 0 \(of shape "
                                               r"\(2,\)\); its inputs: \(2,\), all finite$"):
            loss.backward()
    assert x.grad is None and w.grad is None        # the walk failed: no leaf changed


def test_a_several_output_op_names_the_output_and_a_time_step():
    x = leaf([1.0, 2.0])

    def pair(a):  # (x, x / 0)
        with np.errstate(divide="ignore"):
            return mg.record("pair", (a.data.copy(), a.data / 0), (a,), lambda g: (g[0] + g[1],))
    with mg.detect_anomaly(), mg.get_tape().at_step(3):
        with pytest.raises(RuntimeError, match=r"pair \(record #\d+, time step 3\) gave inf in its "
                                               r"output 1 of shape \(2,\)"):
            pair(x)


def test_off_by_default_and_restored_after_an_error():
    tape = mg.get_tape()
    assert tape.anomaly is False
    with np.errstate(divide="ignore"):
        assert mg.tensor([0.0]).log().item() == -np.inf  # off: -inf, no error
        with pytest.raises(RuntimeError), mg.detect_anomaly():
            mg.tensor([0.0]).log()
    assert tape.anomaly is False


def test_as_a_decorator_and_through_fused_functions():
    @mg.detect_anomaly()
    def loss_of(logits):
        return F.cross_entropy(logits, np.array([0]))

    assert np.isfinite(loss_of(leaf([[1.0, 2.0]])).item())
    with pytest.raises(RuntimeError, match=r"detect_anomaly: cross_entropy \(record #\d+\) gave nan"), \
            np.errstate(invalid="ignore"):
        loss_of(leaf([[np.inf, np.inf]]))             # inf - inf in the softmax


def test_on_a_gpu_device(fake_gpu):
    x = mg.tensor([0.0, 1.0], device="cuda", requires_grad=True)
    assert on_fake(x.data)
    with mg.detect_anomaly(), np.errstate(divide="ignore"), pytest.raises(RuntimeError, match="log"):
        x.log()


def test_one_detect_anomaly_object_entered_twice_restores_the_switch():
    switch = mg.detect_anomaly()
    with switch:
        with switch:
            assert mg.get_tape().anomaly
        assert mg.get_tape().anomaly
    assert mg.get_tape().anomaly is False
