"""nn.Sequential, nn.ModuleList, nn.ModuleDict: what they hold, how they name it (against
PyTorch's names for the same definitions), indexing, printing, errors."""
import importlib.util
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from helpers import close


# -- Sequential -------------------------------------------------------------------------

def layers():
    return [nn.Linear(3, 4, rng=0), nn.Identity(), nn.Linear(4, 2, rng=1)]


def test_sequential_chains_its_modules_in_order():
    a, b, c = layers()
    x = mg.tensor(np.ones((5, 3), np.float32))
    close(nn.Sequential(a, b, c)(x).data, c(a(x)).data)
    assert nn.Sequential()(x) is x


def test_sequential_indexing_slicing_len_iter_and_append():
    a, b, c = layers()
    seq = nn.Sequential(a, b)
    assert seq[0] is a and seq[-1] is b and seq[np.int64(1)] is b
    assert len(seq) == 2 and list(seq) == [a, b]
    assert seq.append(c) is seq and seq[2] is c
    assert [n for n, _ in seq.named_children()] == ["0", "1", "2"]
    tail = seq[1:]
    assert isinstance(tail, nn.Sequential) and list(tail) == [b, c]
    assert [n for n, _ in tail.named_children()] == ["1", "2"]  # the names are kept, as PyTorch's
    assert list(seq[::-1]) == [c, b, a]


def test_sequential_from_an_ordered_dict_names_by_its_keys():
    a, b, c = layers()
    seq = nn.Sequential(OrderedDict([("embed", a), ("skip", b), ("out", c)]))
    assert list(seq.state_dict()) == ["embed.weight", "embed.bias", "out.weight", "out.bias"]
    assert seq[1] is b and list(seq[1:]._modules) == ["skip", "out"]


def test_sequential_repr_is_pytorchs():
    seq = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.Dropout(0.25), nn.Identity()))
    assert repr(seq) == (
        "Sequential(\n"
        "  (0): Linear(in_features=3, out_features=4, bias=True)\n"
        "  (1): Sequential(\n"
        "    (0): Dropout(p=0.25)\n"
        "    (1): Identity()\n"
        "  )\n"
        ")")


# -- ModuleList ---------------------------------------------------------------------------

def test_module_list_holds_modules_by_position():
    a, b, c = layers()
    lst = nn.ModuleList([a, b])
    assert lst[0] is a and lst[-1] is b and len(lst) == 2 and list(lst) == [a, b]
    assert lst.append(c) is lst and list(lst) == [a, b, c]
    lst[1] = d = nn.Linear(4, 4, rng=2)
    assert list(lst) == [a, d, c]
    assert [n for n, _ in lst.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias",
                                                      "2.weight", "2.bias"]
    lst.insert(0, b)
    assert list(lst) == [b, a, d, c]
    assert [n for n, _ in lst.named_children()] == ["0", "1", "2", "3"]  # renumbered
    del lst[0]
    assert list(lst) == [a, d, c]
    del lst[1:]
    assert list(lst) == [a]
    assert lst.extend([b, c]) is lst and list(lst) == [a, b, c]


def test_module_list_slices_adds_and_extends_with_other_lists():
    a, b, c = layers()
    lst = nn.ModuleList([a, b, c])
    part = lst[1:]
    assert isinstance(part, nn.ModuleList) and list(part) == [b, c]
    assert [n for n, _ in part.named_children()] == ["0", "1"]  # renumbered, as PyTorch's
    both = nn.ModuleList([a]) + nn.ModuleList([b, c])
    assert isinstance(both, nn.ModuleList) and list(both) == [a, b, c]
    grown = nn.ModuleList([a])
    grown += [b]
    assert list(grown) == [a, b] and list(nn.ModuleList().extend(nn.Sequential(a, b))) == [a, b]


def test_module_list_is_not_callable_and_prints_its_modules():
    lst = nn.ModuleList([nn.Identity(), nn.Dropout()])
    with pytest.raises(NotImplementedError,
                       match=r"ModuleList has no forward\(\): call the modules it holds"):
        lst(mg.zeros(1))
    assert repr(lst) == "ModuleList(\n  (0): Identity()\n  (1): Dropout(p=0.5)\n)"
    assert repr(nn.ModuleList()) == "ModuleList()"


# -- ModuleDict ---------------------------------------------------------------------------

def test_module_dict_holds_modules_by_key_in_insertion_order():
    a, b, c = layers()
    heads = nn.ModuleDict({"out": a, "aux": b})
    assert heads["out"] is a and "aux" in heads and "x" not in heads and len(heads) == 2
    assert list(heads) == ["out", "aux"] and list(heads.keys()) == ["out", "aux"]
    assert list(heads.values()) == [a, b] and list(heads.items()) == [("out", a), ("aux", b)]
    heads["extra"] = c
    assert list(heads.state_dict()) == ["out.weight", "out.bias", "extra.weight", "extra.bias"]
    del heads["aux"]
    assert list(heads) == ["out", "extra"]
    assert heads.pop("out") is a and list(heads) == ["extra"]
    heads.update([("p", a), ("q", b)])
    heads.update({"r": c})
    assert list(heads) == ["extra", "p", "q", "r"]
    heads.clear()
    assert len(heads) == 0 and repr(heads) == "ModuleDict()"
    with pytest.raises(KeyError, match="missing"):
        heads["missing"]


