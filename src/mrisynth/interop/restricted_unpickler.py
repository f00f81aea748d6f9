"""Python's own unpickler, restricted in what the file's instructions may do to objects.

The C unpickler cannot be told what BUILD may do; this one lets it act only on a NumPy dtype
record (`numpy_scalars.DType`: NVIDIA's numpy scalars need it; on anything else it would set
attributes of, or call `__setstate__` on, objects such as our own functions). REDUCE and NEWOBJ
take tuples of arguments only, as the C unpickler requires (Python's would unpack any value),
and NEWOBJ makes nothing but dnnlib's EasyDict. Names come from `allowed` only (`find_class`);
every other check (instructions, sizes, memo, keys) is pass 1's, `pickle_scan`.
"""

from __future__ import annotations

import functools
import io
import pickle
from collections.abc import Callable
from typing import Any, ClassVar

from mrisynth.interop.numpy_scalars import DType
from mrisynth.interop.pickle_scan import PickleRefused


class EasyDict(dict):
    """dnnlib.EasyDict arrives via NEWOBJ (`cls.__new__(cls)`) + SETITEMS: a plain dict here."""

    def __new__(cls, *args: Any, **kwargs: Any) -> dict:  # type: ignore[misc]
        return {}


def _load_build(unpickler: pickle._Unpickler) -> None:
    """BUILD (set an object's state) only on a NumPy dtype record: NVIDIA's NumPy scalars need
    it, and on anything else it would set attributes of, or call `__setstate__` on, objects such
    as our own functions."""
    state = unpickler.stack.pop()
    target = unpickler.stack[-1]
    if type(target) is not DType:
        raise PickleRefused(f"sets the state of a {type(target).__name__[:40]} (BUILD); NVIDIA's "
                            "snapshots do that only for NumPy dtypes")
    target.set_state(state)


def _load_reduce(unpickler: pickle._Unpickler) -> None:
    """REDUCE with a tuple of arguments only (as the C unpickler requires): Python's would
    unpack any value, e.g. bytes of 100 MB into 100 million arguments."""
    args = unpickler.stack.pop()
    if type(args) is not tuple:
        raise PickleRefused(f"calls a function with a {type(args).__name__[:40]} of arguments "
                            "(corrupt or hostile)")
    unpickler.stack[-1] = unpickler.stack[-1](*args)


def _load_newobj(unpickler: pickle._Unpickler, with_kwargs: bool = False) -> None:
    """NEWOBJ / NEWOBJ_EX (`cls.__new__(cls, *args)`): only dnnlib's EasyDict is made this way;
    its arguments (a tuple, keywords a dict, as the C unpickler checks) are ignored."""
    kwargs = unpickler.stack.pop() if with_kwargs else {}
    args = unpickler.stack.pop()
    cls = unpickler.stack.pop()
    if cls is not EasyDict or type(args) is not tuple or type(kwargs) is not dict:
        raise PickleRefused("creates an object (NEWOBJ) other than dnnlib's EasyDict")
    unpickler.append(EasyDict.__new__(EasyDict))


class RestrictedUnpickler(pickle._Unpickler):
    """Python's own unpickler (the C one cannot be told what BUILD may do), restricted further
    in what BUILD, REDUCE and NEWOBJ accept."""

    dispatch: ClassVar[dict] = {**pickle._Unpickler.dispatch, pickle.BUILD[0]: _load_build,
                pickle.REDUCE[0]: _load_reduce, pickle.NEWOBJ[0]: _load_newobj,
                pickle.NEWOBJ_EX[0]: functools.partial(_load_newobj, with_kwargs=True)}

    def __init__(self, stream: io.BytesIO, allowed: dict[tuple[str, str], Any],
                 persistent: Callable[[Any], Any] | None = None) -> None:
        super().__init__(stream)
        self._allowed, self._persistent = allowed, persistent

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            if module.startswith("dnnlib.tflib"):
                raise PickleRefused("is a TensorFlow StyleGAN(2) pickle; only the PyTorch "
                                    "format of stylegan2-ada-pytorch is read") from None
            raise PickleRefused(f"asks for {module[:80]}.{name[:80]}, which an NVIDIA network "
                                f"snapshot never needs (refused: it could run code)") from None

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise PickleRefused("uses persistent ids outside a storage record")
        return self._persistent(pid)
