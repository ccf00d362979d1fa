"""Writes torch_written.safetensors beside this script, with PyTorch's own tooling, for
tests/test_io.py to read (the tests do not import torch). Values are hand-checkable.

    PYTHONPATH=. /path/to/venv-with-torch/bin/python tests/torch_reference/make_safetensors.py

Made with torch 2.13.0 and safetensors 0.8.0. Every entry is arange, in its dtype and shape:
    lstm.weight_ih_l0  float32 (4, 3)   0 .. 11
    lstm.bias_ih_l0    float64 (4,)     0 .. 3
    ids                int64   (2, 3)   0 .. 5
    small              int8    (3,)     -1, 0, 1
    pixels             uint8   (2, 2)   250 .. 253
    mask               bool    (3,)     True, False, True
    step               int32   ()       7
plus the metadata {"format": "pt"}, as Hugging Face's tools write.
"""
from pathlib import Path

import torch
from safetensors.torch import save_file

tensors = {
    "lstm.weight_ih_l0": torch.arange(12, dtype=torch.float32).reshape(4, 3),
    "lstm.bias_ih_l0": torch.arange(4, dtype=torch.float64),
    "ids": torch.arange(6, dtype=torch.int64).reshape(2, 3),
    "small": torch.arange(-1, 2, dtype=torch.int8),
    "pixels": torch.arange(250, 254, dtype=torch.uint8).reshape(2, 2),
    "mask": torch.tensor([True, False, True]),
    "step": torch.tensor(7, dtype=torch.int32),
}
save_file(tensors, Path(__file__).with_name("torch_written.safetensors"), metadata={"format": "pt"})
