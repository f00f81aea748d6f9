"""The restricted unpickler attacked as someone who wants code execution, memory exhaustion or a
hang: every allowed name with crafted arguments, instruction-level games (memo, frames, marks,
out-of-band buffers, persistent ids, extension codes), keys that crash or stall hashing, and
files of many cheap instructions. Each one is refused, quickly and with little memory, by
`nvidia_pickle.loads` (the single entry point); none of these files is from NVIDIA."""

from __future__ import annotations

import pickle
import resource
import struct
import time
from collections import OrderedDict

import pytest
import torch

from mrisynth.interop import nvidia_pickle
from mrisynth.interop.nvidia_pickle import PickleRefused
from test_interop_hostile import Call, _storage_bytes

P2 = b"\x80\x02"


def _glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _text(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _long(v: int) -> bytes:
    raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _put(i: int) -> bytes:
    return b"r" + struct.pack("<I", i)


def _get(i: int) -> bytes:
    return b"j" + struct.pack("<I", i)


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _refused(data: bytes, match: str = "", seconds: float = 4.0) -> str:
    """Refused within `seconds` of this process's CPU time (wall time depends on the machine's
    load; the attacks fixed here took 15-25 s), raising its peak memory by under 500 MB (a peak
    set earlier can hide growth, never invent it)."""
    peak, t0 = _peak_kib(), time.process_time()
    with pytest.raises(PickleRefused, match=match) as e:
        nvidia_pickle.loads(data)
    took = time.process_time() - t0
    assert took < seconds, f"took {took:.1f} s of CPU"
    assert _peak_kib() - peak < 500 * 2**10, "peak memory grew by more than 500 MB"
    return str(e.value)


GOOD_STORAGE = _storage_bytes(4, 4, struct.pack("<4f", 1, 2, 3, 4))


def _tensor(*args) -> bytes:
    store = Call(torch.storage._load_from_bytes, GOOD_STORAGE)
    return pickle.dumps(Call(torch._utils._rebuild_tensor_v2, store, *args), protocol=3)


@pytest.mark.parametrize(
    "args,match",
    [
        ((0, (-1,), (1,), False, None), "bad size"),
        ((0, (2,), (-1,), False, None), "bad stride"),
        ((0, (True,), (1,), False, None), "bad size"),
        ((0, [4], [1], False, None), "bad size"),
        ((0, tuple(range(1, 10**5)), (1,), False, None), r"bad size \(a tuple\)"),
        ((2**60, (1,), (1,), False, None), "reaching element"),
        ((2**70, (1,), (1,), False, None), "beyond 2"),
        ((True, (1,), (1,), False, None), "bad offset"),
        ((0, (), (), False, None, None, "extra"), "cannot be unpickled"),
        ((0, (0, 2**39, 2**39, 2**39), (1, 1, 1, 1), False, None), "cannot be unpickled|bad"),
    ],
)
def test_rebuild_tensor_with_crafted_arguments(args, match):
    _refused(_tensor(*args), match)


def test_rebuild_tensor_accepts_empty_and_ignores_hooks():
    # a zero-size tensor at any offset allocates nothing; hooks/metadata are never called
    assert nvidia_pickle.loads(_tensor(2**39, (0, 3), (3, 1), False, None)).shape == (0, 3)
    store = Call(torch.storage._load_from_bytes, GOOD_STORAGE)
    t = Call(torch._utils._rebuild_tensor_v2, store, 1, (3,), (1,), True,
             OrderedDict(hook="not called"), {"meta": 1})
    param = Call(torch._utils._rebuild_parameter, t, True, OrderedDict(h="x"))
    assert nvidia_pickle.loads(pickle.dumps(param, protocol=3)).tolist() == [2.0, 3.0, 4.0]
    _refused(pickle.dumps(Call(torch._utils._rebuild_parameter, "x", True, None), protocol=3),
             "not a tensor")


@pytest.mark.parametrize(
    "data,match",
    [
        # _codecs.encode beyond protocol 2's latin-1 bytes
        (P2 + _glob("_codecs", "encode") + _text("x") + _text("rot13") + b"\x86R.", "_codecs"),
        (P2 + _glob("_codecs", "encode") + b"C\x01x" + _text("latin1") + b"\x86R.", "_codecs"),
        (P2 + _glob("_codecs", "encode") + _text("x") + _text("latin1") + b"N\x87R.",
         "cannot be unpickled"),
        # OrderedDict only as pickle writes it (no arguments): an argument would be iterated in C
        (P2 + _glob("collections", "OrderedDict") + b"]\x85R.", "OrderedDict from arguments"),
        (P2 + _glob("collections", "OrderedDict") + b")\x81.", "NEWOBJ"),
        # set/frozenset of unhashable, deep or foreign members
        (P2 + _glob("builtins", "set") + b"]]a\x85R.", "builtins.set|set other than"),
        (P2 + _glob("builtins", "frozenset") + b"]NN\x86a\x85R.", "frozenset other than"),
        (P2 + _glob("builtins", "set") + _text("abc") + b"\x85R.", "set other than"),
        (b"\x80\x04(NN\x86\x91.", "set member that is not text"),  # FROZENSET of a tuple
        (b"\x80\x04\x8f(G?\xf8\x00\x00\x00\x00\x00\x00\x90.", "set member"),  # ADDITEMS float
        # EasyDict: BUILD (its __setstate__) never runs; NEWOBJ_EX kwargs are ignored
        (P2 + _glob("dnnlib.util", "EasyDict") + b")\x81}b.", "BUILD"),
        # STACK_GLOBAL with names from the memo, or not text
        (b"\x80\x04" + _text("os") + _put(0) + b"0" + _text("system") + _put(1) + b"0"
         + _get(0) + _get(1) + b"\x93.", "asks for os.system"),
        (b"\x80\x04KJK\x01\x93.", "cannot be unpickled"),
        # memo: reads of slots never written, huge slots, overwriting
        (P2 + _get(0) + b".", "never written"),
        (P2 + b"N" + b"r\xff\xff\xff\x7f.", "memo slot"),
        # frames claiming more than the file
        (b"\x80\x04\x95" + (2**62).to_bytes(8, "little") + b"N.", "truncated"),
        # out-of-band buffers, persistent ids, extension codes
        (b"\x80\x05\x97.", "NEXT_BUFFER"),
        (b"\x80\x05\x97\x98.", "NEXT_BUFFER"),
        (b"\x80\x05\x96\x03\x00\x00\x00\x00\x00\x00\x00abc.", "type bytearray"),
        (b"\x80\x02Pos.system\n.", "PERSID"),
        (b"\x80\x02\x83\x01\x00.", "EXT2"),
        (b"\x80\x02\x84\x01\x00\x00\x00.", "EXT4"),
        # stack games the C unpickler would reject later (or read past)
        (P2 + b"0.", "pops a value"),
        (P2 + b"]Ne.", "closes a mark"),
        (P2 + b"}(Nu.", "key but no value"),
        (P2 + b"(N0\x85.", "pops a value"),  # TUPLE1 would reach below the mark
        # integers beyond any network value (hash collisions, str() limits)
        (P2 + _long(2**64) + b".", "beyond 2"),
        (P2 + b"\x8b" + (2**20).to_bytes(4, "little") + b"\x01" * 2**20 + b".", "beyond 2"),
        (P2 + b"\x8b\xff\xff\xff\x7f\x01.", "not a complete pickle"),
    ],
)
def test_crafted_instructions_are_refused(data, match):
    _refused(data, match)


def test_a_tensor_is_never_iterated_by_a_container_constructor():
    """OrderedDict(storage) split a 4M-element storage into 4M tensor objects: 18 s, 2.8 GB."""
    store = Call(torch.storage._load_from_bytes, _storage_bytes(2**16, 2**16, b"\0" * 2**18))
    for make in (OrderedDict, set, frozenset):
        _refused(pickle.dumps(Call(make, store), protocol=3), "from arguments|other than")


def test_allowed_names_with_odd_but_harmless_calls():
    # NEWOBJ_EX on EasyDict with kwargs: a plain, empty dict (its __new__ ignores them)
    data = b"\x80\x04" + _glob("dnnlib.util", "EasyDict") + b")}" + _text("a") + b"K\x01s\x92."
    assert nvidia_pickle.loads(data) == {}
    # PUT over a written slot replaces it, as in the unpickler
    data = P2 + _text("a") + _put(0) + b"0" + _text("b") + _put(0) + b"0" + _get(0) + b"."
    assert nvidia_pickle.loads(data) == "b"
    assert nvidia_pickle.loads(P2 + _glob("builtins", "set") + b"](KJK\x01e\x85R.") == {74, 1}


def test_string_bombs_cost_what_the_file_holds():
    """8 MB of text with one 4-byte character is 32 MB as str; naming it again is free."""
    big = "a" * 8_000_000 + "\U0001f600"
    peak = _peak_kib()
    out = nvidia_pickle.loads(P2 + b"]" + _text(big) + _put(0) + b"a" + (_get(0) + b"a") * 1000
                              + b".")
    assert len(out) == 1001 and out[0] is out[-1]
    assert _peak_kib() - peak < 300 * 2**10


def test_a_key_nested_a_million_tuples_deep_is_refused_before_hashing():
    """Hashing it recurses in C without a guard: the interpreter died of a segfault."""
    _refused(P2 + b"}N" + b"\x85" * 200_000 + b"Ns.", "key or set member", seconds=5)
    _refused(P2 + b"(N" + b"\x85" * 200_000 + b"\x91.", "set member", seconds=5)


def test_keys_built_to_collide_are_refused_fast():
    """Integers k * (2^61 - 1) all hash to 0: 20 000 of them took 20 s to insert."""
    m = 2**61 - 1
    _refused(P2 + b"}(" + b"".join(_long(k * m) + b"N" for k in range(1, 20_000)) + b"u.",
             "beyond 2", seconds=2)
    # tuples can be built to share any hash; they are never keys here
    _refused(P2 + b"}(" + b"KJK\x01\x86N" * 1000 + b"u.", "key or set member", seconds=2)


def test_one_value_named_many_times_is_charged():
    """The memo makes a second use of a value cost ~6 bytes: copies must be paid for."""
    text = "a" * 2_000_000
    encode = _glob("_codecs", "encode") + _put(1) + b"0"
    data = (P2 + encode + _text(text) + _put(0) + b"0]" + _put(2)
            + (_get(2) + _get(1) + _get(0) + _text("latin1") + b"\x86Ra") * 1000 + b"0N.")
    _refused(data, "more data than the file holds")  # was 2 GB of bytes from a 2 MB file
    members = b"](" + b"".join(_long(i) for i in range(10_000)) + b"e" + _put(0) + b"0"
    data = P2 + members + b"]" + (_glob("builtins", "set") + _get(0) + b"\x85Ra") * 900
    _refused(data + b"0N.", "more data than the file holds")  # 10 000 members, 900 sets
    store = _glob("torch.storage", "_load_from_bytes") + _put(0) + b"0"
    blob = b"B" + struct.pack("<I", len(GOOD_STORAGE)) + GOOD_STORAGE + _put(1) + b"0"
    data = P2 + store + blob + (_get(0) + _get(1) + b"\x85R0") * 40_000 + b"N."
    _refused(data, "more data|instructions", seconds=5)  # each parse costs, whatever its size


def test_twenty_megabytes_of_cheap_instructions_are_refused_in_seconds():
    data = P2 + b"N0" * 10_000_000 + b"N."
    _refused(data, "more than 1000000 pickle instructions", seconds=10)  # was 24 s
    _refused(P2 + b"](" + b"}" * 2_000_000 + b"e.", "instructions", seconds=10)


def test_a_shared_value_walked_as_a_tree_is_bounded():
    """60 pairs of one value nested in each other is 2^60 leaves for a tree walk."""
    body = b"N"
    for i in range(60):
        body += _put(i) + _get(i) + b"\x86"
    _refused(P2 + body + b".", "holds too many values", seconds=4)


def test_storage_records_are_scanned_with_the_same_rules():
    magic = pickle.dumps(nvidia_pickle.LEGACY_MAGIC, protocol=2)
    bad_info = P2 + b"}(" + b"NN\x86" + b"\x88u."  # a tuple key inside sys_info
    rest = GOOD_STORAGE[len(magic) + len(pickle.dumps(1001, protocol=2)):]
    info_len = len(pickle.dumps({"protocol_version": 1001, "little_endian": True,
                                 "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2))
    forged = magic + pickle.dumps(1001, protocol=2) + bad_info + rest[info_len:]
    store = Call(torch.storage._load_from_bytes, forged)
    data = pickle.dumps(Call(torch._utils._rebuild_tensor_v2, store, 0, (4,), (1,), False, None),
                        protocol=3)
    _refused(data, "key or set member")


def test_random_byte_damage_is_only_ever_an_input_error(tmp_path):
    """Seeded mutations of a real-format snapshot (3000 were run once: none escaped)."""
    import random

    import nvidia_format as nf
    from mrisynth.errors import InputError
    from mrisynth.interop.nvidia_import import import_pickle

    G_kw, D_kw = nf.small_kwargs(res=8)
    g, d = nf.nvidia_tensors(G_kw, D_kw)
    good = nf.dumps(nf.snapshot_dict(G_kw, D_kw, g, d), protocol=4)
    rng, path = random.Random(7), tmp_path / "damaged.pkl"
    for _ in range(12):
        data = bytearray(good)
        for _ in range(rng.choice([1, 2, 8])):
            at = rng.randrange(len(data))
            if rng.random() < 0.7:
                data[at] = rng.randrange(256)
            else:
                del data[at:at + rng.randrange(1, 8)]
        path.write_bytes(bytes(data))
        try:
            import_pickle(path)
        except InputError as e:
            assert "\n" not in str(e)
