"""Write ops.npz: what PyTorch computes for every case of ops_cases.py, the reference of
tests/test_ops_more.py.

For each case and dtype (float32, float64) it runs the case's call on PyTorch tensors (the
case's PyTorch spelling where it has one), back-propagates ops_cases' loss, and stores the
outputs and the inputs' gradients in one vector (ops_cases.pack) under "<case>/<dtype>".
Inputs are not stored: the test draws them again from ops_cases.py.

Rerun it from the repository root (PyTorch is not in minigrad's environment, and minigrad
and its tests never import it) with

    PYTHONPATH=. /path/to/python-with-torch tests/torch_reference/make_ops.py

It writes the file atomically (an interrupted run leaves the old one in place), and the same
bytes on every run with the same PyTorch (make_modules.save).
"""
import os
import warnings

import torch

from make_modules import save
from ops_cases import CASES, DTYPES, FIXTURE, key, pack, run


def tensor(array, requires_grad=False):
    return torch.tensor(array, requires_grad=requires_grad)


def main():
    fixture = {}
    with warnings.catch_warnings():  # var/std with N - correction <= 0 warn, on purpose
        warnings.simplefilter("ignore", UserWarning)
        for case in CASES:
            for dtype in DTYPES:
                fixture[key(case, dtype)] = pack(run(case, tensor, dtype, case.pytorch))
    save(fixture, FIXTURE)
    print(f"{FIXTURE}: {len(CASES)} cases, {len(fixture)} arrays, {os.path.getsize(FIXTURE)} bytes")


if __name__ == "__main__":
    main()
