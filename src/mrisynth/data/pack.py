"""Pack a folder of PNGs (normally `prepare`'s output) or an archive into a training archive.

Image bytes are copied, never re-encoded, so the packed archive's `content_hash()` equals the
source's. ZIPs are written deterministically (fixed timestamps, sorted order, stored), so
packing the same input twice gives the same bytes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrisynth import atomic
from mrisynth.data.archive import LABELS_NAME, MANIFEST_NAME, ImageArchive
from mrisynth.data.manifest import labels_from_manifest
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


def _check_destination(source: Path, dest: Path) -> None:
    src, dst = source.resolve(), dest.resolve()
    if dst == src:
        raise ConfigError(f"{dest}: the output must differ from the source")
    if src.is_dir() and dst.is_relative_to(src) and dest.suffix.lower() != ".zip":
        raise ConfigError(f"{dest}: an output folder inside the source {source} is not allowed")
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
        data = src.read_member(LABELS_NAME)
        if data is None:
            return None
        raw = json.loads(data.decode("utf-8")).get("labels")
        if raw is None:
            return None
        table = {str(k).replace("\\", "/"): v for k, v in raw}
        return [[n, table[n]] for n in src.names]
    if label == "none":
        return None
    manifest = src.manifest_text()
    if manifest is None:
        raise InputError(
            f"{src.path}: labels '{label}' need {MANIFEST_NAME} (made by `mrisynth prepare`)"
        )
    values = labels_from_manifest(manifest, src.names, label, source=f"{src.path}/{MANIFEST_NAME}")
    return [[n, v] for n, v in zip(src.names, values, strict=True)]


def _members(src: ImageArchive, labels: list | None) -> list[tuple[str, bytes | None]]:
    """(name, bytes) in archive order; image bytes are read lazily (None) to bound memory."""
    meta = json.dumps({"labels": labels}, separators=(",", ":")).encode("utf-8")
    members: list[tuple[str, bytes | None]] = [(n, None) for n in src.names]
    members.append((LABELS_NAME, meta))
    manifest = src.read_member(MANIFEST_NAME)
    if manifest is not None:
        members.append((MANIFEST_NAME, manifest))
    return members


def _write_zip(dest: Path, src: ImageArchive, members: list[tuple[str, bytes | None]]) -> None:
    with atomic.atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data if data is not None else src.read_member(name) or b"")


def _write_folder(dest: Path, src: ImageArchive, members: list[tuple[str, bytes | None]]) -> None:
    """Fill a temp sibling folder, then swap it in, so `dest` is never half-written."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for name, data in members:
            payload = data if data is not None else src.read_member(name) or b""
            atomic.write_bytes(tmp / name, payload)
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


def pack_archive(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    label: str | None = None,
) -> PackResult:
    """Validate every image of `source` and write it as a training archive at `dest`.

    `dest` ending in `.zip` gives an uncompressed ZIP, anything else a folder. `label`: None or
    'keep' = the source's dataset.json labels (if any), 'none' = unlabelled, or a manifest-derived
    label (see `mrisynth.data.manifest.LABEL_CHOICES`).
    """
    source, dest = Path(source), Path(dest)
    _check_destination(source, dest)
    src = ImageArchive(source)
    src.validate()  # [C, H, W] of every image: same size, square, power of two
    labels = _resolve_labels(src, label)
    members = _members(src, labels)
    if dest.suffix.lower() == ".zip":
        _write_zip(dest, src, members)
    else:
        _write_folder(dest, src, members)
    src.close()
    out = ImageArchive(dest)
    result = PackResult(
        path=dest,
        num_images=len(out),
        resolution=out.resolution,
        num_channels=out.num_channels,
        label_dim=out.label_dim,
        content_hash=out.content_hash(),
        has_manifest=out.manifest_text() is not None,
        labels=label_summary(out.labels),
    )
    out.close()
    logger.info("packed %d images into %s (hash %s)", result.num_images, dest, result.content_hash)
    return result


def label_summary(labels: np.ndarray) -> str:
    """Short human description of a label matrix [N, c_dim] for the CLI."""
    if labels.shape[1] == 0:
        return "unlabelled"
    if np.all((labels == 0) | (labels == 1)) and np.all(labels.sum(1) == 1):
        return f"{labels.shape[1]} classes (one-hot)"
    return f"{labels.shape[1]}-dim float labels in [{labels.min():.3g}, {labels.max():.3g}]"
