"""What a run folder recorded about how it was started (`training_options.json`): the archive
it was trained on (the one place that finds it again, for `--resume`, metrics, report and
generate), the snapshot a new run started from (`resume_source`), and earlier
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
DATA_RESOLVED = "data_resolved"  # absolute path of --data, recorded beside it as typed
MAX_PATH_CHARS = 4096
# Keys naming the archive: mrisynth's first, then NVIDIA's (`path`) and older spellings.
_DATA_KEYS = ("data", "path", "data_path", "dataset", "training_data")
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
    was trained on, checked to be there (see `archive_candidates` for where it is looked for).

    Raises InputError naming the run's record, every place tried and what to pass when it
    cannot be used.
    """
    run_dir = run_dir_of(run)
    options = recorded_options(run_dir) or {}
    tried = archive_candidates(options, run_dir)
    if not tried:
        raise InputError(
            f"{option} {run}: {run_dir / OPTIONS_NAME} is missing or does not name the training "
            "archive; pass --data ARCHIVE"
        )
    found = _first_existing(tried)
    if found is None:
        raise InputError(
            f"{option} {run}: the training archive recorded in {run_dir / OPTIONS_NAME} is not "
            f"there (tried {', '.join(untrusted.printable(str(p)) for p in tried)}; current folder "
            f"{untrusted.printable(str(Path.cwd()))}); pass --data ARCHIVE"
        )
    return str(found)


def find_recorded_data(options: dict[str, Any] | None, run_dir: Path) -> Path | None:
    """The run's training archive from its record `options` if it is still there, else None."""
    record = options if isinstance(options, dict) else {}  # a report reads any JSON here
    return _first_existing(archive_candidates(record, run_dir))


def archive_candidates(options: dict[str, Any], run_dir: Path) -> list[Path]:
    """Where a run's archive may be, in order: each recorded path as typed (relative to the
    current folder), the absolute path training resolved it to (`data_resolved`; runs from
    before it lack it), then each relative path from the run folder. Hostile values (not text,
    too long, NUL) are skipped."""
    typed = _recorded_paths(options)
    resolved = _path_text(options.get(DATA_RESOLVED))
    ordered = [Path(t) for t in typed] + ([Path(resolved)] if resolved else [])
    ordered += [run_dir / t for t in typed if not Path(t).is_absolute()]
    return list(dict.fromkeys(ordered))  # each place once, first mention first


def with_data_resolved(options: dict[str, Any]) -> dict[str, Any]:
    """`options` plus the absolute path of its `--data` as training resolves it now, so the
    archive is found later from any folder (the typed path stays as typed, for --resume)."""
    data = _path_text(_user(options).get("data"))
    if data is None:
        return options
    try:
        resolved = str(Path(data).resolve())
    except (OSError, RuntimeError):  # a symlink loop: absolute, not resolved
        resolved = str(Path(data).absolute())
    return {**options, DATA_RESOLVED: resolved}


def _recorded_paths(options: dict[str, Any]) -> list[str]:
    """The archive paths a record names: mrisynth's `user.data` first, then other spellings
    (NVIDIA's `training_set_kwargs.path`, older or hand-written records)."""
    scopes = [_user(options), options] + [
        options[k] for k in ("training_set_kwargs",) if isinstance(options.get(k), dict)
    ]
    values = (_path_text(scope.get(k)) for scope in scopes for k in _DATA_KEYS)
    return list(dict.fromkeys(v for v in values if v))


def _path_text(value: Any) -> str | None:
    ok = isinstance(value, str) and 0 < len(value) <= MAX_PATH_CHARS and "\0" not in value
    return value if ok else None


def _first_existing(paths: list[Path]) -> Path | None:
    for p in paths:
        with contextlib.suppress(OSError, ValueError):
            if p.exists():
                return p
    return None


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
