"""minigrad.io: save/load round trips of nested structures, the file format and its entry names,
errors, atomic writes; safetensors files.

A round trip must give back exactly what went in: the same container types (tuples
stay tuples, int keys stay ints), the same numbers (nan, inf, -0.0, 128-bit ints),
and arrays with the same dtype, shape and bits. The file must be a plain .npz that
NumPy reads without pickle, with each array under a name that says where it sits, and a
failed or interrupted write must leave the previous file exactly as it was, with no
temporary file left behind. Files of format 1 (arrays named a0, a1, ...) still load.

safetensors: round trips, a Module through a file, a file written by PyTorch's tooling
(tests/torch_reference/make_safetensors.py), and what cannot be written or read.
"""
import json
import math
import os
import re
import stat
import struct
from pathlib import Path

import numpy as np
import pytest
import safetensors

import minigrad as mg
import minigrad.io
from minigrad import nn, optim
from minigrad.io import atomic_file, load, load_safetensors, save, save_safetensors
from minigrad.nn import functional as F


def same(a, b):
    """Equal as structures, with arrays compared by dtype, shape and bits (so nan == nan)."""
    assert type(a) is type(b), f"{type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    elif isinstance(a, dict):
        assert [(type(k), k) for k in a] == [(type(k), k) for k in b]   # int keys stay ints
        for k in a:
            same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    else:
        assert a == b


def round_trip(tmp_path, **objects):
    path = tmp_path / "objects.npz"
    save(path, **objects)
    return load(path)


# -- round trips --------------------------------------------------------------------

def test_nested_containers_keep_their_types_and_int_keys_stay_ints(tmp_path):
    value = {
        "name": "run ✓",                     # non-ASCII text survives the JSON
        3: "three",
        "3": "the string three",             # must not collide with the int key 3
        -1: [1, (2, 3), [], (), {}],
        "nested": {"a": {"b": {0: (None, True, False)}}},
        "empty": "",
    }
    loaded = round_trip(tmp_path, value=value, top_list=[1, [2, [3]]], top_tuple=(None,))
    same(loaded, {"value": value, "top_list": [1, [2, [3]]], "top_tuple": (None,)})
    assert set(map(type, loaded["value"])) == {str, int}
    assert loaded["value"][3] == "three" and loaded["value"]["3"] == "the string three"
    assert isinstance(loaded["value"][-1][1], tuple) and isinstance(loaded["value"][-1][0], int)


def test_scalars_round_trip_exactly(tmp_path):
    floats = [0.1, -0.0, 1e-310, 1.7976931348623157e308, float("inf"), float("-inf"), float("nan")]
    ints = [0, -7, 2**63, 2**127 + 12345, -(2**100), 2**200]
    loaded = round_trip(tmp_path, floats=floats, ints=ints, t=True, f=False, none=None, s="x\n\"y\"")
    same(loaded, {"floats": floats, "ints": ints, "t": True, "f": False, "none": None, "s": "x\n\"y\""})
    assert type(loaded["t"]) is bool and type(loaded["ints"][3]) is int


def test_numpy_scalars_come_back_as_python_numbers(tmp_path):
    loaded = round_trip(tmp_path, i=np.int64(-3), f=np.float32(2.5), b=np.bool_(True), d=np.float64(0.25))
    same(loaded, {"i": -3, "f": 2.5, "b": True, "d": 0.25})


def test_a_pcg64_state_with_128_bit_ints_restores_the_generator(tmp_path):
    rng = np.random.default_rng(12345)
    rng.standard_normal(7)                   # move it off its seed state
    state = rng.bit_generator.state
    assert state["state"]["state"] >= 2**64 or state["state"]["inc"] >= 2**64  # really 128-bit
    expected = rng.standard_normal(5)
    loaded = round_trip(tmp_path, rng=state)["rng"]
    assert loaded == state
    fresh = np.random.default_rng(0)
    fresh.bit_generator.state = loaded
    np.testing.assert_array_equal(fresh.standard_normal(5), expected)


