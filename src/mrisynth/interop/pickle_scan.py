"""Pass 1 over an untrusted pickle: every instruction is checked, and the unpickler's stack is
replayed with the kind of each value, before anything is built.

Why this cannot be left to the (C) unpickler or to checks on the objects it returns:
- truncation and size claims: pickletools reads each argument against the bytes present, while
  the C unpickler allocates a BINBYTES8's or FRAME's claimed size first;
- instructions NVIDIA's snapshots never hold and that reach code or foreign state (INST, OBJ,
  persistent ids, extension codes, out-of-band buffers; BUILD, except where the caller lets
  the unpickler apply it to NumPy dtypes only, see `restricted_unpickler`);
- memo slots: the C memo is an array sized by the largest index written, and a read of a slot
  never written is corrupt;
- dictionary keys and set members other than text and integers: the unpickler hashes them in C,
  where a key nested 10^6 tuples deep overflows the C stack (the interpreter dies) and integers
  beyond 2^61 or tuples built to collide cost each insertion the dictionary's size (minutes for a
  file of kilobytes). Text hashes are randomised; integers here are below 2^64 and hash to
  themselves, so at most a handful can collide;
- integers beyond 2^64 (nothing in a network is that large, and `str()` of one refuses);
- the number of instructions: each costs microseconds in pass 1 and up to a few hundred bytes of
  Python objects in pass 2, so a file of one-byte instructions would cost minutes and gigabytes.
  The budget is shared by the whole file, the storage records inside it included.
"""

from __future__ import annotations

import io
import pickletools

# A 1024px snapshot (G, D, G_ema, augment pipe) is ~40k instructions with its storage records.
MAX_OPS = 1_000_000
MAX_INT = 2**64
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.save's legacy-format magic number

_KEY, _OTHER = 1, 2  # kinds of stack values; _KEY: text or an integer (safe to hash)
_KEY_TYPES = {pickletools.pyunicode, pickletools.pybytes_or_str, pickletools.pyint,
              pickletools.pyinteger_or_bool, pickletools.pybool}  # fmt: skip
_INT_OPS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
_GETS = {"GET", "BINGET", "LONG_BINGET"}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_KEYED = {"DICT", "SETITEMS"}  # marked slices of key, value pairs
_MEMBERS = {"ADDITEMS", "FROZENSET"}  # marked slices of set members


class PickleRefused(Exception):
    """The file is not a pickle we can read safely; the message says why (no file name)."""


class OpBudget:
    """Instructions one file may still hold (shared by its storage records)."""

    def __init__(self, ops: int = MAX_OPS) -> None:
        self.left = ops


def _effects() -> dict[str, tuple[int | None, int, tuple[int, ...]]]:
    """name -> (values below the mark it pops, or None if it pops no mark; values popped;
    kinds pushed), from pickletools' description of each opcode's stack effect (MARK itself
    is kept apart, as positions)."""
    table = {}
    for op in pickletools.opcodes:
        before = op.stack_before
        pushed = tuple(_KEY if s in _KEY_TYPES else _OTHER for s in op.stack_after)
        if pickletools.markobject in before:
            table[op.name] = (before.index(pickletools.markobject), 0, pushed)
        else:
            table[op.name] = (None, len(before), pushed)
    return table


_EFFECTS = _effects()


class _Stack:
    """The unpickler's stack and memo, holding kinds instead of objects."""

    def __init__(self) -> None:
        self.values: list[int] = []
        self.marks: list[int] = []  # positions, as the C unpickler keeps them
        self.memo: dict[int, int] = {}

    def pop(self) -> int:
        if not self.values or (self.marks and len(self.values) <= self.marks[-1]):
            raise PickleRefused("pops a value the pickle never pushed (corrupt or hostile)")
        return self.values.pop()

    def top(self) -> int:
        value = self.pop()
        self.values.append(value)
        return value

    def pop_mark(self) -> list[int]:
        if not self.marks:
            raise PickleRefused("closes a mark it never opened (corrupt or hostile)")
        at = self.marks.pop()
        items = self.values[at:]
        del self.values[at:]
        return items


def _keys_only(kinds: list[int]) -> None:
    if any(k != _KEY for k in kinds):
        raise PickleRefused("has a dictionary key or set member that is not text or an integer "
                            "(NVIDIA's never are; others can crash or stall the unpickler)")


def _step(name: str, arg: object, st: _Stack) -> None:
    """Replay one instruction's effect on the stack of kinds."""
    if name in _GETS:
        if arg not in st.memo:
            raise PickleRefused(f"reads pickle memo slot {arg}, never written (corrupt)")
        st.values.append(st.memo[arg])
    elif name in _PUTS:
        st.memo[arg] = st.top()  # type: ignore[index]
    elif name == "MEMOIZE":
        st.memo[len(st.memo)] = st.top()
    elif name == "MARK":
        st.marks.append(len(st.values))
    elif name == "POP" and st.marks and st.marks[-1] == len(st.values):
        st.marks.pop()  # POP right after MARK drops the mark (as the C unpickler does)
    elif name == "DUP":
        st.values.append(st.top())
    else:
        below, popped, pushed = _EFFECTS[name]
        if below is not None:
            items = st.pop_mark()
            if name in _KEYED:
                if len(items) % 2:
                    raise PickleRefused("has a dictionary with a key but no value (corrupt)")
                _keys_only(items[::2])
            elif name in _MEMBERS:
                _keys_only(items)
            popped = below
        elif name == "SETITEM":
            _keys_only(st.values[-2:-1] or [_OTHER])
        for _ in range(popped):
            st.pop()
        st.values.extend(pushed)


def scan(stream: io.BytesIO, forbidden: set[str], budget: OpBudget) -> None:
    """Check one pickle's instructions up to its STOP (`stream` is left just after it)."""
    st, count, limit = _Stack(), 0, budget.left
    start = stream.tell()
    size, _ = stream.seek(0, io.SEEK_END), stream.seek(start)
    try:
        for opcode, arg, pos in pickletools.genops(stream):
            count += 1
            name = opcode.name
            if count > limit:
                raise PickleRefused(f"holds more than {MAX_OPS} pickle instructions (a network "
                                    "snapshot holds far fewer; refused as hostile)")
            if name in forbidden:
                raise PickleRefused(f"holds the pickle instruction {name}, which NVIDIA's "
                                    "snapshots never use (it can reach foreign code)")
            if name in _INT_OPS and abs(arg) >= MAX_INT and arg != LEGACY_MAGIC:  # type: ignore[arg-type]
                raise PickleRefused("holds an integer beyond 2^64 (no network value is)")
            if (name in _GETS or name in _PUTS) and not 0 <= arg <= count:  # type: ignore[operator]
                raise PickleRefused(f"refers to pickle memo slot {arg} (corrupt or hostile)")
            if name == "FRAME" and pos + 9 + arg > size:  # type: ignore[operator]
                raise PickleRefused(f"has a frame of {arg} bytes where the file holds "
                                    f"{size - pos - 9} (truncated or forged)")
            _step(name, arg, st)
    except ValueError as e:  # genops: truncated argument, unknown opcode, missing STOP
        raise PickleRefused(f"is not a complete pickle ({str(e)[:120]})") from None
    finally:
        budget.left -= count
