"""Masks stored as DICOM SEG objects (read with highdicom), for slices without a Ground PNG.

The header scan skips SEG files as non-images; with `prepare --masks` they are indexed instead:
a SEG frame refers to its source slice by SOPInstanceUID, and its segments become labels by
name (SegmentLabel or the property type's meaning, e.g. "Right kidney" -> right_kidney) or by
the SNOMED CT code of a CHAOS organ. Segments that match no label are ignored; a SEG with no
matching segment, of another size, or unreadable gives the slice no mask, with a reason.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pydicom

from mrisynth.data.dicom_checks import FATAL, check_file_size, failure_reason
from mrisynth.data.dicom_scan import Skipped
from mrisynth.data.masks import ORGAN_CODES, LabelMap, MaskError

SEG_REASON = "not an image (Segmentation Storage)"  # how the scan skips a SEG object


def seg_files(inputs: list[Path], skipped: list[Skipped]) -> tuple[list[str], list[Skipped]]:
    """Absolute paths of the readable SEG objects the scan skipped, and the skip list without
    them (with --masks they are used); an unreadable SEG stays skipped, with its reason."""
    found, rest = [], []
    bases = [p if p.is_dir() else p.parent for p in inputs]
    for k in skipped:
        path = None
        if k.reason == SEG_REASON:
            path = next((str(b / k.rel) for b in bases if (b / k.rel).is_file()), None)
        if path is None:
            rest.append(k)
            continue
        try:
            st = os.stat(path)
            _open(path, st.st_mtime_ns, st.st_size)
        except (MaskError, OSError) as e:
            rest.append(Skipped(k.rel, str(e)))
            continue
        found.append(path)
    return sorted(set(found)), rest


def _norm(text: object) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")


def _segment_labels(seg, label_map: LabelMap) -> dict[int, int]:
    """SEG segment number -> label value, for the segments that name one of the labels."""
    labels = {n: i for i, n in enumerate(label_map.names, start=1)}
    by_code = {code: name for name, (code, _) in ORGAN_CODES.items()}
    out = {}
    for item in seg.get("SegmentSequence", []):
        prop = (item.get("SegmentedPropertyTypeCodeSequence") or [None])[0]
        names = [_norm(item.get("SegmentLabel", ""))]
        if prop is not None:
            names += [by_code.get(str(prop.get("CodeValue", ""))), _norm(prop.get("CodeMeaning"))]
        names += ["_".join(reversed(n.split("_"))) for n in names if n and n.count("_") == 1]
        hit = next((labels[n] for n in names if n in labels), None)
        if hit is not None:
            out[int(item.SegmentNumber)] = hit
    return out


@functools.lru_cache(maxsize=4)  # every slice of a series asks the same few files
def _open(path: str, mtime_ns: int, size: int):
    """(highdicom Segmentation, source SOPInstanceUIDs it covers); raises MaskError."""
    try:
        import highdicom as hd
    except ImportError:
        raise MaskError(
            "DICOM SEG masks need highdicom: pip install 'mrisynth[dicom-seg]'"
        ) from None

    try:
        check_file_size(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = hd.seg.segread(path)
            sources = {str(uid) for _, _, uid in seg.get_source_image_uids()}
    except FATAL:
        raise
    except BaseException as e:
        raise MaskError(failure_reason(e, [path], what="unreadable DICOM SEG")) from None
    return seg, sources


def _slice_uid(path: str) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    return str(ds.get("SOPInstanceUID", ""))


def seg_labels(
    segs: tuple[str, ...], slice_path: str, shape: tuple[int, int], label_map: LabelMap
) -> tuple[np.ndarray, str] | None:
    """(uint8 labels [H, W], SEG path) of the slice from the first SEG that covers it; None
    when none does. MaskError when that SEG cannot give a usable label map."""
    uid = _slice_uid(slice_path)
    for path in segs:
        st = os.stat(path)
        seg, sources = _open(path, st.st_mtime_ns, st.st_size)  # checked by seg_files
        if uid not in sources:
            continue
        return _labels(seg, uid, shape, label_map), path
    return None


def _labels(seg, uid: str, shape: tuple[int, int], label_map: LabelMap) -> np.ndarray:
    wanted = _segment_labels(seg, label_map)
    if not wanted:
        found = ", ".join(_norm(s.get("SegmentLabel", "?")) for s in seg.SegmentSequence)
        raise MaskError(f"no segment of this SEG names a label ({found[:80]}); see --mask-labels")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            px = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=[uid], segment_numbers=sorted(wanted),
                combine_segments=False,
            )  # [1, H, W, S] binary or fractional
    except FATAL:
        raise
    except BaseException as e:
        raise MaskError(failure_reason(e, what="cannot decode the SEG frames")) from None
    if px.shape[1:3] != shape:
        raise MaskError(f"SEG is {px.shape[2]}x{px.shape[1]} pixels but its slice is "
                        f"{shape[1]}x{shape[0]}")
    # binary frames are 0/1; fractional ones (highdicom rescales them to 0..1) count from 0.5
    member = np.asarray(px[0], np.float64) >= 0.5  # [H, W, S]
    both = member.sum(-1) > 1
    if both.any():  # organs do not share tissue: which label is right cannot be told
        raise MaskError(f"segments overlap at {int(both.sum())} pixel(s); a label map needs one "
                        "organ per pixel")
    labels = np.zeros(shape, np.uint8)
    for k, number in enumerate(sorted(wanted)):
        labels[member[:, :, k]] = wanted[number]
    return labels