ARRAYS = {
    "f32": np.array([[1.5, -0.0], [np.nan, np.inf]], np.float32),
    "f64": np.random.default_rng(0).standard_normal((2, 3, 4)),
    "i64": np.array([-(2**63), 2**63 - 1, 0], np.int64),
    "bool": np.array([[True, False, True]]),
    "f32_0d": np.array(3.25, np.float32),
    "f64_0d": np.array(np.nan),
    "i64_0d": np.array(-5, np.int64),
    "bool_0d": np.array(False),
    "f32_empty": np.zeros((0,), np.float32),
    "f64_empty": np.zeros((3, 0, 2)),
    "i64_empty": np.zeros((0, 4), np.int64),
    "bool_empty": np.zeros((0,), bool),
    "u8": np.arange(5, dtype=np.uint8),
    "f16": np.array([1.0, 65504.0], np.float16),
}


@pytest.mark.parametrize("name", list(ARRAYS))
def test_arrays_keep_dtype_shape_and_bits(tmp_path, name):
    loaded = round_trip(tmp_path, x=ARRAYS[name], inside={"list": [ARRAYS[name]]})
    same(loaded["x"], ARRAYS[name])
    same(loaded["inside"]["list"][0], ARRAYS[name])


def test_many_arrays_in_one_file_and_views_are_saved_by_value(tmp_path):
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    views = {"t": base.T, "strided": base[::2, 1::3], "fortran": np.asfortranarray(base)}
    loaded = round_trip(tmp_path, all=ARRAYS, views=views)
    same(loaded["all"], ARRAYS)
    for k, v in views.items():
        assert loaded["views"][k].shape == v.shape
        np.testing.assert_array_equal(loaded["views"][k], v)


def test_a_module_and_an_adam_state_dict_resume_to_the_same_next_step(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))

    def step(model, opt):
        opt.zero_grad()
        F.mse_loss(model(mg.tensor(x)), mg.tensor(y)).backward()
        opt.step()

    model = nn.Linear(3, 2, dtype="float64", rng=1)
    opt = optim.Adam(model.parameters(), lr=0.05, betas=(0.8, 0.9))
    step(model, opt)
    save(tmp_path / "ckpt.npz", model=model.state_dict(), optimizer=opt.state_dict(), step=1)

    loaded = load(tmp_path / "ckpt.npz")
    same(loaded["model"], model.state_dict())
    same(loaded["optimizer"], opt.state_dict())
    assert list(loaded["optimizer"]["state"]) == [0, 1]         # parameter indices: ints
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.9)

    other = nn.Linear(3, 2, dtype="float64", rng=99)             # different weights until loaded
    other_opt = optim.Adam(other.parameters(), lr=1.0)
    other.load_state_dict(loaded["model"])
    other_opt.load_state_dict(loaded["optimizer"])
    step(model, opt)
    step(other, other_opt)
    for p, q in zip(model.parameters(), other.parameters()):
        assert p.data.tobytes() == q.data.tobytes()


# -- the file -----------------------------------------------------------------------

def test_the_file_is_a_plain_npz_readable_without_pickle(tmp_path):
    path = tmp_path / "plain.npz"
    save(path, w=np.arange(3.0), meta={"k": [1, 2]})
    with np.load(path, allow_pickle=False) as f:
        names = sorted(f.files)
        assert "__minigrad__" in names
        structure = json.loads(str(f["__minigrad__"]))
        arrays = [f[n] for n in names if n != "__minigrad__"]
    assert structure["format"] == 2 and set(structure["objects"]) == {"w", "meta"}
    assert names == ["__minigrad__", "w"]
    np.testing.assert_array_equal(arrays[0], np.arange(3.0))


def test_save_and_load_are_exported_at_the_top_level():
    for name in ("save", "load", "save_safetensors", "load_safetensors"):
        assert getattr(mg, name) is getattr(minigrad.io, name) and name in mg.__all__


def test_a_file_of_format_1_still_loads(tmp_path):
    # As format 1 wrote it (before entries were named by their place): arrays a0, a1, ...
    # in the order of the walk, and the same structure entry.
    structure = {"format": 1, "objects": {"model": {"dict": [["w", {"array": "a0"}]]},
                                          "steps": {"list": [{"array": "a1"}, {"tuple": [1, None]}]},
                                          "k": {"dict": [[3, "x"]]}}}
    path = tmp_path / "v1.npz"
    np.savez(path, a0=np.arange(3.0), a1=np.arange(2), __minigrad__=np.array(json.dumps(structure)))
    same(load(path), {"model": {"w": np.arange(3.0)}, "steps": [np.arange(2), (1, None)], "k": {3: "x"}})


