"""Saving and loading: nested dicts, lists and tuples of arrays and numbers in one `.npz` file.

    minigrad.save("run.npz", model=model.state_dict(), optimizer=opt.state_dict(), step=120)
    objects = minigrad.load("run.npz")   # {"model": {...}, "optimizer": {...}, "step": 120}

The file is a plain NumPy `.npz` (no pickle, so loading runs no code): each array
is one entry, and one JSON entry, `__minigrad__`, holds the structure around them
with numbers, strings, booleans and None in place. Writing is atomic: the file is
written under a temporary name in the same folder and renamed, so an interrupted
save leaves the previous file untouched, never half of a new one.
"""
import json
import os
import tempfile
import zipfile
from contextlib import contextmanager

import numpy as np

_META = "__minigrad__"
_FORMAT = 1


def save(path, **objects):
    """Write `objects` (name=value) to `path` atomically. Values: arrays (NumPy), numbers,
    strings, booleans, None, and dicts (any str or int keys), lists and tuples of them."""
    arrays = {}
    structure = {name: _encode(value, arrays, name) for name, value in objects.items()}
    meta = json.dumps({"format": _FORMAT, "objects": structure})
    with atomic_file(path, "wb") as f:
        np.savez(f, **arrays, **{_META: np.array(meta)})


@contextmanager
def atomic_file(path, mode="w"):
    """Open a temporary file beside `path` for writing; on success, rename it to `path`.

    The rename is atomic: readers see the old file or the whole new one, never a part,
    and an error or Ctrl-C inside the block leaves `path` as it was (and no temporary).
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".minigrad-")
    except OSError as e:
        raise OSError(f"cannot write {path}: {e.strerror}") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path):
    """Read what `save` wrote: {name: value}. A file that is not one raises ValueError."""
    if os.path.isdir(path):
        raise OSError(f"load: cannot read {path}: it is a directory")
    if not os.path.exists(path):
        raise OSError(f"load: cannot read {path}: No such file or directory")
    try:
        with open(path, "rb"):  # an unreadable file is an OSError here, not "not an .npz file"
            pass
    except OSError as e:
        raise OSError(f"load: cannot read {path}: {e.strerror}") from None
    try:
        if not zipfile.is_zipfile(path):
            raise ValueError("not an .npz file")
        with np.load(path, allow_pickle=False) as f:
            if _META not in f.files:
                raise ValueError("no minigrad structure in it")
            meta = json.loads(str(f[_META]))
            if not isinstance(meta, dict) or not isinstance(meta.get("objects"), dict):
                raise ValueError("its structure entry is malformed")
            if meta.get("format") != _FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {_FORMAT}")
            arrays = {name: f[name] for name in f.files if name != _META}
            return {name: _decode(value, arrays) for name, value in meta["objects"].items()}
    except (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"load: {path} is not a readable minigrad file ({e})") from None


def _encode(value, arrays, where):
    """The JSON form of value; arrays go into `arrays` and are referenced by key."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"save: {where}: arrays of dtype {value.dtype} are not supported")
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"array": key}
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"save: {where}: dict keys must be str or int, got {k!r}")
        return {"dict": [[k, _encode(v, arrays, f"{where}.{k}")] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
        return {"tuple" if isinstance(value, tuple) else "list": items}
    if hasattr(value, "shape") and callable(getattr(value, "get", None)):  # a CuPy array
        return _encode(value.get(), arrays, where)
    raise TypeError(f"save: {where}: cannot save a {type(value).__name__}")


def _decode(value, arrays):
    if not isinstance(value, dict):
        return value
    if "array" in value:
        return arrays[value["array"]]
    if "dict" in value:
        return {k: _decode(v, arrays) for k, v in value["dict"]}
    if "tuple" in value:
        return tuple(_decode(v, arrays) for v in value["tuple"])
    return [_decode(v, arrays) for v in value["list"]]


__all__ = ["save", "load", "atomic_file"]
