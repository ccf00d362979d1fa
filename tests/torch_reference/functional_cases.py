"""The cases that hold minigrad.nn.functional's activations, losses, one_hot and pad to
PyTorch's, in NumPy alone.

make_functional.py runs each case with torch.nn.functional and stores what PyTorch computes;
tests/test_functional_more.py runs it with minigrad.nn.functional and compares. Both call run().
Both draw the case's inputs from here, from a generator seeded by the case's name (then cast to
the dtype), so the fixture stores only PyTorch's results: for each dtype, every case's output
and gradients laid end to end in one vector (pack), cut at `ends`.

The loss back-propagated touches every output entry with its own weight R (drawn the same way):
    loss = sum(out * R)
Class axes: minigrad's cross_entropy and nll_loss take the classes on the LAST axis, PyTorch's
on axis 1; a case with (N, T, C) input is moved to (N, C, T) on PyTorch's side (make_functional).
"""
import itertools
import os
import zlib
from dataclasses import dataclass

import numpy as np

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "functional.npz")
DTYPES = ("float32", "float64")
REDUCTIONS = ("mean", "sum", "none")
IGNORE = -100  # PyTorch's default ignore_index, which the ignore cases put in their targets


@dataclass(frozen=True)
class Case:
    fn: str          # the function's name, the same in torch.nn.functional and minigrad's
    label: str       # what sets the case apart, in its name
    options: tuple   # ((keyword, value), ...): the scalar options, the same for both libraries

    @property
    def name(self):
        return f"{self.fn}-{self.label}"

    @property
    def kwargs(self):
        return dict(self.options)

    def arrays(self, dtype):
        """[(name, array, role)], the call's array arguments in order: role "input" (positional,
        requires grad), "data" (positional, no grad: class targets, one_hot's indices) or
        "keyword" (passed by name, no grad: weight, pos_weight). Floats are cast to `dtype`."""
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        made = BUILDERS[self.fn](rng, self)
        return [(n, a.astype(dtype) if a.dtype.kind == "f" else a, role) for n, a, role in made]

    def weights_of(self, shape, dtype):
        """R, the loss's weight of each output entry: U(-1, 1) from a seed made of the name."""
        rng = np.random.default_rng(zlib.crc32((self.name + "/R").encode()))
        return rng.uniform(-1, 1, shape).astype(dtype)


def pack(results):
    """{name: array} laid end to end in one float64 vector."""
    return np.concatenate([np.ravel(np.asarray(a, dtype=np.float64)) for a in results.values()])


def run(case, dtype, call, tensor, numpy):
    """Run the case with one library and back-propagate sum(out * R).

    call(fn, args, kwargs): the library's function `fn` applied (args: framework tensors)
    tensor(array, requires_grad): the library's tensor
    numpy(value): a tensor's values or a gradient (.grad) as a NumPy array
    Returns {"out": array, "grad/<name>": array for each input}, NumPy arrays."""
    args, kwargs, leaves = [], dict(case.kwargs), {}
    for name, a, role in case.arrays(dtype):
        t = tensor(a, role == "input")
        if role == "keyword":
            kwargs[name] = t
        else:
            args.append(t)
        if role == "input":
            leaves[name] = t
    out = call(case.fn, args, kwargs)
    results = {"out": numpy(out)}
    if leaves:
        (out * tensor(case.weights_of(results["out"].shape, dtype), False)).sum().backward()
        results.update({f"grad/{n}": numpy(t.grad) for n, t in leaves.items()})
    return results


# -- the inputs of each function ---------------------------------------------------------

def _activation(rng, case):
    """x: (4, 9) from U(-5, 5), and the points where the function bends: both sides of 0 and
    0 itself; for softplus, both sides of beta x = threshold and the threshold itself."""
    x = rng.uniform(-5, 5, (4, 9))
    specials = [0.0, -0.0, 1e-3, -1e-3, 30.0, -30.0]
    if case.fn == "softplus":
        b, thr = case.kwargs.get("beta", 1), case.kwargs.get("threshold", 20)
        edge = thr / b
        x[1] = rng.uniform(edge - 3 / abs(b), edge + 3 / abs(b), 9)
        specials = [edge, edge * (1 + 1e-9), edge * (1 - 1e-9), 0.0, -30.0, 30.0]
    x[0, :len(specials)] = specials
    return [("x", x, "input")]


def _class_targets(rng, case, shape, classes):
    """Class targets of `shape`: some equal to IGNORE for "ignore" cases, all for "allignored",
    some equal to class 1 for "ignoreclass" (whose ignore_index is 1)."""
    t = rng.integers(0, classes, shape)
    if "allignored" in case.label:
        t[...] = IGNORE
    elif "ignoreclass" in case.label:  # ignore_index=1, a real class
        t.reshape(-1)[::3] = 1
    elif "ignore" in case.label:
        t.reshape(-1)[::3] = IGNORE
    return t


def _classes(rng, case):
    """input (N, C) = (5, 4) or (N, T, C) = (2, 3, 4), targets, and a weight (C,) for "weight"
    cases; cross_entropy's logits scaled by 3, nll_loss's input log-probabilities."""
    shape = (2, 3, 4) if "NTC" in case.label else (5, 4)
    x = 3 * rng.standard_normal(shape)
    if case.fn == "nll_loss":
        x = x - np.log(np.exp(x).sum(-1, keepdims=True))
    made = [("input", x, "input"), ("target", _class_targets(rng, case, shape[:-1], shape[-1]), "data")]
    if "weight" in case.label:
        made.append(("weight", rng.uniform(0.2, 2.0, shape[-1]), "keyword"))
    return made


