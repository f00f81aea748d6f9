"""Pack a folder of PNGs (normally `prepare`'s output) or an archive into a training archive.

Image bytes are copied, never re-encoded, so the packed archive's `content_hash()` equals the
source's. ZIPs are written deterministically (fixed timestamps, sorted order, stored), so
packing the same input twice gives the same bytes. With a patient-level holdout the held-out
patients' images go to a sibling archive (see `holdout.py`), written before the training one.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mrisynth import atomic
from mrisynth.data.archive import LABELS_NAME, MANIFEST_NAME, ImageArchive
from mrisynth.data.conditions import kept_names, named_labels
from mrisynth.data.holdout import (
    choose_holdout_patients,
    holdout_path,
    num_holdout_patients,
)
from mrisynth.data.labels import META_KEY, labels_to_array
from mrisynth.data.manifest import labels_from_manifest
from mrisynth.data.masks import mask_spec
from mrisynth.data.source_kind import refuse_unprepared, unprepared_hint
from mrisynth.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class PackResult:
    """What `pack_archive` wrote."""

    path: Path
    num_images: int
    resolution: int
    num_channels: int
    label_dim: int
    content_hash: str
    has_manifest: bool
    labels: str  # short description, e.g. "unlabelled" or "3 classes (one-hot)"
    holdout: PackResult | None = None  # the held-out patients' archive, if one was made
    num_patients: int | None = None  # distinct patient keys (None without a manifest)
    left_out: tuple[str, ...] = ()  # --masks: images without a usable mask, with the reason


@dataclass(frozen=True)
class _Part:
    """One archive to write: which images (indices into the source), labels, extra JSON."""

    dest: Path
    indices: list[int]
    labels: list | None
    meta: dict | None  # the "mrisynth" record of dataset.json


def _check_destination(source: Path, dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and not (dest.is_dir() or dest.is_file())):
        # a device, pipe or link: replacing it would move it away (e.g. -o /dev/null)
        raise ConfigError(f"{dest}: exists and is not a regular file or folder; choose another "
                          "output")
    src, dst = source.resolve(), dest.resolve()
    if dst == src:
        raise ConfigError(f"{dest}: the output must differ from the source")
    if src.is_dir() and dst.is_relative_to(src):  # a ZIP there too: inputs stay unchanged
        raise ConfigError(
            f"{dest}: an output inside the source {source} is not allowed (it would change "
            f"the source); write it beside, e.g. {source.parent / (source.name + '.zip')}"
        )
    if dest.is_dir() and dest.suffix.lower() == ".zip":
        raise ConfigError(f"{dest}: is a folder; choose another name for the ZIP")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / LABELS_NAME).is_file():
        raise ConfigError(
            f"{dest}: folder exists and is not a previous archive (no {LABELS_NAME}); "
            "choose an empty or new folder"
        )
    if dest.is_file() and dest.suffix.lower() != ".zip":
        raise ConfigError(f"{dest}: exists and is a file; use a .zip name or a folder")


def _resolve_labels(src: ImageArchive, label: str | None) -> list | None:
    """None keeps the source's labels (if any); otherwise derive them from its manifest."""
    if label in (None, "keep"):
        return src.label_list()  # checked against dataset.json's schema
    if label == "none":
        return None
    manifest = src.manifest_text()
    if manifest is None:
        raise InputError(
            f"{src.path}: labels '{label}' need {MANIFEST_NAME} (made by `mrisynth prepare`)"
        )
    source = f"{src.path}/{MANIFEST_NAME}"
    values = labels_from_manifest(manifest, src.names, label, source=source)
    labels_to_array(values, source)  # the schema archives are read with (finite, bounded)
    return values


def _manifest_subset(text: str, names: set[str]) -> bytes:
    """The manifest's header and the rows of `names` (a holdout part carries only its own)."""
    rows = list(csv.reader(io.StringIO(text)))
    col = rows[0].index("file")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(rows[0])
    writer.writerows(r for r in rows[1:] if len(r) > col and r[col].replace("\\", "/") in names)
    return buf.getvalue().encode("utf-8")


