"""NumPy scalars (NVIDIA's layers keep `weight_gain`, `act_gain` as np.float64, so every real
snapshot holds them, with a BUILD for their dtype) and the instructions the restricted
unpickler handles itself: BUILD only on a NumPy dtype record, REDUCE / NEWOBJ only with tuple
arguments, frames no longer than the file."""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict

import numpy as np
import pytest
import torch

from mrisynth.interop import nvidia_pickle
from test_interop_pickle_attacks import P2, _glob, _refused, _text

DTYPE_F8 = _glob("numpy", "dtype") + _text("f8") + b"\x89\x88\x87R"  # numpy.dtype('f8', F, T)


def _state(order: str = "<", names: bytes = b"N") -> bytes:
    return b"(K\x03" + _text(order) + names + b"NNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"


def _bytes(raw: bytes) -> bytes:
    return b"C" + bytes([len(raw)]) + raw


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_scalars_become_python_numbers(protocol):
    values = {"f8": np.float64(2**-0.5), "f4": np.float32(0.1), "f2": np.float16(3.5),
              "i8": np.int64(-7), "u1": np.uint8(200), "b": np.bool_(True), "sqrt2": np.sqrt(2)}
    out = nvidia_pickle.loads(pickle.dumps(values, protocol=protocol))
    assert out == {k: v.item() for k, v in values.items()}
    assert all(type(v) in (int, float, bool) for v in out.values())


def test_numpy_1x_names_as_nvidia_wrote_them():
    data = (P2 + _glob("numpy.core.multiarray", "scalar") + DTYPE_F8 + _state()
            + _bytes(struct.pack("<d", 1.25)) + b"\x86R.")
    assert nvidia_pickle.loads(data) == 1.25


@pytest.mark.parametrize(
    "data,match",
    [
        # BUILD on anything but a dtype record: our functions, OrderedDicts, EasyDict, dicts
        (P2 + _glob("torch._utils", "_rebuild_parameter") + b"}b.", "BUILD"),
        (P2 + _glob("torch._utils", "_rebuild_parameter") + b"N}\x86b.", "BUILD"),
        (P2 + _glob("collections", "OrderedDict") + b")R}b.", "BUILD"),
        (P2 + _glob("dnnlib.util", "EasyDict") + b"}b.", "BUILD"),
        (P2 + b"}}b.", "BUILD"),
        # dtypes other than plain numbers, states other than a number type's
        (P2 + _glob("numpy", "dtype") + _text("O8") + b"\x89\x88\x87R.", "dtype 'O8'"),
        (P2 + _glob("numpy", "dtype") + _text("V8") + b"\x89\x88\x87R.", "dtype 'V8'"),
        (P2 + _glob("numpy", "dtype") + b"]\x89\x88\x87R.", "dtype list"),
        (P2 + DTYPE_F8 + _state(">") + b".", "byte order"),
        (P2 + DTYPE_F8 + _state("<", b"(t") + b".", "dtype state"),
        (P2 + DTYPE_F8 + b"Nb.", "dtype state"),
        # scalars: wrong byte count, no dtype record, a bare dtype left in the result
        (P2 + _glob("numpy._core.multiarray", "scalar") + DTYPE_F8 + _state() + _bytes(b"abc")
         + b"\x86R.", "3 bytes"),
        (P2 + _glob("numpy._core.multiarray", "scalar") + _text("f8") + _bytes(b"a" * 8)
         + b"\x86R.", "NumPy scalar"),
        (P2 + DTYPE_F8 + b".", "type DType"),
        # NumPy arrays and anything else of NumPy's stay refused
        (P2 + _glob("numpy.core.multiarray", "_reconstruct") + b").", "_reconstruct"),
        (P2 + _glob("numpy", "load") + b").", "numpy.load"),
        # REDUCE / NEWOBJ with something other than a tuple of arguments; NEWOBJ of a function
        (P2 + _glob("collections", "OrderedDict") + b"]R.", "list of arguments"),
        (P2 + _glob("dnnlib.util", "EasyDict") + b"]\x81.", "NEWOBJ"),
        (P2 + _glob("torch._utils", "_rebuild_parameter") + b")\x81.", "NEWOBJ"),
        (b"\x80\x04" + _glob("dnnlib.util", "EasyDict") + b")]\x92.", "NEWOBJ"),
        # a frame claiming more bytes than follow
        (b"\x80\x04\x95" + (3).to_bytes(8, "little") + b"N.", "frame of 3 bytes"),
    ],
)
def test_crafted_build_reduce_and_numpy_records_are_refused(data, match):
    _refused(data, match)


def test_arguments_are_never_unpacked_from_a_large_value():
    """Python's unpickler would call f(*value): 50 MB of bytes as 50 million arguments."""
    big = b"B" + struct.pack("<I", 50_000_000) + b"\0" * 50_000_000
    _refused(P2 + _glob("collections", "OrderedDict") + big + b"R.", "bytes of arguments")


def test_our_functions_are_not_changed_by_a_file():
    """After a refused BUILD on an allowed function, the next file still reads normally."""
    with pytest.raises(nvidia_pickle.PickleRefused):
        nvidia_pickle.loads(P2 + _glob("torch._utils", "_rebuild_parameter")
                            + b"N}" + _text("__defaults__") + b"K\x01\x85s\x86b.")
    assert nvidia_pickle.loads(pickle.dumps(OrderedDict(a=np.float64(1.0)), protocol=3)) == {
        "a": 1.0}


def test_a_legacy_torch_save_file_is_named():
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf, _use_new_zipfile_serialization=False)
    _refused(buf.getvalue(), "torch.save file \\(legacy format\\)")
