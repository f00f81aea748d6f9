"""`mrisynth dataset --masks`: each image and its `prepare --masks` label map as one 2-channel PNG.

Channel 0 is the image, channel 1 the mask at the levels of `masks.encode_mask` (grey + alpha
PNG). Images whose mask is missing or unusable are left out of the paired archive and listed
with a reason; the source is only read.
"""

from __future__ import annotations

import logging

import numpy as np

from mrisynth import untrusted
from mrisynth.data.archive import MANIFEST_NAME, ImageArchive, list_image_names
from mrisynth.data.manifest import read_manifest
from mrisynth.data.masks import (
    CHAOS_LABELS,
    MAX_LABELS,
    MaskSpec,
    encode_mask,
    mask_levels,
    spec_from_record,
)
from mrisynth.data.png import decode_png, encode_grey_alpha
from mrisynth.data.prepare_folder import MASK_LABELS_FILE
from mrisynth.errors import InputError

logger = logging.getLogger(__name__)
MIN_LEVEL_GAP = 32  # grey levels between neighbouring labels below which dataset warns (K > 9)


class PairedArchive(ImageArchive):
    """The images of `src` that have a usable mask, each read as a paired [2, H, W] PNG."""

    def __init__(self, src: ImageArchive, masks: dict[str, str], spec: MaskSpec) -> None:
        state = src.__getstate__()  # same files; caches of the unpaired view dropped
        for key in ("_hash", "_patient_keys"):
            state.pop(key, None)
        self.__setstate__(state)
        self._hash = None
        self.names = [n for n in src.names if n in masks]
        self._mask_of, self.spec, self.num_channels = masks, spec, 2
        self.labels = self._load_labels()

    def read_member(self, name: str) -> bytes | None:
        if name not in getattr(self, "_mask_of", {}):
            return super().read_member(name)
        image = decode_png(super().read_member(name) or b"", f"{self.path}/{name}")
        labels = _read_mask(self, self._mask_of[name], image.shape[1:], self.spec.num_labels)
        return encode_grey_alpha(np.stack([image[0], encode_mask(labels, self.spec.num_labels)]))


def _read_mask(src: ImageArchive, mask_name: str, shape, num_labels: int) -> np.ndarray:
    """Label map uint8 [H, W] of one image; InputError with the reason when unusable."""
    where = f"{src.path}/{mask_name}"
    data = ImageArchive.read_member(src, mask_name)
    if data is None:
        raise InputError(f"{where}: the mask named in {MANIFEST_NAME} does not exist")
    mask = decode_png(data, where)
    if mask.shape[0] != 1:
        raise InputError(f"{where}: {mask.shape[0]} channels; a label mask has one")
    if mask.shape[1:] != tuple(shape):
        raise InputError(f"{where}: {mask.shape[2]}x{mask.shape[1]} pixels, the image is "
                         f"{shape[1]}x{shape[0]}")
    top = int(mask.max())
    if top >= num_labels:
        raise InputError(f"{where}: label {top} but only {num_labels} labels (0..{num_labels - 1})"
                         f" in {MASK_LABELS_FILE}; not a `prepare --masks` label map")
    return mask[0]


def _spec(src: ImageArchive) -> MaskSpec:
    """Label names from the prepared folder's masks/labels.json (CHAOS's when absent)."""
    data = ImageArchive.read_member(src, MASK_LABELS_FILE)
    if data is None:
        return MaskSpec(tuple(CHAOS_LABELS.labels))
    where = f"{src.path}/{MASK_LABELS_FILE}"
    try:
        obj = untrusted.loads(data.decode("utf-8"), where, len(data))
    except (UnicodeDecodeError, untrusted.BadValue) as e:
        raise InputError(f"{where}: not valid UTF-8 JSON ({str(e)[:80]})") from None
    names = obj.get("labels") if isinstance(obj, dict) else None
    if not isinstance(names, list) or not 2 <= len(names) <= MAX_LABELS:
        raise InputError(f"{where}: needs a 'labels' list of 2..{MAX_LABELS} names "
                         "(background first)")
    spec = spec_from_record({"labels": names, "levels": mask_levels(len(names))}, where)
    gap = spec.levels[1] - spec.levels[0]
    if gap < MIN_LEVEL_GAP:  # a generator's mask channel then decodes far less reliably
        logger.warning("%d mask labels are only %d grey levels apart in the paired archive (5 "
                       "labels: 64); a generated mask's pixels will often decode to a "
                       "neighbouring label: keep the labels the task needs", len(names), gap)
    return spec


def paired_source(src: ImageArchive) -> tuple[PairedArchive, list[str]]:
    """The paired view of a `prepare --masks` folder or archive, and a reason per image left
    out (no mask, unreadable or mismatched mask)."""
    where = f"{src.path}/{MANIFEST_NAME}"
    text = src.manifest_text()
    if text is None:
        raise InputError(f"{src.path}: --masks needs {MANIFEST_NAME} from `mrisynth prepare "
                         "--masks`; this source has none")
    rows = read_manifest(text, where)
    if not rows or "mask_file" not in rows[0] or not any(r.get("mask_file") for r in rows):
        raise InputError(f"{src.path}: prepared without masks (no mask_file in {MANIFEST_NAME}); "
                         "run `mrisynth prepare --masks` first (the same folder is fine)")
    if src.num_channels != 1:
        raise InputError(f"{src.path}: --masks pairs grey images; these have "
                         f"{src.num_channels} channels")
    spec = _spec(src)
    mask_of = {r["file"].replace("\\", "/"): (r.get("mask_file") or "") for r in rows}
    listed = set(list_image_names(src.path))  # names members.py checked (no '..', links)
    masks, left_out = {}, []
    for name in src.names:
        mask_name = mask_of.get(name, "").replace("\\", "/")
        if not mask_name:
            left_out.append(f"{name}: no mask")
            continue
        if mask_name not in listed:
            left_out.append(f"{src.path}/{name}: its mask_file '{mask_name[:80]}' is not a PNG "
                            "file of the source (missing, or outside it)")
            continue
        try:
            _read_mask(src, mask_name, (src.resolution, src.resolution), spec.num_labels)
        except InputError as e:
            left_out.append(str(e))
            continue
        masks[name] = mask_name
    if not masks:
        first = left_out[0] if left_out else "no images"
        raise InputError(f"{src.path}: no image has a usable mask ({first})")
    for reason in left_out:
        logger.warning("left out of the paired archive: %s", reason)
    return PairedArchive(src, masks, spec), left_out