def _members(src: ImageArchive, part: _Part, split: bool) -> list[tuple[str, bytes | None]]:
    """(name, bytes) in archive order; image bytes are read lazily (None) to bound memory."""
    names = [src.names[i] for i in part.indices]
    labels = None if part.labels is None else [[n, v] for n, v in zip(names, part.labels,
                                                                      strict=True)]
    obj: dict = {"labels": labels}
    if part.meta:
        obj[META_KEY] = part.meta
    members: list[tuple[str, bytes | None]] = [(n, None) for n in names]
    members.append((LABELS_NAME, json.dumps(obj, separators=(",", ":")).encode("utf-8")))
    manifest = src.read_member(MANIFEST_NAME)
    if manifest is not None:
        text = src.manifest_text() or ""
        members.append((MANIFEST_NAME, _manifest_subset(text, set(names)) if split else manifest))
    return members


def _payload(src: ImageArchive, name: str, data: bytes | None) -> bytes:
    if data is not None:
        return data
    payload = src.read_member(name)
    if payload is None:
        raise InputError(f"{src.path}: member {name} vanished while packing")
    return payload


def _write_zip(dest: Path, src: ImageArchive, members: list[tuple[str, bytes | None]]) -> None:
    with atomic.atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, _payload(src, name, data))


def _inside(folder: Path, name: str) -> Path:
    """`folder / name`, refusing any name that would land outside `folder` (zip-slip)."""
    root = folder.resolve()
    target = (folder / name).resolve()
    if not target.is_relative_to(root) or target == root:
        raise InputError(f"refused member '{name}': it would be written outside {folder}")
    return target


