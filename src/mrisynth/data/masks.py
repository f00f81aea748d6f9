"""Organ masks: grey values -> labels, the image's geometry, and the paired-archive encoding.

Labels (the contract in DEVELOPERS.md): 0 background, 1 liver, 2 right kidney, 3 left kidney,
4 spleen. CHAOS stores them as grey 63/126/189/252 in `Ground/*.png`; robust readers take the
ranges (55,70], (110,135], (175,200], (240,255] (data.md). Any other non-zero grey value makes
the mask unusable rather than background: label-coded masks (values 1..4) would otherwise turn
silently into empty masks. `--mask-labels` replaces the mapping.

In a paired training archive the mask is channel 1 of each image, label l stored as grey level
round(l * 255 / (K - 1)) (K labels, background included), so labels stay as far apart as 8 bits
allow and the generator's output decodes by the nearest level.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass

import cv2
import numpy as np

from mrisynth import untrusted
from mrisynth.data.png import decode_checked
from mrisynth.data.slice_pipeline import SliceOptions, square_geometry
from mrisynth.errors import ConfigError, InputError

BACKGROUND = "background"
MAX_LABELS = 256  # background included: every label keeps its own 8-bit level
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class MaskError(Exception):
    """A mask that cannot be used; `str(e)` is the one-line reason for the report."""


@dataclass(frozen=True)
class LabelMap:
    """How grey values of source masks become labels 1..K-1 (0 = background)."""

    names: tuple[str, ...]  # labels 1.. in order (background not listed)
    ranges: tuple[tuple[int, int], ...]  # inclusive grey range of each name

    @property
    def labels(self) -> list[str]:
        """All label names, background first (index = label value)."""
        return [BACKGROUND, *self.names]

    def lookup(self) -> np.ndarray:
        """grey -> label table int16 [256]; -1 marks grey values no label claims."""
        lut = np.full(256, -1, dtype=np.int16)
        lut[0] = 0
        for label, (lo, hi) in enumerate(self.ranges, start=1):
            lut[lo : hi + 1] = label
        return lut


# SNOMED CT codes of the CHAOS organs (DICOM SEG segmented property types, read and written)
ORGAN_CODES = {
    "liver": ("10200004", "Liver"),
    "right_kidney": ("9846003", "Right kidney"),
    "left_kidney": ("18639004", "Left kidney"),
    "spleen": ("78961009", "Spleen"),
}

CHAOS_LABELS = LabelMap(
    ("liver", "right_kidney", "left_kidney", "spleen"),
    ((56, 70), (111, 135), (176, 200), (241, 255)),
)


def parse_label_map(text: str) -> LabelMap:
    """`--mask-labels`: JSON `{"liver": 63, "spleen": [240, 255]}` or `liver=63,spleen=240-255`.

    Order gives the label numbers (1, 2, ...); values are grey levels 1..255 or inclusive
    ranges, which must not overlap (0 is background)."""
    where = f"--mask-labels '{text[:60]}'"
    text = text.strip()
    if text.startswith("{"):
        try:
            obj = untrusted.loads(text, "--mask-labels", 64 * 1024)
        except untrusted.BadValue as e:
            raise ConfigError(f"{where}: not valid JSON ({str(e)[:80]})") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{where}: give a JSON object of name: grey")
        pairs = list(obj.items())
    else:
        pairs = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, eq, value = part.partition("=")
            if not eq:
                raise ConfigError(f"{where}: '{part[:40]}' is not name=grey or name=low-high")
            lo, dash, hi = value.partition("-")
            pairs.append((name.strip(), [lo, hi] if dash else lo))
    return _label_map(pairs, where)


def _grey(value: object, where: str) -> int:
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit() or len(value) > 3:
            raise ConfigError(f"{where}: grey value '{value[:20]}' is not a whole number 1..255")
        value = int(value)
    try:
        return untrusted.integer(value, "grey value", 1, 255)
    except untrusted.BadValue as e:
        raise ConfigError(f"{where}: {e} (0 is background)") from None


def _label_map(pairs: list[tuple[str, object]], where: str) -> LabelMap:
    if not 1 <= len(pairs) < MAX_LABELS:
        raise ConfigError(f"{where}: give 1..{MAX_LABELS - 1} labels, got {len(pairs)}")
    names, ranges = [], []
    for name, value in pairs:
        if not _NAME.match(name) or name == BACKGROUND or name in names:
            raise ConfigError(
                f"{where}: label name '{str(name)[:40]}' must be new, lower case "
                "letters/digits/_ (and not 'background')"
            )
        if isinstance(value, list) and len(value) == 2:
            lo, hi = _grey(value[0], where), _grey(value[1], where)
        else:
            lo = hi = _grey(value, where)
        if lo > hi:
            raise ConfigError(f"{where}: range {lo}-{hi} of '{name}' is empty")
        names.append(name)
        ranges.append((lo, hi))
    spans = sorted(ranges)
    for (_, a_hi), (b_lo, _) in itertools.pairwise(spans):
        if b_lo <= a_hi:
            raise ConfigError(f"{where}: grey ranges overlap at {b_lo}")
    return LabelMap(tuple(names), tuple(ranges))


# -- reading a source mask -----------------------------------------------------------------------
def grey_to_labels(grey: np.ndarray, label_map: LabelMap) -> np.ndarray:
    """uint8 grey mask [H, W] -> uint8 labels [H, W]; MaskError names unclaimed grey values."""
    labels = label_map.lookup()[grey]  # [H, W] int16
    bad = labels < 0
    if bad.any():
        values = np.unique(grey[bad])
        shown = ", ".join(map(str, values[:5])) + (", ..." if len(values) > 5 else "")
        raise MaskError(
            f"grey values {shown} ({int(bad.sum())} pixels) match no label; give --mask-labels "
            "(e.g. liver=1,right_kidney=2 for label-coded masks)"
        )
    return labels.astype(np.uint8)


def read_source_mask(data: bytes, name: str, shape: tuple[int, int], label_map: LabelMap):
    """Bytes of a mask PNG -> uint8 labels [H, W] of a slice of `shape` (rows, columns)."""
    try:
        header, img = decode_checked(data, name)
    except InputError as e:
        raise MaskError(str(e).removeprefix(f"{name}: ")) from None
    if header.bit_depth != 8:
        raise MaskError(f"{header.bit_depth}-bit PNG; masks must be 8-bit grey (CHAOS Ground)")
    if img.ndim == 3:  # colour, palette or alpha: usable only as opaque grey
        if img.shape[2] == 4 and (img[:, :, 3] < 255).any():  # a label hidden by alpha is no
            raise MaskError(  # less a label: refused rather than guessed either way
                f"{int((img[:, :, 3] < 255).sum())} pixels are (partly) transparent; masks "
                "must be opaque grey (save without alpha/transparency)")
        if not (img[:, :, :1] == img[:, :, 1:3]).all():
            raise MaskError("colour PNG (RGB or palette) with differing channels; masks must "
                            "be grey (palette indices are not read as labels)")
        img = img[:, :, 0]
    if img.shape != shape:
        got, want = f"{img.shape[1]}x{img.shape[0]}", f"{shape[1]}x{shape[0]}"
        raise MaskError(f"mask is {got} pixels but its slice is {want}")
    return grey_to_labels(img, label_map)


def mask_to_training(
    labels: np.ndarray, spacing_mm: tuple[float, float] | None, opts: SliceOptions
) -> np.ndarray:
    """Labels [H, W] -> [size, size] through the image's own geometry, nearest neighbour."""
    return square_geometry(labels, spacing_mm, opts, nearest=True)


