"""The tape and the reverse walk: recording, listing, freeing, time steps, and accumulation."""
import gc
import re

import numpy as np
import pytest

import minigrad as mg
from minigrad.backward import backward
from minigrad.ops import record


@pytest.fixture(autouse=True)
def empty_tape():
    """Each test starts from an empty tape (records of earlier tests are dropped)."""
    gc.collect()
    mg.get_tape().clear()
    yield
    mg.get_tape().clear()


def leaf(values, dtype=np.float64):
    return mg.tensor(np.asarray(values, dtype=dtype), requires_grad=True)


# -- recording ----------------------------------------------------------------

def test_each_op_appends_one_record_with_its_inputs_and_output_shape():
    tape = mg.get_tape()
    x, w = leaf([[1.0, 2.0]]), leaf([[3.0], [4.0]])
    y = (x @ w).tanh()
    records = list(tape)
    assert [r.op for r in records] == ["matmul", "tanh"]
    assert records[0].inputs == (x, w)
    assert records[0].shapes == ((1, 1),)
    assert records[1].inputs[0]._record is records[0]
    assert y._record is records[1] and y.op == "tanh"
    assert records[0].index < records[1].index
    assert len(tape) == 2


def saved_arrays(t):
    """The arrays the record behind t saved for its backward, whatever its closure calls them."""
    return [v for v in t._record.saved.values() if isinstance(v, np.ndarray)]


def test_record_shows_what_backward_saved():
    # tanh's derivative is 1 - y^2: it saves its output, and only that
    x = leaf([1.0, -2.0])
    y = x.tanh()
    (kept,) = saved_arrays(y)
    np.testing.assert_allclose(kept, np.tanh([1.0, -2.0]))


def test_records_save_only_what_backward_needs():
    # add's and sum's derivatives need shapes, not values: no array is kept alive for them
    x, y = leaf(np.ones((2, 3))), leaf(np.ones(3))
    assert saved_arrays(x + y) == []
    assert saved_arrays(x.sum(axis=0)) == []


def test_constants_make_no_records():
    c = mg.tensor([1.0, 2.0])
    (c * 2).exp()
    assert len(mg.get_tape()) == 0


def test_no_grad_stops_recording_and_restores_the_previous_mode():
    x = leaf([1.0])
    with mg.no_grad():
        y = x * 2
        with mg.no_grad():
            pass
        assert not mg.is_grad_enabled()
    assert mg.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    assert len(mg.get_tape()) == 0


def test_no_grad_as_a_decorator():
    @mg.no_grad()
    def double(t):
        return t * 2

    assert not double(leaf([1.0])).requires_grad
    assert mg.is_grad_enabled()


def test_listing_is_a_wengert_list():
    x, w = leaf([[1.0, 2.0]]), leaf([[3.0], [4.0]])
    c = mg.tensor([[0.5]], dtype="float64")
    y = ((x @ w) * c).sum()   # held: the tape lists only records someone can still reach
    text = str(mg.get_tape())
    lines = text.splitlines()
    assert lines[0] == "Tape: 3 records"
    assert lines[1].split()[:4] == ["v0", "=", "matmul(x0,", "x1)"]
    assert "(1, 2), (2, 1) -> (1, 1)" in lines[1] and "float64" in lines[1]
    assert lines[2].split()[:4] == ["v1", "=", "mul(v0,", "c0)"]
    assert lines[3].split()[:3] == ["v2", "=", "sum(v1)"]
    assert "(1, 1) -> ()" in lines[3]
    assert y.shape == ()


def test_listing_shows_time_steps_and_values_from_outside():
    tape = mg.get_tape()
    w, h = leaf([0.5]), leaf([1.0])
    with tape.at_step(1):
        h = w * h
    with tape.at_step(2):
        h = w * h
    tape.free(before_step=2)
    lines = str(tape).splitlines()
    assert lines[0] == "Tape: 1 record"
    assert lines[1].split()[:4] == ["v0", "=", "mul(x0,", "s0)"]  # s0: made by a freed step
    assert lines[1].endswith("[step 2]")


# -- the reverse walk ---------------------------------------------------------

def test_gradients_of_a_small_graph_by_hand():
    # f = sum(tanh(x * w + b)); df/dx = (1 - tanh^2) w, df/dw = (1 - tanh^2) x, df/db = sum
    x, w, b = leaf([0.5, -1.0]), leaf([2.0, 3.0]), leaf(0.25)
    f = (x * w + b).tanh().sum()
    f.backward()
    g_z = 1 - np.tanh(np.array([0.5 * 2 + 0.25, -3.0 + 0.25])) ** 2  # z = x * w + b
    np.testing.assert_allclose(x.grad, g_z * [2.0, 3.0])
    np.testing.assert_allclose(w.grad, g_z * [0.5, -1.0])
    np.testing.assert_allclose(b.grad, g_z.sum())
    assert b.grad.shape == ()


