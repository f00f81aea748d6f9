"""What a run folder recorded about how it was started (`training_options.json`): the archive
a `--resume` continues on, the snapshot a new run started from (`resume_source`), and earlier
runs that a new run with the same options duplicates.

Read as untrusted JSON (a run folder may come from anyone); torch-free.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from mrisynth import untrusted
from mrisynth.errors import InputError
from mrisynth.training.options import RESUME_OVERRIDABLE, RESUME_PER_INVOCATION

log = logging.getLogger(__name__)

OPTIONS_NAME = "training_options.json"
RESUME_SOURCE = "resume_source"  # {"sha256", "path"} of a weights-only resume's snapshot
# Options a resume may change: two runs differing only in these are the same run continued.
_NOT_COMPARED = frozenset((*RESUME_PER_INVOCATION, *RESUME_OVERRIDABLE, "gpus"))


def run_dir_of(resume: str | Path) -> Path:
    """The run folder a `--resume` value names (the folder itself, or a snapshot's folder)."""
    p = Path(resume)
    return p if p.is_dir() else p.parent


def recorded_options(run_dir: Path) -> dict[str, Any] | None:
    """The run's training_options.json as a dict, or None when it has none."""
    path = run_dir / OPTIONS_NAME
    try:
        if not path.is_file():
            return None
        if path.stat().st_size > untrusted.MAX_JSON_BYTES:
            raise InputError(f"{path}: too large to be a run's options")
        value = untrusted.loads(path.read_bytes(), str(path), allow_nan=True)
    except untrusted.BadValue as e:
        raise InputError(f"{e}; pass --data ARCHIVE") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror or e})") from None
    return value if isinstance(value, dict) else None


def recorded_data(run: str | Path, option: str = "--resume") -> str:
    """The training archive the run behind `run` (a run folder or snapshot, typed as `option`)
    was trained on, checked to be there.

    Raises InputError naming the run's record and what to pass when it cannot be used.
    """
    run_dir = run_dir_of(run)
    options = recorded_options(run_dir) or {}
    user = options.get("user")
    data = (user.get("data") if isinstance(user, dict) else None) or options.get("data")
    if not isinstance(data, str) or not data:
        raise InputError(
            f"{option} {run}: {run_dir / OPTIONS_NAME} is missing or does not name the training "
            "archive; pass --data ARCHIVE"
        )
    if not Path(data).exists():
        raise InputError(
            f"{option} {run}: the run was trained on {data} (recorded in "
            f"{run_dir / OPTIONS_NAME}), which is not there from the current folder "
            f"{Path.cwd()}; run from the folder you trained in, or pass --data ARCHIVE"
        )
    return data


def with_resume_source(options: dict[str, Any], source: dict[str, Any] | None) -> dict[str, Any]:
    """`options` plus the snapshot a new run starts from (None: it starts from scratch or
    continues a run), as training_options.json records it."""
    return options if source is None else {**options, RESUME_SOURCE: source}


def same_option_runs(outdir: Path, options: dict[str, Any]) -> list[Path]:
    """Run folders in `outdir` started with the same data (content hash), the same options
    apart from those a resume may change, and from the same snapshot with the same
    `--resume-channels`: a new run would repeat them."""
    if not outdir.is_dir():
        return []
    wanted, source = _comparable(options), _source(options)
    found = []
    for run in sorted(outdir.iterdir()):
        if not (run / OPTIONS_NAME).is_file() or not run.name[:5].isdigit():
            continue
        try:
            theirs = recorded_options(run)
        except InputError:
            continue  # a damaged record is not a match; the run itself is not ours to judge
        if theirs and _comparable(theirs) == wanted and _same_source(_source(theirs), source):
            found.append(run)
    return found


def _user(options: dict[str, Any]) -> dict[str, Any]:
    user = options.get("user")
    return user if isinstance(user, dict) else {}


def _comparable(options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    user = _user(options)
    kept = {k: v for k, v in user.items() if k not in _NOT_COMPARED}
    # How the source's channels were adapted matters only for a run that has a source.
    kept["resume_channels"] = user.get("resume_channels", "same") if user.get("resume") else None
    return options.get("dataset_hash"), kept


def _source(options: dict[str, Any]) -> tuple[str | None, str | None]:
    """(content sha256, resolved path) of the snapshot a run started from; (None, None) for a
    run started from scratch. Records from before `resume_source` give the path as typed."""
    rec = options.get(RESUME_SOURCE)
    rec = rec if isinstance(rec, dict) else {}
    sha = rec.get("sha256") if isinstance(rec.get("sha256"), str) else None
    path = rec.get("path") or _user(options).get("resume")
    if not isinstance(path, str) or not path:
        return sha or None, None
    with contextlib.suppress(OSError, ValueError, RuntimeError):  # NUL, loops: as typed
        path = str(Path(path).resolve())
    return sha or None, path


def _same_source(a: tuple[str | None, str | None], b: tuple[str | None, str | None]) -> bool:
    """Same content when both sha256s are known (a copied or renamed file is the same source,
    a snapshot rewritten in place is not); else the same resolved path."""
    if a[0] and b[0]:
        return a[0] == b[0]
    return a[1] == b[1]


def hint_if_repeated(outdir: Path, options: dict[str, Any]) -> None:
    """Before a new run: say so when an earlier run with the same options could be resumed."""
    runs = same_option_runs(outdir, options)
    if runs:
        log.warning(
            "%s was started with the same data and options; this starts a new run beside it. "
            "To continue that one instead: mrisynth train --resume %s --kimg N",
            runs[-1],
            runs[-1],
        )
