"""Enhanced (multi-frame) MR: per-frame geometry, echo time and rescale from functional groups.

DICOM PS3.3 C.7.6.16 (Multi-frame Functional Groups): each attribute sits either in the frame's
item of PerFrameFunctionalGroupsSequence or in SharedFunctionalGroupsSequence; the frame's own
value wins. A multi-frame object without per-frame positions cannot be sorted into slices, so it
is rejected with a reason instead.
"""

from __future__ import annotations

from typing import Any

import pydicom

# (functional group sequence, attribute) pairs used here
POSITION = ("PlanePositionSequence", "ImagePositionPatient")
ORIENTATION = ("PlaneOrientationSequence", "ImageOrientationPatient")
SPACING = ("PixelMeasuresSequence", "PixelSpacing")
THICKNESS = ("PixelMeasuresSequence", "SliceThickness")
ECHO_TIME = ("MREchoSequence", "EffectiveEchoTime")
REPETITION = ("MRTimingAndRelatedParametersSequence", "RepetitionTime")
SLOPE = ("PixelValueTransformationSequence", "RescaleSlope")
INTERCEPT = ("PixelValueTransformationSequence", "RescaleIntercept")
STACK_POSITION = ("FrameContentSequence", "InStackPositionNumber")


def fg_value(ds: pydicom.Dataset, frame: int, where: tuple[str, str]) -> Any | None:
    """The attribute for one frame: per-frame functional group first, then the shared one."""
    seq_kw, attr = where
    candidates = []
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per is not None and frame < len(per):
        candidates.append(per[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        candidates.append(shared[0])
    for group in candidates:
        seq = group.get(seq_kw)
        if seq and attr in seq[0]:
            value = seq[0][attr].value
            if value not in (None, ""):
                return value
    return None


def multiframe_problem(ds: pydicom.Dataset, frames: int, sop_name: str) -> str | None:
    """None when every frame has a position and an orientation; else the skip reason."""
    per = ds.get("PerFrameFunctionalGroupsSequence")
    ok = per is not None and len(per) == frames
    ok = ok and all(
        fg_value(ds, k, POSITION) is not None and fg_value(ds, k, ORIENTATION) is not None
        for k in range(frames)
    )
    if ok:
        return None
    return (
        f"multi-frame object ({frames} frames, {sop_name}) without per-frame geometry "
        "(functional groups) is not supported; export single-frame images"
    )


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def frame_fields(ds: pydicom.Dataset, frame: int) -> dict[str, Any]:
    """SliceHeader fields that differ per frame (None values mean: keep the root's)."""
    stack = fg_value(ds, frame, STACK_POSITION)
    pulse = str(ds.get("EchoPulseSequence", "") or "").upper()
    fields = {
        "position": _floats(fg_value(ds, frame, POSITION), 3),
        "orientation": _floats(fg_value(ds, frame, ORIENTATION), 6),
        "spacing_mm": _floats(fg_value(ds, frame, SPACING), 2),
        "slice_thickness_mm": _float(fg_value(ds, frame, THICKNESS)),
        "echo_time_ms": _float(fg_value(ds, frame, ECHO_TIME)),
        "repetition_time_ms": _float(fg_value(ds, frame, REPETITION)),
        "instance_number": int(stack) if stack is not None else frame + 1,
        "scanning_sequence": {"GRADIENT": "GR", "SPIN": "SE", "BOTH": "SE\\GR"}.get(pulse),
    }
    return {k: v for k, v in fields.items() if v is not None}


def frame_rescale(ds: pydicom.Dataset, frame: int) -> tuple[float, float]:
    """(slope, intercept) of one frame; the root's values (or 1, 0) when groups have none."""
    slope = _float(fg_value(ds, frame, SLOPE))
    intercept = _float(fg_value(ds, frame, INTERCEPT))
    if slope is None:
        slope = float(ds.get("RescaleSlope", 1) or 1)
    if intercept is None:
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return slope, intercept