def test_a_value_used_twice_gets_the_sum_of_both_gradients():
    # y = x * x + x: dy/dx = 2x + 1; the intermediate x*x feeds two consumers too
    x = leaf([3.0])
    s = x * x
    y = (s + x + s * 2).sum()   # 3x^2 + x
    y.backward()
    np.testing.assert_allclose(x.grad, [6 * 3.0 + 1])


def test_backward_accumulates_into_grad_until_zero_grad():
    x = leaf([1.0, 2.0])
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [6.0, 6.0])
    x.zero_grad()
    assert x.grad is None


def test_backward_from_a_leaf_seeds_its_own_gradient():
    x = leaf(2.0)
    x.backward()
    assert x.grad == 1.0


def test_backward_with_an_explicit_grad_for_a_non_scalar():
    x = leaf([1.0, 2.0])
    (x * x).backward(np.array([1.0, 10.0]))
    np.testing.assert_allclose(x.grad, [2.0, 40.0])


def test_each_leaf_owns_its_grad_array():
    # add's backward hands the same array to both inputs; the leaves must not share it
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    (a + b).backward(np.array([1.0, 1.0]))
    a.grad *= 5
    np.testing.assert_allclose(b.grad, [1.0, 1.0])


def test_a_shared_gradient_array_is_never_added_into():
    # add hands one array to a and b; a's later uses are summed into a's own array,
    # never into the one b holds
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    y = (a + b) * 1.0 + a * 2.0 + a * 3.0
    y.backward(np.array([1.0, 1.0]))
    np.testing.assert_allclose(a.grad, [6.0, 6.0])
    np.testing.assert_allclose(b.grad, [1.0, 1.0])
    assert not np.shares_memory(a.grad, b.grad)


def test_a_gradient_of_the_wrong_shape_is_caught_before_any_grad_changes():
    x, w = leaf([1.0, 2.0]), leaf([3.0])
    bad = record("bad", x.data * 2, (x, w), lambda g: (2 * g, g))  # w's gradient: shape (2,)
    expected = r"bad returned a gradient of shape \(2,\) for an input of shape \(1,\)"
    with pytest.raises(RuntimeError, match=expected):
        bad.sum().backward()
    assert x.grad is None and w.grad is None


def test_a_wrongly_shaped_gradient_for_an_intermediate_is_caught_too():
    # A hand-written op (minigrad.record) can get any input's gradient wrong, not just a leaf's.
    x = leaf([1.0, 2.0])
    h = x * 3.0                                                  # an intermediate, shape (2,)
    bad = record("bad", h.data.sum(), (h,), lambda g: (g,))     # h's gradient: shape ()
    with pytest.raises(RuntimeError, match=r"bad returned a gradient of shape \(\) for an input of shape \(2,\)"):
        bad.backward()
    assert x.grad is None


def test_leaf_grads_keep_the_leaf_dtype():
    x = mg.tensor(np.ones(3, np.float32), requires_grad=True)
    (x * 2.5).sum().backward()
    assert x.grad.dtype == np.float32


def test_backward_frees_the_records_it_used():
    x = leaf([1.0])
    y = (x * 2).exp().sum()
    assert len(mg.get_tape()) == 3
    y.backward()
    assert len(mg.get_tape()) == 0
    assert y._record.freed
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_keeps_the_records_for_another_backward():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    assert len(mg.get_tape()) == 2
    y.backward()
    np.testing.assert_allclose(x.grad, [4.0, 8.0])


def test_a_new_op_on_a_freed_graph_raises_and_changes_no_grad():
    x = leaf([1.0])
    y = x * 3
    y.sum().backward()
    before = x.grad.copy()
    z = (y * 2).sum()
    with pytest.raises(RuntimeError, match="already freed"):
        z.backward()
    np.testing.assert_allclose(x.grad, before)


def test_a_graph_nobody_holds_leaves_the_tape_by_itself():
    x = leaf(np.ones(4))
    for _ in range(10):
        (x * 2).exp().sum()   # built and dropped, never back-propagated
    gc.collect()
    assert len(mg.get_tape()) == 0


def test_newest_first_lists_the_live_records_in_reverse():
    tape = mg.get_tape()
    x = leaf([1.0, 2.0])
    y = (x * 2).exp()
    z = (x + 1).sum()
    assert [r.op for r in tape.newest_first()] == ["sum", "add", "exp", "mul"]
    assert list(tape.newest_first()) == list(tape)[::-1]
    z.backward()                      # frees sum and add: they are no longer listed
    assert [r.op for r in tape.newest_first()] == ["exp", "mul"]
    del y
    gc.collect()                      # nobody holds exp's output: its records die
    assert list(tape.newest_first()) == []


