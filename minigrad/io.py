"""Saving and loading: checkpoints (nested dicts, lists and tuples of arrays and numbers in one
`.npz` file) and safetensors files (flat {name: array}, the format PyTorch's tools share).

    minigrad.save("run.npz", model=model, optimizer=opt, step=120)
    ckpt = minigrad.load("run.npz")      # {"model": {...}, "optimizer": {...}, "step": 120}
    model.load_state_dict(ckpt["model"]); opt.load_state_dict(ckpt["optimizer"])

A checkpoint is a plain NumPy `.npz` (no pickle, so loading runs no code): each array is
one entry, named by where it sits ("model/lstm.weight_ih_l0", "optimizer/state/0/exp_avg"),
and one JSON entry, `__minigrad__`, holds the structure around them with numbers, strings,
booleans and None in place. Writing is atomic: the file is written under a temporary name
in the same folder and renamed, so an interrupted save leaves the previous file untouched,
never half of a new one.
"""
import json
import math
import os
import re
import tempfile
import zipfile
from contextlib import contextmanager

import numpy as np
import safetensors
import safetensors.numpy

from .backends import devices
from .nn.modules import Module
from .optim import Optimizer
from .tensor import Tensor

_META = "__minigrad__"
# Format 1 named its arrays a0, a1, ...; format 2 names them by their place. The structure
# entry refers to arrays by name in both, so one reader reads both.
_FORMAT = 2
_READS = (1, 2)


def save(path, **objects):
    """Write `objects` (name=value) to `path` atomically. Values: arrays (NumPy, CuPy),
    Tensors (their data), Modules and optimizers (their state_dict()), numbers, strings,
    booleans, None, and dicts (any str or int keys), lists and tuples of them.

    Each array is the entry named by its path in the file: the steps from the top, joined
    by "/". A str key is written as it is, except that "%", "/", "\\" and control characters
    become %XX (UTF-8 bytes in hex), and so does the first character of a str that reads as
    an int ("0" -> "%30"), so that it differs from the int key 0. Int keys and list indices
    are written as numbers. Two places never get the same name.
    """
    if _META in objects:
        raise ValueError(f"save: {path}: the name {_META} is minigrad's own entry; choose another")
    arrays = {}
    structure = {name: _encode(value, arrays, _segment(name)) for name, value in objects.items()}
    arrays[_META] = np.array(json.dumps({"format": _FORMAT, "objects": structure}))
    with atomic_file(path, "wb") as f:
        _write_npz(f, arrays)


@contextmanager
def atomic_file(path, mode="w"):
    """Open a temporary file beside `path` for writing; on success, rename it to `path`.

    The rename is atomic: readers see the old file or the whole new one, never a part,
    and an error or Ctrl-C inside the block leaves `path` as it was (and no temporary).
    The directory is synced after the rename, so that the new name survives a power cut.
    A process killed while writing cannot remove its temporary: the temporary's name holds
    the target's name and the writer's process id, and the next write of the same target
    removes those whose writer is gone.
    """
    folder = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}.minigrad-"  # .ckpt.npz.minigrad-<pid>-<random>
    _remove_stale(folder, prefix)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{prefix}{os.getpid()}-")
    except OSError as e:
        raise OSError(f"cannot write {path}: {e.strerror}") from None
    _WRITING.add(tmp)
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
    finally:
        _WRITING.discard(tmp)
    _sync_directory(folder)


_WRITING = set()  # the temporaries this process is writing now (another thread's save)


def _remove_stale(folder, prefix):
    """Remove the temporaries of earlier writes of one target that no one is writing: those of
    a process that is gone (killed while writing), and this process's own that it is not
    writing now (a container's trainer gets the same pid at every restart). Those of another
    live process may be in use: kept."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix)]
    except OSError:
        return  # mkstemp will say what is wrong with the folder
    for name in names:
        pid, full = name[len(prefix):].split("-", 1)[0], os.path.join(folder, name)
        if not pid.isdigit():
            continue
        if (full not in _WRITING) if int(pid) == os.getpid() else not _alive(int(pid)):
            try:
                os.remove(full)
            except OSError:
                pass  # another save removed it first, or it cannot be removed: not ours to fail on


def _alive(pid):
    """Whether a process with this id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but belongs to someone else
        return True
    return True


def _sync_directory(folder):
    """fsync the directory, so that a rename in it is on disk (where the system allows it)."""
    if not hasattr(os, "O_DIRECTORY"):
        return  # Windows: directories cannot be opened
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the file itself is synced
    finally:
        os.close(fd)


