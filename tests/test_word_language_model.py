"""The issue's "done when": PyTorch's word-language-model example, ported to minigrad, gives
PyTorch's losses.

torch_reference/word_language_model.py is torch_reference/word_language_model_torch.py
(PyTorch's examples/word_language_model, compact) with minigrad's names. Loaded with the
PyTorch model's initial weights (strict) and run with dropout 0, its 20 losses (Embedding, a
2-layer LSTM, Linear, cross_entropy, clip_grad_norm_ and Adam, the state carried and detached
between batches) and its loss on held-out text after them must be PyTorch's to 1e-10 in
float64. With dropout 0.2 it must train with random masks in train mode and evaluate
deterministically, without dropout, in eval mode.

PyTorch's numbers are in torch_reference/word_language_model.npz, written by the PyTorch
script (see torch_reference/README.md); PyTorch itself is never imported here.
"""
import os

import numpy as np
import pytest

from torch_reference import word_language_model as wlm

# Every test runs on every backend: NumPy, the kernels emulated on the CPU, and a GPU.
pytestmark = pytest.mark.usefixtures("on_backend")

FIXTURE = os.path.join(os.path.dirname(__file__), "torch_reference", "word_language_model.npz")
TOL = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture(scope="module")
def pytorch():
    """(the initial state_dict, the 20 losses with dropout 0, the held-out loss after them)."""
    with np.load(FIXTURE) as fixture:
        state = {name.removeprefix("state/"): fixture[name] for name in fixture.files
                 if name.startswith("state/")}
        return state, fixture["losses"], float(fixture["eval_loss"])


def test_losses_match_pytorch(pytorch):
    state, losses, eval_loss = pytorch
    model, got = wlm.main(dropout=0.0, state_dict=state)
    np.testing.assert_allclose(got, losses, **TOL)
    np.testing.assert_allclose(wlm.evaluate(model, wlm.corpus()[1]), eval_loss, **TOL)


def test_dropout_trains_and_eval_is_deterministic(pytorch):
    state, losses, _ = pytorch
    model, got = wlm.main(dropout=0.2, state_dict=state)
    assert len(got) == len(losses) and np.isfinite(got).all()
    assert model.training and not np.allclose(got, losses)  # trained with masks
    assert wlm.main(dropout=0.2, state_dict=state)[1] == got  # drawn from the seeded generator
    _, held_out = wlm.corpus()
    data, _ = wlm.get_batch(held_out, 0)
    hidden = model.init_hidden(wlm.EVAL_BATCH_SIZE)
    first, second = (model(data, hidden)[0].numpy() for _ in range(2))
    assert not np.array_equal(first, second)  # train mode: new masks on every call
    # eval mode: no dropout, so the same loss every time, and that of the same weights without dropout
    once, twice = wlm.evaluate(model, held_out), wlm.evaluate(model, held_out)
    assert not model.training and once == twice
    plain = wlm.RNNModel(wlm.NTOKEN, wlm.NINP, wlm.NHID, wlm.NLAYERS, dropout=0.0)
    plain.load_state_dict(model.state_dict(), strict=True)
    assert wlm.evaluate(plain, held_out) == once
