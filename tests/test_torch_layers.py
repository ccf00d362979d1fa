"""nn.RNN, nn.LSTM and nn.GRU against PyTorch's: parameter names, outputs, final states and
every gradient, for every configuration.

Each case of torch_reference/layer_cases.py (RNN tanh and relu, LSTM, GRU; 1 to 3 layers;
bidirectional or not; batch_first or not; with or without bias; batched or unbatched;
given initial states or h_0 = None) builds the minigrad layer with PyTorch's constructor
arguments. Its parameters must be named as PyTorch's, in PyTorch's order; it loads the
case's weights with load_state_dict(strict=True), runs on the case's input, and
back-propagates the case's loss. Its outputs and the gradients of the input, the initial
states and every parameter must be PyTorch's to 1e-10 in float64.

PyTorch's results are in torch_reference/layers.npz, written by torch_reference/make_layers.py
(see torch_reference/README.md); PyTorch itself is never imported here.
"""
import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from torch_reference import layer_cases

# Every test runs on every backend: NumPy, the kernels emulated on the CPU, and a GPU.
pytestmark = pytest.mark.usefixtures("on_backend")


@pytest.fixture(scope="module")
def pytorch():
    """{case name: (PyTorch's results, its state_dict's keys)}, read once."""
    return layer_cases.load_fixture()


@pytest.mark.parametrize("case", layer_cases.cases(), ids=lambda case: case.name)
def test_layer_matches_pytorch(case, pytorch):
    expected, keys = pytorch[case.name]
    weights, _ = case.arrays()
    layer = getattr(nn, case.layer)(layer_cases.H_IN, layer_cases.H, **case.kwargs(), dtype="float64")
    assert [name for name, _ in layer.named_parameters()] == keys
    layer.load_state_dict(weights, strict=True)
    results = layer_cases.run(case, layer, mg.tensor)
    assert list(results) == list(expected)
    for name, value in results.items():
        assert value is not None, f"{name}: no gradient"
        np.testing.assert_allclose(value, expected[name], rtol=1e-10, atol=1e-10, err_msg=name)


@pytest.mark.numpy_only("reads the fixture; computes nothing")
def test_fixture_covers_every_case():
    """The fixture holds layer_cases' cases, no more, each a vector of its results' length."""
    cases = layer_cases.cases()
    assert len(cases) == 4 * 3 * 2 ** 5 and len({case.name for case in cases}) == len(cases)
    with np.load(layer_cases.FIXTURE) as fixture:
        assert sorted(fixture.files) == sorted([case.name for case in cases] + ["state_dict_keys"])
        for case in cases:
            case.unpack(fixture[case.name])  # raises unless the length is that of results()
