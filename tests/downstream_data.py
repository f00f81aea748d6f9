"""Paired phantom data for the downstream tests: slices and CHAOS masks rendered in memory by
the phantom's own model, and paired archives / generation folders written in the contract's
formats (2-channel grey+alpha PNGs, mask level = round(label * 255 / (K - 1)))."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np

from mrisynth.data.phantom import render_slice, sample_anatomy
from mrisynth.downstream.pairs import SegSet

LABELS = ("background", "liver", "right_kidney", "left_kidney", "spleen")
GREY_TO_LABEL = {0: 0, 63: 1, 126: 2, 189: 3, 252: 4}
LEVELS = [0, 64, 128, 191, 255]


def phantom_patient(pid: int, size: int, num_slices: int = 10, seed: int = 0):
    """uint8 images [S, size, size] (per-slice min-max) and labels [S, size, size]."""
    rng = np.random.default_rng([seed, pid])
    matrix, spacing, slab = 64, 400.0 / 64, 7.0
    anatomy = sample_anatomy(rng, num_slices * slab)
    images, labels = [], []
    for k in range(num_slices):
        out = render_slice(anatomy, (k + 0.5) * slab, matrix, spacing, rng, num_slices * slab)
        img = out["in"].astype(np.float64)
        img = (img - img.min()) / max(img.max() - img.min(), 1e-9) * 255
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        lab = np.vectorize(GREY_TO_LABEL.get)(out["mask"]).astype(np.uint8)
        images.append(np.round(img).astype(np.uint8))
        labels.append(cv2.resize(lab, (size, size), interpolation=cv2.INTER_NEAREST))
    return np.stack(images), np.stack(labels)


def phantom_set(pids, size: int = 32, num_slices: int = 10, name: str = "mem") -> SegSet:
    parts = [phantom_patient(p, size, num_slices) for p in pids]
    groups = tuple(f"p{p:010d}" for p in pids for _ in range(num_slices))
    return SegSet(
        name,
        np.concatenate([a for a, _ in parts]),
        np.concatenate([b for _, b in parts]),
        groups,
        LABELS,
    )


def la_png(image: np.ndarray, levels: np.ndarray) -> bytes:
    """A grey+alpha PNG: cv2 writes BGRA; its PNG encoder keeps 4 channels, so write the
    2-channel file by hand through zlib (colour type 4)."""
    import struct
    import zlib

    h, w = image.shape
    raw = b"".join(b"\0" + np.stack([image[r], levels[r]], axis=1).tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 4, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def write_paired_zip(path: Path, seg: SegSet, mask: bool = True, manifest: bool = True) -> Path:
    """A paired archive as `mrisynth dataset --masks` writes it (plus its manifest)."""
    lut = np.asarray(LEVELS, dtype=np.uint8)
    rows = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(len(seg)):
            name = f"img{i:05d}.png"
            zf.writestr(name, la_png(seg.images[i], lut[seg.labels[i]]))
            rows.append({"file": name, "patient_key": seg.groups[i]})
        meta = {"mask": {"labels": list(LABELS), "levels": LEVELS}} if mask else {}
        zf.writestr("dataset.json", json.dumps({"labels": None, "mrisynth": meta}))
        if manifest:
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=["file", "patient_key"], lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
            zf.writestr("manifest.csv", buf.getvalue())
    return path


def write_generated(folder: Path, seg: SegSet, manifest: bool = True) -> Path:
    """A generation folder: seedNNNNNN.png + seedNNNNNN-mask.png + manifest.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(len(seg)):
        img, mask = f"seed{i:06d}.png", f"seed{i:06d}-mask.png"
        cv2.imwrite(str(folder / img), seg.images[i])
        cv2.imwrite(str(folder / mask), seg.labels[i])
        rows.append({"file": img, "format": "png", "seed": str(i), "mask_file": mask})
    if manifest:
        with open(folder / "manifest.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["file", "format", "seed", "mask_file"])
            w.writeheader()
            w.writerows(rows)
    (folder / "generation.json").write_text("{}")
    return folder
