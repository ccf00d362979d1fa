"""PyTorch's answers for minigrad's Tensor methods, saved to tests/torch_reference/tensor_methods.npz.

Regenerate from the repository root (PyTorch is needed here only; minigrad never imports it):

    PYTHONPATH=. /path/to/python-with-torch tests/torch_reference/make_tensor_methods.py

For each case of tensor_method_cases.py: PyTorch's output (`<name>/out`) and, for a
differentiable method, the gradient of sum(output * R) with respect to the input (`<name>/grad`),
in float64.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tensor_method_cases as cases  # noqa: E402
from make_modules import save  # noqa: E402


def main():
    arrays = {}
    for case in cases.CASES:
        method, _, args, differentiable, _ = case
        x = torch.tensor(cases.inputs(case), requires_grad=differentiable)
        out = getattr(x, method)(*args)
        key = cases.name(case)
        arrays[key + "/out"] = out.detach().numpy()
        if differentiable:
            (out * torch.tensor(cases.weights(case, tuple(out.shape)))).sum().backward()
            arrays[key + "/grad"] = x.grad.numpy()
    save(arrays, cases.FIXTURE)
    print(f"wrote {cases.FIXTURE}: {len(cases.CASES)} cases")


if __name__ == "__main__":
    main()