# -- entry names ----------------------------------------------------------------------

def entry_names(path):
    with np.load(path, allow_pickle=False) as f:
        return sorted(f.files)


def test_a_module_an_optimizer_and_tensors_are_saved_as_their_state_by_name(tmp_path):
    model = nn.Linear(3, 2, dtype="float64", rng=1)
    opt = optim.Adam(model.parameters(), lr=0.05)
    model(mg.tensor(np.ones((1, 3)))).sum().backward()
    opt.step()
    h = mg.tensor(np.arange(4.0), requires_grad=True)
    path = tmp_path / "ckpt.npz"
    save(path, model=model, optimizer=opt, step=1, h=h, hs=[h.detach(), mg.tensor([1, 2])])
    save(tmp_path / "dicts.npz", model=model.state_dict(), optimizer=opt.state_dict(), step=1,
         h=h.numpy(), hs=[h.numpy(), mg.tensor([1, 2]).numpy()])
    assert entry_names(path) == ["__minigrad__", "h", "hs/0", "hs/1", "model/bias", "model/weight",
                                 "optimizer/state/0/exp_avg", "optimizer/state/0/exp_avg_sq",
                                 "optimizer/state/1/exp_avg", "optimizer/state/1/exp_avg_sq"]
    loaded = load(path)
    same(loaded, load(tmp_path / "dicts.npz"))     # the same as saving the state dicts
    same(loaded["model"], model.state_dict())
    same(loaded["optimizer"], opt.state_dict())


@pytest.mark.parametrize("key, name", [
    ("lstm.weight_ih_l0", "d/lstm.weight_ih_l0"),
    ("a/b", "d/a%2Fb"),                   # the separator
    ("%", "d/%25"), ("%2F", "d/%252F"),   # the escape itself
    (0, "d/0"), ("0", "d/%30"),           # an int key and the str that reads as it
    (-1, "d/-1"), ("-1", "d/%2D1"), ("007", "d/%3007"), ("1.5", "d/1.5"),
    ("", "d/"),
    ("back\\slash", "d/back%5Cslash"),   # zipfile reads "\\" as "/" on Windows
    ("nul\x00", "d/nul%00"), ("tab\t", "d/tab%09"),   # zipfile cuts a name at NUL
    ("é", "d/é"), ("\ud800", "d/%ED%A0%80"),           # a lone surrogate has no UTF-8
])
def test_an_entry_is_named_by_its_path_with_ambiguous_characters_escaped(tmp_path, key, name):
    path = tmp_path / "x.npz"
    save(path, d={key: np.arange(2)})
    assert entry_names(path) == ["__minigrad__", name]
    same(load(path), {"d": {key: np.arange(2)}})


def test_places_that_look_alike_get_different_names(tmp_path):
    value = {"a/b": np.zeros(1), "a": {"b": np.ones(1)}, 0: np.full(1, 2.0), "0": np.full(1, 3.0),
             "%30": np.full(1, 4.0), "x": [np.full(1, 5.0)], "y": {0: np.full(1, 6.0)}}
    path = tmp_path / "x.npz"
    save(path, v=value, **{"v/a": {"b": np.full(1, 7.0)}})
    assert len(entry_names(path)) == 1 + 8
    same(load(path), {"v": value, "v/a": {"b": np.full(1, 7.0)}})


def test_top_level_names_that_np_savez_would_take_as_its_own_arguments(tmp_path):
    path = tmp_path / "x.npz"
    objects = {"file": np.ones(1), "allow_pickle": np.zeros(1), "args": np.arange(1)}
    save(path, **objects)
    assert entry_names(path) == ["__minigrad__", "allow_pickle", "args", "file"]
    same(load(path), objects)


