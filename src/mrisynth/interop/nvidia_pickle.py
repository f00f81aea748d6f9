"""Read NVIDIA stylegan2-ada-pytorch pickles without running any code from them.

NVIDIA writes snapshots with plain `pickle.dump`: every network is a call of
`torch_utils.persistence._reconstruct_persistent_obj(meta)` whose `meta` holds the defining
module's source text, the class name and the module's `__dict__`; tensors go through torch's
rebuild helpers with each storage serialised as bytes (`torch.storage._load_from_bytes`, a
legacy `torch.save` stream). Loading such a file with `pickle` imports NVIDIA's packages and
executes the embedded source, so a file from anywhere can run anything.

Here a file is read in passes over bytes held in memory:
1. `pickle_scan.scan` checks every instruction and replays the stack before anything is built:
   truncation, trailing bytes, instructions NVIDIA's files never contain, memo games, keys that
   are not text or integers (hashing them can crash or stall the interpreter), huge integers and
   more instructions than any snapshot has are refused there.
2. An `Unpickler` whose `find_class` knows only a handful of names, each bound to a function of
   ours that checks its arguments: plain containers, tensors rebuilt from storages we parse
   ourselves (sizes checked against the bytes present before any allocation), and persistent
   records kept as inert data (`PersistentRecord`; `module_src` stays text, never executed),
   NumPy scalars (NVIDIA's layers keep gains as np.float64) as Python numbers
   (`numpy_scalars`; BUILD may only give such a scalar's dtype its byte order).
   Everything these functions allocate is charged to a budget of twice the file's size, so that
   naming one large value many times (the memo makes that a few bytes each) cannot exhaust memory.
The result is then walked (depth- and size-bounded) into plain Python values and tensors.
`torch.load` is never called: its legacy loader sizes storages from the stream's claims.
"""

from __future__ import annotations

import functools
import io
import math
import pickle
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from mrisynth.interop import numpy_scalars
from mrisynth.interop.pickle_scan import LEGACY_MAGIC, OpBudget, PickleRefused, scan
from mrisynth.interop.restricted_unpickler import EasyDict as _EasyDict
from mrisynth.interop.restricted_unpickler import RestrictedUnpickler as _Unpickler

__all__ = ["LEGACY_MAGIC", "PersistentRecord", "PickleRefused", "loads"]

MAX_DEPTH = 64  # NVIDIA's deepest nesting is ~20 (network > block > layer > state > dict)
MAX_NODES = 100_000  # a 1024px snapshot is ~5k values; a tree walk of shared ones is bounded too
MAX_DIMS = 8
MAX_MEMBERS = 10_000  # a set NVIDIA writes (module attribute names) holds a few
LEGACY_PROTOCOL = 1001
STORAGE_OVERHEAD = 1024  # bytes charged per storage record besides its data (parsing costs)

# Opcodes that NVIDIA's snapshots never contain and that reach code or state we do not control
# (BUILD: only a NumPy scalar's dtype, in the outer pickle; see _load_build).
_FORBIDDEN_OPCODES = {
    "BUILD", "INST", "OBJ", "PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER",
    "READONLY_BUFFER",
}  # fmt: skip

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
}  # fmt: skip


class PersistentRecord(NamedTuple):
    """One NVIDIA persistent object as data: `state` is the module's `__dict__`."""

    class_name: str
    module_src: str
    version: int
    state: dict[str, Any]


class _Tensor(NamedTuple):  # immutable while unpickling: BUILD/setattr cannot reach a tensor
    value: torch.Tensor


class _Storage(NamedTuple):
    data: torch.Tensor  # 1-D, its dtype


class _Record(NamedTuple):
    meta: Any


class _StorageType(NamedTuple):
    dtype: torch.dtype


# ---------------------------------------------------------------------------------------------
# Pass 1: instructions (pickle_scan)