def test_the_tape_stays_small_over_many_training_steps():
    tape = mg.get_tape()
    w = leaf(np.ones(3))
    for _ in range(3000):
        loss = ((w * 0.5).tanh() * w).sum()
        loss.backward()
        (w * 2).sum()            # a stray graph nobody back-propagates
    assert len(tape) == 0
    assert len(tape._refs) < 2100   # dead references are swept out as the tape grows


def test_graphs_alive_side_by_side_are_walked_independently():
    x = leaf([1.0, 2.0])
    older = (x * 3).sum()
    newer = (x * x).sum()
    older.backward()           # walks past newer's records, leaves them alone
    np.testing.assert_allclose(x.grad, [3.0, 3.0])
    assert [r.op for r in mg.get_tape()] == ["mul", "sum"]
    newer.backward()
    np.testing.assert_allclose(x.grad, [5.0, 7.0])


def test_updating_data_out_of_place_does_not_change_what_a_record_saved():
    # An optimizer replaces p.data with a new array; backward must use the old values.
    w, x = leaf([2.0]), leaf([5.0])
    y = (w * x).sum()
    w.data = w.data - 100.0
    y.backward()
    np.testing.assert_allclose(x.grad, [2.0])
    np.testing.assert_allclose(w.grad, [5.0])


def test_backward_leaves_no_gradient_behind_on_records():
    x = leaf([1.0, 2.0])
    s = x * x
    y = (s + s).sum()
    y.backward(retain_graph=True)
    assert all(r.grads is None for r in mg.get_tape())


# -- several outputs ----------------------------------------------------------

def split_halves(t):
    """A test op with two outputs: the two halves of a vector, times 2 and 3."""
    x = t.data
    n = x.shape[0] // 2

    def backward(g):
        g1, g2 = g
        return (np.concatenate([2 * g1, 3 * g2]),)
    return record("split_halves", (2 * x[:n], 3 * x[n:]), (t,), backward)


def test_an_op_with_two_outputs_is_one_record_and_both_outputs_flow_back():
    x = leaf([1.0, 2.0, 3.0, 4.0])
    a, b = split_halves(x)
    assert a._record is b._record and (a._slot, b._slot) == (0, 1)
    assert len(mg.get_tape()) == 1
    (a.sum() + (b * b).sum()).backward()
    np.testing.assert_allclose(x.grad, [2.0, 2.0, 3 * 2 * 9.0, 3 * 2 * 12.0])


def test_an_unused_output_gets_a_zero_gradient():
    x = leaf([1.0, 2.0, 3.0, 4.0])
    a, _ = split_halves(x)
    a.sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 2.0, 0.0, 0.0])


# -- time steps: what truncated BPTT needs -------------------------------------

def unroll(w, h0, steps, tape):
    """h_t = w * h_(t-1), each step's records labelled with t; returns [h_1, ..., h_steps]."""
    hs, h = [], h0
    for t in range(1, steps + 1):
        with tape.at_step(t):
            h = w * h
        hs.append(h)
    return hs


def test_at_step_without_recording_makes_no_records_and_restores_both_settings():
    tape = mg.get_tape()
    x = leaf([1.0])
    with tape.at_step(4, record=False):
        assert tape.step == 4 and not tape.enabled
        y = x * 2
    assert y._record is None and not y.requires_grad
    assert tape.step is None and tape.enabled
    with pytest.raises(ValueError):
        with tape.at_step(5):
            raise ValueError("inside")
    assert tape.step is None and tape.enabled


def test_records_carry_the_step_that_made_them():
    tape = mg.get_tape()
    hs = unroll(leaf([0.2]), mg.tensor([0.9], dtype="float64"), 3, tape)
    assert [r.step for r in tape] == [1, 2, 3]
    assert hs[-1].op == "mul"
    assert tape.step is None  # restored after the block


@pytest.mark.parametrize("since, expected", [
    (None, 3 * 0.2 ** 2 * 0.9),     # d(w^3 h0)/dw = 3 w^2 h0 = 0.108
    (2, 2 * 0.2 * (0.2 * 0.9)),     # h_1 constant: d(w^2 h1)/dw = 2 w h1 = 0.072
    (3, 0.2 * 0.2 * 0.9),           # h_2 constant: d(w h2)/dw = h2 = 0.036
])
def test_since_step_treats_earlier_steps_as_constants(since, expected):
    tape = mg.get_tape()
    w = leaf([0.2])
    h3 = unroll(w, mg.tensor([0.9], dtype="float64"), 3, tape)[-1]
    backward(h3.sum(), since_step=since)
    np.testing.assert_allclose(w.grad, [expected])


