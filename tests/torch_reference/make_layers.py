"""Write layers.npz: what PyTorch's nn.RNN, nn.LSTM and nn.GRU compute for every case of
layer_cases.py, the reference of tests/test_torch_layers.py.

For each case it builds the PyTorch layer in float64, loads the case's weights, runs it on
the case's input and initial states, and back-propagates layer_cases' loss. It stores, under
the case's name, the outputs (output, h_n, c_n) and the gradients (of the input, the initial
states and every parameter) in one vector (layer_cases' Case.pack), and under
"state_dict_keys" the rows [case name, the layer's state_dict keys in order, space-separated].
Inputs and weights are not stored: the test draws them again from layer_cases.py.

Rerun it from the repository root (PyTorch is not in minigrad's environment, and minigrad
and its tests never import it) with

    PYTHONPATH=. /path/to/python-with-torch tests/torch_reference/make_layers.py

It writes the file atomically (an interrupted run leaves the old one in place), and the same
bytes on every run with the same PyTorch (make_modules.save).
"""
import os

import numpy as np
import torch

import layer_cases
from layer_cases import FIXTURE, H, H_IN, cases
from make_modules import save


def run(case):
    """(the case's results packed in one vector, its layer's state_dict keys), from PyTorch."""
    weights, _ = case.arrays()
    layer = getattr(torch.nn, case.layer)(H_IN, H, **case.kwargs(), dtype=torch.float64)
    layer.load_state_dict({name: torch.from_numpy(w) for name, w in weights.items()}, strict=True)
    return case.pack(layer_cases.run(case, layer, torch.tensor)), list(layer.state_dict())


def main():
    fixture, keys = {}, []
    for case in cases():
        fixture[case.name], names = run(case)
        keys.append([case.name, " ".join(names)])
    save({**fixture, "state_dict_keys": np.array(keys)}, FIXTURE)
    print(f"{FIXTURE}: {len(keys)} cases, {os.path.getsize(FIXTURE)} bytes")


if __name__ == "__main__":
    main()
