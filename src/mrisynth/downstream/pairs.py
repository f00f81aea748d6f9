"""Image + label-map sets for segmentation: paired archives and folders of generated pairs.

All three inputs pass through here, so every check lives once: a paired archive (2-channel
PNGs, mask channel decoded by `data.masks`), a generation folder (`seedNNNNNN.png` +
`seedNNNNNN-mask.png` named in manifest.csv's `mask_file`, or 2-channel PNGs), sizes, label
ranges and counts. A bad generated pair is skipped with its reason (the study goes on); an
input that cannot serve at all is one InputError naming it and what to do.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrisynth.data.png import MAX_PNG_BYTES, decode_checked
from mrisynth.errors import InputError
from mrisynth.generate.folder_files import (
    GeneratedManifest,
    generated_manifest,
    plain_name,
    read_file,
    read_manifest,
)
from mrisynth.generate.output_folder import PLAN_NAME

log = logging.getLogger(__name__)

MASK_SUFFIX = "-mask.png"
MAX_PAIRS = 200_000  # slices per set; 200k x 64x64 x 2 bytes = 1.6 GB
MAX_LOGGED = 5  # skipped pairs warned about one by one; the rest are counted
MAX_LISTED = 1000  # skipped pairs listed in downstream.json; the rest are counted
NO_MASKS = (
    "has no masks (dataset.json records no mask channel); build it with `mrisynth prepare "
    "--masks` then `mrisynth dataset --masks`"
)


@dataclass(frozen=True)
class SegSet:
    """Slices with their label maps, as loaded (never modified afterwards)."""

    source: str  # the path as typed
    images: np.ndarray  # uint8 [N, H, W]
    labels: np.ndarray  # uint8 [N, H, W], values 0..K-1
    groups: tuple[str, ...]  # per slice: patient key ("" when unknown)
    label_names: tuple[str, ...] | None  # background first; None: a generation folder
    skipped: tuple[tuple[str, str], ...] = ()  # (file, reason) of pairs left out

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> tuple[int, int]:
        return (int(self.images.shape[1]), int(self.images.shape[2]))

    def digest(self) -> str:
        """sha256 of the decoded pixels and labels: identifies the set in resumed results."""
        h = hashlib.sha256(np.asarray(self.images.shape, dtype=np.int64).tobytes())
        h.update(self.images.tobytes())
        h.update(self.labels.tobytes())
        return h.hexdigest()

    def describe(self) -> dict:
        groups = {g for g in self.groups if g}
        return {
            "num_images": len(self),
            "num_patients": len(groups) or None,
            "size": list(self.size),
            "sha256": self.digest(),
            "skipped_count": len(self.skipped),
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped[:MAX_LISTED]],
        }


# -- paired archives ------------------------------------------------------------------------------
def load_archive(path: str | Path, option: str) -> SegSet:
    """A paired training or holdout archive (ZIP or folder) -> SegSet with patient groups."""
    from mrisynth.data.archive import ImageArchive
    from mrisynth.data.masks import decode_mask, mask_spec

    archive = ImageArchive(path)
    try:
        spec = mask_spec(archive)
        if spec is None:
            raise InputError(f"{option} {path}: {NO_MASKS}")
        if len(archive) > MAX_PAIRS:
            raise InputError(f"{option} {path}: {len(archive)} images; at most {MAX_PAIRS}")
        data = archive.read_all()  # [N, 2, H, W]
        keys = archive.patient_keys or [""] * len(archive)
    finally:
        archive.close()
    return SegSet(
        source=str(path),
        images=np.ascontiguousarray(data[:, 0]),
        labels=decode_mask(data[:, 1], spec.num_labels),
        groups=tuple(keys),
        label_names=tuple(spec.labels),
    )


# -- generation folders ---------------------------------------------------------------------------
def load_generated(folder: str | Path, num_labels: int, option: str = "--synthetic") -> SegSet:
    """A finished generation folder of image + mask pairs; bad pairs are skipped with a reason."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{option} {folder}: not a folder (give `mrisynth generate`'s --outdir)")
    if (folder / PLAN_NAME).exists():
        raise InputError(
            f"{option} {folder}: an unfinished generation ({PLAN_NAME} is present); re-run the "
            "same `mrisynth generate` command to finish it"
        )
    _not_generated(folder, option)
    manifest = generated_manifest(folder, option)  # generate's folder: its rows, nothing else
    generated = manifest is not None
    if not generated:  # a copy without generation.json may still name its pairs
        manifest = read_manifest(folder, option)
    listed = manifest is not None and (generated or manifest.has_masks)
    pairs = manifest.pairs() if listed else _pairs_from_names(folder)
    if not pairs or (listed and not manifest.mask_names()):
        raise InputError(f"{option} {folder}: no image + mask pairs ({_why_none(manifest)})")
    if len(pairs) > MAX_PAIRS:
        raise InputError(f"{option} {folder}: {len(pairs)} pairs; at most {MAX_PAIRS}")
    images, labels, skipped = [], [], []
    for image_name, mask_name in pairs:
        try:
            img, lab = _read_pair(folder, image_name, mask_name, num_labels)
            if images and img.shape != images[0].shape:
                raise InputError(
                    f"{img.shape[1]}x{img.shape[0]} px, the others {images[0].shape[1]}x"
                    f"{images[0].shape[0]}"
                )
        except InputError as e:
            skipped.append((image_name, str(e).removeprefix(f"{folder / image_name}: ")))
            if len(skipped) <= MAX_LOGGED:  # a folder of junk must not flood the log
                log.warning("%s: skipped (%s)", folder / image_name, skipped[-1][1])
            continue
        images.append(img)
        labels.append(lab)
    if len(skipped) > MAX_LOGGED:
        log.warning("%s: %d more pairs skipped", folder, len(skipped) - MAX_LOGGED)
    if not images:
        raise InputError(
            f"{option} {folder}: none of its {len(pairs)} pairs is usable "
            f"(first: {skipped[0][0]}: {skipped[0][1]})"
        )
    return SegSet(
        str(folder), np.stack(images), np.stack(labels), ("",) * len(images), None, tuple(skipped)
    )