def encode_label_png(labels: np.ndarray) -> bytes:
    """uint8 label map [H, W] -> PNG bytes (values 0..K-1, not scaled)."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(labels, dtype=np.uint8))
    if not ok:  # pragma: no cover - uint8 grey always encodes
        raise MaskError("PNG encoding failed")
    return buf.tobytes()


# -- the paired-archive encoding ------------------------------------------------------------------
def mask_levels(num_labels: int) -> list[int]:
    """Grey level of each label: round(l * 255 / (K - 1)), halves up (5 -> 0,64,128,191,255)."""
    if not 2 <= num_labels <= MAX_LABELS:
        raise ValueError(f"a mask needs 2..{MAX_LABELS} labels, got {num_labels}")
    return [int(np.floor(lab * 255 / (num_labels - 1) + 0.5)) for lab in range(num_labels)]


def encode_mask(labels: np.ndarray, num_labels: int) -> np.ndarray:
    """uint8 labels [...] in 0..K-1 -> uint8 grey levels (channel 1 of a paired image)."""
    if labels.size and int(labels.max()) >= num_labels:
        raise ValueError(f"label {int(labels.max())} outside 0..{num_labels - 1}")
    return np.asarray(mask_levels(num_labels), dtype=np.uint8)[labels]


def decode_mask(levels: np.ndarray, num_labels: int) -> np.ndarray:
    """Grey levels [...] (uint8, e.g. generated) -> uint8 labels by the nearest level."""
    lv = np.asarray(mask_levels(num_labels), dtype=np.float64)
    cuts = (lv[:-1] + lv[1:]) / 2  # a value on a cut goes to the upper label
    return np.searchsorted(cuts, np.asarray(levels, dtype=np.float64), side="right").astype(
        np.uint8
    )


@dataclass(frozen=True)
class MaskSpec:
    """A paired archive's mask channel: label names (background first) and their levels."""

    labels: tuple[str, ...]

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def levels(self) -> list[int]:
        return mask_levels(self.num_labels)

    def record(self) -> dict:
        """The `"mask"` entry of dataset.json's `"mrisynth"` record."""
        return {"labels": list(self.labels), "levels": self.levels}