def _bce(rng, case):
    """input (3, 4) logits, some far out (+-40); target U(0, 1); weight (3, 4) or (4,);
    pos_weight (4,)."""
    x = 3 * rng.standard_normal((3, 4))
    x[0, :2] = [40.0, -40.0]
    made = [("input", x, "input"), ("target", rng.uniform(0, 1, (3, 4)), "input")]
    if "weight" in case.label:
        shape = (4,) if "rowweight" in case.label else (3, 4)
        made.append(("weight", rng.uniform(0.5, 2.0, shape), "keyword"))
    if "pos" in case.label:
        made.append(("pos_weight", rng.uniform(0.5, 3.0, 4), "keyword"))
    return made


def _huber(rng, case):
    """input and target (3, 5), and entries with |input - target| = delta exactly (both signs)
    and just inside and outside it."""
    delta = case.kwargs.get("delta", 1.0)
    x, t = 2 * rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    t[0] = 0.5
    x[0] = [0.5 + delta, 0.5 - delta, 0.5 + delta * (1 - 1e-6), 0.5 - delta * (1 + 1e-6), 0.5]
    return [("input", x, "input"), ("target", t, "input")]


def _pad(rng, case):
    return [("x", rng.standard_normal((2, 3, 4)), "input")]


def _one_hot(rng, case):
    return [("tensor", rng.integers(0, 5, (3, 4)), "data")]


BUILDERS = {"softplus": _activation, "gelu": _activation, "silu": _activation,
            "leaky_relu": _activation, "elu": _activation,
            "cross_entropy": _classes, "nll_loss": _classes,
            "binary_cross_entropy_with_logits": _bce, "huber_loss": _huber,
            "pad": _pad, "one_hot": _one_hot}


def cases():
    """Every case: each activation with its options (softplus's beta and threshold, both gelu
    forms, slopes and alphas); cross_entropy and nll_loss for every reduction x (N, C) and
    (N, T, C) x weight, ignored targets (some, all, a real class), label smoothing (cross_entropy);
    binary_cross_entropy_with_logits for every reduction x weight (full, per column) x
    pos_weight; huber_loss for every reduction x delta; pad's crops and pads; one_hot."""
    out = [Case("softplus", f"beta{b}-threshold{t}", (("beta", b), ("threshold", t)))
           for b, t in [(1, 20), (2, 20), (0.5, 3), (-1, 2)]]
    out += [Case("gelu", a, (("approximate", a),)) for a in ("none", "tanh")]
    out += [Case("silu", "plain", ())]
    out += [Case("leaky_relu", f"slope{s}", (("negative_slope", s),)) for s in (0.01, 0.2, -0.5)]
    out += [Case("elu", f"alpha{a}", (("alpha", a),)) for a in (1.0, 2.5, 0.3)]
    ce_options = ["plain", "weight", "ignore", "smooth", "weight-smooth", "weight-ignore",
                  "weight-smooth-ignore", "smooth-ignore", "weight-smooth-allignored", "allignored"]
    for fn, layout, option, reduction in itertools.product(
            ["cross_entropy", "nll_loss"], ["NC", "NTC"], ce_options, REDUCTIONS):
        if fn == "nll_loss" and "smooth" in option:
            continue
        opts = [("reduction", reduction)]
        if "smooth" in option:
            opts.append(("label_smoothing", 0.15))
        out.append(Case(fn, f"{layout}-{option}-{reduction}", tuple(opts)))
    for fn, option, reduction in itertools.product(  # ignore_index a real class, 1
            ["cross_entropy", "nll_loss"], ["ignoreclass", "weight-ignoreclass"], REDUCTIONS):
        out.append(Case(fn, f"NC-{option}-{reduction}", (("reduction", reduction), ("ignore_index", 1))))
    bce = "binary_cross_entropy_with_logits"
    bce_options = ["plain", "weight", "rowweight", "pos", "weight-pos"]
    for option, reduction in itertools.product(bce_options, REDUCTIONS):
        out.append(Case(bce, f"{option}-{reduction}", (("reduction", reduction),)))
    for delta, reduction in itertools.product([1.0, 0.5, 2.0], REDUCTIONS):
        out.append(Case("huber_loss", f"delta{delta}-{reduction}",
                        (("reduction", reduction), ("delta", delta))))
    for p, value in [((1, 2), 0.0), ((1, 1, 2, 0), 1.5), ((0, 1, 1, 0, 2, 1), -2.0), ((-1, 2), 0.0),
                     ((-2, -1, 1, -1), 0.5), ((-4, 1), 0.0), ((1, -3, 0, -3), 0.0)]:
        out.append(Case("pad", f"{p}-value{value}".replace(" ", ""), (("pad", p), ("value", value))))
    out += [Case("one_hot", f"num_classes{n}", (("num_classes", n),)) for n in (-1, 5, 7)]
    return out


def load_fixture():
    """make_functional.py's fixture: {dtype: {case name: PyTorch's results, packed}}."""
    with np.load(FIXTURE) as fixture:
        names = list(fixture["cases"])
        found = {}
        for dtype in DTYPES:
            flat, ends = fixture[f"results.{dtype}"], fixture[f"ends.{dtype}"]
            found[dtype] = dict(zip(names, np.split(flat, ends[:-1])))
        return found
