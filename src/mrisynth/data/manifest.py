"""The per-image manifest written by `prepare` (CSV) and training labels derived from it."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence

from mrisynth.errors import ConfigError, InputError

# One row per output image. Only pseudonymous keys, geometry and hashes: no names, dates, IDs.
MANIFEST_COLUMNS: tuple[str, ...] = (
    "file",  # output PNG, relative to the output folder (= name inside the archive)
    "patient_key",  # "p" + 10 hex of HMAC-SHA256(per-folder secret, PatientID)
    "series_key",  # short hash of the series grouping key
    "sequence",  # t1_in, t1_opp, t2spir, other
    "slice_index",  # 0-based, by increasing position_mm (feet -> head for the usual normal)
    "slice_count",
    "position_mm",  # ImagePositionPatient projected on the slice normal row x column
    "z_mm",  # head-foot: patient z (+ = head) of the image centre; empty when unknown
    "orientation",  # axial, coronal, sagittal, oblique or unknown (data/orientation.py)
    "echo_time_ms",
    "rows",
    "columns",
    "spacing_row_mm",
    "spacing_col_mm",
    "slice_thickness_mm",
    "norm",  # normalisation method
    "norm_lo",  # value mapped to 0 (after rescale slope/intercept)
    "norm_hi",  # value mapped to the maximum
    "source",  # sha256:<16 hex>; with --keep-source-paths the path relative to its input (+ "#N")
    "source_sha256",
    "source_frame",  # 1-based frame of an Enhanced (multi-frame) source; empty otherwise
    "mask_file",  # with --masks: masks/<file> (label values 0..K-1); empty when none
)

LABEL_CHOICES: dict[str, str] = {
    "slice-fraction": "float in [0, 1]: slice_index / (slice_count - 1)",
    "position": "float: slice position along the normal in mm",
    "echo-time": "float: echo time in ms",
    "patient": "class: one per patient key",
    "series": "class: one per series key",
    "sequence": "class: one per sequence (t1_in, t1_opp, ...)",
    "column:NAME": "any manifest column: floats if all parse as numbers, else classes",
}


def manifest_csv(rows: Iterable[Mapping[str, object]]) -> str:
    """Rows -> CSV text with the fixed column order (floats written with repr precision)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k, "")) for k in MANIFEST_COLUMNS})
    return buf.getvalue()


def _fmt(v: object) -> object:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else v


def read_manifest(text: str, source: str = "manifest.csv") -> list[dict[str, str]]:
    """CSV text -> rows (dicts of strings); needs at least the `file` column. Malformed CSV is
    an InputError here, so no caller has to know about `csv.Error`."""
    try:
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or "file" not in reader.fieldnames:
            raise InputError(f"{source}: not an mrisynth manifest (no 'file' column)")
        return list(reader)
    except csv.Error as exc:
        raise InputError(f"{source}: malformed CSV ({exc})") from None


def rows_for_names(
    text: str, names: Sequence[str], source: str = "manifest.csv"
) -> list[dict[str, str]]:
    """The manifest row of each of `names` (archive order); InputError if any has none."""
    table = {r["file"].replace("\\", "/"): r for r in read_manifest(text, source)}
    missing = [n for n in names if n not in table]
    if missing:
        raise InputError(f"{source}: no row for {missing[0]} ({len(missing)} images missing)")
    return [table[n] for n in names]


def _classes(values: Sequence[str]) -> list[int]:
    index = {v: i for i, v in enumerate(sorted(set(values)))}
    return [index[v] for v in values]


def _floats(values: Sequence[str], what: str, source: str) -> list[list[float]]:
    try:
        return [[float(v)] for v in values]
    except ValueError:
        raise InputError(f"{source}: column '{what}' has non-numeric values") from None


def labels_from_manifest(
    text: str, names: Sequence[str], label: str, source: str = "manifest.csv"
) -> list:
    """Labels for `names` (archive order) in NVIDIA's JSON form: ints (classes) or float lists."""
    picked = rows_for_names(text, names, source)

    def column(col: str) -> list[str]:
        if col not in picked[0]:
            raise InputError(f"{source}: no column '{col}'")
        return [r[col] for r in picked]

    if label == "slice-fraction":
        idx = _floats(column("slice_index"), "slice_index", source)
        cnt = _floats(column("slice_count"), "slice_count", source)
        return [[i[0] / max(c[0] - 1, 1)] for i, c in zip(idx, cnt, strict=True)]
    if label == "position":
        return _floats(column("position_mm"), "position_mm", source)
    if label == "echo-time":
        return _floats(column("echo_time_ms"), "echo_time_ms", source)
    if label in ("patient", "series", "sequence"):
        col = {"patient": "patient_key", "series": "series_key"}.get(label, label)
        return _classes(column(col))
    if label.startswith("column:"):
        values = column(label.split(":", 1)[1])
        try:
            return [[float(v)] for v in values]
        except ValueError:
            return _classes(values)
    raise ConfigError(f"unknown label '{label}'; choose one of: {', '.join(LABEL_CHOICES)}")