def load(path):
    """Read what `save` wrote: {name: value}, with arrays as NumPy arrays and Modules,
    optimizers and Tensors as what they were saved as (state dicts, arrays).

    A file that is not one, damaged or hostile, raises ValueError: nothing in it is run
    (no pickle), no array may declare more bytes than the file holds (save stores them
    uncompressed, so a 2 MB file cannot ask for 2 GiB), and nesting is at most MAX_DEPTH deep.
    """
    with _open(path, "load") as file:
        try:
            if not zipfile.is_zipfile(file):
                raise ValueError("not an .npz file")
            _check_sizes(file, os.fstat(file.fileno()).st_size)
            file.seek(0)
            with np.load(file, allow_pickle=False) as f:
                if _META not in f.files:
                    raise ValueError("no minigrad structure in it")
                meta = json.loads(str(f[_META]))
                if not isinstance(meta, dict) or not isinstance(meta.get("objects"), dict):
                    raise ValueError("its structure entry is malformed")
                if meta.get("format") not in _READS:
                    raise ValueError(f"format {meta.get('format')!r}; this minigrad reads formats "
                                     f"{' and '.join(map(str, _READS))}")
                arrays = {name: f[name] for name in f.files if name != _META}
                return {name: _decode(value, arrays, 1) for name, value in meta["objects"].items()}
        except (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile,
                NotImplementedError, RuntimeError, RecursionError) as e:  # zip damage: the middle two
            raise ValueError(f"load: {path} is not a readable minigrad file ({e})") from None


MAX_DEPTH = 64
"""How deep save and load nest dicts, lists and tuples (a checkpoint needs a few levels)."""


def _check_sizes(file, size):
    """Refuse, before anything is read into memory, a file whose entries declare more bytes
    than the file holds: a compressed entry that would inflate (save stores them as they
    are), or an array header whose shape asks for more than its entry."""
    with zipfile.ZipFile(file) as z:
        infos = z.infolist()
        declared = sum(info.file_size for info in infos)  # all together: many entries may inflate
        if declared > size:
            raise ValueError(f"its entries declare {declared} bytes, more than the file's {size}")
        for info in infos:
            if info.flag_bits & 1:  # zipfile would raise RuntimeError, asking for a password
                raise ValueError(f"entry {info.filename!r} is marked encrypted")
            if not info.filename.endswith(".npy"):
                continue
            with z.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read_header is None:
                    raise ValueError(f"entry {info.filename!r} is a .npy file of version {version}")
                shape, _, dtype = read_header(member)
                if dtype.hasobject:
                    raise ValueError(f"entry {info.filename!r} holds Python objects")
                nbytes = dtype.itemsize * math.prod(shape)
                if nbytes > info.file_size:
                    raise ValueError(f"entry {info.filename!r} declares an array of shape {shape} "
                                     f"({nbytes} bytes) in {info.file_size} bytes")


# -- safetensors ---------------------------------------------------------------------

def save_safetensors(path, tensors, metadata=None):
    """Write arrays to `path` as a safetensors file (what PyTorch's and Hugging Face's tools
    read: safetensors.torch.load_file), atomically.

    tensors:  a Module (its state_dict()) or a dict {str name: NumPy or CuPy array, or Tensor}
    metadata: None or a dict {str: str}, kept in the file's header
    dtypes:   booleans, integers (8 to 64 bits), float16, float32, float64
    """
    if isinstance(tensors, Module):
        tensors = tensors.state_dict()
    if not isinstance(tensors, dict):
        raise TypeError(f"save_safetensors: expected a Module or a dict of arrays, got "
                        f"{type(tensors).__name__}")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"save_safetensors: metadata must be a dict of str to str, got a "
                        f"{type(metadata).__name__}")
    for k, v in (metadata or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"save_safetensors: metadata must be a dict of str to str, got {k!r}: {v!r}")
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise TypeError(f"save_safetensors: names are strings other than '__metadata__' "
                            f"(the header's), got {name!r}")
        array = _host(value)
        if array is None:
            raise TypeError(f"save_safetensors: {name}: expected an array or a Tensor, got "
                            f"{type(value).__name__}")
        if array.dtype.kind not in "biuf" or array.itemsize > 8:
            raise TypeError(f"save_safetensors: {name}: dtype {array.dtype} is not supported "
                            f"(booleans, integers, float16, float32 and float64 are)")
        # NOTE: safetensors.numpy copies an array's memory as it lies, strides ignored: a
        # transposed view would be written scrambled. Contiguous first (not ascontiguousarray:
        # it makes a 0-d array 1-d).
        arrays[name] = np.asarray(array, order="C")
    data = safetensors.numpy.save(arrays, metadata=metadata)
    with atomic_file(path, "wb") as f:
        f.write(data)