def test_since_step_still_reaches_unlabelled_parameter_records():
    # A value computed from the parameters outside any step (here 2w) is not state:
    # the cut must not stop its gradient.
    tape = mg.get_tape()
    w = leaf([0.2])
    w2 = w * 2
    hs = unroll(w2, mg.tensor([1.0], dtype="float64"), 3, tape)
    backward(hs[-1].sum(), since_step=3)     # d(w2 * h2)/dw with h2 = (2w)^2 constant
    np.testing.assert_allclose(w.grad, [2 * (2 * 0.2) ** 2])


def test_free_drops_the_records_of_earlier_steps():
    tape = mg.get_tape()
    w = leaf([0.2])
    hs = unroll(w, mg.tensor([0.9], dtype="float64"), 5, tape)
    tape.free(before_step=4)
    assert [r.step for r in tape] == [4, 5]
    assert hs[0]._record.freed and hs[0]._record.inputs == ()
    backward(hs[-1].sum(), since_step=4)    # the window lies after the cut: fine
    np.testing.assert_allclose(w.grad, [2 * 0.2 * 0.2 ** 3 * 0.9])


def test_reaching_a_freed_step_without_a_cut_raises():
    tape = mg.get_tape()
    w = leaf([0.2])
    hs = unroll(w, mg.tensor([0.9], dtype="float64"), 4, tape)
    tape.free(before_step=3)
    with pytest.raises(RuntimeError, match="freed"):
        hs[-1].sum().backward()
    assert w.grad is None


def test_retained_windows_can_be_walked_again_with_a_later_cut():
    # TBPTT(1, 2) by hand: after each step, back-propagate over the last two steps.
    tape = mg.get_tape()
    w = leaf([0.2])
    h, grads = mg.tensor([0.9], dtype="float64"), []
    for t in range(1, 4):
        with tape.at_step(t):
            h = w * h
        w.zero_grad()
        backward(h.sum(), retain_graph=True, since_step=t - 1)
        tape.free(before_step=t - 1)
        grads.append(w.grad.item())
    h1 = 0.2 * 0.9
    np.testing.assert_allclose(grads, [0.9, 2 * 0.2 * 0.9, 2 * 0.2 * h1])
    assert [r.step for r in tape] == [2, 3]


def test_steps_hands_out_fresh_labels_and_frees_them_at_the_end():
    tape = mg.get_tape()
    w = leaf([0.2])
    with tape.steps(3) as base:
        with tape.steps(2) as inner:          # a block inside another gets labels of its own
            assert inner == base + 3
        h = mg.tensor([0.9], dtype="float64")
        for s in range(1, 4):
            with tape.at_step(base + s):
                h = w * h
        assert [r.step for r in tape] == [base + 1, base + 2, base + 3]
    assert len(tape) == 0 and h._record.freed  # leaving the block frees its steps' records
    with tape.steps(1) as after:
        assert after == base + 5


def test_steps_frees_only_its_own_labels_even_after_an_error():
    tape = mg.get_tape()
    w = leaf([0.2])
    outside = w * 2                           # unlabelled: not the block's
    with pytest.raises(KeyError):
        with tape.steps(2) as base:
            with tape.at_step(base + 1):
                inside = w * 3
            with tape.at_step(base + 3):      # a label the block does not own
                beyond = w * 4
            raise KeyError("inside")
    assert inside._record.freed
    assert not outside._record.freed and not beyond._record.freed


def test_repr_of_record_and_tape():
    x = leaf([1.0, 2.0])
    y = x.exp()
    assert repr(y._record).startswith("<Record #") and "exp((2,)) -> (2,)" in repr(y._record)
    assert repr(mg.get_tape()) == "<Tape: 1 records, recording on>"


@pytest.mark.parametrize("n", [-1, 2.5, "3", True])
def test_steps_refuses_a_count_that_is_not_a_non_negative_integer(n):
    tape = mg.get_tape()
    with pytest.raises(ValueError, match=re.escape(f"Tape.steps: n must be an integer >= 0, got {n!r}")):
        with tape.steps(n):
            pass


@pytest.mark.parametrize("n", [-1, 2.5, "3", True])
def test_reserve_refuses_a_count_that_is_not_a_non_negative_integer(n):
    with pytest.raises(ValueError, match=re.escape(f"Tape.reserve: n must be an integer >= 0, got {n!r}")):
        mg.get_tape().reserve(n)


def test_reserved_label_ranges_never_overlap_each_other_or_a_steps_block():
    tape = mg.get_tape()
    first = tape.reserve(5)
    with tape.steps(3) as block:
        pass
    second = tape.reserve(0)
    third = tape.reserve(4)
    ranges = [range(first + 1, first + 6), range(block + 1, block + 4), range(third + 1, third + 5)]
    labels = [label for r in ranges for label in r]
    assert len(labels) == len(set(labels)) == 12
    assert second == third  # an empty reservation takes no label
