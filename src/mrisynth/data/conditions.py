"""Class labels that DICOM already gives: slice-position bins and sequence, from the manifest.

`--labels position:K` bins each slice's *anatomical* position, normalised per patient:
`fraction = (top - z_mm) / (top - bottom)` over all of that patient's slices, 0 at the most
superior slice, 1 at the most inferior one; bin = floor(fraction * K). Why not the index
within the series: prepare's `z_mm` is the head-foot coordinate (DICOM patient z, + = head) of
the image centre, a physical coordinate shared by every series of a patient (one frame of
reference), so the same anatomy gets the same bin in the T1 and T2 series even when they cover
different extents or have gaps or uneven spacing, and the label never depends on InstanceNumber
(the CHAOS-like phantom numbers half its patients head first). Why not `position_mm` (position
along the normal cross(row, column)): its sign follows the normal, which points to the feet in
a mirrored axial acquisition, so such a series would be binned upside down and, beside a normal
series of the same patient, would wreck that patient's span. Manifests written before `z_mm`
existed fall back to `position_mm`, with a warning.

Position labels are levels along the body axis, so they need axial slices: prepare records each
slice's plane (manifest column `orientation`, see data/orientation.py) and `position:K` refuses
a manifest with any coronal, sagittal, oblique or unknown slice (one error naming the series and
count) instead of leaving them out: a label option should not quietly change which images are
trained on, and a level along a coronal normal (front to back) would be a wrong label. Manifests
written before the column existed are taken as axial, with a warning.

`--labels sequence` gives one class per sequence in the manifest (t1_in, t1_opp, t2spir, other:
run prepare with `--sequence any` to have more than one); `position:K,sequence` one class per
(sequence, bin) pair, index = sequence_index * K + bin, so every pair has a fixed class even if
no slice falls in it. The names go to dataset.json (`labels.condition_meta`).
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from mrisynth.data.labels import MAX_LABEL_DIM, META_KEY, archive_class_names, condition_meta
from mrisynth.data.manifest import rows_for_names
from mrisynth.errors import ConfigError, InputError

MAX_POSITION_BINS = 64
MAX_POSITION_MM = 1e6
_SEQUENCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
logger = logging.getLogger(__name__)

AXIS = "per-patient head-foot position (DICOM patient z): 0 = top (head), 1 = bottom"
AXIS_NORMAL = "per-patient anatomical position along the slice normal: 0 = top (head), 1 = bottom"


@dataclass(frozen=True)
class ConditionSpec:
    """What `--labels` asked for."""

    position_bins: int | None  # K, or None without position
    sequence: bool

    def text(self) -> str:
        parts = [f"position:{self.position_bins}"] if self.position_bins else []
        return ",".join(parts + ["sequence"] * self.sequence)


@dataclass(frozen=True)
class Conditions:
    """Derived class labels (archive order) and the names of all classes."""

    classes: list[int]
    names: list[str]
    record: dict  # dataset.json's "condition" (how the classes were made)


def parse_condition_spec(text: str) -> ConditionSpec:
    """'position:K', 'sequence' or both, comma-separated (any order); ConfigError otherwise,
    naming the part that is wrong."""
    bins, sequence = None, False
    shown = repr(str(text)[:80])
    usage = "give position:K (K bins, e.g. position:4), sequence, or both as position:K,sequence"
    for part in (p.strip() for p in str(text).split(",")):
        kind, colon, arg = part.partition(":")
        if kind in ("position", "sequence") and (bins if kind == "position" else sequence):
            raise ConfigError(f"--labels {shown}: {kind} is given twice; {usage}")
        if kind == "sequence" and not colon:
            sequence = True
        elif kind == "position" and re.fullmatch(r"-?[0-9]+", arg):
            digits = arg.lstrip("-").lstrip("0")  # int() of thousands of digits raises
            bins = int(arg) if len(digits) <= 6 else None
            if bins is None or not 2 <= bins <= MAX_POSITION_BINS:
                raise ConfigError(f"--labels {shown}: position:{arg[:20]} asks for "
                                  f"{'too many' if bins is None else bins} bin(s); "
                                  f"give 2..{MAX_POSITION_BINS} bins (e.g. position:4)")
        elif kind == "sequence":
            raise ConfigError(f"--labels {shown}: sequence takes no ':{arg[:20]}'; {usage}")
        elif kind == "position":
            raise ConfigError(f"--labels {shown}: position:{arg[:20]!r} is not a whole number "
                              f"of bins; give position:K with K in 2..{MAX_POSITION_BINS}")
        else:
            what = "an empty part" if not part else f"unknown label kind {part[:40]!r}"
            raise ConfigError(f"--labels {shown}: {what}; {usage}")
    return ConditionSpec(bins, sequence)


def position_bin(fraction: float, bins: int) -> int:
    """Bin of a position fraction in [0, 1] (1 itself falls in the last bin)."""
    if not 0.0 <= fraction <= 1.0:  # also NaN
        raise ConfigError(f"position {fraction} is outside 0 (top) .. 1 (bottom)")
    return min(int(fraction * bins), bins - 1)


def bin_name(index: int, bins: int) -> str:
    return f"pos{index / bins:.2f}-{(index + 1) / bins:.2f}"


def class_names(spec: ConditionSpec, sequences: Sequence[str]) -> list[str]:
    """All class names in class-index order."""
    pos = [bin_name(b, spec.position_bins) for b in range(spec.position_bins or 0)]
    if not spec.sequence:
        return pos
    if not pos:
        return list(sequences)
    return [f"{s}+{p}" for s in sequences for p in pos]


def _finite(value: str, what: str, source: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if not (math.isfinite(x) and abs(x) <= MAX_POSITION_MM):  # a body is not kilometres long
        raise InputError(f"{source}: {what} {str(value)[:40]!r} is not a finite number within "
                         f"+-{MAX_POSITION_MM:g} mm; re-run `mrisynth prepare` to rebuild the "
                         "manifest")
    return x


def check_axial(rows: Sequence[dict[str, str]], source: str) -> None:
    """InputError naming the largest series (and the count) of slices that are not axial.

    An empty or missing `orientation` (a manifest written before prepare recorded it) is taken
    as axial, with a warning."""
    unrecorded = sum(1 for r in rows if not r.get("orientation"))
    if unrecorded:
        logger.warning("%s: %d image(s) have no orientation (prepared before mrisynth recorded "
                       "it); position labels take them as axial; re-run `mrisynth prepare` to "
                       "have that checked", source, unrecorded)
    bad = Counter((r.get("patient_key") or "", r.get("series_key") or "", r["orientation"])
                  for r in rows if r.get("orientation") not in ("axial", "", None))
    if not bad:
        return
    (patient, series, plane), count = min(bad.items(), key=lambda kv: (-kv[1], str(kv[0])))
    unknown = " ('unknown': no usable ImageOrientationPatient)" if plane == "unknown" else ""
    raise InputError(
        f"{source}: --labels position:K needs axial slices, but {sum(bad.values())} of "
        f"{len(rows)} images are not (series {patient[:24]}/{series[:24]}: {count} "
        f"{plane[:20]!r}{unknown}; {len(bad)} series in all); prepare again without those "
        "series (prepare's report.json lists each series' folder and orientation) or use "
        "--labels sequence"
    )


def has_head_foot(rows: Sequence[dict[str, str]]) -> bool:
    """Whether the rows carry `z_mm`: manifests from before it lack the column, and one that
    is empty in every row (a table re-written by another tool) recorded nothing either."""
    return all("z_mm" in r for r in rows) and any(r["z_mm"] for r in rows)


def _level_column(rows: Sequence[dict[str, str]], source: str) -> str:
    if has_head_foot(rows):
        return "z_mm"
    logger.warning("%s: no z_mm recorded (prepared before mrisynth recorded it); position labels "
                   "use position_mm, whose sign follows each series' slice normal, so a mirrored "
                   "axial series would be binned upside down; re-run `mrisynth prepare`", source)
    return "position_mm"


def position_fractions(rows: Sequence[dict[str, str]], source: str) -> list[float]:
    """Per row: 0 (most superior slice of its patient) .. 1 (most inferior); axial only."""
    check_axial(rows, source)
    col = _level_column(rows, source)
    if any(not r.get(col) for r in rows):
        missing = sum(1 for r in rows if not r.get(col))
        tilted = ", or PixelSpacing for a tilted slice" if col == "z_mm" else ""
        raise InputError(
            f"{source}: {missing} image(s) have no {col} (their DICOM lacked "
            f"ImagePositionPatient/Orientation{tilted}); position labels need it for every image"
        )
    if any(not r.get("patient_key") for r in rows):
        raise InputError(f"{source}: position labels need a patient_key for every image")
    pos = [_finite(r[col], col, source) for r in rows]
    by_patient: dict[str, list[float]] = defaultdict(list)
    for r, p in zip(rows, pos, strict=True):
        by_patient[r["patient_key"]].append(p)
    span = {k: (max(v), min(v)) for k, v in by_patient.items()}
    flat = [k for k, (top, bottom) in span.items() if top == bottom]
    if flat:  # one slice, or all at one level: where it lies in the body cannot be told
        logger.warning("%s: %d patient(s) have no span of positions (one slice, or all slices "
                       "at one level); their %d image(s) get the middle position (0.5), a guess",
                       source, len(flat), sum(len(by_patient[k]) for k in flat))
    out = []
    for r, p in zip(rows, pos, strict=True):
        top, bottom = span[r["patient_key"]]
        out.append(0.5 if top == bottom else (top - p) / (top - bottom))
    return out


def _sequences(rows: Sequence[dict[str, str]], source: str) -> list[str]:
    values = [r.get("sequence") or "" for r in rows]
    for v in values:
        if not _SEQUENCE_NAME.match(v):
            raise InputError(f"{source}: sequence {v[:40]!r} is not a sequence name (letters, "
                             "digits, _ . -); re-run `mrisynth prepare`")
    return values


def derive_conditions(
    manifest: str, names: Sequence[str], spec: ConditionSpec, source: str = "manifest.csv"
) -> Conditions:
    """Class per image of `names` (archive order) from prepare's manifest text."""
    rows = rows_for_names(manifest, names, source)
    k = spec.position_bins
    bins = [position_bin(f, k) for f in position_fractions(rows, source)] if k else None
    seqs = _sequences(rows, source) if spec.sequence else None
    order = sorted(set(seqs)) if seqs else []
    names_out = class_names(spec, order)
    if len(names_out) < 2:  # only `sequence` alone can get here: one sequence in the folder
        raise InputError(f"{source}: --labels {spec.text()} gives one class ({names_out[0]}), "
                         "nothing to condition on; run `mrisynth prepare --sequence any` to keep "
                         "every sequence, or add position:K")
    if len(names_out) > MAX_LABEL_DIM:
        raise InputError(f"{source}: {len(names_out)} classes; at most {MAX_LABEL_DIM}")
    seq_index = {s: i for i, s in enumerate(order)}
    classes = []
    for i in range(len(rows)):
        s = seq_index[seqs[i]] if seqs else 0
        classes.append(s * (k or 1) + (bins[i] if bins else 0))
    record: dict = {"labels": spec.text()}
    if k:
        record.update(position_bins=k, position=AXIS if has_head_foot(rows) else AXIS_NORMAL)
    if seqs:
        record["sequences"] = order
    return Conditions(classes, names_out, record)


