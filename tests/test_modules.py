"""nn.Module, Parameter, Linear and Embedding: discovery, state, initialization, forward, errors."""
import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from helpers import F64, close


class Net(nn.Module):
    def __init__(self):
        self.embed = nn.Embedding(5, 3, rng=0)
        self.scale = nn.Parameter(np.ones(3, np.float32))
        self.head = nn.Linear(3, 2, rng=1)
        self.not_a_parameter = mg.tensor([1.0])

    def forward(self, idx):
        return self.head(self.embed(idx) * self.scale)


def test_parameters_are_found_in_assignment_order_with_dotted_names():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["embed.weight", "scale", "head.weight", "head.bias"]
    assert net.parameters()[2] is net.head.weight
    assert [n for n, _ in net.named_children()] == ["embed", "head"]


def test_a_parameter_requires_grad_and_keeps_float_dtypes():
    p = nn.Parameter(np.zeros(2, np.float64))
    assert isinstance(p, mg.Tensor) and p.requires_grad and p.is_leaf and p.dtype == F64
    assert repr(nn.Parameter([1.0])) == "Parameter containing:\ntensor([1.], requires_grad=True)"
    with pytest.raises(TypeError, match="require grad"):
        nn.Parameter(np.arange(3))


def test_zero_grad_clears_every_parameter():
    net = Net()
    net(np.array([0, 4])).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_repr_nests_like_pytorch():
    assert repr(Net()) == (
        "Net(\n"
        "  (embed): Embedding(5, 3)\n"
        "  (head): Linear(in_features=3, out_features=2, bias=True)\n"
        ")")


# -- state ----------------------------------------------------------------------

def test_state_dict_round_trip_copies_and_casts():
    a, b = Net(), Net()
    b.head.weight.data = b.head.weight.data + 1
    state = a.state_dict()
    assert list(state) == ["embed.weight", "scale", "head.weight", "head.bias"]
    state["scale"][0] = 99                     # a copy: the module is unchanged
    assert a.scale.data[0] == 1
    b.load_state_dict({k: v.astype(np.float64) for k, v in a.state_dict().items()})
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data)
        assert q.dtype == np.float32           # cast to the module's dtype


def test_load_state_dict_replaces_arrays_so_records_keep_their_values():
    lin = nn.Linear(2, 1, bias=False, dtype="float64", rng=0)
    x = mg.tensor(np.ones((1, 2)), requires_grad=True)
    old = lin.weight.data.copy()
    y = lin(x).sum()
    lin.load_state_dict({"weight": np.zeros((1, 2))})
    y.backward()
    np.testing.assert_array_equal(x.grad, old)
    np.testing.assert_array_equal(lin.weight.data, 0)


def test_load_state_dict_checks_keys_and_shapes_and_changes_nothing_on_error():
    net = Net()
    before = net.state_dict()
    bad = dict(before, **{"head.weight": np.zeros((3, 2))})
    with pytest.raises(ValueError, match=r"head\.weight: expected shape \(2, 3\), got \(3, 2\)"):
        net.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"missing keys \['scale'\], unexpected keys \['extra'\]"):
        net.load_state_dict({**{k: v for k, v in before.items() if k != "scale"}, "extra": np.ones(1)})
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    net.load_state_dict({"scale": np.full(3, 2.0), "extra": np.ones(1)}, strict=False)
    np.testing.assert_array_equal(net.scale.data, 2.0)


def test_to_cpu_is_identity_and_cuda_without_cupy_is_a_clear_error(no_cupy):
    net = Net()
    assert net.to("cpu") is net
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        net.to("cuda")


# -- Linear -----------------------------------------------------------------------

def test_linear_computes_x_w_transpose_plus_b():
    lin = nn.Linear(3, 2, dtype="float64", rng=0)
    lin.load_state_dict({"weight": [[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]], "bias": [0.5, -0.5]})
    x = np.array([[1.0, 1.0, 2.0], [0.0, 2.0, -2.0]])
    close(lin(mg.tensor(x)).data, [[1 + 2 + 6 + 0.5, -1 + 1 - 0.5], [4 - 6 + 0.5, -2 - 1 - 0.5]])
    assert lin(mg.tensor(np.ones((4, 5, 3)))).shape == (4, 5, 2)


def test_linear_shapes_dtype_and_pytorch_initialization():
    lin = nn.Linear(400, 30, rng=0)
    assert lin.weight.shape == (30, 400) and lin.bias.shape == (30,)
    assert lin.weight.dtype == np.float32
    bound = 1 / np.sqrt(400)                         # U(-1/sqrt(in), 1/sqrt(in))
    w = lin.weight.data
    assert -bound <= w.min() and w.max() <= bound and w.max() > 0.95 * bound
    assert abs(w.mean()) < 0.05 * bound
    assert nn.Linear(3, 2, bias=False).bias is None
    assert [n for n, _ in nn.Linear(3, 2, bias=False).named_parameters()] == ["weight"]
    np.testing.assert_array_equal(nn.Linear(3, 2, rng=5).weight.data, nn.Linear(3, 2, rng=5).weight.data)


@pytest.mark.parametrize("args", [(0, 2), (3, -1), (2.5, 2)])
def test_linear_rejects_bad_sizes(args):
    with pytest.raises(ValueError, match="Linear: .* must be an integer >= 1"):
        nn.Linear(*args)


def test_linear_rejects_a_non_float_dtype():
    with pytest.raises(TypeError, match="Linear: dtype must be float32 or float64, got int64"):
        nn.Linear(2, 2, dtype="int64")


def test_linear_gradients_pass_a_float64_gradcheck():
    lin = nn.Linear(3, 2, dtype="float64", rng=0)
    x = mg.tensor(np.random.default_rng(1).standard_normal((4, 3)), requires_grad=True)

    def f(x, w, b):
        lin.weight, lin.bias = w, b
        return lin(x).tanh()
    assert mg.gradcheck(f, [x, lin.weight, lin.bias])


# -- Embedding ------------------------------------------------------------------------

def test_embedding_looks_up_rows_and_adds_gradients_of_repeated_indices():
    emb = nn.Embedding(4, 2, dtype="float64", rng=0)
    emb.load_state_dict({"weight": [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]]})
    idx = np.array([[1, 3], [1, 0]])
    out = emb(idx)
    close(out.data, [[[2, 3], [6, 7]], [[2, 3], [0, 1]]])
    out.backward(np.ones((2, 2, 2)))
    close(emb.weight.grad, [[1, 1], [2, 2], [0, 0], [1, 1]])     # row 1 used twice
    assert emb(mg.arange(3)).shape == (3, 2)                     # an integer tensor works too


def test_embedding_initialization_is_standard_normal():
    w = nn.Embedding(1000, 20, rng=0).weight.data
    assert w.dtype == np.float32 and abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02


def test_embedding_rejects_bad_indices():
    emb = nn.Embedding(4, 2)
    with pytest.raises(ValueError, match="Embedding: index 4 is out of range for 4 embeddings"):
        emb(np.array([0, 4]))
    with pytest.raises(ValueError, match="Embedding: index -1 is out of range"):
        emb(np.array([-1]))
    with pytest.raises(TypeError, match="Embedding: indices must be integers, got dtype float64"):
        emb(np.array([0.0]))
