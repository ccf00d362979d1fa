"""Runs minigrad's CUDA C kernels on the CPU, so that each can be tested against its NumPy reference
on a machine without a GPU.

    module = compile(source, "kernels/lstm.cu")        # as cupy.RawModule(code=source)
    fn = module.get_function("lstm_step_f32")          # as RawModule.get_function
    fn((blocks,), (threads,), (x, h, np.int32(n)))     # as RawKernel.__call__, on NumPy arrays

How: tests/emulate.h, force-included before the source, turns CUDA C into C++ and runs the
threads of a block as fibers that meet at __syncthreads() (see its header comment). g++ -E
finds the `extern "C" __global__` entry points; each gets a launcher that unpacks an array of
argument pointers (as cuLaunchKernel does) and a description of its parameter types, which the
Python side checks every argument against. The shared library is cached on disk by a hash of
everything that goes into it, so only the first run of a source pays for g++.

A launch also checks what a GPU would not tell: every array is copied into a buffer between
two guard zones of NaN, so a kernel that writes outside an array fails the launch, and one that
reads outside it reads NaN; shared memory, static and dynamic, is NaN at the start of every
block, and a write past the end of the dynamic shared memory fails the launch; and a
__syncthreads() that some threads of a block reach and others do not fails the launch.
Dynamic shared memory follows CUDA's rules: up to 48 KiB per block by default, more once
the kernel's max_dynamic_shared_size_bytes is raised, up to an H100's SHARED_OPTIN.
"""
import ctypes
import functools
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

# Why the emulator cannot run here, or None: it needs g++ and Linux's ucontext.
UNAVAILABLE = (None if sys.platform == "linux" and shutil.which("g++") and shutil.which("nm")
               else "the CPU emulator of the CUDA kernels needs Linux with g++ and nm")
PRELUDE = Path(__file__).with_name("emulate.h")
KERNELS = Path(__file__).resolve().parent.parent / "kernels"
FLAGS = ["-O1", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden", "-fno-gnu-unique",
         "-U_FORTIFY_SOURCE", "-w"]
CACHE = Path(os.environ.get("MINIGRAD_EMULATOR_CACHE",
                            Path(tempfile.gettempdir()) / f"minigrad-emulator-{os.getuid()}"))
GUARD = 4096  # bytes of NaN on each side of every array a launch sees
SHARED_DEFAULT = 48 * 1024  # dynamic shared memory a block may have without opting in (CUDA's)
SHARED_OPTIN = 227 * 1024   # ... and with: an H100's (and H200's) sharedMemPerBlockOptin
_ENTRY = re.compile(r'extern\s*"C"\s*__emu_global__\s*void\s+(\w+)\s*\(([^)]*)\)')
_C_NAMES = {"f4": "float", "f8": "double", "i1": "signed char", "i2": "short", "i4": "int",
            "i8": "long long", "u1": "unsigned char", "u2": "unsigned short", "u4": "unsigned",
            "u8": "unsigned long long", "b1": "bool"}
# Resume the threads of each block last to first instead of first to last. A kernel whose
# results depend on it reads shared memory that another thread writes, without the
# __syncthreads() between them that a GPU needs.
reverse_threads = False
_lock = threading.Lock()  # the runtime in each library is single-threaded
_modules = {}             # cache key -> Module, so that a library is loaded once per process


class EmulatorError(RuntimeError):
    """A kernel that cannot be built, or did something a GPU would not forgive."""


def compile(source, file, include_dirs=()):
    """Build `source` (the text of the .cu named `file`) for the CPU; returns a Module.

    `#include "..."` is looked for in include_dirs, the folder of `file` when it exists,
    and kernels/.
    """
    dirs = [Path(d) for d in include_dirs]
    if Path(file).parent.is_dir() and str(Path(file).parent) != ".":
        dirs.append(Path(file).parent)
    dirs.append(KERNELS)
    key = _key(source, dirs)
    if key not in _modules:
        name = re.sub(r"\W", "_", Path(file).stem)
        library = CACHE / f"{name}-{key[:20]}.so"
        if not library.exists():
            _build(source, file, dirs, library)
        _modules[key] = Module(library, file)
    return _modules[key]


def _key(source, dirs):
    """A hash of everything the library depends on: source, headers, prelude, flags, this file."""
    h = hashlib.sha256()
    for part in (source, PRELUDE.read_text(), " ".join(FLAGS), Path(__file__).read_text()):
        h.update(part.encode() + b"\0")
    for d in dirs:
        for header in sorted(d.glob("*.cuh")) + sorted(d.glob("*.h")):
            h.update(header.name.encode() + b"\0" + header.read_bytes() + b"\0")
    return h.hexdigest()


