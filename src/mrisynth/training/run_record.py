"""What a run folder recorded about how it was started (`training_options.json`): the archive
a `--resume` continues on, and earlier runs that a new run with the same options duplicates.

Read as untrusted JSON (a run folder may come from anyone); torch-free.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mrisynth import untrusted
from mrisynth.errors import InputError
from mrisynth.training.options import RESUME_OVERRIDABLE, RESUME_PER_INVOCATION

log = logging.getLogger(__name__)

OPTIONS_NAME = "training_options.json"
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


def same_option_runs(outdir: Path, options: dict[str, Any]) -> list[Path]:
    """Run folders in `outdir` started with the same data (content hash) and the same options,
    apart from those a resume may change: a new run would repeat them."""
    if not outdir.is_dir():
        return []
    wanted = _comparable(options)
    found = []
    for run in sorted(outdir.iterdir()):
        if not (run / OPTIONS_NAME).is_file() or not run.name[:5].isdigit():
            continue
        try:
            theirs = recorded_options(run)
        except InputError:
            continue  # a damaged record is not a match; the run itself is not ours to judge
        if theirs is not None and _comparable(theirs) == wanted:
            found.append(run)
    return found


def _comparable(options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    user = options.get("user")
    user = user if isinstance(user, dict) else {}
    kept = {k: v for k, v in user.items() if k not in _NOT_COMPARED}
    return options.get("dataset_hash"), kept


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
