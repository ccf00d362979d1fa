"""The cases that hold minigrad's newer ops (maximum, minimum, log1p, expm1, sin, cos, square,
min, max, logsumexp, var, std, norm, cumsum, gather, chunk, split, sum and mean with dim=)
to PyTorch's, in NumPy alone.

Each case is one call, written once with the Tensor methods both libraries share
(`x.var(1, correction=0)`), or, where PyTorch spells it otherwise (its max(dim) returns
values and indices; minigrad's max(axis=...) the values alone), with PyTorch's spelling
beside it. Inputs, gather's index and the
loss's weights are drawn from a generator seeded by the case's name, so make_ops.py stores
only PyTorch's results: the outputs and the inputs' gradients of

    loss = sum_k sum(output_k * R_k)        (R_k drawn U(-0.5, 0.5), output_k's shape)

packed in one vector per case and dtype (pack). tests/test_ops_more.py runs the same case
with minigrad and compares, and gradchecks the cases that are smooth at their inputs.
"""
import os
import zlib
from dataclasses import dataclass

import numpy as np

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ops.npz")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Case:
    name: str
    call: object              # (x, y, index) -> a tensor or a tuple of tensors, both libraries
    shapes: tuple             # the shapes of the float inputs: (x,) or (x, y)
    draw: str = "normal"      # how the inputs are drawn, see inputs()
    index: tuple = None       # gather: (the index's shape, its values' upper bound)
    pytorch: object = None    # PyTorch's spelling of call, where it differs
    smooth: bool = True       # differentiable at its inputs: gradchecked
    warns: bool = False       # N - correction <= 0: minigrad warns (RuntimeWarning)

    def inputs(self, rng):
        """The float inputs, float64, drawn by kind:
        normal:   N(0, 1)
        ties:     integers in [-2, 2] (ties for max, min, maximum, minimum, the inf-norm)
        above-1:  U(-0.9, 3), log1p's domain
        wide:     N(0, 20^2), where a plain log(sum(exp(x))) would overflow in float32
        zero-row: N(0, 1), the first row 0 (a norm of 0)
        equal-row: N(0, 1), the first row all 1.5 (a variance of 0)
        -inf:     N(0, 1), the first row all -inf and one -inf in the second
        """
        xs = []
        for shape in self.shapes:
            if self.draw == "ties":
                x = rng.integers(-2, 3, shape).astype(np.float64)
            elif self.draw == "above-1":
                x = rng.uniform(-0.9, 3.0, shape)
            elif self.draw == "wide":
                x = 20.0 * rng.standard_normal(shape)
            else:
                x = np.asarray(rng.standard_normal(shape))  # an array also for shape ()
            if self.draw in ("zero-row", "equal-row", "-inf"):
                x[0] = {"zero-row": 0.0, "equal-row": 1.5, "-inf": -np.inf}[self.draw]
            if self.draw == "-inf":
                x[1, 0] = -np.inf
            xs.append(x)
        return xs


def _max_all(x, y, i):
    """PyTorch's max(dim) rule over all entries: the first maximum gets the gradient."""
    return x.reshape(-1).max(0).values


