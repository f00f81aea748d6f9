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

The head-foot level of a slice (`head_foot_mm`, manifest column `z_mm`) is patient z of the
image centre: unlike a position along the normal, its sign does not depend on which way the
normal points, so a mirrored axial series (normal to the feet) and a normal one agree.
"""

from __future__ import annotations

import math
import operator
from typing import Any

from mrisynth.data.dicom_checks import FATAL, floats_value, orientation_value

PLANE_MIN_COSINE = 0.9  # |cosine| of the normal with its nearest axis; see the module text
AXIS_PLANES = ("sagittal", "coronal", "axial")  # normal along x (left), y (back), z (head)
ORIENTATIONS = (*AXIS_PLANES, "oblique", "unknown")
MAX_COORDINATE_MM = 1e6  # a patient coordinate beyond a kilometre is a broken header
MAX_MATRIX = 65535  # Rows/Columns are 16-bit in DICOM
FLAT_COSINE = 1e-3  # in-plane z cosines below this move the centre < 0.5 mm over 500 mm


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


def _numbers(value: Any, n: int) -> tuple[float, ...] | None:
    """n finite numbers within +-MAX_COORDINATE_MM, or None (never raises on a bad value)."""
    if hasattr(value, "tolist"):  # numpy arrays from callers
        value = value.tolist()
    try:
        got = floats_value(value, "value", n)
    except FATAL:
        raise
    except Exception:  # text, wrong count, NaN/inf, overflow, objects whose float() raises
        return None
    if got is None or not all(abs(v) <= MAX_COORDINATE_MM for v in got):
        return None
    return got


def _count(value: Any) -> int | None:
    """A Rows/Columns value as 1..MAX_MATRIX, or None."""
    if isinstance(value, bool):
        return None
    try:
        n = operator.index(value)
    except TypeError:
        return None
    return n if 1 <= n <= MAX_MATRIX else None


def head_foot_mm(
    position: Any, iop: Any, spacing_mm: Any = None, rows: Any = None, columns: Any = None
) -> float | None:
    """Patient z (LPS: + toward the head) of the image centre in mm; None when unknown.

    ImagePositionPatient is the centre of the top-left pixel; for a tilted slice (its row or
    column direction has a z part) the centre lies (columns-1)/2 pixels along the row and
    (rows-1)/2 along the column from it, which needs PixelSpacing (row, column) in mm. An
    untilted slice's z is ImagePositionPatient[2] everywhere in the image. Any unusable value
    (missing, NaN, inf, text, huge, wrong count) gives None, never an exception.
    """
    checked, pos = checked_orientation(iop), _numbers(position, 3)
    if checked is None or pos is None:
        return None
    row_z, col_z = checked[2], checked[5]  # z parts of the row and column directions
    spacing = _numbers(spacing_mm, 2)
    n_rows, n_cols = _count(rows), _count(columns)
    if spacing is None or n_rows is None or n_cols is None or min(spacing) <= 0:
        if max(abs(row_z), abs(col_z)) > FLAT_COSINE:
            return None  # tilted, and where the centre lies cannot be told
        return pos[2]
    z = pos[2] + (n_cols - 1) / 2 * spacing[1] * row_z + (n_rows - 1) / 2 * spacing[0] * col_z
    return z if math.isfinite(z) and abs(z) <= MAX_COORDINATE_MM else None
