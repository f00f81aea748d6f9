"""Patient-level holdout: whole patients kept out of training, in a sibling archive.

`mrisynth dataset --holdout-patients N` writes `data.zip` (training) and `data-holdout.zip`
(held-out patients, never seen by training); audits and metrics that need "unseen" real images
find the holdout with `find_holdout(train_archive)`, which guarantees the two share no patient.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrisynth.data.archive import ImageArchive
from mrisynth.data.labels import META_KEY
from mrisynth.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

HOLDOUT_SUFFIX = "-holdout"


def holdout_path(train_archive: str | os.PathLike[str]) -> Path:
    """The holdout's name next to the training archive: `data.zip` -> `data-holdout.zip`,
    folder `data` -> `data-holdout`."""
    path = Path(train_archive)
    if path.suffix.lower() == ".zip":
        return path.with_name(f"{path.stem}{HOLDOUT_SUFFIX}{path.suffix}")
    return path.with_name(f"{path.name}{HOLDOUT_SUFFIX}")


def find_holdout(train_archive: str | os.PathLike[str] | ImageArchive) -> ImageArchive | None:
    """Open the holdout archive beside `train_archive`, or None if there is none.

    Raises InputError when the holdout shares a patient with the training archive, when either
    lacks patient keys (disjointness cannot be checked), or when its images differ in shape.
    """
    train = train_archive if isinstance(train_archive, ImageArchive) else None
    train_path = train.path if train is not None else Path(train_archive)
    path = holdout_path(train_path)
    if not path.exists():
        recorded = holdout_record(train) if train is not None else None
        if recorded:
            logger.warning("%s records a holdout archive, but %s is missing", train_path, path)
        return None
    if train is None:
        train = ImageArchive(train_path)
    held = ImageArchive(path)
    check_disjoint(train, held)
    if held.image_shape != train.image_shape:
        raise InputError(
            f"{path}: images are {list(held.image_shape)}, the training archive's "
            f"{list(train.image_shape)}; re-create both with `mrisynth dataset --holdout-patients`"
        )
    return held


def check_disjoint(train: ImageArchive, held: ImageArchive) -> None:
    """InputError unless both archives have patient keys and share none."""
    for arc in (train, held):
        if arc.patient_keys is None:
            raise InputError(
                f"{arc.path}: no patient keys (manifest.csv with patient_key), so the holdout "
                "cannot be checked to share no patient with training; re-create both with "
                "`mrisynth dataset --holdout-patients` from prepare's output"
            )
    shared = set(train.patient_keys or ()) & set(held.patient_keys or ())
    if shared:
        raise InputError(
            f"{held.path}: {len(shared)} patient(s) also in the training archive {train.path}; "
            "a holdout must hold whole unseen patients: re-create both with "
            "`mrisynth dataset --holdout-patients`"
        )


def holdout_record(archive: ImageArchive) -> dict | None:
    """The `{"num_patients", "seed", "archive", ...}` record in an archive's dataset.json."""
    meta = archive.dataset_json().get(META_KEY)  # checked and cached when the archive opened
    rec = meta.get("holdout") if isinstance(meta, dict) else None
    return rec if isinstance(rec, dict) else None


def num_holdout_patients(request: str | float, num_patients: int) -> int:
    """`--holdout-patients` value -> a count: an int N, or a fraction in (0, 1) of the patients.

    At least one patient stays in each archive.
    """
    text = str(request).strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"--holdout-patients {text}: give a number of patients (e.g. 2) or a fraction "
            "between 0 and 1 (e.g. 0.2)"
        )
    if value < 1:
        count = max(1, round(value * num_patients))
    elif not text.isdigit():  # '1.0' or '1e0' reads as a fraction, and a fraction must be < 1
        raise ConfigError(
            f"--holdout-patients {text}: a fraction must be below 1; for a number of patients "
            "write it without a decimal point (e.g. "
            f"{int(value) if value.is_integer() and value < 1e6 else 2})"
        )
    elif value.is_integer():
        count = int(value)
    else:
        raise ConfigError(f"--holdout-patients {text}: a count must be a whole number")
    if count >= num_patients:
        raise ConfigError(
            f"--holdout-patients {text}: the source has {num_patients} patient(s); at least one "
            "must stay for training"
        )
    return count


def choose_holdout_patients(patient_keys: Sequence[str], count: int, seed: int) -> set[str]:
    """`count` distinct patients drawn with `seed`; depends only on the set of keys, not on
    image order or how many images each patient has."""
    unique = sorted(set(patient_keys))
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(unique), size=count, replace=False)
    return {unique[i] for i in picked}