def scan_opcodes(data: bytes, budget: OpBudget) -> None:
    """Refuse trailing data and everything `pickle_scan.scan` refuses."""
    stream = io.BytesIO(data)
    scan(stream, _FORBIDDEN_OPCODES - {"BUILD"}, budget)
    if stream.tell() != len(data):
        if data.startswith(pickle.dumps(LEGACY_MAGIC, protocol=2)):
            raise PickleRefused("is a torch.save file (legacy format), not NVIDIA's pickle")
        raise PickleRefused(f"has {len(data) - stream.tell()} bytes after the end of the pickle")


# ---------------------------------------------------------------------------------------------
# Pass 2: the restricted unpickler (restricted_unpickler) with these checking functions


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or len(value) > MAX_DIMS or not all(
        type(v) is int and 0 <= v < 2**40 for v in value
    ):
        shown = repr(value)[:60] if isinstance(value, tuple) and len(value) <= MAX_DIMS else (
            f"(a {type(value).__name__[:20]})")  # never the repr of a huge or deep value
        raise PickleRefused(f"has a tensor with a bad {what} {shown}")
    return value


class _Budget:
    """Bytes the rebuilt storages, tensors and other values our functions make may take in
    all: twice the file (each byte of a real snapshot is one storage and one tensor), so that a
    file naming the same value thousands of times (a memo read is a few bytes), or a
    zero-stride view, cannot ask for more memory than it brings. `ops` is pass 1's budget of
    instructions, shared with the storage records parsed while unpickling."""

    def __init__(self, file_bytes: int) -> None:
        self.left = 2 * file_bytes + 2**20
        self.ops = OpBudget()

    def charge(self, num_bytes: int) -> None:
        self.left -= num_bytes
        if self.left < 0:
            raise PickleRefused("rebuilds more data than the file holds (the same values "
                                "named over and over: hostile)")


def _rebuild_tensor(budget: _Budget, storage: Any, offset: Any, size: Any, stride: Any,
                    requires_grad: Any = False, hooks: Any = None, metadata: Any = None) -> _Tensor:
    """torch._utils._rebuild_tensor_v2, bounds-checked: a copy of a view into one storage."""
    del requires_grad, hooks, metadata  # weights only; hooks would be functions (refused anyway)
    if not isinstance(storage, _Storage):
        raise PickleRefused("rebuilds a tensor from something that is not a storage")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if type(offset) is not int or offset < 0 or len(size) != len(stride):
        raise PickleRefused("has a tensor with a bad offset or stride")
    numel = storage.data.numel()
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if all(size) and last >= numel:
        raise PickleRefused(f"has a tensor reaching element {last} of a storage of {numel}")
    count = math.prod(size)
    if count > numel:  # a broadcast (zero-stride) view: NVIDIA's tensors never are
        raise PickleRefused(f"has a tensor of {count} elements over a storage of {numel}")
    budget.charge(count * storage.data.element_size())
    if not all(size):
        return _Tensor(torch.empty(size, dtype=storage.data.dtype))
    return _Tensor(torch.as_strided(storage.data, size, stride, offset).clone())


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None) -> _Tensor:
    del requires_grad, hooks  # hooks would be functions, which find_class never yields
    if not isinstance(data, _Tensor):
        raise PickleRefused("rebuilds a parameter from something that is not a tensor")
    return data


def _ordered_dict(*args: Any) -> OrderedDict:
    """collections.OrderedDict as pickle calls it: with no arguments (items follow). An
    argument would be iterated here, in C (a tensor inside one would be split into millions)."""
    if args:
        raise PickleRefused("builds an OrderedDict from arguments (NVIDIA's pickles never do)")
    return OrderedDict()


def _members(budget: _Budget, kind: type, items: Any = ()) -> set | frozenset:
    """set/frozenset as protocols 2-3 write them: from a list of text or integers (charged:
    the same list can be named many times)."""
    if not isinstance(items, list | tuple) or len(items) > MAX_MEMBERS or not all(
        type(v) in (str, int) for v in items
    ):
        raise PickleRefused(f"builds a {kind.__name__} other than of a few texts or integers")
    budget.charge(64 * len(items))
    return kind(items)