def _not_generated(folder: Path, option: str) -> None:
    """A run folder or a prepare folder given where generated pairs belong: say what to run."""
    kind = ("a training run" if any(folder.glob("network-snapshot-*.safetensors"))
            else "a `mrisynth prepare` output" if (folder / ".mrisynth-prepare").is_file()
            else None)  # fmt: skip
    if kind is not None:
        raise InputError(
            f"{option} {folder}: {kind}, not generated image + mask pairs; run `mrisynth "
            "generate --network RUN --outdir DIR --num 500 --format png` on a paired model and "
            "give DIR"
        )


def _why_none(manifest: GeneratedManifest | None) -> str:
    """What a folder without pairs lacks, as its manifest tells (the fix differs)."""
    rows = manifest.rows if manifest is not None else ()
    if rows and not any(r.mask_file for r in rows):
        return ("its generator draws no masks; train on a paired archive (`mrisynth dataset "
                "--masks`) and generate from that model")  # fmt: skip
    if rows and all(r.format == "dicom" for r in rows):
        return ("DICOM files only; the U-Nets read PNG pairs: run the same `mrisynth generate` "
                "with --format png into a new --outdir")  # fmt: skip
    return ("want seedNNNNNN.png with seedNNNNNN-mask.png, or 2-channel PNGs; generate with a "
            "model trained on `mrisynth dataset --masks`")  # fmt: skip


def _pairs_from_names(folder: Path) -> list[tuple[str, str | None]]:
    """Without a manifest: every PNG with its `-mask.png` sibling, or alone (2-channel)."""
    names = sorted(p.name for p in folder.iterdir() if plain_name(p.name))
    images = [n for n in names if not n.endswith(MASK_SUFFIX) and n != "grid.png"]
    present = set(names)
    return [(n, m if (m := n[:-4] + MASK_SUFFIX) in present else None) for n in images]


def _read_pair(
    folder: Path, image_name: str, mask_name: str | None, num_labels: int
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 image [H, W] and labels [H, W] of one pair (InputError: the reason to skip it)."""
    from mrisynth.data.masks import decode_mask

    for name in (image_name, mask_name):
        if name is not None and not plain_name(name):
            raise InputError(f"{folder / image_name}: '{name[:60]}' is not a PNG in the folder")
    header, img = _decode(folder / image_name)
    if header.colour_type == 4:  # grey + alpha: cv2 gives [H, W, 4] (grey x3, alpha)
        if mask_name is not None:
            raise InputError(f"{folder / image_name}: 2-channel image and a mask file; give one")
        return img[:, :, 0], decode_mask(img[:, :, 3], num_labels)
    if img.ndim != 2 or header.bit_depth != 8:
        raise InputError(f"{folder / image_name}: not an 8-bit grey image")
    if mask_name is None:
        raise InputError(f"{folder / image_name}: no mask (no {MASK_SUFFIX} file, not 2-channel)")
    mheader, mask = _decode(folder / mask_name)
    if mask.ndim != 2 or mheader.bit_depth != 8:
        raise InputError(f"{folder / image_name}: mask {mask_name} is not an 8-bit label map")
    if mask.shape != img.shape:
        raise InputError(
            f"{folder / image_name}: mask {mask_name} is {mask.shape[1]}x{mask.shape[0]} px, the "
            f"image {img.shape[1]}x{img.shape[0]}"
        )
    if int(mask.max()) >= num_labels:
        raise InputError(
            f"{folder / image_name}: mask {mask_name} holds label {int(mask.max())}; the real "
            f"data has labels 0..{num_labels - 1}"
        )
    return img, mask


def _decode(path: Path):
    """Checked decode of a PNG in a generation folder (bounded, no links, no special files)."""
    data = read_file(path.parent, path.name, MAX_PNG_BYTES)
    if data is None:
        raise InputError(f"{path}: cannot be read (no such file)")
    return decode_checked(data, str(path))


# -- the three sets together ----------------------------------------------------------------------
def check_compatible(real: SegSet, synthetic: SegSet, test: SegSet) -> None:
    """Same slice size and the same labels everywhere; the test set must name its patients
    apart from the real training set (held-out patients)."""
    for name, s in (("--synthetic", synthetic), ("--test", test)):
        if s.size != real.size:
            raise InputError(
                f"{name} {s.source}: {s.size[1]}x{s.size[0]} px but --real {real.source} is "
                f"{real.size[1]}x{real.size[0]}; use images of one size (generate from a model "
                "trained on this archive, prepare with one --size)"
            )
    if test.label_names != real.label_names:
        raise InputError(
            f"--test {test.source}: labels {list(test.label_names or [])} differ from --real's "
            f"{list(real.label_names or [])}; pack both with the same `--mask-labels`"
        )
    shared = {g for g in test.groups if g} & {g for g in real.groups if g}
    if shared:
        raise InputError(
            f"--test {test.source}: shares {len(shared)} patient(s) with --real {real.source}; "
            "test on held-out patients (`mrisynth dataset --holdout-patients N`)"
        )