CASES = [
    # elementwise
    Case("log1p", lambda x, y, i: x.log1p(), ((3, 5),), "above-1"),
    Case("expm1", lambda x, y, i: x.expm1(), ((3, 5),)),
    Case("sin", lambda x, y, i: x.sin(), ((2, 3, 4),)),
    Case("cos", lambda x, y, i: x.cos(), ((2, 3, 4),)),
    Case("square", lambda x, y, i: x.square(), ((7,),)),
    Case("maximum", lambda x, y, i: x.maximum(y), ((3, 1, 4), (2, 4))),
    Case("maximum-0d", lambda x, y, i: x.maximum(y), ((2, 3), ())),
    Case("maximum-ties", lambda x, y, i: x.maximum(y), ((3, 4), (3, 4)), "ties", smooth=False),
    Case("minimum", lambda x, y, i: x.minimum(y), ((2, 3), (2, 3))),
    Case("minimum-ties-broadcast", lambda x, y, i: x.minimum(y), ((4, 1), (4, 5)), "ties", smooth=False),
    # max and min: max(dim) gives (values, indices) in both; axis= (NumPy's) the values only
    Case("max-dim1-ties", lambda x, y, i: x.max(dim=1).values, ((3, 4),), "ties", smooth=False),
    Case("max-dim-1-keepdim-ties", lambda x, y, i: x.max(-1, keepdim=True).values, ((2, 3, 5),), "ties",
         smooth=False),
    Case("max-all-ties", lambda x, y, i: x.max(), ((3, 4),), "ties", pytorch=_max_all, smooth=False),
    Case("max-axes02-keepdims", lambda x, y, i: x.max(axis=(0, 2), keepdims=True), ((2, 3, 4),),
         pytorch=lambda x, y, i: x.permute(1, 0, 2).reshape(3, -1).max(1).values.reshape(1, 3, 1)),
    Case("min-dim0-ties", lambda x, y, i: x.min(dim=0).values, ((4, 3),), "ties", smooth=False),
    Case("min-all-ties", lambda x, y, i: x.min(), ((2, 5),), "ties",
         pytorch=lambda x, y, i: x.reshape(-1).min(0).values, smooth=False),
    Case("min-axes12", lambda x, y, i: x.min(axis=(1, 2)), ((2, 3, 4),),
         pytorch=lambda x, y, i: x.reshape(2, -1).min(1).values),
    # sum and mean under PyTorch's names
    Case("sum-dim02-keepdim", lambda x, y, i: x.sum(dim=(0, 2), keepdim=True), ((2, 3, 4),)),
    Case("mean-dim-1", lambda x, y, i: x.mean(dim=-1), ((3, 5),)),
    # logsumexp
    Case("logsumexp-dim1", lambda x, y, i: x.logsumexp(1), ((3, 5),), "wide"),
    Case("logsumexp-dim02-keepdim", lambda x, y, i: x.logsumexp((0, 2), keepdim=True), ((2, 3, 4),)),
    Case("logsumexp-all", lambda x, y, i: x.logsumexp(), ((3, 4),),
         pytorch=lambda x, y, i: x.logsumexp((0, 1))),
    Case("logsumexp-inf", lambda x, y, i: x.logsumexp(dim=1), ((3, 4),), "-inf", smooth=False),
    # var and std: corrections 0, 1, 2, and none left (N - correction <= 0)
    *[Case(f"var-dim1-correction{c}", lambda x, y, i, c=c: x.var(1, correction=c), ((3, 4),))
      for c in (0, 1, 2)],
    Case("var-all", lambda x, y, i: x.var(), ((3, 4),)),
    Case("var-dim02-keepdim", lambda x, y, i: x.var((0, 2), keepdim=True), ((2, 3, 4),)),
    Case("var-axis0-keepdims", lambda x, y, i: x.var(axis=0, keepdims=True), ((5, 2),)),
    Case("var-dof0", lambda x, y, i: x.var(1, correction=2), ((3, 2),), "equal-row",
         smooth=False, warns=True),
    Case("var-dof-1", lambda x, y, i: x.var(1, correction=3), ((3, 2),), "equal-row",
         smooth=False, warns=True),
    *[Case(f"std-dim0-correction{c}", lambda x, y, i, c=c: x.std(0, correction=c), ((4, 3),))
      for c in (0, 1, 2)],
    Case("std-all", lambda x, y, i: x.std(), ((2, 3, 2),)),
    Case("std-zero", lambda x, y, i: x.std(dim=1, keepdim=True), ((3, 4),), "equal-row", smooth=False),
    Case("std-dof0", lambda x, y, i: x.std(1, correction=2), ((3, 2),), "equal-row",
         smooth=False, warns=True),
    Case("std-dof-1", lambda x, y, i: x.std(1, correction=3), ((3, 2),), "equal-row",
         smooth=False, warns=True),
    # norm
    Case("norm2-dim1-zero", lambda x, y, i: x.norm(2, 1), ((3, 4),), "zero-row", smooth=False),
    Case("norm2-all", lambda x, y, i: x.norm(), ((2, 3, 4),)),
    Case("norm2-dim02-keepdim", lambda x, y, i: x.norm(2, (0, 2), keepdim=True), ((2, 3, 4),)),
    Case("norm2-all-zero", lambda x, y, i: x.norm(p=2), ((1, 5),), "zero-row", smooth=False),
    Case("norm1-dim0", lambda x, y, i: x.norm(1, 0), ((4, 3),)),
    Case("norm1-dim1-zero", lambda x, y, i: x.norm(1, 1), ((3, 4),), "zero-row", smooth=False),
    Case("norminf-dim1-ties", lambda x, y, i: x.norm(float("inf"), 1), ((4, 5),), "ties", smooth=False),
    Case("norminf-dim0", lambda x, y, i: x.norm(float("inf"), dim=0, keepdim=True), ((4, 3),)),
    # cumsum along each axis
    *[Case(f"cumsum-dim{d}", lambda x, y, i, d=d: x.cumsum(d), ((2, 3, 4),)) for d in (0, 1, 2, -1)],
    Case("cumsum-1d", lambda x, y, i: x.cumsum(0), ((6,),)),
    # gather, with repeated indices
    Case("gather-dim1-longer", lambda x, y, i: x.gather(1, i), ((3, 4),), index=((3, 7), 4)),
    Case("gather-dim0-shorter", lambda x, y, i: x.gather(0, i), ((3, 4),), index=((5, 2), 3)),
    Case("gather-dim-1-3d", lambda x, y, i: x.gather(-1, i), ((2, 3, 4),), index=((2, 2, 3), 4)),
    # chunk and split: every piece weighted in the loss
    Case("chunk3-dim0", lambda x, y, i: x.chunk(3), ((7, 3),)),
    Case("chunk4-dim1-fewer", lambda x, y, i: x.chunk(4, 1), ((2, 6),)),
    Case("split2-dim0", lambda x, y, i: x.split(2), ((7, 3),)),
    Case("split-sections-dim1", lambda x, y, i: x.split([1, 0, 2], 1), ((2, 3),)),
    Case("split3-dim-1", lambda x, y, i: x.split(3, dim=-1), ((2, 3, 5),)),
]


