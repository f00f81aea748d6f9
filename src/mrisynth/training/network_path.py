"""What a `--network` / `--resume` / run-folder path names, checked before anything loads it.

Every command that takes a trained network (generate, metrics, report, train --resume, demo)
reaches `checkpoint.resolve_snapshot` or `list_snapshots`, which call `check_network_path`; the
CLI's `NetworkPath` parameter calls it too, so a wrong path is refused with the words the user
typed and what was expected, not a derived name (`data/train.safetensors`). Torch-free, so that
parsing a command line stays cheap.
"""

from __future__ import annotations

import itertools
import re
import zipfile
from pathlib import Path

from mrisynth.errors import CheckpointError

EXPECTED = "expected a run folder (e.g. runs/00000-...) or a network-snapshot-*.safetensors file"
RUN_DIR_EXPECTED = "expected a run folder made by `mrisynth train` (e.g. runs/00000-...)"
_RUN_NAME = re.compile(r"^\d{5,}-")
_PICKLES = (".pkl", ".pickle")
MAX_LISTED = 10_000  # folder entries looked at for run names (a hint, not a search)


def check_network_path(path: str | Path, *, folder_only: bool = False) -> Path:
    """`path` as a Path when it can name a network (a folder, or a .safetensors file);
    otherwise a CheckpointError saying what `path` is and what was expected."""
    p = Path(path)
    expected = RUN_DIR_EXPECTED if folder_only else EXPECTED
    if not str(path).strip():  # Path('') is '.', a folder the user never named
        raise CheckpointError(f"an empty path was given; {expected}")
    problem = _problem(p, folder_only)
    if problem is not None:
        raise CheckpointError(_message(path, problem, expected))
    return p


def check_run_has_snapshots(run_dir: Path) -> None:
    """Called when `run_dir` holds no snapshot: say what the folder is instead."""
    what = _folder_kind(run_dir)
    if what is not None:
        raise CheckpointError(_message(run_dir, what, EXPECTED))
    raise CheckpointError(
        f"{run_dir}: no network-snapshot-*.safetensors here (a run that has not saved one yet, "
        "or not a run folder); " + EXPECTED
    )


# (what the path is, whether that text already says what to give instead)
_Problem = tuple[str, bool]


def _message(path: str | Path, problem: _Problem, expected: str) -> str:
    text, names_fix = problem
    return f"{path}: {text}" + ("" if names_fix else f"; {expected}")


def _problem(p: Path, folder_only: bool) -> _Problem | None:
    if not folder_only and not p.is_dir() and _weights_beside(p).is_file():
        return None  # the snapshot's .json copy or its bare stem name the snapshot
    if p.suffix.lower() in _PICKLES:
        return (
            "NVIDIA pickles are not loaded directly (a pickle can run any code); convert it "
            "with `mrisynth import-nvidia` and give the .safetensors file it writes",
            True,
        )
    if not p.exists():
        return "not found" + _siblings_hint(p), False
    if p.is_dir():
        return _folder_kind(p) if not any(p.glob("network-snapshot-*")) else None
    if not p.is_file():
        return "not a snapshot (not a regular file: a pipe, device or socket)", False
    if _is_zip(p):
        return "a training archive (ZIP from `mrisynth dataset`), not a network", False
    if folder_only:
        return "a file, not a folder", False
    if p.suffix != ".safetensors":
        return f"not a snapshot ({p.suffix or 'no suffix'} file)", False
    return None


def _weights_beside(p: Path) -> Path:
    return p.with_name(p.name.removesuffix(".json").removesuffix(".safetensors") + ".safetensors")


def _folder_kind(p: Path) -> _Problem | None:
    """What a folder without snapshots is, when it is recognisably something else."""
    if (p / "dataset.json").is_file():
        return "a training archive folder (from `mrisynth dataset`), not a run folder", False
    if (p / "manifest.csv").is_file() and (p / "report.json").is_file():
        return "a `prepare` output folder, not a run folder", False
    if (p / "generation.json").is_file() or (p / "generation.partial.json").is_file():
        return "a folder of generated images, not a run folder", False
    runs = _run_folders(p)
    if runs:
        return f"a folder of runs, not one run; give one, e.g. {p / runs[-1]}", True
    return None


def _siblings_hint(p: Path) -> str:
    """For a mistyped run folder: the runs that exist beside it."""
    parent = p.parent
    if not parent.is_dir():
        return ""
    runs = _run_folders(parent)
    if not runs:
        return ""
    shown = ", ".join(runs[-3:])
    return f" ({parent} holds {len(runs)} run(s): {'..., ' if len(runs) > 3 else ''}{shown})"


def _run_folders(folder: Path) -> list[str]:
    try:
        entries = itertools.islice(folder.iterdir(), MAX_LISTED)
        return sorted(c.name for c in entries if _RUN_NAME.match(c.name) and c.is_dir())
    except OSError:
        return []


def _is_zip(p: Path) -> bool:
    try:
        return zipfile.is_zipfile(p)  # a regular file: a FIFO would block here
    except OSError:
        return False