def test_the_structure_entry_name_is_refused_as_a_top_level_name(tmp_path):
    path = tmp_path / "x.npz"
    with pytest.raises(ValueError, match=re.escape(f"save: {path}: the name __minigrad__ is minigrad's own")):
        save(path, **{"__minigrad__": np.ones(1)})
    assert os.listdir(tmp_path) == []


# -- what cannot be saved -----------------------------------------------------------

@pytest.mark.parametrize("objects, where", [
    (dict(a={"x": object()}), "a/x"),
    (dict(a=[1, {"k": {1, 2}}]), "a/1/k"),
    (dict(b=(1, 2, 3j)), "b/2"),
    (dict(c={7: [b"bytes"]}), "c/7/0"),
    (dict(d={"a/b": {"0": None, "x": mg.optim}}), "d/a%2Fb/x"),
])
def test_unsupported_values_raise_a_type_error_naming_where(tmp_path, objects, where):
    with pytest.raises(TypeError, match=re.escape(f"save: {where}: cannot save a ")):
        save(tmp_path / "x.npz", **objects)
    assert os.listdir(tmp_path) == []        # nothing written, not even a temporary


@pytest.mark.parametrize("array", [np.array([1, "x"], dtype=object), np.array(["a", "b"]),
                                   np.array([1 + 2j]), np.array(["2020-01-01"], "datetime64[D]")])
def test_arrays_that_would_need_pickle_or_are_not_numbers_are_rejected(tmp_path, array):
    with pytest.raises(TypeError, match=re.escape(f"save: w/a: arrays of dtype {array.dtype} are not")):
        save(tmp_path / "x.npz", w={"a": array})


@pytest.mark.parametrize("key", [(1, 2), 1.5, None, True, np.int64(3)])
def test_dict_keys_other_than_str_or_int_are_rejected(tmp_path, key):
    # bool is an int to Python, but would come back as 1: rejected too. A NumPy integer
    # is not a Python int, so it is refused rather than silently turned into one.
    with pytest.raises(TypeError, match=re.escape(f"save: d: dict keys must be str or int, got {key!r}")):
        save(tmp_path / "x.npz", d={key: 1})


# -- atomic writes ------------------------------------------------------------------

def write_previous(path):
    save(path, step=1, w=np.arange(4.0))
    return path.read_bytes()


def test_an_error_while_saving_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    before = write_previous(path)

    def failing_write(f, array, **options):
        f.write(b"\x93NUMPY half an array")   # some bytes reach the temporary file first
        raise OSError("disk full")
    monkeypatch.setattr(minigrad.io.np.lib.format, "write_array", failing_write)
    with pytest.raises(OSError, match="disk full"):
        save(path, step=2, w=np.zeros(4))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    monkeypatch.undo()
    assert load(path)["step"] == 1


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_file_keeps_the_old_file_when_the_block_raises(tmp_path, error):
    path = tmp_path / "out.txt"
    path.write_text("old contents")
    with pytest.raises(error):
        with atomic_file(path, "w") as f:
            f.write("new contents, half written")
            f.flush()
            raise error()
    assert path.read_text() == "old contents"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_a_failed_first_write_leaves_nothing_at_all(tmp_path):
    with pytest.raises(ValueError):
        with atomic_file(tmp_path / "new.bin", "wb") as f:
            f.write(b"x")
            raise ValueError
    assert os.listdir(tmp_path) == []


def test_saves_killed_while_writing_leave_no_temporary_after_the_next_save(tmp_path):
    """A save killed while writing cannot clean up; the next save of the same target removes
    what it left (issue 19: 30 kills had left 25 files, 164 MB). Each writer is killed inside
    the write for sure: it says so, then waits."""
    import signal
    import subprocess
    import sys
    path = tmp_path / "ckpt.npz"
    writer = ("import sys, time\nfrom minigrad.io import atomic_file\n"
              "with atomic_file(sys.argv[1], 'wb') as f:\n"
              "    f.write(b'x' * 100_000)\n    print('writing', flush=True)\n    time.sleep(60)\n")
    for _ in range(3):
        p = subprocess.Popen([sys.executable, "-c", writer, str(path)], stdout=subprocess.PIPE)
        assert p.stdout.readline() == b"writing\n"
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
    # each writer removed the temporary of the one killed before it: the last one's is left
    left = [n for n in os.listdir(tmp_path) if n.startswith(".ckpt.npz.minigrad-")]
    assert len(left) == 1 and not path.exists()
    save(path, w=np.zeros(3))
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    np.testing.assert_array_equal(load(path)["w"], np.zeros(3))


