"""nn.Module, Parameter, Linear, Embedding and Identity: discovery, modes, buffers, state,
initialization, forward, errors. The containers are in test_containers.py."""
import re
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from minigrad.nn import functional as F
from minigrad.backends import devices
from helpers import F64, close

# PyTorch's answers, from tests/torch_reference/make_modules.py
REF = np.load(Path(__file__).parent / "torch_reference" / "modules.npz")


class Net(nn.Module):
    def __init__(self):
        self.embed = nn.Embedding(5, 3, rng=0)
        self.scale = nn.Parameter(np.ones(3, np.float32))
        self.head = nn.Linear(3, 2, rng=1)
        self.not_a_parameter = mg.tensor([1.0])

    def forward(self, idx):
        return self.head(self.embed(idx) * self.scale)


def test_parameters_are_found_with_dotted_names_in_pytorchs_order():
    net = Net()  # own parameters first, then each child's, whatever the order of assignment
    assert [n for n, _ in net.named_parameters()] == ["scale", "embed.weight", "head.weight", "head.bias"]
    assert net.parameters()[2] is net.head.weight
    assert [n for n, _ in net.named_children()] == ["embed", "head"]
    assert [n for n, _ in net.named_parameters(recurse=False)] == ["scale"]
    assert [n for n, _ in net.head.named_parameters(prefix="head")] == ["head.weight", "head.bias"]


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


# -- the tree: modes, traversal, buffers ------------------------------------------------