def _gxx(args, what, file):
    result = subprocess.run(["g++", *args], capture_output=True, text=True)
    if result.returncode:
        raise EmulatorError(f"emulator: {what} {file} failed:\n{result.stderr}")
    return result.stdout


def _build(source, file, dirs, library):
    """Find the entry points, add their launchers, compile to `library` (atomically)."""
    includes = [f"-I{d}" for d in dirs]
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        cu = Path(tmp) / "kernel.cpp"
        cu.write_text(f'#line 1 "{file}"\n{source}\n')
        text = _gxx(["-E", "-P", "-x", "c++", "-std=c++17", "-DEMU_PARSE", "-include", str(PRELUDE),
                     *includes, str(cu)], "preprocessing", file)
        entries = _ENTRY.findall(text)
        if not entries:
            raise EmulatorError(f'emulator: {file} has no extern "C" __global__ entry point')
        launchers = ['\n// Launchers added by tests/emulator.py', '#line 1 "<emulator launchers>"']
        for name, params in entries:
            params = " ".join(params.split()).replace("\\", "\\\\").replace('"', '\\"')
            launchers += [
                f'EMU_EXPORT int emu_run_{name}(const char* packed) '
                f'{{ return emu::launch(packed, {name}); }}',
                f'EMU_EXPORT const char* emu_sig_{name}() {{ return emu::signature({name}); }}',
                f'EMU_EXPORT const char* emu_params_{name}() {{ return "{params}"; }}']
        names = ",".join(name for name, _ in entries)
        launchers.append(f'EMU_EXPORT const char* emu_entries() {{ return "{names}"; }}')
        cu.write_text(cu.read_text() + "\n".join(launchers) + "\n")
        out = Path(tmp) / "kernel.so"
        _gxx([*FLAGS, "-include", str(PRELUDE), *includes, "-x", "c++", str(cu), "-o", str(out)],
             "compiling", file)
        os.replace(out, library)  # atomic: a parallel run sees the old library or the new one


class Module:
    """A built kernel source; get_function as cupy.RawModule's."""

    def __init__(self, library, file):
        self.file = file
        self._lib = ctypes.CDLL(str(library))
        self._lib.emu_entries.restype = ctypes.c_char_p
        self._lib.emu_error.restype = ctypes.c_char_p
        self.names = self._lib.emu_entries().decode().split(",")
        self._functions = {}
        self._poison_shared(library)

    def _poison_shared(self, library):
        """Register the __shared__ arrays, to be filled with NaN before every block.

        `__shared__` is `static`, so they are the function-local statics (mangled _ZZ...)
        outside the runtime's namespace (_ZZN3emu...) that live in writable memory.
        """
        symbols = subprocess.run(["nm", "-S", "--defined-only", str(library)],
                                 capture_output=True, text=True, check=True).stdout.split("\n")
        table = {}
        for line in symbols:
            parts = line.split()
            if len(parts) == 4:
                table[parts[3]] = (int(parts[0], 16), int(parts[1], 16), parts[2])
            elif len(parts) == 3:
                table[parts[2]] = (int(parts[0], 16), 0, parts[1])
        base = ctypes.cast(self._lib.emu_entries, ctypes.c_void_p).value - table["emu_entries"][0]
        for name, (address, size, kind) in table.items():
            if name.startswith("_ZZ") and not name.startswith("_ZZN3emu") and kind in "bBdD":
                if self._lib.emu_poison(ctypes.c_void_p(base + address), ctypes.c_size_t(size)):
                    raise EmulatorError(f"emulator: {self.file} has too many __shared__ arrays")

    def get_function(self, name):
        if name not in self.names:
            raise AttributeError(f"emulator: {self.file} has no kernel {name!r}; "
                                 f"its entry points are {', '.join(self.names)}")
        if name not in self._functions:
            self._functions[name] = Function(self._lib, name)
        return self._functions[name]