def test_which_temporaries_the_next_save_removes(tmp_path):
    """Another live process's may be in use: kept; this process's own that it is not writing
    (the same pid after a restart): removed; another target's: left alone."""
    live = tmp_path / f".ckpt.npz.minigrad-{os.getppid()}-abc"   # the parent: alive
    own = tmp_path / f".ckpt.npz.minigrad-{os.getpid()}-abc"     # this pid, written by no one
    other = tmp_path / ".other.npz.minigrad-999999999-abc"       # another target's
    for p in (live, own, other):
        p.write_bytes(b"x")
    save(tmp_path / "ckpt.npz", a=1)
    assert sorted(os.listdir(tmp_path)) == sorted(["ckpt.npz", live.name, other.name])


def test_atomic_file_replaces_the_file_on_success(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with atomic_file(path, "wb") as f:
        f.write(b"new")
        assert path.read_bytes() == b"old"   # not visible until the block ends
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.bin"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_a_saved_file_gets_the_permissions_of_an_ordinary_new_file(tmp_path, umask):
    # mkstemp creates 0600 files; a checkpoint should be as readable as any file the user makes.
    old = os.umask(umask)
    try:
        save(tmp_path / "ckpt.npz", a=1)
        save_safetensors(tmp_path / "w.safetensors", {"a": np.zeros(1)})  # the library's own: 0600
        with atomic_file(tmp_path / "plot.png", "wb") as f:
            f.write(b"png")
        with open(tmp_path / "reference", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    expected = stat.S_IMODE(os.stat(tmp_path / "reference").st_mode)
    assert expected == 0o666 & ~umask
    assert stat.S_IMODE(os.stat(tmp_path / "ckpt.npz").st_mode) == expected
    assert stat.S_IMODE(os.stat(tmp_path / "w.safetensors").st_mode) == expected
    assert stat.S_IMODE(os.stat(tmp_path / "plot.png").st_mode) == expected


def test_saving_into_a_missing_folder_is_an_os_error(tmp_path):
    path = tmp_path / "no" / "such" / "ckpt.npz"
    with pytest.raises(OSError, match=re.escape(f"cannot write {path}")):
        save(path, a=1)
    assert os.listdir(tmp_path) == []


# -- load errors --------------------------------------------------------------------

def test_loading_a_missing_path_says_no_such_file(tmp_path):
    with pytest.raises(OSError, match="No such file or directory"):
        load(tmp_path / "missing.npz")


def test_loading_a_directory_says_so(tmp_path):
    with pytest.raises(OSError, match="it is a directory"):
        load(tmp_path)


def test_loading_a_text_file_is_a_value_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a checkpoint\n")
    with pytest.raises(ValueError, match=re.escape(f"{path} is not a readable minigrad file (not an .npz")):
        load(path)


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.9])
def test_a_truncated_checkpoint_is_a_value_error_naming_the_path(tmp_path, keep):
    path = tmp_path / "ckpt.npz"
    data = write_previous(path)
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)


def test_a_corrupted_array_inside_the_zip_is_a_value_error(tmp_path):
    # The zip directory is intact, so only the CRC check or the .npy header can notice.
    path = tmp_path / "ckpt.npz"
    save(path, w=np.zeros(1000))
    data = bytearray(path.read_bytes())
    start = data.index(b"\x93NUMPY")              # the first .npy member
    data[start + 200:start + 260] = b"\xff" * 60
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)


def test_an_npz_without_the_minigrad_structure_is_a_value_error(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, w=np.ones(3))
    with pytest.raises(ValueError, match="no minigrad structure"):
        load(path)


def test_an_npz_of_another_format_version_is_a_value_error(tmp_path):
    path = tmp_path / "future.npz"
    np.savez(path, __minigrad__=np.array(json.dumps({"format": 3, "objects": {}})))
    with pytest.raises(ValueError, match="format 3; this minigrad reads formats 1 and 2"):
        load(path)


