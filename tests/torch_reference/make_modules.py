"""PyTorch's answers for minigrad's module tests, saved to tests/torch_reference/modules.npz.

Regenerate from the repository root (PyTorch is needed here only; minigrad never imports it):

    PYTHONPATH=. /path/to/python-with-torch tests/torch_reference/make_modules.py

What it saves (tests/test_containers.py and tests/test_dropout_layernorm.py read it):
- for each model of definitions() below, built with torch.nn: the names of its state_dict,
  named_parameters, named_buffers and named_modules, in PyTorch's order;
- layer_norm and embedding (with padding_idx) in float64: inputs, outputs and gradients.
It also checks what the tests cannot, since they never import PyTorch: each model built with
minigrad.nn loads the PyTorch model's own tensors (its state_dict(), and its parameters, which
require grad) and computes the same outputs.
The file is replaced atomically (minigrad.io.atomic_file: a temporary file, then a rename),
and its zip entries carry a fixed date, so that a re-run with the same PyTorch writes the
same bytes.
"""
import io
import os
import zipfile
from collections import OrderedDict

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "modules.npz")

# (x's shape, normalized_shape, which of weight and bias, eps)
LAYER_NORM_CASES = [((2, 3, 5), (5,), "weight bias", 1e-5),
                    ((2, 3, 4), (3, 4), "weight bias", 1e-5),
                    ((4, 6), (6,), "", 1e-5),
                    ((3, 2, 2), (2, 2), "weight", 0.1)]


def definitions(nn, zeros):
    """The models, written once for both libraries: nn is torch.nn or minigrad.nn, zeros is
    torch.zeros or minigrad.zeros. Returns {name: a function that builds the model}; each
    model maps x: (batch, 3) to (batch, 2)."""

    class Holder(nn.Module):  # a ModuleList, a ModuleDict, a layer under two names, a parameter last
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(3, 4), nn.LayerNorm(4)])
            self.heads = nn.ModuleDict({"out": nn.Linear(4, 2), "aux": nn.Linear(4, 2, bias=False)})
            self.shared = self.layers[0]
            self.scale = nn.Parameter(zeros(2))

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return self.heads["out"](x) + self.heads["aux"](x) + self.scale

    class Counter(nn.Module):  # buffers only
        def __init__(self):
            super().__init__()
            self.register_buffer("count", zeros(1))

    class WithBuffers(nn.Module):  # buffers persistent, not persistent and None; a child's too
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)
            self.register_buffer("running", zeros(2))
            self.register_buffer("scratch", zeros(2), persistent=False)
            self.register_buffer("absent", None)
            self.offset = nn.Parameter(zeros(2))
            self.counter = Counter()

        def forward(self, x):
            return self.lin(x) + self.running + self.offset + self.counter.count

    return {
        "sequential": lambda: nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Dropout(0.1),
                                            nn.Identity(), nn.Linear(4, 2)),
        "named": lambda: nn.Sequential(OrderedDict([
            ("encoder", nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4, bias=False))),
            ("drop", nn.Dropout()),
            ("norm", nn.LayerNorm(4, elementwise_affine=False)),
            ("out", nn.Linear(4, 2, bias=False))])),
        "holder": Holder,
        "buffers": WithBuffers,
    }


def names(model):
    """The names PyTorch lists for a model, in its order."""
    return {"state_dict": list(model.state_dict()),
            "parameters": [n for n, _ in model.named_parameters()],
            "buffers": [n for n, _ in model.named_buffers()],
            "modules": [n for n, _ in model.named_modules()]}


def check_twin(torch, mg, model, twin, x):
    """minigrad's twin loads the PyTorch model's tensors as they come and computes the same."""
    assert names(twin) == names(model), (names(twin), names(model))
    result = twin.load_state_dict(model.state_dict())
    assert tuple(result) == ([], []), result
    parameters = dict(model.named_parameters())  # these require grad: DLPack refuses them undetached
    assert tuple(twin.load_state_dict(parameters, strict=False)) == \
        tuple(model.load_state_dict(parameters, strict=False))
    model.eval(), twin.eval()
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(twin(mg.tensor(x)).numpy(), want, rtol=1e-5, atol=1e-6)


def layer_norm_case(torch, rng, x_shape, shape, affine, eps):
    x = rng.standard_normal(x_shape)
    weight = rng.standard_normal(shape) if "weight" in affine else None
    bias = rng.standard_normal(shape) if "bias" in affine else None
    g = rng.standard_normal(x_shape)
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in (("x", x), ("weight", weight),
                                                                  ("bias", bias)) if v is not None}
    y = torch.nn.functional.layer_norm(leaves["x"], shape, leaves.get("weight"), leaves.get("bias"), eps)
    y.backward(torch.from_numpy(g))
    case = {"normalized_shape": np.array(shape), "eps": np.array(eps), "g": g, "y": y.detach().numpy()}
    for k, t in leaves.items():
        case[k], case["g_" + k] = t.detach().numpy(), t.grad.numpy()
    return case


def embedding_case(torch, rng):
    """Six rows, the padding row -2 (= 4) among the picked ones, row 1 picked twice."""
    weight = torch.tensor(rng.standard_normal((6, 3)), requires_grad=True)
    indices = np.array([[1, 4, 0, 1], [5, 4, 2, 3]])
    g = rng.standard_normal((2, 4, 3))
    y = torch.nn.functional.embedding(torch.from_numpy(indices), weight, padding_idx=-2)
    y.backward(torch.from_numpy(g))
    return {"weight": weight.detach().numpy(), "indices": indices, "padding_idx": np.array(-2), "g": g,
            "y": y.detach().numpy(), "g_weight": weight.grad.numpy(),
            "module_padding_idx": np.array(torch.nn.Embedding(6, 3, padding_idx=-2).padding_idx)}


def save(arrays, path=OUT):
    """Write arrays as numpy.savez_compressed would, with a fixed date, atomically."""
    from minigrad.io import atomic_file
    with atomic_file(path, "wb") as f, zipfile.ZipFile(f, "w") as z:
        for name in sorted(arrays):
            data = io.BytesIO()
            np.lib.format.write_array(data, np.asarray(arrays[name]), allow_pickle=False)
            entry = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            z.writestr(entry, data.getvalue(), compress_type=zipfile.ZIP_DEFLATED)


def main():
    import torch

    import minigrad as mg
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    arrays = {}
    twins = definitions(mg.nn, mg.zeros)
    for name, build in definitions(torch.nn, torch.zeros).items():
        model = build()
        with torch.no_grad():  # values other than the initial ones (LayerNorm's ones, zeros)
            for t in model.state_dict().values():
                t.normal_()
        for what, listed in names(model).items():
            arrays[f"keys.{name}.{what}"] = np.array(listed, dtype=str)
        check_twin(torch, mg, model, twins[name](), x)
    for i, case in enumerate(LAYER_NORM_CASES):
        arrays.update({f"layer_norm.{i}.{k}": v for k, v in layer_norm_case(torch, rng, *case).items()})
    arrays.update({f"embedding.{k}": v for k, v in embedding_case(torch, rng).items()})
    save(arrays)
    print(f"wrote {OUT}: {len(arrays)} arrays, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
