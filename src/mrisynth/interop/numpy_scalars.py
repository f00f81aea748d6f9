"""NumPy scalars in NVIDIA's pickles, rebuilt as plain Python numbers without NumPy's unpickling.

NVIDIA's layers keep NumPy scalars in their `__dict__` (`weight_gain = 1 / np.sqrt(fan_in)`,
`act_gain = np.sqrt(2)`), so every real snapshot pickles a few hundred of them, each as
`numpy.core.multiarray.scalar(numpy.dtype('f8', False, True), raw_bytes)` where the dtype is
given its byte order by a BUILD instruction (`(3, '<', None, ...)`). Here `numpy.dtype` makes an
inert `DType` record of a number type, BUILD may target only such a record (see
`nvidia_pickle`), and `scalar` turns its bytes into a Python int, float or bool: no object
dtype, no structured dtype, no arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mrisynth.interop.pickle_scan import PickleRefused

# kind+size codes of plain numbers; 'O' (objects) or 'V' (structured) would reach foreign code
NUMBER_CODES = {"b1", "f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"}
BYTE_ORDERS = {"<", "|", "="}  # little-endian, not applicable, native (little on our machines)


class DType:
    """`numpy.dtype(code, align, copy)` as data; BUILD sets the byte order."""

    __slots__ = ("code", "order")

    def __init__(self, code: str) -> None:
        self.code, self.order = code, "<"

    def set_state(self, state: Any) -> None:
        """The dtype's pickled state: (version, byte order, None x3 for a number type, ...)."""
        if not (isinstance(state, tuple) and 8 <= len(state) <= 9 and state[0] in (3, 4)
                and all(s is None for s in state[2:5])):
            raise PickleRefused("has a NumPy dtype state other than a plain number type's")
        if state[1] not in BYTE_ORDERS:
            raise PickleRefused(f"has a NumPy number of byte order {str(state[1])[:8]!r} "
                                "(only little-endian is read)")
        self.order = state[1]


def make_dtype(code: Any, align: Any = False, copy: Any = True) -> DType:
    """numpy.dtype as pickle calls it: ('f8', False, True)."""
    del align, copy  # meaningless for a number type
    if not isinstance(code, str) or code not in NUMBER_CODES:
        shown = repr(code)[:20] if isinstance(code, str) else type(code).__name__[:20]
        raise PickleRefused(f"has a NumPy dtype {shown} (only plain number types are read)")
    return DType(code)


def make_scalar(dtype: Any, raw: Any = None) -> int | float | bool:
    """numpy.core.multiarray.scalar(dtype, raw bytes) -> the Python number it holds."""
    if not isinstance(dtype, DType) or not isinstance(raw, bytes):
        raise PickleRefused("has a NumPy scalar that is not a number type with its bytes")
    np_type = np.dtype(("<" if dtype.order == "=" else dtype.order) + dtype.code)
    if len(raw) != np_type.itemsize:
        raise PickleRefused(f"has a NumPy {dtype.code} scalar of {len(raw)} bytes "
                            f"(truncated or forged)")
    return np.frombuffer(raw, dtype=np_type)[0].item()


# numpy 1.x names (NVIDIA's era) and numpy 2.x names (a snapshot re-saved today)
ALLOWED = {
    ("numpy", "dtype"): make_dtype,
    ("numpy.core.multiarray", "scalar"): make_scalar,
    ("numpy._core.multiarray", "scalar"): make_scalar,
}