@pytest.mark.parametrize("structure", ["[1]", '{"format": 1, "objects": []}', '"text"'])
def test_a_malformed_structure_entry_is_a_value_error(tmp_path, structure):
    path = tmp_path / "odd.npz"
    np.savez(path, __minigrad__=np.array(structure))
    with pytest.raises(ValueError, match="structure entry is malformed"):
        load(path)


# -- safetensors --------------------------------------------------------------------

REFERENCE = Path(__file__).parent / "torch_reference" / "torch_written.safetensors"

SAFETENSORS_ARRAYS = {**{k: v for k, v in ARRAYS.items()},
                      **{f"{t.__name__}": np.arange(-3, 3).astype(t) for t in
                         (np.int8, np.int16, np.int32, np.uint16, np.uint32, np.uint64)}}


def test_safetensors_round_trip_keeps_names_dtypes_shapes_and_bits(tmp_path):
    path = tmp_path / "w.safetensors"
    save_safetensors(path, SAFETENSORS_ARRAYS, metadata={"format": "np", "note": "ünïcode"})
    loaded = load_safetensors(path)
    assert list(loaded) == sorted(SAFETENSORS_ARRAYS)           # name order
    for name, array in SAFETENSORS_ARRAYS.items():
        same(loaded[name], array)
        assert loaded[name].flags.writeable
    with safetensors.safe_open(path, framework="np") as f:
        assert f.metadata() == {"format": "np", "note": "ünïcode"}


def test_safetensors_saves_views_by_value_and_tensors_by_their_data(tmp_path):
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    t = mg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    tensors = {"t": base.T, "strided": base[::2, 1::3], "fortran": np.asfortranarray(base),
               "big_endian": base.astype(">f4"), "scalar": np.float32(2.5),
               "tensor": t, "tensor_view": t.T, "ints": mg.tensor([1, 2], dtype="int64")}
    save_safetensors(tmp_path / "w.safetensors", tensors)
    loaded = load_safetensors(tmp_path / "w.safetensors")
    for name, value in tensors.items():
        expected = value.numpy() if isinstance(value, mg.Tensor) else np.asarray(value)
        assert loaded[name].dtype == expected.dtype.newbyteorder("=") and loaded[name].shape == expected.shape
        np.testing.assert_array_equal(loaded[name], expected)


class TwoLayers(nn.Module):
    def __init__(self, rng):
        self.encoder = nn.Linear(3, 4, dtype="float64", rng=rng)
        self.decoder = nn.Linear(4, 2, dtype="float64", rng=rng + 1)


