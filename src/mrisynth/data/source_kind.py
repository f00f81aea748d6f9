"""Is a `mrisynth dataset` SOURCE what `prepare` makes? A newcomer hands it the DICOM tree
itself, whose mask PNGs then fail the size check with a message about a mask; say instead
that `prepare` comes first.

Only a bounded look (the first files of a walk, 132 bytes each), so a huge tree costs nothing.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mrisynth.data.archive import MANIFEST_NAME
from mrisynth.errors import InputError

MAX_LOOKED_AT = 2000  # files examined before giving up the search for DICOM
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


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
    """A clause for errors about a source without prepare's manifest ('' with one)."""
    if not source.is_dir() or (source / MANIFEST_NAME).is_file():
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
            if name.lower().endswith(_DICOM_SUFFIXES) or _has_dicom_magic(path):
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