def _record(meta: Any) -> _Record:
    """torch_utils.persistence._reconstruct_persistent_obj: kept as data, checked later."""
    return _Record(meta)


def _latin1(budget: _Budget, text: Any, encoding: Any = None) -> bytes:
    """_codecs.encode as protocol 2 uses it to write bytes: latin-1 text -> bytes, nothing else
    (charged: each call makes a new copy of text the file may hold once)."""
    if not isinstance(text, str) or encoding != "latin1":
        raise PickleRefused("uses _codecs.encode other than for protocol 2's bytes")
    budget.charge(len(text))
    return text.encode("latin1")


def _load_storage(budget: _Budget, data: Any) -> _Storage:
    """torch.storage._load_from_bytes, parsed here rather than by torch.load."""
    if not isinstance(data, bytes):
        raise PickleRefused("has a storage record that is not bytes")
    budget.charge(len(data) + STORAGE_OVERHEAD)
    return parse_legacy_storage(data, budget.ops)


def outer_allowed(budget: _Budget) -> dict[tuple[str, str], Any]:
    """The only globals an NVIDIA snapshot may name, each bound to a checking function."""
    make_set = functools.partial(_members, budget, set)
    make_frozenset = functools.partial(_members, budget, frozenset)
    return {
        **_PLAIN_ALLOWED,
        **numpy_scalars.ALLOWED,
        ("builtins", "set"): make_set,
        ("builtins", "frozenset"): make_frozenset,
        ("__builtin__", "set"): make_set,  # protocol 2 writes Python 2 names
        ("__builtin__", "frozenset"): make_frozenset,
        ("_codecs", "encode"): functools.partial(_latin1, budget),
        ("torch._utils", "_rebuild_tensor_v2"): functools.partial(_rebuild_tensor, budget),
        ("torch.storage", "_load_from_bytes"): functools.partial(_load_storage, budget),
    }


# Plain functions or classes; NEWOBJ (`cls.__new__(cls, *args)`) accepts only a class, so only
# _EasyDict can be reached that way, and its __new__ ignores its arguments.
_PLAIN_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _record,
}


def _load(data: bytes, allowed: dict, persistent: Callable[[Any], Any] | None = None) -> Any:
    return _Unpickler(io.BytesIO(data), allowed, persistent).load()


# ---------------------------------------------------------------------------------------------
# torch's legacy storage stream (inside `_load_from_bytes`)

_STORAGE_ALLOWED = {("torch", name): _StorageType(dt) for name, dt in _STORAGE_DTYPES.items()}


def parse_legacy_storage(data: bytes, ops: OpBudget) -> _Storage:
    """Magic, protocol, sys_info, the storage's persistent id, its key list, then per key an
    int64 element count and the raw little-endian bytes. Each pickle is scanned (its
    instructions count against the file's `ops`) and loaded with only the storage type names
    allowed; sizes are checked against the bytes present."""
    stream = io.BytesIO(data)

    def next_pickle(persistent: Callable[[Any], Any] | None = None) -> Any:
        start = stream.tell()
        scan(stream, _FORBIDDEN_OPCODES - {"BINPERSID", "PERSID"}, ops)
        return _load(data[start:stream.tell()], _STORAGE_ALLOWED, persistent)

    if next_pickle() != LEGACY_MAGIC or next_pickle() != LEGACY_PROTOCOL:
        raise PickleRefused("has a storage record that is not torch's legacy format")
    info = next_pickle()
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise PickleRefused("has a storage record that is not little-endian")
    found: list[tuple] = []
    next_pickle(lambda pid: found.append(pid))
    keys = next_pickle()
    if len(found) != 1 or not isinstance(keys, list) or len(keys) != 1:
        raise PickleRefused("has a storage record that does not hold exactly one storage")
    pid = found[0]
    if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"
            and isinstance(pid[1], _StorageType) and pid[2] == keys[0]
            and type(pid[4]) is int and pid[5] is None):
        raise PickleRefused("has a storage record of an unknown layout")
    dtype, numel = pid[1].dtype, pid[4]
    itemsize = torch.empty(0, dtype=dtype).element_size()
    head = stream.read(8)
    count = int.from_bytes(head, "little") if len(head) == 8 else -1
    remaining = len(data) - stream.tell()
    if count != numel or count * itemsize != remaining:
        raise PickleRefused(f"has a storage claiming {numel} elements with {remaining} bytes "
                            f"of data (truncated or forged)")
    raw = bytearray(data[stream.tell():])
    return _Storage(torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype))