def test_a_module_saved_as_safetensors_loads_into_a_fresh_one(tmp_path):
    model, fresh = TwoLayers(rng=0), TwoLayers(rng=10)
    save_safetensors(tmp_path / "model.safetensors", model)
    loaded = load_safetensors(tmp_path / "model.safetensors")
    assert sorted(loaded) == sorted(model.state_dict())
    fresh.load_state_dict(loaded)
    for (name, a), (other, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert name == other
        same(a, b)


def test_a_file_written_by_pytorch_loads_with_its_names_dtypes_shapes_and_values():
    # tests/torch_reference/make_safetensors.py wrote it with safetensors.torch.save_file.
    expected = {
        "ids": np.arange(6, dtype=np.int64).reshape(2, 3),
        "lstm.bias_ih_l0": np.array([0.0, 1.0, 2.0, 3.0]),
        "lstm.weight_ih_l0": np.arange(12, dtype=np.float32).reshape(4, 3),
        "mask": np.array([True, False, True]),
        "pixels": np.array([[250, 251], [252, 253]], np.uint8),
        "small": np.array([-1, 0, 1], np.int8),
        "step": np.array(7, np.int32),
    }
    loaded = load_safetensors(REFERENCE)
    assert list(loaded) == list(expected)
    for name, array in expected.items():
        same(loaded[name], array)


@pytest.mark.parametrize("array", [np.zeros(2, np.complex128), np.zeros(2, np.longdouble),
                                   np.array(["a"]), np.array([None]), np.array(["2020-01-01"], "datetime64[D]")])
def test_safetensors_refuses_other_dtypes_naming_the_entry(tmp_path, array):
    with pytest.raises(TypeError, match=re.escape(f"save_safetensors: w: dtype {array.dtype} is not supported")):
        save_safetensors(tmp_path / "w.safetensors", {"ok": np.zeros(1), "w": array})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("tensors, metadata, message", [
    ([np.zeros(1)], None, "expected a Module or a dict of arrays, got list"),
    ({"w": [1.0, 2.0]}, None, "w: expected an array or a Tensor, got list"),
    ({3: np.zeros(1)}, None, "names are strings other than '__metadata__' (the header's), got 3"),
    ({"__metadata__": np.zeros(1)}, None, "names are strings other than '__metadata__' (the header's), "
                                           "got '__metadata__'"),
    ({"w": np.zeros(1)}, "text", "metadata must be a dict of str to str, got a str"),
    ({"w": np.zeros(1)}, {"epoch": 3}, "metadata must be a dict of str to str, got 'epoch': 3"),
    ({"w": np.zeros(1)}, {1: "x"}, "metadata must be a dict of str to str, got 1: 'x'"),
])
def test_safetensors_refuses_what_it_cannot_write_in_one_sentence(tmp_path, tensors, metadata, message):
    with pytest.raises(TypeError, match=re.escape(f"save_safetensors: {message}")):
        save_safetensors(tmp_path / "w.safetensors", tensors, metadata=metadata)
    assert os.listdir(tmp_path) == []


def test_a_failed_safetensors_save_leaves_the_previous_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_safetensors(path, {"w": np.arange(3.0)})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_safetensors(path, {"w": np.zeros(3, np.complex64)})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["w.safetensors"]


def test_loading_a_missing_or_a_directory_safetensors_path_is_an_os_error(tmp_path):
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(OSError, match=re.escape(f"load_safetensors: cannot read {missing}: No such file")):
        load_safetensors(missing)
    with pytest.raises(OSError, match=re.escape(f"load_safetensors: cannot read {tmp_path}: it is a directory")):
        load_safetensors(tmp_path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_safetensors_file_is_an_os_error(tmp_path):
    path = tmp_path / "w.safetensors"
    save_safetensors(path, {"w": np.zeros(1)})
    path.chmod(0)
    with pytest.raises(OSError, match=re.escape(f"load_safetensors: cannot read {path}: Permission denied")):
        load_safetensors(path)


def corrupt_files(tmp_path):
    data = REFERENCE.read_bytes()
    yield "text", b"not a safetensors file\n"
    yield "empty", b""
    for keep in (4, 8, 40, len(data) - 1):
        yield f"truncated to {keep}", data[:keep]
    yield "a bad header", data[:8] + b"{" * (len(data) - 8)
    save(tmp_path / "ckpt.npz", w=np.zeros(3))
    yield "an .npz", (tmp_path / "ckpt.npz").read_bytes()


def test_a_corrupt_safetensors_file_is_a_value_error_naming_the_path(tmp_path):
    path = tmp_path / "w.safetensors"
    for what, data in corrupt_files(tmp_path):
        path.write_bytes(data)
        with pytest.raises(ValueError, match=re.escape(f"load_safetensors: {path} is not a readable safetensors file")):
            load_safetensors(path)


def test_a_dtype_numpy_lacks_is_a_value_error_naming_it(tmp_path):
    # A bfloat16 entry, as PyTorch writes one: 8 bytes of header length, the JSON header, the data.
    header = json.dumps({"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}).encode()
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x80\x3f\x00\x40")
    with pytest.raises(ValueError, match=re.escape(f"load_safetensors: {path} holds arrays of dtype BF16, "
                                                   "which NumPy has no dtype for")):
        load_safetensors(path)


# -- hostile and damaged files (issue 19) ------------------------------------------------

def _rewrite(path, replace):
    """The file at path with its entries rewritten: replace(name, bytes) -> (bytes, compression)."""
    import zipfile
    with zipfile.ZipFile(path) as z:
        entries = [(info.filename, z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries:
            data, compression = replace(name, data)
            z.writestr(name, data, compress_type=compression)


def test_flipped_bits_give_a_value_error_or_the_file(tmp_path):
    """Any damage is a ValueError (a bit flip in the zip's version field was NotImplementedError)."""
    import random
    from minigrad import nn, optim
    model = nn.LSTM(3, 4, rng=0)
    path = tmp_path / "ckpt.npz"
    save(path, model=model, optimizer=optim.Adam(model.parameters()), step=3, history=[1.0, 2.0])
    data = path.read_bytes()
    rng = random.Random(0)
    damaged = tmp_path / "damaged.npz"
    for _ in range(400):
        flipped = bytearray(data)
        for _ in range(rng.choice([1, 2, 8])):
            k = rng.randrange(len(flipped))
            flipped[k] ^= 1 << rng.randrange(8)
        damaged.write_bytes(bytes(flipped))
        try:
            load(damaged)
        except ValueError as e:
            assert str(e).startswith(f"load: {damaged} is not a readable minigrad file (")


def test_an_array_that_declares_more_than_the_file_holds_is_refused_before_allocating(tmp_path):
    import io as bytes_io
    import zipfile
    path = tmp_path / "huge.npz"
    save(path, w=np.zeros(4, np.float32))

    def huge(name, data):
        if name != "w.npy":
            return data, zipfile.ZIP_STORED
        out = bytes_io.BytesIO()
        np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False,
                                                   "shape": (10 ** 12,)})
        return out.getvalue() + bytes(16), zipfile.ZIP_STORED
    _rewrite(path, huge)
    with pytest.raises(ValueError, match=r"entry 'w.npy' declares an array of shape \(1000000000000,\) "
                                         r"\(4000000000000 bytes\) in \d+ bytes"):
        load(path)


def test_an_entry_that_would_inflate_beyond_the_file_is_refused(tmp_path):
    import zipfile
    path = tmp_path / "bomb.npz"
    save(path, w=np.zeros(8 * 1024 * 1024, np.uint8))  # 8 MiB of zeros, stored
    _rewrite(path, lambda name, data: (data, zipfile.ZIP_DEFLATED))  # now some 8 KB
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError, match=r"its entries declare 8389\d+ bytes, more than the file's"):
        load(path)


def test_many_entries_that_inflate_together_are_refused(tmp_path):
    """Each entry smaller than the file, but all together far more: the sum is what counts."""
    import zipfile
    path = tmp_path / "many.npz"
    save(path, **{f"w{k}": np.zeros(256 * 1024, np.uint8) for k in range(40)})  # 40 x 256 KiB
    _rewrite(path, lambda name, data: (data, zipfile.ZIP_DEFLATED))
    with pytest.raises(ValueError, match="its entries declare .* bytes, more than the file's"):
        load(path)


def test_the_encrypted_flag_bit_is_a_value_error(tmp_path):
    """One bit flip (general purpose flag bit 0 of an entry) made zipfile raise RuntimeError."""
    path = tmp_path / "ckpt.npz"
    save(path, w=np.zeros(3))
    data = bytearray(path.read_bytes())
    for header in (b"PK\x03\x04", b"PK\x01\x02"):  # the local and the central directory headers
        at = data.find(header)
        flags = at + (6 if header == b"PK\x03\x04" else 8)
        data[flags] |= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="is marked encrypted|not a readable minigrad file"):
        load(path)


def test_nesting_deeper_than_the_limit_is_a_value_error_on_save_and_load(tmp_path, monkeypatch):
    from minigrad import io as mio
    deep = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValueError, match=r"save: deep(/0)+: nested deeper than 64 levels"):
        save(tmp_path / "deep.npz", deep=deep)
    looped = []
    looped.append(looped)                                  # a list that holds itself
    with pytest.raises(ValueError, match="nested deeper than 64 levels"):
        save(tmp_path / "loop.npz", looped=looped)
    monkeypatch.setattr(mio, "MAX_DEPTH", 1000)           # a file written with a higher limit
    save(tmp_path / "deep.npz", deep=deep)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="it nests deeper than 64 levels"):
        load(tmp_path / "deep.npz")