def _write_folder(dest: Path, src: ImageArchive, members: list[tuple[str, bytes | None]]) -> None:
    """Fill a temp sibling folder, then swap it in, so `dest` is never half-written."""
    with atomic.disk_full_as_error(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for name, data in members:
            atomic.write_bytes(_inside(tmp, name), _payload(src, name, data))
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
            os.replace(dest, old / "x")
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _plan(
    src: ImageArchive, dest: Path, labels: list | None, holdout: str | None, seed: int,
    named: dict | None = None,
) -> list[_Part]:
    """The archives to write: the training one, and first the holdout if asked for.
    `named`: the class-name record of `--labels` (labels.condition_meta), kept in both."""
    everything = list(range(len(src)))
    if holdout is None:
        return [_Part(dest, everything, labels, named)]
    keys = src.patient_keys
    if keys is None:
        raise InputError(
            f"{src.path}: --holdout-patients needs {MANIFEST_NAME} with a patient_key for every "
            "image (made by `mrisynth prepare`); this source has none"
        )
    count = num_holdout_patients(holdout, len(set(keys)))
    held = choose_holdout_patients(keys, count, seed)
    train_idx = [i for i in everything if keys[i] not in held]
    held_idx = [i for i in everything if keys[i] in held]
    hold_dest = holdout_path(dest)

    def pick(idx: list[int]) -> list | None:
        return None if labels is None else [labels[i] for i in idx]

    record = {"num_patients": count, "num_images": len(held_idx), "seed": seed}
    shared = {}
    if labels and all(isinstance(v, int) for v in labels):  # same one-hot width in both parts
        shared["num_classes"] = max(labels) + 1
    shared.update(named or {})  # every named class, also those absent from the data
    return [
        _Part(hold_dest, held_idx, pick(held_idx),
              {"held_out_from": {**record, "archive": dest.name}, **shared}),
        _Part(dest, train_idx, pick(train_idx),
              {"holdout": {**record, "archive": hold_dest.name}, **shared}),
    ]


def _write_part(src: ImageArchive, part: _Part, split: bool) -> PackResult:
    members = _members(src, part, split)
    with atomic.output_errors(part.dest):
        if part.dest.suffix.lower() == ".zip":
            _write_zip(part.dest, src, members)
        else:
            _write_folder(part.dest, src, members)
    out = ImageArchive(part.dest)
    keys = out.patient_keys
    result = PackResult(
        path=part.dest,
        num_images=len(out),
        resolution=out.resolution,
        num_channels=out.num_channels,
        label_dim=out.label_dim,
        content_hash=out.content_hash(),
        has_manifest=out.manifest_text() is not None,
        labels=label_summary(out.labels),
        num_patients=None if keys is None else len(set(keys)),
    )
    out.close()
    logger.info("packed %d images into %s (hash %s)", result.num_images, part.dest,
                result.content_hash)
    return result


def pack_archive(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    label: str | None = None,
    holdout_patients: str | float | None = None,
    holdout_seed: int = 0,
    labels: str | None = None,
    masks: bool = False,
) -> PackResult:
    """Validate every image of `source` and write it as a training archive at `dest`.

    `dest` ending in `.zip` gives an uncompressed ZIP, anything else a folder. `label`: None or
    'keep' = the source's dataset.json labels (if any), 'none' = unlabelled, or a manifest-derived
    label (see `mrisynth.data.manifest.LABEL_CHOICES`). `holdout_patients` (a count, or a
    fraction below 1) moves whole patients, drawn with `holdout_seed`, into the sibling archive
    `holdout_path(dest)`; labels are derived over all images first, so class numbers agree.
    `labels` ('position:K', 'sequence' or both, see `data/conditions.py`) gives named classes
    derived from the manifest instead of `label`. `masks` packs each image with its
    `prepare --masks` label map as one 2-channel image (`mrisynth.data.pairing`); images
    without a usable mask are left out (listed in `left_out`).
    """
    source, dest = Path(source), Path(dest)
    _check_destination(source, dest)
    sibling = holdout_path(dest)
    if holdout_patients is not None:
        _check_destination(source, sibling)
    elif sibling.exists():
        raise ConfigError(
            f"{sibling}: a holdout archive from an earlier run sits next to {dest.name} and would "
            "be taken as this archive's holdout; delete it, or pass --holdout-patients"
        )
    refuse_unprepared(source)  # a DICOM tree: prepare comes first
    try:
        src = ImageArchive(source)
        src.validate()  # [C, H, W] of every image: same size, square, power of two
    except InputError as e:
        raise InputError(f"{e}{unprepared_hint(source)}") from None
    left_out: list[str] = []
    if masks:
        from mrisynth.data.pairing import paired_source

        src, left_out = paired_source(src)
    if labels is not None:
        values, named = named_labels(src, label, labels)
    else:
        values, named = _resolve_labels(src, label), kept_names(src, label)
    parts = _plan(src, dest, values, None if holdout_patients is None else str(holdout_patients),
                  holdout_seed, named)
    spec = src.spec if masks else mask_spec(src)  # a paired source stays paired when re-packed
    if spec is not None:  # both parts say how their second channel is coded
        parts = [replace(p, meta={**(p.meta or {}), "mask": spec.record()}) for p in parts]
    results = [_write_part(src, part, split=len(parts) > 1 or masks) for part in parts]
    src.close()
    if len(results) == 1:
        return replace(results[0], left_out=tuple(left_out))
    held, train = results
    return PackResult(**{**train.__dict__, "holdout": held, "left_out": tuple(left_out)})


def label_summary(labels: np.ndarray) -> str:
    """Short human description of a label matrix [N, c_dim] for the CLI."""
    if labels.shape[1] == 0:
        return "unlabelled"
    if np.all((labels == 0) | (labels == 1)) and np.all(labels.sum(1) == 1):
        return f"{labels.shape[1]} classes (one-hot)"
    return f"{labels.shape[1]}-dim float labels in [{labels.min():.3g}, {labels.max():.3g}]"