def load_safetensors(path):
    """Read a safetensors file: {name: NumPy array}, in name order.

    NOTE: name order because the file keeps none: its header is a JSON object, which
    writers sort by name, and its data lies sorted by dtype; the library returns neither.
    dtypes NumPy lacks (bfloat16, float8) are a ValueError; the metadata is not returned.
    """
    with _open(path, "load_safetensors") as f:
        data = f.read()
    try:
        arrays = safetensors.numpy.load(data)
    except safetensors.SafetensorError as e:
        raise ValueError(f"load_safetensors: {path} is not a readable safetensors file ({e})") from None
    except KeyError as e:  # a dtype that safetensors.numpy has no NumPy dtype for
        raise ValueError(f"load_safetensors: {path} holds arrays of dtype {e.args[0]}, "
                         f"which NumPy has no dtype for") from None
    return dict(sorted(arrays.items()))


# -- the pieces ----------------------------------------------------------------------

def _open(path, op):
    """`path` opened for reading bytes; an OSError in one sentence naming it if it cannot be."""
    if os.path.isdir(path):  # open() says "Is a directory" on Linux only
        raise OSError(f"{op}: cannot read {path}: it is a directory")
    try:
        return open(path, "rb")
    except OSError as e:
        raise OSError(f"{op}: cannot read {path}: {e.strerror}") from None


def _host(value):
    """value as a NumPy array if it is an array (NumPy, CuPy, a Tensor's data), else None."""
    if isinstance(value, Tensor):
        value = value.data
    if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__cuda_array_interface__"):
        return devices.to_numpy(value)
    return None


# What a str key cannot hold as it is in an entry's name: the separator, the escape, and
# what zipfile changes in a member's name (NUL cuts it, "\\" is "/" on Windows) or cannot
# encode (lone surrogates).
_ESCAPED = re.compile(r"[%/\\\x00-\x1f\x7f\ud800-\udfff]")


def _percent(char):
    return "".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))


def _segment(key):
    """One step of an entry's name (see `save`)."""
    if isinstance(key, int):
        return str(key)
    text = _ESCAPED.sub(lambda m: _percent(m[0]), key)
    if re.fullmatch(r"-?[0-9]+", text):
        text = _percent(text[0]) + text[1:]
    return text


def _encode(value, arrays, name, depth=1):
    """The JSON form of value; arrays go into `arrays` under their entry's name."""
    if depth > MAX_DEPTH:  # (and a list that holds itself would recurse forever)
        raise ValueError(f"save: {name}: nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (Module, Optimizer)):
        return _encode(value.state_dict(), arrays, name, depth)
    array = _host(value)
    if array is not None:
        if array.dtype.kind not in "biuf":
            raise TypeError(f"save: {name}: arrays of dtype {array.dtype} are not supported")
        arrays[name] = array
        return {"array": name}
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"save: {name}: dict keys must be str or int, got {k!r}")
        return {"dict": [[k, _encode(v, arrays, f"{name}/{_segment(k)}", depth + 1)]
                         for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, arrays, f"{name}/{i}", depth + 1) for i, v in enumerate(value)]
        return {"tuple" if isinstance(value, tuple) else "list": items}
    raise TypeError(f"save: {name}: cannot save a {type(value).__name__}")


def _write_npz(f, arrays):
    """What np.savez(f, **arrays) writes, without its keywords: they would take an entry
    named `file` or `allow_pickle` for themselves."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, array in arrays.items():
            with z.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def _decode(value, arrays, depth):
    if not isinstance(value, dict):
        return value
    if depth > MAX_DEPTH:
        raise ValueError(f"it nests deeper than {MAX_DEPTH} levels")
    if "array" in value:
        return arrays[value["array"]]
    if "dict" in value:
        return {k: _decode(v, arrays, depth + 1) for k, v in value["dict"]}
    if "tuple" in value:
        return tuple(_decode(v, arrays, depth + 1) for v in value["tuple"])
    return [_decode(v, arrays, depth + 1) for v in value["list"]]


__all__ = ["save", "load", "save_safetensors", "load_safetensors", "atomic_file"]
