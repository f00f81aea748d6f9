"""Is a `mrisynth dataset` SOURCE what `prepare` makes? A newcomer hands it the DICOM tree
itself, whose mask PNGs then fail the size check with a message about a mask; say instead
that `prepare` comes first. `explained` does the same for every image archive a command opens
(`train --data`, `metrics --data`, `reader-study --real`, ...): a DICOM tree, a run folder, a
folder of runs or a network file is named as what it is, not by the first PNG that fails.

Only a bounded look (the first files of a walk, 132 bytes each), so a huge tree costs nothing.
"""

from __future__ import annotations

import itertools
import os
import re
import stat
import zipfile
from pathlib import Path

from mrisynth.data.archive import MANIFEST_NAME
from mrisynth.errors import InputError

MAX_LOOKED_AT = 2000  # files examined before giving up the search for DICOM
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_NOT_DICOM_SUFFIXES = (".png", ".json", ".csv", ".txt", ".zip")  # never opened to look for DICM
_GENERATED = ("generation.json", "generation.partial.json")  # generate's (maybe unfinished)
_RUN_NAME = re.compile(r"^\d{5,}-")
EXPECTED_IMAGES = (
    "expected PNG images: a training archive from `mrisynth dataset` or a folder of PNGs"
)


def refuse_non_archive(path: Path) -> None:
    """InputError when the folder `path` is a DICOM tree, a run folder or a folder of runs:
    checked before any PNG is read, since CHAOS's 256x256 mask PNGs would pass as images."""
    what = describe(path) if path.is_dir() else None
    if what is not None:
        raise InputError(f"{path}: {what}")


def explained(path: Path, error: InputError) -> InputError:
    """`error` (raised opening `path` as an image archive), or one saying what `path` is
    when it is recognisably something else."""
    what = describe(path)
    return error if what is None else InputError(f"{path}: {what}")


def describe(path: Path) -> str | None:
    """What `path` is when it is a known non-archive (DICOM tree, run, runs, network file)."""
    try:
        if path.is_file():
            return _describe_file(path)
        if path.is_dir():
            return _describe_folder(path)
    except OSError:
        pass
    return None


def _describe_file(path: Path) -> str | None:
    if path.suffix.lower() in (".pkl", ".pickle"):
        return f"an NVIDIA network pickle, not images; {EXPECTED_IMAGES}"
    if path.suffix.lower() == ".safetensors":
        return f"a network snapshot, not images; {EXPECTED_IMAGES}"
    if path.suffix.lower() in _DICOM_SUFFIXES or _has_dicom_magic(path):
        return _prepare_first(path.parent, "a DICOM file")
    return None


def _describe_folder(path: Path) -> str | None:
    if any((path / n).is_file() for n in (MANIFEST_NAME, *_GENERATED)):
        return None  # prepare's or generate's output: its own errors say what is wrong
    if (path / "training_options.json").is_file() or any(path.glob("network-snapshot-*")):
        return (
            "a training run folder (`mrisynth train`), not images (its training_options.json "
            f"names the archive it trained on); {EXPECTED_IMAGES}"
        )
    if _holds_runs(path):
        return f"a folder of training runs, not images; {EXPECTED_IMAGES}"
    found = first_dicom(path)
    if found is not None:
        return _prepare_first(path, f"a DICOM tree (e.g. {found.relative_to(path)})")
    return None


def _prepare_first(path: Path, what: str) -> str:
    """`path`: the folder to hand to prepare."""
    return (
        f"{what}, not PNG images; `prepare` comes first: mrisynth prepare {path} -o PREPARED, "
        "then mrisynth dataset PREPARED -o train.zip"
    )


def _holds_runs(folder: Path) -> bool:
    entries = itertools.islice(folder.iterdir(), MAX_LOOKED_AT)
    return any(
        _RUN_NAME.match(e.name) and (e / "training_options.json").is_file() for e in entries
    )


def refuse_unprepared(source: Path) -> None:
    """InputError when `source` is a folder without prepare's manifest that holds DICOM."""
    if not source.is_dir() or (source / MANIFEST_NAME).is_file():
        return
    found = first_dicom(source)
    if found is not None:
        raise InputError(
            f"{source}: a DICOM tree (e.g. {found.relative_to(source)}), not a `prepare` output "
            f"(no {MANIFEST_NAME}); `prepare` comes first: mrisynth prepare {source} -o PREPARED, "
            "then mrisynth dataset PREPARED -o train.zip"
        )


def unprepared_hint(source: Path) -> str:
    """A clause for errors about a source without prepare's manifest ('' with one, or when the
    error already says what the source is)."""
    if (source / "grid.png").is_file() and (source / "generation.json").is_file():
        return (f" ({source} is a `mrisynth generate --grid` output: its grid.png is no "
                "training image; move grid.png out of it, or generate without --grid)")  # fmt: skip
    if not source.is_dir() or (source / MANIFEST_NAME).is_file() or describe(source):
        return ""
    return (
        f" ({source} has no {MANIFEST_NAME}, so it is not a `prepare` output: make the training "
        "PNGs with `mrisynth prepare` first)"
    )


def first_dicom(folder: Path) -> Path | None:
    """The first DICOM file (by suffix or the 'DICM' magic) among the first files of a walk."""
    looked = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(n for n in filenames if not n.startswith(".")):
            path = Path(dirpath) / name
            lower = name.lower()
            if lower.endswith(_DICOM_SUFFIXES) or (
                not lower.endswith(_NOT_DICOM_SUFFIXES) and _has_dicom_magic(path)
            ):
                return path
            looked += 1
            if looked >= MAX_LOOKED_AT:
                return None
    return None


def _has_dicom_magic(path: Path) -> bool:
    try:
        if not stat.S_ISREG(path.lstat().st_mode):  # a FIFO would block, a link may leave
            return False
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def not_dicom_hint(inputs: list[Path]) -> str:
    """For `prepare` finding no DICOM at all: what the inputs are instead ('' when unknown)."""
    for path in inputs:
        if path.is_file() and zipfile.is_zipfile(path):
            return (f"; {path} is a ZIP archive: unzip it and give the folder (prepare reads "
                    "DICOM files, not archives)")  # fmt: skip
        if path.is_dir() and (path / MANIFEST_NAME).is_file():
            return (f"; {path} holds PNGs with a manifest.csv (a `prepare` or `generate` output)"
                    f": prepare reads DICOM; to train on prepared PNGs, mrisynth dataset {path} "
                    "-o train.zip")  # fmt: skip
        what = describe(path)
        if what is not None and "DICOM" not in what:  # a run, runs or a network file
            return f"; {path} is {what.split(' (')[0].split(',')[0]}, not DICOM studies"
    return ""

