"""Write functional.npz: what torch.nn.functional computes for every case of functional_cases.py,
the reference of tests/test_functional_more.py (activations, losses, one_hot, pad).

For each dtype (float32, float64) it runs each case with PyTorch (functional_cases.run: the
case's inputs, then sum(out * R) back-propagated) and stores the output and the gradients of
every input, all cases laid end to end in one vector "results.<dtype>" cut at "ends.<dtype>"
(float32 results stored as float32), the case names in "cases". Inputs are not stored: the
test draws them again from functional_cases.py.

minigrad's cross_entropy and nll_loss take the classes on the last axis, PyTorch's on axis 1:
for an (N, T, C) case the input is moved to (N, C, T) here, inside PyTorch's graph, so its
gradient comes back as (N, T, C).

Rerun it from the repository root (PyTorch is not in minigrad's environment, and minigrad
and its tests never import it) with

    PYTHONPATH=. /path/to/python-with-torch tests/torch_reference/make_functional.py

It writes the file atomically (an interrupted run leaves the old one in place), and the same
bytes on every run with the same PyTorch (make_modules.save).
"""
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from functional_cases import DTYPES, FIXTURE, cases, pack, run
from make_modules import save

CLASS_LOSSES = ("cross_entropy", "nll_loss")


def call(fn, args, kwargs):
    """torch.nn.functional's `fn`, with the classes moved to axis 1 for the class losses."""
    if fn in CLASS_LOSSES and args[0].ndim > 2:
        args = [args[0].movedim(-1, 1)] + args[1:]
    return getattr(F, fn)(*args, **kwargs)


def tensor(array, requires_grad):
    return torch.tensor(array, requires_grad=requires_grad)


def numpy(value):
    return value.detach().numpy()


def main():
    arrays = {"cases": np.array([case.name for case in cases()])}
    for dtype in DTYPES:
        parts = []
        for case in cases():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # huber_loss's broadcast warning never applies here
                parts.append(pack(run(case, dtype, call, tensor, numpy)).astype(dtype))
        arrays[f"results.{dtype}"] = np.concatenate(parts)
        arrays[f"ends.{dtype}"] = np.cumsum([len(p) for p in parts])
    save(arrays, FIXTURE)
    print(f"wrote {FIXTURE}: {len(arrays['cases'])} cases, {os.path.getsize(FIXTURE)} bytes")


if __name__ == "__main__":
    main()