class Tree(nn.Module):
    """A child held under two names (a and b) and a Dropout a level down."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 2, rng=0)
        self.inner = nn.Sequential(nn.Dropout(0.5), nn.Linear(2, 2, rng=1))
        self.b = self.a


def test_train_and_eval_reach_every_descendant_and_return_self():
    tree = Tree()
    assert all(m.training for m in tree.modules())
    assert tree.eval() is tree
    assert not any(m.training for m in tree.modules())
    assert tree.inner.train() is tree.inner
    assert [m.training for m in tree.modules()] == [False, False, True, True, True]
    assert tree.train(True) is tree and all(m.training for m in tree.modules())


def test_training_holds_without_super_init_and_the_mode_must_be_a_bool():
    net = Net()  # its __init__ never calls super().__init__()
    assert net.training and "training" not in vars(net)
    net.eval()
    assert not net.training and not net.head.training
    with pytest.raises(ValueError, match="train: the training mode is expected to be a bool, got 'yes'"):
        net.train("yes")
    with pytest.raises(ValueError, match="expected to be a bool, got 1"):
        net.train(1)


def test_named_modules_lists_each_module_once_self_first_as_pytorch():
    tree = Tree()
    assert [n for n, _ in tree.named_modules()] == ["", "a", "inner", "inner.0", "inner.1"]
    assert [n for n, _ in tree.named_modules(remove_duplicate=False)] == ["", "a", "inner", "inner.0",
                                                                          "inner.1", "b"]
    assert [n for n, _ in tree.named_modules(prefix="m")] == ["m", "m.a", "m.inner", "m.inner.0", "m.inner.1"]
    assert tree.modules()[:2] == [tree, tree.a]
    assert [n for n, _ in tree.named_children()] == ["a", "inner"] and tree.children() == [tree.a, tree.inner]


def test_a_shared_module_gives_its_parameters_once_and_its_state_under_both_names():
    tree = Tree()
    assert [n for n, _ in tree.named_parameters()] == ["a.weight", "a.bias", "inner.1.weight", "inner.1.bias"]
    assert len(list(tree.named_parameters(remove_duplicate=False))) == 6
    assert list(tree.state_dict()) == ["a.weight", "a.bias", "inner.1.weight", "inner.1.bias",
                                       "b.weight", "b.bias"]
    tree.inner[1].weight = tree.a.weight  # tied weights
    assert [n for n, _ in tree.named_parameters()] == ["a.weight", "a.bias", "inner.1.bias"]
    assert "(b): Linear(" in repr(tree)


def test_apply_visits_the_children_first_then_self_and_returns_self():
    tree, seen = Tree(), []
    assert tree.apply(lambda m: seen.append(type(m).__name__)) is tree
    assert seen == ["Linear", "Dropout", "Linear", "Sequential", "Tree"]


def test_requires_grad_switches_every_parameter_and_returns_self():
    tree = Tree().eval()
    assert tree.requires_grad_(False) is tree
    assert not any(p.requires_grad for p in tree.parameters())
    x = mg.tensor(np.ones((1, 2), np.float32), requires_grad=True)
    tree.inner(tree.a(x)).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in tree.parameters())
    assert all(p.requires_grad for p in tree.requires_grad_().parameters())


class Normalizer(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2, rng=0)
        self.register_buffer("mean", mg.zeros(2))
        self.register_buffer("steps", mg.zeros(1, dtype="int64"))
        self.register_buffer("scratch", mg.ones(2), persistent=False)
        self.register_buffer("unset", None)
        self.gain = nn.Parameter(np.ones(2, np.float32))


def test_buffers_are_owned_and_saved_when_persistent_but_never_trained():
    m = Normalizer()
    assert [n for n, _ in m.named_buffers()] == ["mean", "steps", "scratch"]
    assert m.buffers()[0] is m.mean and m.unset is None
    assert [n for n, _ in m.named_parameters()] == ["gain", "lin.weight", "lin.bias"]
    assert list(m.state_dict()) == ["gain", "mean", "steps", "lin.weight", "lin.bias"]
    m.mean = mg.tensor([1.0, 2.0])  # assigned later: still a buffer, in its place
    m.unset = mg.ones(3)
    assert list(m.state_dict()) == ["gain", "mean", "steps", "unset", "lin.weight", "lin.bias"]
    np.testing.assert_array_equal(m.state_dict()["mean"], [1, 2])
    mean = m.mean
    m.load_state_dict({**m.state_dict(), "mean": np.array([5.0, 6.0]), "steps": np.array([3.0])})
    assert m.mean is mean and m.mean.data.tolist() == [5, 6]
    assert m.steps.dtype == np.int64 and m.steps.data.tolist() == [3]
    with pytest.raises(RuntimeError, match='Missing key\\(s\\) in state_dict: "unset"'):
        m.load_state_dict({k: v for k, v in m.state_dict().items() if k != "unset"})


def test_to_moves_the_buffers_too_keeping_them_the_same_objects(monkeypatch):
    m = Normalizer()
    mean, scratch = m.mean, m.scratch
    moved = []  # a pretend device: to_device copies and counts
    monkeypatch.setattr(devices, "parse_device", lambda device: device)
    monkeypatch.setattr(devices, "to_device", lambda array, device: moved.append(array) or array.copy())
    assert m.to("cuda:0") is m
    assert m.mean is mean and m.scratch is scratch
    assert {t.device for t in m.parameters() + m.buffers()} == {"cuda:0"} and len(moved) == 6


def test_register_buffer_refuses_bad_names_and_values():
    m = Normalizer()
    for name in ("a.b", ""):
        with pytest.raises(KeyError, match=f"register_buffer: a name must be non-empty and without a dot, "
                                           f"got '{re.escape(name)}'"):
            m.register_buffer(name, mg.zeros(1))
    with pytest.raises(TypeError, match="register_buffer: a name must be a string, got int"):
        m.register_buffer(1, mg.zeros(1))
    for name in ("lin", "gain", "training", "forward"):
        with pytest.raises(KeyError, match=f"register_buffer: Normalizer already has an attribute {name!r}"):
            m.register_buffer(name, mg.zeros(1))
    with pytest.raises(TypeError, match="buffer 'w' must be a Tensor that is not a Parameter, or None; "
                                        "got int"):
        m.register_buffer("w", 3)
    with pytest.raises(TypeError, match="buffer 'w' must be .*; got Parameter"):
        m.register_buffer("w", nn.Parameter([1.0]))
    m.register_buffer("mean", None)  # registering a buffer again replaces it
    assert [n for n, _ in m.named_buffers()] == ["steps", "scratch"]


# -- state ----------------------------------------------------------------------

def test_state_dict_round_trip_copies_and_casts():
    a, b = Net(), Net()
    b.head.weight.data = b.head.weight.data + 1
    state = a.state_dict()
    assert list(state) == ["scale", "embed.weight", "head.weight", "head.bias"]
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
    bad = dict(before, **{"head.weight": np.zeros((3, 2)), "scale": np.zeros(4)})
    with pytest.raises(RuntimeError, match=r"load_state_dict: Net: size mismatch for scale: expected shape "
                                         r"\(3,\), got \(4,\); head\.weight: expected shape \(2, 3\), "
                                         r"got \(3, 2\)"):
        net.load_state_dict(bad)
    with pytest.raises(RuntimeError, match=r"head\.weight: expected shape"):  # strict or not
        net.load_state_dict(bad, strict=False)
    with pytest.raises(RuntimeError, match=r'error\(s\) in loading state_dict for Net:\n'
                                           r'\tMissing key\(s\) in state_dict: "scale"\.\n'
                                           r'\tUnexpected key\(s\) in state_dict: "extra"\.'):
        net.load_state_dict({**{k: v for k, v in before.items() if k != "scale"}, "extra": np.ones(1)})
    with pytest.raises(RuntimeError, match=r'for Net:\n\tUnexpected key\(s\) in state_dict: "x", "y"\.$'):
        net.load_state_dict({**before, "x": 1, "y": 2})
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    result = net.load_state_dict({"scale": np.full(3, 2.0), "extra": np.ones(1)}, strict=False)
    np.testing.assert_array_equal(net.scale.data, 2.0)
    assert result == (["embed.weight", "head.weight", "head.bias"], ["extra"])
    assert result.missing_keys == ["embed.weight", "head.weight", "head.bias"]
    assert result.unexpected_keys == ["extra"] and isinstance(result, nn.IncompatibleKeys)


def test_load_state_dict_says_when_all_keys_matched_as_pytorch():
    net = Net()
    assert repr(net.load_state_dict(net.state_dict())) == "<All keys matched successfully>"
    assert repr(net.load_state_dict({}, strict=False)).startswith("IncompatibleKeys(missing_keys=['scale'")


def test_load_state_dict_refuses_what_is_not_numbers_naming_the_key():
    net = Net()
    with pytest.raises(TypeError, match="load_state_dict: scale: expected numbers, got dtype <U1"):
        net.load_state_dict({**net.state_dict(), "scale": np.array(["a", "b", "c"])})
    with pytest.raises(TypeError, match="load_state_dict: scale: expected numbers, got dtype object"):
        net.load_state_dict({**net.state_dict(), "scale": [None, 1, 2]})
    with pytest.raises(TypeError, match="load_state_dict: expected a dict of arrays, got list"):
        net.load_state_dict([("scale", np.ones(3))])


# -- values from other libraries: PyTorch tensors as the fixtures' generator loads them for real

class DLPackOnly:
    """Offers its data through DLPack alone, as a CPU tensor of a library that NumPy knows nothing of."""

    def __init__(self, array, requires_grad=False):
        self._array, self.requires_grad = array, requires_grad

    def __dlpack__(self, **kwargs):
        if self.requires_grad:  # PyTorch's rule
            raise BufferError("Can't export tensors that require gradient, use tensor.detach()")
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()

    def detach(self):
        return DLPackOnly(self._array)


class NumpyMethodOnly:
    def __init__(self, array):
        self._array = array

    def numpy(self):
        return self._array


class ArrayProtocolOnly:
    def __init__(self, array):
        self._array = array

    def __array__(self, dtype=None, copy=None):
        return self._array


@pytest.mark.parametrize("wrap", [DLPackOnly, lambda a: DLPackOnly(a, requires_grad=True), NumpyMethodOnly,
                                  ArrayProtocolOnly, mg.tensor, nn.Parameter, lambda a: a.tolist()],
                         ids=["dlpack", "dlpack-requires-grad", "numpy-method", "array-protocol", "tensor",
                              "parameter", "list"])
def test_load_state_dict_takes_values_of_other_libraries(wrap):
    net, arrays = Net(), Net().state_dict()
    arrays["head.weight"] += 1                       # so that loading changes something
    weight = net.head.weight
    assert net.load_state_dict({k: wrap(v) for k, v in arrays.items()}) == ([], [])
    assert net.head.weight is weight                 # the same Parameter, with new values
    for name, p in net.named_parameters():
        np.testing.assert_array_equal(p.data, arrays[name])
    arrays["head.weight"][...] = 7                   # the module holds copies
    assert not (weight.data == 7).any()


class OnAGpu(DLPackOnly):
    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA


def test_load_state_dict_of_gpu_data_through_dlpack_needs_cupy(no_cupy):
    lin = nn.Linear(2, 1, bias=False)
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        lin.load_state_dict({"weight": OnAGpu(np.ones((1, 2)))})


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
    with pytest.raises(ValueError, match="embedding: index 4 is out of range for 4 embeddings"):
        emb(np.array([0, 4]))
    with pytest.raises(ValueError, match="embedding: index -1 is out of range"):
        emb(np.array([-1]))
    with pytest.raises(TypeError, match="embedding: indices must be integers, got dtype float64"):
        emb(np.array([0.0]))


def test_embedding_padding_row_starts_at_zero_and_gets_no_gradient():
    emb = nn.Embedding(6, 3, padding_idx=-2, dtype="float64", rng=0)
    assert emb.padding_idx == 4 == REF["embedding.module_padding_idx"]  # counted from the end, as PyTorch
    assert (emb.weight.data[4] == 0).all() and (emb.weight.data[:4] != 0).all()
    assert repr(emb) == "Embedding(6, 3, padding_idx=4)"
    emb.weight.data = emb.weight.data + 1  # the padding row's values are used as they are
    out = emb(np.array([4, 1, 4]))
    close(out.data[0], 1)
    out.backward(np.ones((3, 3)))
    close(emb.weight.grad, [[0] * 3, [1] * 3, [0] * 3, [0] * 3, [0] * 3, [0] * 3])


def test_embedding_with_a_padding_row_matches_pytorch(on_backend):
    weight = mg.tensor(REF["embedding.weight"], requires_grad=True)
    y = F.embedding(REF["embedding.indices"], weight, padding_idx=int(REF["embedding.padding_idx"]))
    close(y.data, REF["embedding.y"])
    y.backward(REF["embedding.g"])
    close(weight.grad, REF["embedding.g_weight"])


def test_embedding_with_a_padding_row_passes_a_float64_gradcheck(rng):
    # NOTE: the padding row gets no gradient by design, though the output depends on it; so it is
    # held constant here, and the rows around it (picked along with it) are checked.
    idx = np.array([[1, 4, 0, 1], [5, 4, 2, 3]])
    pad = mg.tensor(rng.standard_normal((1, 3)))

    def f(top, bottom):
        return F.embedding(idx, mg.concat([top, pad, bottom]), padding_idx=4).tanh()
    top, bottom = (mg.tensor(rng.standard_normal((n, 3)), requires_grad=True) for n in (4, 1))
    assert mg.gradcheck(f, [top, bottom])


@pytest.mark.parametrize("padding_idx", [6, -7, 1.0, True])
def test_embedding_rejects_a_padding_row_out_of_range(padding_idx):
    with pytest.raises(ValueError, match=r"Embedding: padding_idx must be an integer in \[-6, 6\) for 6 "
                                         f"embeddings, got {padding_idx!r}"):
        nn.Embedding(6, 3, padding_idx=padding_idx)
    with pytest.raises(ValueError, match="embedding: padding_idx must be an integer"):
        F.embedding(np.array([0]), mg.zeros(6, 3), padding_idx=padding_idx)


# -- Identity -----------------------------------------------------------------------------

def test_identity_returns_its_input_and_ignores_its_arguments():
    x = mg.tensor([1.0, 2.0])
    assert nn.Identity(3, unused="yes")(x) is x
    assert repr(nn.Identity()) == "Identity()" and nn.Identity().parameters() == []


# -- PyTorch's reading of arguments and calls (review of issue 17) ---------------------------

def test_train_calls_each_childs_own_train_as_pytorch():
    class Frozen(nn.Module):  # keeps its dropout off whatever the parent's mode
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.5)

        def train(self, mode=True):
            super().train(mode)
            self.drop.training = False
            return self
    net = nn.Sequential(nn.Linear(2, 2), Frozen())
    net.train()
    assert net.training and net[0].training and net[1].training and not net[1].drop.training


def test_dropouts_fourth_argument_is_not_read_as_a_seed():
    x = mg.ones(4, 4)
    with pytest.raises(TypeError, match="positional argument"):  # PyTorch's 4th is inplace
        nn.functional.dropout(x, 0.5, True, False)
    with pytest.raises(TypeError, match="dropout: training must be True or False, got 1"):
        nn.functional.dropout(x, 0.5, 1)
    with pytest.raises(TypeError, match="rng: expected an int seed or a numpy.random.Generator, got bool"):
        nn.Linear(2, 3, rng=True)


def test_layer_norm_refuses_a_negative_or_non_number_eps_and_non_bool_flags():
    with pytest.raises(ValueError, match="LayerNorm: eps must be a number >= 0, got -1"):
        nn.LayerNorm(4, -1)
    with pytest.raises(ValueError, match="layer_norm: eps must be a number >= 0, got 'a'"):
        nn.functional.layer_norm(mg.ones(2, 4), 4, eps="a")
    with pytest.raises(TypeError, match="LayerNorm: elementwise_affine must be True or False, got int 1"):
        nn.LayerNorm(4, 1e-5, 1)


def test_module_dict_takes_another_module_dict():
    a = nn.ModuleDict({"x": nn.Identity(), "y": nn.Linear(2, 2)})
    b = nn.ModuleDict(a)
    b.update(nn.ModuleDict({"z": nn.Identity()}))
    assert list(b.keys()) == ["x", "y", "z"] and b["y"] is a["y"]
