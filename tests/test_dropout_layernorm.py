"""Dropout (functional.dropout, nn.Dropout) and layer normalization (functional.layer_norm,
nn.LayerNorm): dropout by its statistics and against a mask drawn by hand from the same seed,
layer_norm against PyTorch (tests/torch_reference/modules.npz), both by float64 gradcheck."""
import re
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from minigrad.nn import functional as F
from helpers import F32, F64, close, rand_leaf

REF = np.load(Path(__file__).parent / "torch_reference" / "modules.npz")  # from make_modules.py


# -- dropout ---------------------------------------------------------------------------

def test_dropout_keeps_one_minus_p_scales_the_kept_by_one_over_it_and_keeps_the_mean(rng):
    p, x = 0.3, rng.uniform(1, 2, (200, 500))  # NOTE: the mask's seed is not x's, or they would correlate
    y = F.dropout(mg.tensor(x), p, rng=1).data
    kept = y != 0
    assert abs(kept.mean() - (1 - p)) < 0.01                  # 100,000 draws: 7 standard deviations
    np.testing.assert_array_equal(y[kept], x[kept] / (1 - p))  # exactly x / (1 - p)
    assert abs(y.mean() / x.mean() - 1) < 0.01                 # the mean is preserved


def test_dropout_is_the_mask_drawn_from_the_same_seed_by_hand(on_backend):
    p, x = 0.4, np.random.default_rng(1).standard_normal((3, 7, 5))
    keep = np.random.default_rng(5).random(x.shape) >= p       # kept with probability 1 - p
    want = np.where(keep, x / (1 - p), 0)
    np.testing.assert_array_equal(F.dropout(mg.tensor(x), p, rng=5).data, want)
    np.testing.assert_array_equal(F.dropout(mg.tensor(x), p, rng=np.random.default_rng(5)).data, want)
    xt = mg.tensor(x, requires_grad=True)
    F.dropout(xt, p, rng=5).backward(np.full(x.shape, 3.0))
    np.testing.assert_array_equal(xt.grad, np.where(keep, 3 / (1 - p), 0))  # g * mask / (1 - p)


def test_dropout_advances_a_generator_it_is_given():
    x, gen = mg.ones(1000), np.random.default_rng(0)
    first, second = F.dropout(x, 0.5, rng=gen).data, F.dropout(x, 0.5, rng=gen).data
    assert (first != second).any()
    np.testing.assert_array_equal(F.dropout(x, 0.5, rng=0).data, F.dropout(x, 0.5, rng=0).data)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_dropout_of_one_gives_zeros_and_of_zero_or_out_of_training_the_input(dtype):
    x = mg.tensor(np.arange(1, 7, dtype=dtype), requires_grad=True)
    y = F.dropout(x, 1.0, rng=0)
    assert y.dtype == dtype and not np.isnan(y.data).any() and (y.data == 0).all()
    y.sum().backward()
    assert (x.grad == 0).all() and not np.isnan(x.grad).any()
    assert F.dropout(x, 0.0, rng=0) is x and F.dropout(x, 0.9, training=False) is x
    assert F.dropout(x, 0.5, rng=0).dtype == dtype


def test_dropout_passes_a_float64_gradcheck(rng):
    x = rand_leaf(rng, 4, 6)
    assert mg.gradcheck(lambda x: F.dropout(x, 0.3, rng=7) * x, [x])  # one seed: one mask per call


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), "0.5", None, True])
def test_dropout_refuses_a_p_that_is_not_a_probability(p):
    with pytest.raises(ValueError, match=f"dropout: dropout probability p has to be a number between "
                                         f"0 and 1, but got {p!r}"):
        F.dropout(mg.ones(2), p)
    with pytest.raises(ValueError, match="Dropout: dropout probability p has to be a number between 0 and 1"):
        nn.Dropout(p)


def test_dropout_refuses_integers_and_bad_generators():
    with pytest.raises(TypeError, match="dropout: x must be float32 or float64, got int64"):
        F.dropout(mg.arange(4), 0.5)
    with pytest.raises(TypeError, match="rng: expected an int seed or a numpy.random.Generator, got str"):
        F.dropout(mg.ones(2), 0.5, rng="seed")


def test_the_dropout_module_obeys_train_and_eval_and_draws_a_new_mask_each_call():
    x = mg.ones(1000)
    drop = nn.Dropout(0.5, rng=3)
    first, second = drop(x).data, drop(x).data
    assert (first != second).any() and set(np.unique(first)) == {0.0, 2.0}
    again = nn.Dropout(0.5, rng=3)  # the same seed, the same sequence of masks
    np.testing.assert_array_equal(again(x).data, first)
    np.testing.assert_array_equal(again(x).data, second)
    assert drop.eval()(x) is x
    assert drop.train()(x) is not x
    model = nn.Sequential(nn.Linear(1000, 1000), nn.Dropout(0.5))
    model.eval()
    y = model[0](x)
    close(model(x).data, y.data, F32)
    assert repr(drop) == "Dropout(p=0.5)" and drop.parameters() == [] and drop.state_dict() == {}


