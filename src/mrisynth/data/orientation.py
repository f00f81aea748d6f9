"""The anatomical plane of a slice (axial, coronal, sagittal, oblique) from ImageOrientationPatient.

DICOM's patient frame (LPS): +x to the patient's left, +y to the back, +z to the head. IOP holds
the direction cosines of the image rows and columns; the slice normal n = row x column is a unit
vector, and the plane is named by the axis n lies closest to: x sagittal, y coronal, z axial.

Tolerance: the plane is named only when that largest |cosine| is at least PLANE_MIN_COSINE
(0.9, a tilt of at most 25.8 degrees from the axis); a steeper plane is "oblique". Why 0.9:
- abdominal axial series are often tilted a few to ~20 degrees (to follow the liver or pancreas,
  or to avoid wrap-around), and scanners and radiologists still call them axial (Siemens writes
  "Tra>Cor(-20.3)"); such a stack still advances along the body axis (at least 0.9 mm of
  head-foot per mm along its normal), so position labels along the normal keep their order;
- at 30 degrees and more one image spans half its front-back depth in head-foot direction
  (sin 30 = 0.5: 100 mm or more across an abdomen), so it no longer shows one body level;
- any cut above cos 45 = 0.707 names at most one axis; 0.9 leaves the 26..64 degree band
  (the genuinely double-oblique, organ-aligned planes) unnamed.
The sign of n does not matter (a flipped row or column direction is the same plane).
Anything that is not two perpendicular unit vectors (missing, NaN, wrong count, zero vectors,
text) is "unknown": the plane is descriptive and never fails a slice.
"""

from __future__ import annotations

import math
from typing import Any

from mrisynth.data.dicom_checks import FATAL, orientation_value

PLANE_MIN_COSINE = 0.9  # |cosine| of the normal with its nearest axis; see the module text
AXIS_PLANES = ("sagittal", "coronal", "axial")  # normal along x (left), y (back), z (head)
ORIENTATIONS = (*AXIS_PLANES, "oblique", "unknown")


def checked_orientation(value: Any) -> tuple[float, ...] | None:
    """IOP as 6 floats (two perpendicular unit vectors), or None when absent or unusable.

    Every IOP a scan takes in passes here: a malformed one makes the slice's geometry unknown
    (it is then ordered by InstanceNumber) instead of failing the file.
    """
    if hasattr(value, "tolist"):  # a numpy array from a caller (headers give lists)
        value = value.tolist()
    try:
        return orientation_value(value)
    except FATAL:
        raise
    except Exception:  # HeaderProblem, and whatever else a hostile value raises
        return None


def slice_normal(iop: Any) -> tuple[float, float, float] | None:
    """Unit normal row x column of an IOP (any value a header can hold); None when unusable."""
    checked = checked_orientation(iop)
    if checked is None:
        return None
    (rx, ry, rz), (cx, cy, cz) = checked[:3], checked[3:]
    n = (ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx)
    length = math.sqrt(sum(v * v for v in n))
    if not length > 0.5:  # cannot happen after the unit/perpendicular check; never divide by ~0
        return None
    return (n[0] / length, n[1] / length, n[2] / length)


def slice_plane(iop: Any, min_cosine: float = PLANE_MIN_COSINE) -> str:
    """'axial', 'coronal', 'sagittal', 'oblique' or 'unknown' (see the module text)."""
    normal = slice_normal(iop)
    if normal is None:
        return "unknown"
    cosines = [abs(v) for v in normal]
    axis = max(range(3), key=cosines.__getitem__)
    return AXIS_PLANES[axis] if cosines[axis] >= min_cosine else "oblique"
