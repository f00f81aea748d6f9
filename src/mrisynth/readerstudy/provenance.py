"""Refusing inputs whose images are not of the class the option claims.

A study's truth is whatever `--real` and `--synthetic` say, so a swapped or wrong folder makes
every result false without any error: prepared slices (real patients) given as --synthetic,
`mrisynth generate`'s folder given as --real, or a reader study's own `images/` (both classes,
mixed) given as either. Each is recognised by what mrisynth itself writes there.
"""

from __future__ import annotations

from pathlib import Path

from mrisynth.errors import InputError
from mrisynth.generate.output_folder import INFO_NAME
from mrisynth.readerstudy.store import DB_NAME


def check_sources(real: Path, synthetic: Path) -> None:
    """InputError naming the option when an input is recognisably of the wrong kind."""
    for flag, path in (("--real", real), ("--synthetic", synthetic)):
        study = enclosing_study(path)
        if study is not None:
            raise InputError(
                f"{flag} {path}: part of the reader study {study} (its images are real and "
                "synthetic mixed); give the images a study is made from"
            )
    if real.is_dir() and _is_generated(real):
        raise InputError(
            f"--real {real}: `mrisynth generate` output (synthetic images); give a training "
            "archive or prepared folder of real slices"
        )
    if synthetic.is_dir() and _names_patients(synthetic):
        raise InputError(
            f"--synthetic {synthetic}: its manifest.csv names patients, so these are real "
            "slices (`mrisynth prepare`/`dataset` output); give `mrisynth generate`'s folder "
            "or a snapshot or run folder"
        )


def enclosing_study(path: Path) -> Path | None:
    """The reader-study folder `path` is or lies in (it holds study.sqlite), else None."""
    resolved = path.resolve()
    for folder in (resolved, *resolved.parents):
        if (folder / DB_NAME).is_file():
            return folder
    return None


def _manifest(folder: Path) -> list[dict[str, str]]:
    """The rows of folder/manifest.csv ([] when absent or unreadable: the folder's own reader
    reports that). Read as generate's consumers read it: no link followed, a FIFO never
    waited on, bounded."""
    from mrisynth.data.manifest import read_manifest
    from mrisynth.generate.folder_files import read_file

    try:
        raw = read_file(folder, "manifest.csv")
        return [] if raw is None else read_manifest(raw.decode("utf-8"))
    except (InputError, UnicodeDecodeError):
        return []


def _is_generated(folder: Path) -> bool:
    """generate writes generation.json and a manifest with a `seed` column."""
    if (folder / INFO_NAME).is_file():
        return True
    rows = _manifest(folder)  # read only when generation.json does not settle it
    return bool(rows and "seed" in rows[0])


def _names_patients(folder: Path) -> bool:
    """prepare's and dataset's manifests carry a `patient_key` per slice; generate's do not."""
    return any((r.get("patient_key") or "").strip() for r in _manifest(folder))