def spec_from_record(record: object, source: str) -> MaskSpec:
    """Check a dataset.json `"mask"` record (untrusted) and return its MaskSpec."""
    if not isinstance(record, dict):
        raise InputError(f"{source}: 'mask' must be an object with labels and levels")
    names = record.get("labels")
    if (
        not isinstance(names, list)
        or not 2 <= len(names) <= MAX_LABELS
        or not all(isinstance(n, str) and 0 < len(n) <= 64 for n in names)
        or len(set(names)) != len(names)
    ):
        raise InputError(f"{source}: mask 'labels' must be 2..{MAX_LABELS} distinct short names")
    if names[0] != BACKGROUND or not all(_NAME.match(n) for n in names):
        raise InputError(  # names reach generation.json, SEG segment labels and HTML reports
            f"{source}: mask label names {untrusted.shown(names)} must be 'background' first, "
            "then lower case letters/digits/_ (as `prepare --mask-labels` makes them)")
    spec = MaskSpec(tuple(names))
    if record.get("levels") != spec.levels:
        raise InputError(
            f"{source}: mask 'levels' {untrusted.shown(record.get('levels'))} differ from "
            f"{spec.levels} (round(label * 255 / (K - 1))); the archive was not made by "
            "`mrisynth dataset --masks`"
        )
    return spec


def mask_spec(archive) -> MaskSpec | None:
    """The mask channel of a paired archive (ImageArchive), None for an unpaired one."""
    meta = archive.dataset_json().get("mrisynth")
    record = meta.get("mask") if isinstance(meta, dict) else None
    if record is None:
        return None
    source = f"{archive.path}/dataset.json"
    spec = spec_from_record(record, source)
    if archive.num_channels != 2:
        raise InputError(
            f"{source}: records a mask channel but its images have {archive.num_channels} "
            "channel(s), not 2 (image + mask)"
        )
    return spec


def check_mirror_of_masks(mirror: bool, spec: MaskSpec | None) -> None:
    """`train --mirror` on a paired archive whose labels have a side: an x-flipped copy shows
    the right kidney where the left one belongs, still labelled right (ConfigError)."""
    sided = [n for n in (spec.labels if spec else ()) if {"left", "right"} & set(n.split("_"))]
    if mirror and sided:
        raise ConfigError(
            f"--mirror: the archive's masks have sided labels ({', '.join(sided)}) that an "
            "x-flip would put on the wrong side; train this paired archive without --mirror"
        )


def label_map_json(label_map: LabelMap) -> str:
    """`masks/labels.json` of a prepared folder: names and the grey ranges they came from."""
    ranges = dict(zip(label_map.names, map(list, label_map.ranges), strict=True))
    return json.dumps({"labels": label_map.labels, "grey_ranges": ranges}, indent=2) + "\n"
