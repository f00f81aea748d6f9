"""kimg as a number with the precision snapshot names have (3 decimals): runs shorter than a
kimg (the quick start's 0.2) must not be labelled kimg 0 in records, reports and DICOM.

Whole kimg stay ints, so records and UIDs of ordinary runs are what they always were. Torch-free.
"""

from __future__ import annotations


def kimg_number(nimg: int) -> int | float:
    """Images shown as kimg: an int when whole, else rounded to 3 decimals (0.112)."""
    whole, rest = divmod(int(nimg), 1000)
    return whole if rest == 0 else round(int(nimg) / 1000, 3)


def rounded_kimg(kimg: float) -> int | float:
    """A kimg value (int or float) in the same form as `kimg_number`."""
    return kimg_number(round(float(kimg) * 1000))


def checked_kimg(value: object, where: str, lo: float = 0, hi: float = 1e9) -> float:
    """A kimg read from a file: a finite number in [lo, hi] with at most 3 decimals."""
    from mrisynth import untrusted as u

    x = u.number(value, where, lo, hi)
    if rounded_kimg(x) != x:
        raise u.BadValue(f"{where} has more than 3 decimals, got {u.shown(value)}")
    return x