# -- layer_norm --------------------------------------------------------------------------

CASES = sorted({int(k.split(".")[1]) for k in REF.files if k.startswith("layer_norm.")})


def reference(i):
    """PyTorch's case i: its arrays by name (x, weight, bias, g, y, g_x, ...) and the call's arguments."""
    case = {k.split(".", 2)[2]: REF[k] for k in REF.files if k.startswith(f"layer_norm.{i}.")}
    return case, tuple(int(n) for n in case["normalized_shape"]), float(case["eps"])


@pytest.mark.parametrize("i", CASES)
def test_layer_norm_matches_pytorch(i, on_backend):
    case, shape, eps = reference(i)
    leaves = {k: mg.tensor(case[k], requires_grad=True) for k in ("x", "weight", "bias") if k in case}
    y = F.layer_norm(leaves["x"], shape, leaves.get("weight"), leaves.get("bias"), eps)
    close(y.data, case["y"])
    y.backward(case["g"])
    for k, t in leaves.items():
        close(t.grad, case["g_" + k])


def test_layer_norm_by_hand():
    y = F.layer_norm(mg.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=F64), 4, eps=0.0)
    close(y.data, [[-1.5, -0.5, 0.5, 1.5] / np.sqrt(1.25)])  # mean 2.5, biased variance 1.25


@pytest.mark.parametrize("x_shape, shape, affine", [((3, 5), (5,), ""), ((3, 5), (5,), "weight bias"),
                                                    ((2, 3, 4), (3, 4), "weight bias"),
                                                    ((2, 3, 4), (2, 3, 4), "weight"),
                                                    ((2, 1, 3), (3,), "bias"), ((4,), 4, "")])
def test_layer_norm_passes_a_float64_gradcheck(x_shape, shape, affine, rng):
    full = (shape,) if isinstance(shape, int) else shape
    x = rand_leaf(rng, *x_shape)
    weight = rand_leaf(rng, *full) if "weight" in affine else None
    bias = rand_leaf(rng, *full) if "bias" in affine else None
    inputs = [t for t in (x, weight, bias) if t is not None]

    def f(*ts):
        it = iter(ts[1:])
        w = next(it) if weight is not None else None
        b = next(it) if bias is not None else None
        return F.layer_norm(ts[0], shape, w, b, eps=1e-3) * ts[0]  # not linear in the normalized x̂
    assert mg.gradcheck(f, inputs)


def test_layer_norm_module_starts_as_the_identity_affine_map_and_names_as_pytorch():
    ln = nn.LayerNorm((3, 4), dtype="float64")
    assert ln.normalized_shape == (3, 4) and ln.eps == 1e-5
    assert [n for n, _ in ln.named_parameters()] == ["weight", "bias"]
    assert (ln.weight.data == 1).all() and (ln.bias.data == 0).all() and ln.weight.dtype == F64
    x = mg.tensor(np.random.default_rng(0).standard_normal((2, 3, 4)))
    close(ln(x).data, F.layer_norm(x, (3, 4)).data)
    assert repr(ln) == "LayerNorm((3, 4), eps=1e-05, elementwise_affine=True, bias=True)"
    assert nn.LayerNorm(5).normalized_shape == (5,) and nn.LayerNorm(5).weight.dtype == F32
    assert nn.LayerNorm(5, elementwise_affine=False).parameters() == []
    no_bias = nn.LayerNorm(5, bias=False)
    assert no_bias.bias is None and list(no_bias.state_dict()) == ["weight"]
    assert repr(no_bias) == "LayerNorm((5,), eps=1e-05, elementwise_affine=True, bias=False)"


def test_layer_norm_refuses_shapes_that_do_not_fit():
    with pytest.raises(ValueError, match=r"layer_norm: input of shape \(2, 4\) does not end in "
                                         r"normalized_shape \(5,\)"):
        nn.LayerNorm(5)(mg.ones(2, 4))
    with pytest.raises(ValueError, match=r"input of shape \(4,\) does not end in normalized_shape \(3, 4\)"):
        F.layer_norm(mg.ones(4), (3, 4))
    with pytest.raises(ValueError, match=r"layer_norm: weight of shape \(4,\) for normalized_shape \(3,\)"):
        F.layer_norm(mg.ones(2, 3), 3, weight=mg.ones(4))
    with pytest.raises(ValueError, match=r"layer_norm: bias of shape \(1, 3\) for normalized_shape \(3,\)"):
        F.layer_norm(mg.ones(2, 3), 3, bias=mg.ones(1, 3))
    for bad in (0, (), (3, 0), "3", (2.0,)):
        with pytest.raises(ValueError, match="LayerNorm: normalized_shape must be an integer >= 1 or a "
                                             f"non-empty tuple of them, got {re.escape(repr(bad))}"):
            nn.LayerNorm(bad)