# ---------------------------------------------------------------------------------------------
# Pass 3: plain values


def _plain(obj: Any, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if depth > MAX_DEPTH or budget[0] < 0:
        raise PickleRefused(f"nests deeper than {MAX_DEPTH} levels or holds too many values")
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, _Tensor):
        return obj.value
    if isinstance(obj, _Record):
        return _persistent(obj.meta, depth, budget)
    if type(obj) in (dict, OrderedDict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str | int):
                raise PickleRefused("has a dictionary key that is not text")
            out[k] = _plain(v, depth + 1, budget)
        return out
    if type(obj) in (list, tuple):
        return type(obj)(_plain(v, depth + 1, budget) for v in obj)
    if type(obj) in (set, frozenset):
        return frozenset(_plain(v, depth + 1, budget) for v in obj)
    if type(obj) is bytes:
        return obj
    raise PickleRefused(f"holds a value of type {type(obj).__name__[:40]} where NVIDIA's "
                        f"snapshots hold only networks, tensors and plain values")


_MODULE_STATE = {"_parameters": dict, "_buffers": dict, "_modules": dict, "_init_kwargs": dict,
                 "_init_args": tuple | list}


def _persistent(meta: Any, depth: int, budget: list[int]) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise PickleRefused("has a persistent object that is not a class record")
    name, src, version = meta.get("class_name"), meta.get("module_src"), meta.get("version")
    if not isinstance(name, str) or not isinstance(src, str) or type(version) is not int:
        raise PickleRefused("has a persistent record without class_name/module_src/version")
    state = _plain(meta.get("state"), depth + 1, budget)
    if not isinstance(state, dict):
        raise PickleRefused(f"has a persistent {name[:40]} whose state is not a dictionary")
    for key, kinds in _MODULE_STATE.items():  # torch.nn.Module's __dict__, as readers expect it
        if state.get(key) is not None and not isinstance(state[key], kinds):
            raise PickleRefused(f"has a persistent {name[:40]} whose {key} is a "
                                f"{type(state[key]).__name__[:40]}")
    return PersistentRecord(name[:200], src, version, state)


def loads(data: bytes) -> Any:
    """The pickle in `data` as plain values, tensors and `PersistentRecord`s.

    Raises PickleRefused for anything else (the caller names the file)."""
    if data.startswith(b"PK\x03\x04"):
        raise PickleRefused("is a ZIP archive (a torch.save file or a training archive), not "
                            "NVIDIA's pickle")
    if len(data) < 2 or data[0] != pickle.PROTO[0] or not 2 <= data[1] <= 5:
        raise PickleRefused("is not a pickle of protocol 2-5 (what NVIDIA's tools write)")
    budget = _Budget(len(data))
    scan_opcodes(data, budget.ops)
    try:
        obj = _load(data, outer_allowed(budget))
    except PickleRefused:
        raise
    except MemoryError:
        raise PickleRefused("claims more memory than this machine has (hostile)") from None
    except Exception as e:  # anything the unpickler or our argument checks raise
        raise PickleRefused(f"cannot be unpickled ({type(e).__name__}: {str(e)[:120]})") from None
    return _plain(obj, 0, [MAX_NODES])