class Function:
    """One entry point; called as cupy.RawKernel: fn(grid, block, args, shared_mem=0)."""

    def __init__(self, lib, name):
        self.name = name
        self._lib = lib
        self._run = getattr(lib, f"emu_run_{name}")
        self._run.argtypes = [ctypes.c_void_p]
        describe = getattr(lib, f"emu_sig_{name}")
        describe.restype = ctypes.c_char_p
        params = getattr(lib, f"emu_params_{name}")
        params.restype = ctypes.c_char_p
        self.types = describe().decode().split(",")[:-1]  # "pcf4", "i4", ... one per parameter
        self.params = [p.strip() for p in params().decode().split(",")] if self.types else []
        for t, p in zip(self.types, self.params):
            if t.lstrip("pc") not in _C_NAMES:
                raise EmulatorError(f"emulator: {name}: parameter `{p}` has a type the emulator "
                                    "cannot pass (numbers and pointers to numbers only)")
        self._pointer = [t.startswith("p") for t in self.types]
        self._dtype = [np.dtype(t.lstrip("pc")).str for t in self.types]  # "<f4", "|b1", ...
        self._max_shared = SHARED_DEFAULT

    @property
    def max_dynamic_shared_size_bytes(self):
        """As cupy.RawKernel's: the most dynamic shared memory a launch may ask for."""
        return self._max_shared

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, value):
        if not 0 <= value <= SHARED_OPTIN:
            raise ValueError(f"{self.name}: max_dynamic_shared_size_bytes={value}: CUDA allows "
                             f"0 to {SHARED_OPTIN} bytes per block (an H100's)")
        self._max_shared = int(value)

    def __call__(self, grid, block, args, shared_mem=0):
        dims = _dims("grid", _hashable(grid)) + _dims("block", _hashable(block))
        if not 0 <= shared_mem <= self._max_shared:
            raise ValueError(f"{self.name}: shared_mem={shared_mem} bytes of dynamic shared memory; "
                             f"this kernel may have 0 to {self._max_shared} (CUDA's limit until "
                             f"max_dynamic_shared_size_bytes is raised, up to {SHARED_OPTIN})")
        if type(args) is not tuple:
            raise TypeError(f"{self.name}: args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.types):
            raise TypeError(f"{self.name}: expected {len(self.types)} arguments "
                            f"({', '.join(self.params)}), got {len(args)}")
        # What the launcher reads (emu::launch): the 6 sizes, then 8 bytes per parameter.
        packed = bytearray(24 + 8 * len(args))
        struct.pack_into("6I", packed, 0, *dims)
        arrays, where = [], []
        for k, (arg, pointer, dtype) in enumerate(zip(args, self._pointer, self._dtype)):
            if pointer:
                if not isinstance(arg, np.ndarray) or arg.dtype.str != dtype:
                    raise self._wrong(k, arg)
                arrays.append(arg)
                where.append(k)
            else:
                if not isinstance(arg, np.generic) or arg.dtype.str != dtype:
                    raise self._wrong(k, arg)
                value = arg.tobytes()
                packed[24 + 8 * k:24 + 8 * k + len(value)] = value
        # The dynamic shared memory, if any, between two guard zones (poisoned by the runtime
        # at every block).
        shared = None
        if shared_mem:
            shared = np.empty(shared_mem + 2 * GUARD, np.uint8)
            shared[:GUARD], shared[-GUARD:] = guard_zone(250), guard_zone(251)
        with _lock, _Fenced(arrays, [self.params[k] for k in where], self.name) as pointers:
            for k, address in zip(where, pointers):
                struct.pack_into("Q", packed, 24 + 8 * k, address)
            self._lib.emu_set_reversed(int(reverse_threads))
            self._lib.emu_set_dynamic_shared(
                ctypes.c_void_p(None if shared is None else shared.ctypes.data + GUARD),
                ctypes.c_size_t(shared_mem))
            if self._run(ctypes.addressof((ctypes.c_char * len(packed)).from_buffer(packed))):
                raise EmulatorError(f"{self.name}: {self._lib.emu_error().decode()}")
            if shared is not None and (shared[:GUARD].tobytes() != guard_zone(250).tobytes()
                                       or shared[-GUARD:].tobytes() != guard_zone(251).tobytes()):
                raise EmulatorError(f"{self.name}: wrote outside its {shared_mem} bytes of dynamic "
                                    "shared memory")

    def _wrong(self, k, arg):
        """The TypeError for argument k."""
        t = self.types[k].lstrip("pc")
        where = f"{self.name}: argument {k} (`{self.params[k]}`)"
        if self._pointer[k]:
            if not isinstance(arg, np.ndarray):
                return TypeError(f"{where}: expected a NumPy array, got {type(arg).__name__}")
            return TypeError(f"{where}: expected an array of {_C_NAMES[t]}, got {arg.dtype}")
        if not isinstance(arg, np.generic):
            return TypeError(f"{where}: expected a NumPy scalar of C type {_C_NAMES[t]} (such as "
                             f"np.{np.dtype(t).name}(...)), got {type(arg).__name__}: CuPy would "
                             "guess its C type")
        return TypeError(f"{where}: expected a NumPy scalar of C type {_C_NAMES[t]}, got {arg.dtype}")


@functools.lru_cache(maxsize=None)
def guard_zone(k):
    """GUARD bytes of guard zone number k: 4-byte words [p, q, FF, FF], NaN read as float32
    and as float64. The payload p differs from zone to zone, so that a NaN read past one
    array and written past another changes the zone it lands in."""
    zone = np.tile(np.array([k % 251 + 1, 0xA5, 0xFF, 0xFF], np.uint8), GUARD // 4)
    zone.flags.writeable = False  # shared by every launch
    return zone


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


_LIMITS = {"grid": (2**31 - 1, 65535, 65535), "block": (1024, 1024, 64)}


@functools.lru_cache(maxsize=1024)
def _dims(what, value):
    """An int or a tuple of up to 3 ints -> 3 ints, checked against CUDA's limits."""
    limits = _LIMITS[what]
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, np.integer)) for d in dims):
        raise TypeError(f"{what}: expected an int or a tuple of 1 to 3 ints, got {value!r}")
    dims = [int(d) for d in dims] + [1] * (3 - len(dims))
    for d, limit in zip(dims, limits):
        if not 1 <= d <= limit:
            raise ValueError(f"{what} {tuple(dims)}: each size must be in 1..{limit} "
                             f"(CUDA's limits {limits})")
    if what == "block" and dims[0] * dims[1] * dims[2] > 1024:
        raise ValueError(f"block {tuple(dims)}: {dims[0] * dims[1] * dims[2]} threads; CUDA allows 1024")
    return tuple(dims)