def class_counts(conditions: Conditions) -> list[int]:
    counts = [0] * len(conditions.names)
    for c in conditions.classes:
        counts[c] += 1
    return counts


def named_labels(src, label: str | None, spec_text: str) -> tuple[list[int], dict]:
    """(class per image, dataset.json's "mrisynth" entries) of `--labels` for an opened
    `ImageArchive` with prepare's manifest; `label` (the `--label` option) must be unset."""
    if label not in (None, "keep"):
        raise ConfigError(f"give either --label {label} or --labels {spec_text}, not both")
    spec = parse_condition_spec(spec_text)
    source = f"{src.path}/manifest.csv"
    manifest = src.manifest_text()
    if manifest is None:
        raise InputError(f"{src.path}: --labels {spec_text} needs manifest.csv (made by "
                         "`mrisynth prepare`)")
    conds = derive_conditions(manifest, src.names, spec, source)
    empty = [n for n, c in zip(conds.names, class_counts(conds), strict=True) if c == 0]
    if empty:
        logger.warning("%d of %d classes have no image (%s): a model cannot learn them",
                       len(empty), len(conds.names), ", ".join(empty[:6]))
    return conds.classes, condition_meta(conds.names, conds.record)


def kept_names(src, label: str | None) -> dict | None:
    """The source archive's class-name record, carried over when its labels are kept (so a
    re-packed or re-split archive still knows its classes); None otherwise."""
    if label not in (None, "keep"):
        return None
    names = archive_class_names(src)
    if names is None:
        return None
    meta = src.dataset_json().get(META_KEY)
    record = meta.get("condition") if isinstance(meta, dict) else None
    record = record if isinstance(record, dict) else {}
    plain = (str, int, float)
    kept = {k: v for k, v in record.items()
            if k in ("labels", "position_bins", "position", "sequences")
            and (isinstance(v, plain) or (isinstance(v, list) and all(isinstance(x, str)
                                                                       for x in v)))}
    return condition_meta(names, kept)
