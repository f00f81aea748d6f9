"""Which class a user asks for: class names recorded in a snapshot, `--position` / `--label`.

Training records the archive's class names (`dataset --labels`, see `data/conditions.py`) in
the snapshot state (`resolved.classes`). Names look like `pos0.25-0.50` (a position bin),
`t1_opp` (a sequence) or `t1_opp+pos0.25-0.50` (one class per pair).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from mrisynth.data.conditions import bin_name, position_bin
from mrisynth.data.labels import checked_class_names
from mrisynth.errors import CheckpointError, ConfigError, InputError

_NAME = re.compile(r"^(?:(?P<seq>[^+]+)\+)?(?P<pos>pos[0-9.]+-[0-9.]+)$")


def snapshot_class_names(path: str | Path) -> list[str] | None:
    """Class names in a (verified, format-2) snapshot file; None when it records none."""
    from mrisynth.training.snapshot_format import header, parsed

    path = Path(path)
    try:
        meta = header(path)
    except CheckpointError:  # a plain network file (save_network) has no training state
        return None
    if meta.get("version") == "1":
        return None
    state, _ = parsed(path, meta)
    resolved = state.get("resolved")
    names = resolved.get("classes") if isinstance(resolved, dict) else None
    if not names:
        return None
    try:
        return checked_class_names(names, f"{path}: state.resolved.classes")
    except InputError as e:
        raise CheckpointError(str(e)) from None


def _norm(text: str) -> str:
    return text.strip().lower().replace("-", "_")


def class_parts(name: str) -> tuple[str | None, str | None]:
    """(sequence, position bin name) of a class name; a plain name is a sequence."""
    m = _NAME.match(name)
    if m is None:
        return name, None
    return m.group("seq"), m.group("pos")


def pick_class(
    names: list[str] | None,
    c_dim: int,
    *,
    position: float | None = None,
    label: str | None = None,
) -> int:
    """The class index for `--position` (0 = top .. 1 = bottom) and/or `--label` (a class or
    sequence name; '-' and '_' alike, any case). ConfigError names the choices."""
    if not names:
        why = "an unconditional generator" if c_dim == 0 else "no class names recorded"
        raise ConfigError(f"--position/--label need class names ({why}: train on an archive "
                          "made with `mrisynth dataset --labels ...`); use --class N instead")
    if len(names) != c_dim:
        raise ConfigError(f"the snapshot records {len(names)} class names for {c_dim} classes")
    parts = [class_parts(n) for n in names]
    candidates = list(range(len(names)))
    if position is not None:
        if not (isinstance(position, float | int) and math.isfinite(position)
                and 0 <= position <= 1):
            raise ConfigError(f"--position {position}: give a number from 0 (top) to 1 (bottom)")
        bins = sorted({p for _, p in parts if p is not None})
        if not bins:
            raise ConfigError(f"--position: this model has no position classes ({_list(names)})")
        wanted = bin_name(position_bin(float(position), len(bins)), len(bins))
        candidates = [i for i in candidates if parts[i][1] == wanted]
    if label is not None:
        key = _norm(label)
        if not key:
            raise ConfigError(f"--label {_shown(label)}: empty; give a class or sequence name "
                              f"({_list(names)})")
        exact = [i for i in candidates if _norm(names[i]) == key]
        candidates = exact or [i for i in candidates if _norm(parts[i][0] or "") == key]
    if len(candidates) == 1:
        return candidates[0]
    asked = " ".join(f"{k} {_shown(v)}" for k, v in (("--position", position),
                                                    ("--label", label)) if v is not None)
    if not candidates:
        raise ConfigError(f"{asked}: no such class; the model's classes are {_list(names)}")
    raise ConfigError(f"{asked} fits {len(candidates)} classes "
                      f"({_list([names[i] for i in candidates])}); "
                      f"{_narrow([parts[i] for i in candidates], position, label)}")


def _narrow(parts: list[tuple[str | None, str | None]], position, label) -> str:
    """What the user can add to an ambiguous request, given the fitting classes' parts."""
    if label is None and len({s for s, _ in parts}) > 1:
        return "add --label SEQUENCE (one of the names before '+')"
    if position is None and len({p for _, p in parts}) > 1:
        return "add --position P (0 = top .. 1 = bottom)"
    return "these names differ only in case or - and _; use --class N"


def _shown(value) -> str:
    """What the user typed, quoted when it would not read as one plain word."""
    text = str(value)[:64]
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def _list(names: list[str]) -> str:
    shown = ", ".join(names[:12])
    return shown + (f", ... ({len(names)} in all)" if len(names) > 12 else "")


def requested_class(opts, request: tuple[float | None, str | None], snapshot: Path, c_dim: int):
    """`opts` (SamplingOptions) with the class of `request` = (position, label)."""
    import dataclasses

    if opts.class_idx is not None:
        raise ConfigError("give --class N or --position/--label, not both")
    position, label = request
    index = pick_class(snapshot_class_names(snapshot), c_dim, position=position, label=label)
    return dataclasses.replace(opts, class_idx=index)


def require_class(class_idx: int | None, snapshot: Path, c_dim: int) -> None:
    """ConfigError when a conditional generator is given no class: name every way to ask,
    with the recorded class names (--position/--label) when there are any."""
    if c_dim == 0 or class_idx is not None:
        return
    names = snapshot_class_names(snapshot)
    by_name = (f", or --position P (0 = top .. 1 = bottom) / --label NAME ({_list(names)})"
               if names and len(names) == c_dim else "")
    raise ConfigError(f"the generator is conditional ({c_dim} classes): pass --class "
                      f"0..{c_dim - 1}{by_name}")


def class_name(snapshot: Path, c_dim: int, class_idx: int | None) -> str | None:
    """The recorded name of the class a conditional run generates (None when unnamed)."""
    if class_idx is None or c_dim == 0:
        return None
    names = snapshot_class_names(snapshot)
    return names[class_idx] if names and len(names) == c_dim and class_idx < c_dim else None
