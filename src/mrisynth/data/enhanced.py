"""Enhanced (multi-frame) MR: per-frame geometry, echo time and rescale from functional groups.

DICOM PS3.3 C.7.6.16 (Multi-frame Functional Groups): each attribute sits either in the frame's
item of PerFrameFunctionalGroupsSequence or in SharedFunctionalGroupsSequence; the frame's own
value wins. A multi-frame object without per-frame positions cannot be sorted into slices, so it
is rejected with a reason instead.
"""

from __future__ import annotations

from typing import Any

import pydicom

from mrisynth.data.dicom_checks import (
    HeaderProblem,
    number_value,
    position_value,
    spacing_value,
)
from mrisynth.data.orientation import checked_orientation

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


def _optional(value: Any, keyword: str) -> float | None:
    try:
        return number_value(value, keyword, None)
    except HeaderProblem:
        return None


def frame_fields(ds: pydicom.Dataset, frame: int) -> dict[str, Any]:
    """SliceHeader fields that differ per frame (None values mean: keep the root's).

    Geometry is checked (raises HeaderProblem); descriptive values that do not parse are dropped.
    """
    stack = _optional(fg_value(ds, frame, STACK_POSITION), "InStackPositionNumber")
    pulse = str(ds.get("EchoPulseSequence", "") or "").upper()
    fields = {
        "position": position_value(fg_value(ds, frame, POSITION)),
        "orientation": checked_orientation(fg_value(ds, frame, ORIENTATION)),
        "spacing_mm": spacing_value(fg_value(ds, frame, SPACING)),
        "slice_thickness_mm": _optional(fg_value(ds, frame, THICKNESS), "SliceThickness"),
        "echo_time_ms": _optional(fg_value(ds, frame, ECHO_TIME), "EffectiveEchoTime"),
        "repetition_time_ms": _optional(fg_value(ds, frame, REPETITION), "RepetitionTime"),
        "instance_number": int(stack) if stack is not None and abs(stack) < 2**31 else frame + 1,
        "scanning_sequence": {"GRADIENT": "GR", "SPIN": "SE", "BOTH": "SE\\GR"}.get(pulse),
    }
    return {k: v for k, v in fields.items() if v is not None}


def frame_rescale(ds: pydicom.Dataset, frame: int) -> tuple[float, float]:
    """(slope, intercept) of one frame; the root's values (or 1, 0) when groups have none."""
    root_slope = number_value(ds.get("RescaleSlope"), "RescaleSlope", 1.0, nonzero=True)
    root_intercept = number_value(ds.get("RescaleIntercept"), "RescaleIntercept", 0.0)
    slope = number_value(fg_value(ds, frame, SLOPE), "RescaleSlope", root_slope, nonzero=True)
    intercept = number_value(fg_value(ds, frame, INTERCEPT), "RescaleIntercept", root_intercept)
    return slope, intercept  # type: ignore[return-value]