def arrays(case):
    """The case's float inputs (float64) and gather's index (int64, or None), drawn from a
    generator seeded by its name, and the generator (it draws the loss's weights next)."""
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    xs = case.inputs(rng)
    index = None if case.index is None else rng.integers(0, case.index[1], case.index[0])
    return xs, index, rng


def run(case, tensor, dtype, call=None):
    """Run the case's call (or `call`) with a library whose `tensor(array, requires_grad=...)`
    makes its tensors (of the array's dtype), in `dtype`, and back-propagate the case's loss.
    Returns {name: NumPy array}: out0, out1, ... then grad_x (, grad_y)."""
    xs, index, rng = arrays(case)
    leaves = [tensor(x.astype(dtype), requires_grad=True) for x in xs]
    out = (call or case.call)(*leaves, *[None] * (2 - len(leaves)),
                              None if index is None else tensor(index))
    outs = out if isinstance(out, tuple) else (out,)
    loss = None
    for o in outs:
        term = (o * tensor(rng.uniform(-0.5, 0.5, tuple(o.shape)).astype(dtype))).sum()
        loss = term if loss is None else loss + term
    loss.backward()
    results = {f"out{k}": np.asarray(o.detach().numpy()) for k, o in enumerate(outs)}
    results.update({f"grad_{n}": np.asarray(t.grad) for n, t in zip("xy", leaves)})
    return results


def pack(results):
    """results, as run() returns them, laid end to end in one vector (one array a case and dtype)."""
    return np.concatenate([np.ravel(a) for a in results.values()])


def unpack(flat, like):
    """pack's inverse, taking the names and shapes from `like` (the results to compare with)."""
    sizes = [int(np.prod(np.shape(a))) for a in like.values()]
    if flat.shape != (sum(sizes),):
        raise ValueError(f"expected {sum(sizes)} results, got an array of shape {flat.shape}")
    parts = np.split(flat, np.cumsum(sizes)[:-1])
    return {name: part.reshape(np.shape(a)) for (name, a), part in zip(like.items(), parts)}


def key(case, dtype):
    return f"{case.name}/{dtype}"
