"""Checks for values read from files a user hands us (snapshot state, network configs, options).

Every check names where the value sits (e.g. `state.loop.nimg`) and what was expected, and raises
`BadValue`; the caller adds the file the user typed and raises its own MrisynthError. Values are
checked before anything is sized from them, so a tampered file cannot ask for terabytes.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Large enough for any real run or network, small enough that nothing sized from it explodes.
MAX_JSON_BYTES = 32 * 2**20
MAX_JSONL_BYTES = 64 * 2**20  # a whole log or record file (one line per tick or evaluation)


class BadValue(Exception):
    """A value of the wrong type or outside its range; the message says where and what."""


def shown(value: Any) -> str:
    """A short repr for messages (long or huge values cut)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**40 else "a huge integer"
    return text if len(text) <= 40 else text[:37] + "..."


def printable(text: str) -> str:
    """Text from a file or a record, for a one-line message: control characters as escapes."""
    return text if text.isprintable() else repr(text)[1:-1]


def integer(value: Any, where: str, lo: int = 0, hi: int = 2**62) -> int:
    """An int (not a bool, not a float) in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadValue(f"{where} must be an integer, got {shown(value)}")
    if not lo <= value <= hi:
        raise BadValue(f"{where} must be in [{lo}, {hi}], got {shown(value)}")
    return value


def number(value: Any, where: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    """A finite int or float in [lo, hi] (NaN and infinities refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadValue(f"{where} must be a number, got {shown(value)}")
    try:
        x = float(value)
    except OverflowError:  # an int beyond any float
        x = math.inf
    if not math.isfinite(x) or not lo <= x <= hi:
        raise BadValue(f"{where} must be a finite number in [{lo:g}, {hi:g}], got {shown(value)}")
    return x


def boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise BadValue(f"{where} must be true or false, got {shown(value)}")
    return value


def text(value: Any, where: str, max_len: int = 4096) -> str:
    if not isinstance(value, str):
        raise BadValue(f"{where} must be a string, got {shown(value)}")
    if len(value) > max_len:
        raise BadValue(f"{where} is {len(value)} characters long (at most {max_len})")
    return value


def choice(value: Any, where: str, allowed: Sequence[Any]) -> Any:
    if isinstance(value, bool) != any(isinstance(a, bool) for a in allowed) or value not in allowed:
        names = ", ".join(map(repr, allowed))
        raise BadValue(f"{where} must be one of {names}, got {shown(value)}")
    return value


def mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise BadValue(f"{where} must be an object, got {type(value).__name__}")
    return value


def sequence(value: Any, where: str, min_len: int = 0, max_len: int = 1_000_000) -> list:
    if not isinstance(value, list):
        raise BadValue(f"{where} must be a list, got {type(value).__name__}")
    if not min_len <= len(value) <= max_len:
        raise BadValue(f"{where} must hold {min_len}..{max_len} items, got {len(value)}")
    return value


def optional(check: Callable[..., Any], value: Any, where: str, *args: Any, **kwargs: Any) -> Any:
    """`check(value, where, ...)` unless value is None (JSON null)."""
    return None if value is None else check(value, where, *args, **kwargs)


def scalar(value: Any, where: str) -> Any:
    """A JSON scalar (null, bool, finite number, short string): for keys we pass through."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return number(value, where)
    return text(value, where, max_len=256)


def loads(
    raw: str | bytes, where: str, max_bytes: int = MAX_JSON_BYTES, allow_nan: bool = False
) -> Any:
    """json.loads with a size bound, deep nesting as a BadValue and NaN/Infinity refused
    (kept as floats with `allow_nan`, for files whose readers filter values themselves)."""
    if len(raw) > max_bytes:
        raise BadValue(f"{where} is {len(raw)} bytes of JSON (at most {max_bytes})")

    def no_constants(name: str) -> float:
        raise BadValue(f"{where} holds {name}, which is not a number")

    try:
        return json.loads(raw, parse_constant=None if allow_nan else no_constants)
    except RecursionError:
        raise BadValue(f"{where} is nested too deeply to be ours") from None
    except ValueError as e:  # also UnicodeDecodeError and ints over 4300 digits
        raise BadValue(f"{where} is not valid JSON ({e})") from None


def read_jsonl(path: Path, max_bytes: int = MAX_JSONL_BYTES) -> list[dict[str, Any]]:
    """The JSON objects of a .jsonl file anyone could have written (run logs, metric records).

    A missing, unreadable or oversized file reads as empty; torn, malformed or absurdly nested
    lines and lines that are not objects are skipped; each case is logged. NaN is kept (the
    readers filter values themselves).
    """
    try:
        if not path.is_file():
            return []
        size = path.stat().st_size
        if size > max_bytes:
            log.warning("%s: %d bytes, more than such a file holds; left out", path, size)
            return []
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        log.warning("%s: unreadable (%s); left out", path, e)
        return []
    objects = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = loads(line, f"{path}:{n}", max_bytes, allow_nan=True)
        except BadValue as e:
            log.warning("%s; line skipped", e)
            continue
        if isinstance(obj, dict):
            objects.append(obj)
    return objects
