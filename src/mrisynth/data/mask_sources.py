"""Find each slice's organ mask in a CHAOS-like tree and turn it into a training-size label map.

CHAOS keeps one `Ground` folder of PNGs per sequence (`T1DUAL/Ground` serves both echoes), one
PNG per slice. A mask is matched to its slice by name when any PNG is named after a slice of
the series (`Ground/<dicom stem>.png`, as the phantom names its in-phase masks); otherwise, as
CHAOS's own loaders do, the sorted PNGs pair with the series' files sorted by name, which needs
equal counts: when they differ no mask of that series is used (an off-by-one pairing would put
every organ on the wrong slice).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mrisynth.data.dicom_scan import Skipped, SliceHeader
from mrisynth.data.mask_seg import seg_labels
from mrisynth.data.masks import (
    LabelMap,
    MaskError,
    encode_label_png,
    mask_to_training,
    read_source_mask,
)
from mrisynth.data.png import MAX_PNG_BYTES
from mrisynth.data.slice_pipeline import SliceOptions

GROUND_DIR = "Ground"
MAX_LEVELS_UP = 3  # InPhase -> DICOM_anon -> T1DUAL holds Ground


@dataclass
class SeriesMasks:
    """Masks matched to the slices of one series, keyed by (rel, frame)."""

    paths: dict[tuple[str, int | None], tuple[Path, str]] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)  # Ground folders that cannot pair
    segs: tuple[str, ...] = ()  # DICOM SEG files, for slices without a Ground PNG


def _key(sl: SliceHeader) -> tuple[str, int | None]:
    return sl.rel, sl.frame


def _input_root(sl: SliceHeader) -> Path:
    return Path(sl.path).parents[len(PurePosixPath(sl.rel).parts) - 1]


def ground_folder(sl: SliceHeader) -> Path | None:
    """The nearest `Ground` folder beside the slice's folder or up to 3 levels above it,
    never above the input folder the user gave."""
    root, folder = _input_root(sl), Path(sl.path).parent
    for _ in range(MAX_LEVELS_UP):
        if (folder / GROUND_DIR).is_dir():
            return folder / GROUND_DIR
        if folder == root:
            break
        folder = folder.parent
    return None


def _pngs(folder: Path) -> list[str]:
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(n for n in names if n.lower().endswith(".png") and not n.startswith("."))


def _rel(path: Path, sl: SliceHeader) -> str:
    return path.relative_to(_input_root(sl)).as_posix()


def match_series(slices: list[SliceHeader], segs: tuple[str, ...] = ()) -> SeriesMasks:
    """Pair every slice with its mask file (by name, else by sorted order with equal counts);
    slices left without one may find theirs in the DICOM SEG files `segs`."""
    out = SeriesMasks(segs=segs)
    groups: dict[Path, list[SliceHeader]] = {}
    for sl in slices:
        ground = ground_folder(sl)
        if ground is not None:
            groups.setdefault(ground, []).append(sl)
    for ground, group in groups.items():
        names = _pngs(ground)
        by_stem = {n[: -len(".png")]: n for n in names}
        stems = [PurePosixPath(sl.rel).stem for sl in group]
        if any(sl.frame is None and st in by_stem for sl, st in zip(group, stems, strict=True)):
            # named after the slices: a slice without its PNG simply has no mask
            pairs = [(sl, by_stem[st]) for sl, st in zip(group, stems, strict=True)
                     if sl.frame is None and st in by_stem]
        elif len(names) == len(group):
            ordered = sorted(group, key=lambda s: (s.rel, s.frame or 0))
            pairs = list(zip(ordered, names, strict=True))
        else:
            reason = (
                f"{len(names)} mask PNGs for {len(group)} slices of this series (and not named "
                "after the slices); masks are paired by order only when the counts agree"
            )
            out.skipped.append(Skipped(_rel(ground, group[0]), reason))
            continue
        for sl, name in pairs:
            out.paths[_key(sl)] = (ground / name, _rel(ground / name, sl))
    return out


def _from_seg(found: SeriesMasks, sl: SliceHeader, label_map: LabelMap, opts: SliceOptions):
    try:
        got = seg_labels(found.segs, sl.path, (sl.rows, sl.columns), label_map)
    except MaskError as e:
        return Skipped(sl.source, f"DICOM SEG mask: {e}")
    if got is None:
        return None
    return encode_label_png(mask_to_training(got[0], sl.spacing_mm, opts))


def _read_regular(path: Path) -> bytes:
    """A mask file's bytes, bounded; only regular files (a FIFO named *.png would block)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise MaskError(f"cannot read the mask ({e.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MaskError("not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_PNG_BYTES + 1)
    finally:
        os.close(fd)


def training_mask(
    found: SeriesMasks, sl: SliceHeader, label_map: LabelMap, opts: SliceOptions
) -> bytes | Skipped | None:
    """PNG bytes of the slice's label mask at training geometry; Skipped (mask file, reason)
    when its mask is unusable; None when the slice has no (pairable) mask."""
    if _key(sl) not in found.paths:
        return _from_seg(found, sl, label_map, opts) if found.segs and sl.frame is None else None
    path, rel = found.paths[_key(sl)]
    try:
        labels = read_source_mask(_read_regular(path), rel, (sl.rows, sl.columns), label_map)
        return encode_label_png(mask_to_training(labels, sl.spacing_mm, opts))
    except MaskError as e:
        return Skipped(rel, str(e))


def mask_report(outs: list, label_map: LabelMap, name, warnings: list[str]) -> dict:
    """report.json's "masks" from prepare's per-series outputs: labels, counts, and why each
    unusable mask was skipped (`name(rel)`: how the report names an input); adds warnings."""
    skipped = [k for o in outs for k in o.mask_skipped]
    missing = sorted(n for o in outs for n in o.no_mask)
    if missing:
        warnings.append(
            f"{len(missing)} images have no mask (no Ground PNG or DICOM SEG for their slice)"
        )
    if skipped:
        warnings.append(f"{len(skipped)} masks skipped: {skipped[0].reason} (see report.json)")
    return {
        "labels": label_map.labels,
        "written": sum(len(o.masks) for o in outs),
        "images_without_mask": missing,
        "skipped": [{"source": name(k.rel), "reason": k.reason} for k in skipped],
    }