def test_module_dict_prints_its_modules_and_is_not_callable():
    heads = nn.ModuleDict({"x": nn.Identity()})
    assert repr(heads) == "ModuleDict(\n  (x): Identity()\n)"
    with pytest.raises(NotImplementedError, match=r"ModuleDict has no forward\(\)"):
        heads(mg.zeros(1))


def test_train_and_eval_reach_the_modules_in_containers():
    model = nn.ModuleDict({"body": nn.Sequential(nn.Dropout(), nn.ModuleList([nn.Dropout()]))})
    model.eval()
    assert len(model.modules()) == 5 and not any(m.training for m in model.modules())
    assert not model["body"][1][0].training
    assert all(m.training for m in model.train().modules())


# -- errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda v: nn.Sequential(nn.Identity(), v),
                                  lambda v: nn.Sequential(OrderedDict(a=v)),
                                  lambda v: nn.Sequential().append(v),
                                  lambda v: nn.ModuleList([nn.Identity(), v]),
                                  lambda v: nn.ModuleList().append(v),
                                  lambda v: nn.ModuleList([nn.Identity()]).insert(0, v),
                                  lambda v: nn.ModuleList([nn.Identity()]).__setitem__(0, v),
                                  lambda v: nn.ModuleDict({"a": v}),
                                  lambda v: nn.ModuleDict().__setitem__("a", v)])
def test_only_modules_go_in(make):
    with pytest.raises(TypeError,
                       match=r"(Sequential|ModuleList|ModuleDict): only Modules go in, got Parameter"):
        make(nn.Parameter([1.0]))


def test_a_failed_insertion_changes_nothing():
    lst = nn.ModuleList([nn.Identity()])
    with pytest.raises(TypeError, match="only Modules go in, got int"):
        lst.extend([nn.Identity(), 3])
    assert len(lst) == 1


@pytest.mark.parametrize("container", [nn.Sequential, lambda *m: nn.ModuleList(m)])
def test_an_index_out_of_range_names_the_index_and_the_length(container):
    c = container(nn.Identity(), nn.Identity())
    who = type(c).__name__
    for index in (2, -3):
        with pytest.raises(IndexError, match=f"{who}: index {index} is out of range for length 2"):
            c[index]
    with pytest.raises(TypeError, match=f"{who}: indices must be integers or slices, got str"):
        c["0"]


def test_module_list_refuses_to_extend_with_what_is_not_iterable():
    with pytest.raises(TypeError, match="ModuleList.extend: expected an iterable of Modules, got Identity"):
        nn.ModuleList(nn.Identity())
    with pytest.raises(IndexError, match="ModuleList: index 1 is out of range for length 1"):
        nn.ModuleList([nn.Identity()])[1] = nn.Identity()


def test_module_dict_keys_are_names_and_update_takes_pairs():
    heads = nn.ModuleDict()
    with pytest.raises(TypeError, match="ModuleDict: a name must be a string, got int"):
        heads[1] = nn.Identity()
    with pytest.raises(KeyError, match="ModuleDict: a name must be non-empty and without a dot, got 'a.b'"):
        heads["a.b"] = nn.Identity()
    with pytest.raises(ValueError,
                       match=r"ModuleDict.update: element #1 must be a \(key, module\) pair, got 'ab'"):
        heads.update([("a", nn.Identity()), "ab"])


# -- against PyTorch: the same definitions, built with either library --------------------

REFERENCE = Path(__file__).parent / "torch_reference"
REF = np.load(REFERENCE / "modules.npz")  # PyTorch's answers, from make_modules.py


def _make_modules():
    """tests/torch_reference/make_modules.py, whose definitions() builds the models in either
    library (it imports PyTorch only when run)."""
    spec = importlib.util.spec_from_file_location("make_modules", REFERENCE / "make_modules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE = _make_modules()
DEFINITIONS = MAKE.definitions(nn, mg.zeros)


@pytest.mark.parametrize("name", list(DEFINITIONS))
def test_names_and_their_order_are_pytorchs_for_the_same_definition(name):
    model = DEFINITIONS[name]()
    for what, listed in MAKE.names(model).items():
        assert listed == list(REF[f"keys.{name}.{what}"]), what  # "state_dict": list(model.state_dict())


def test_a_state_dict_goes_from_one_definition_to_its_twin_and_back():
    a, b = DEFINITIONS["holder"](), DEFINITIONS["holder"]()
    assert b.load_state_dict(a.state_dict()) == ([], [])
    x = mg.tensor(np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32))
    close(b(x).data, a(x).data)
    assert b.shared is b.layers[0]  # a module under two names loads twice, into one module