class _Fenced:
    """The arrays' memory, copied between guard zones for the length of a launch.

    Arrays that share memory (views of one array) share one copy, so the kernel sees the
    same aliasing as on the GPU. On exit the guards are checked and the copies written back.
    """

    def __init__(self, arrays, params, kernel):
        self.arrays, self.params, self.kernel = arrays, params, kernel

    def __enter__(self):
        roots = []  # the whole allocation each array is a view of
        for a in self.arrays:
            while isinstance(a.base, np.ndarray):
                a = a.base
            roots.append(a)
        spans = [np.lib.array_utils.byte_bounds(root) for root in roots]
        self.regions = []  # [low, high, writable] of merged, overlapping spans
        for (low, high), root in sorted(zip(spans, roots), key=lambda item: item[0]):
            if self.regions and low < self.regions[-1][1]:
                region = self.regions[-1]
                region[1] = max(region[1], high)
                region[2] = region[2] and root.flags.writeable
            else:
                self.regions.append([low, high, root.flags.writeable])
        self.buffers = []
        for k, (low, high, _) in enumerate(self.regions):
            buffer = np.zeros(high - low + 2 * GUARD, np.uint8)
            buffer[:GUARD], buffer[-GUARD:] = guard_zone(2 * k), guard_zone(2 * k + 1)
            ctypes.memmove(buffer.ctypes.data + GUARD, low, high - low)
            self.buffers.append(buffer)
        pointers, self.owners = [], [[] for _ in self.regions]  # owners: the params in each region
        for a, (low, high), param in zip(self.arrays, spans, self.params):
            k = max(k for k, r in enumerate(self.regions) if r[0] <= low)
            pointers.append(self.buffers[k].ctypes.data + GUARD + a.ctypes.data - self.regions[k][0])
            self.owners[k].append(f"`{param}`")
        return pointers

    def __exit__(self, kind, value, traceback):
        for k, ((low, high, writable), buffer) in enumerate(zip(self.regions, self.buffers)):
            before, after = guard_zone(2 * k), guard_zone(2 * k + 1)
            if kind is None and (buffer[:GUARD].tobytes() != before.tobytes()
                                 or buffer[-GUARD:].tobytes() != after.tobytes()):
                raise EmulatorError(
                    f"{self.kernel}: wrote outside the memory of {' and '.join(self.owners[k])} "
                    f"({np.count_nonzero(buffer[:GUARD] != before)} bytes changed before it, "
                    f"{np.count_nonzero(buffer[-GUARD:] != after)} after)")
            inside = buffer[GUARD:GUARD + high - low]
            if writable:
                ctypes.memmove(low, inside.ctypes.data, high - low)
            elif kind is None and inside.tobytes() != ctypes.string_at(low, high - low):
                raise EmulatorError(f"{self.kernel}: wrote into the read-only memory of "
                                    f"{' and '.join(self.owners[k])}")
        return False
