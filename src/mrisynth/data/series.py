"""Group slice headers into series, check them, sort along the slice normal, name the sequence.

CHAOS quirks drive the design (see docs/reference data.md): anonymised UIDs are unreliable, both
T1 echoes may share one series, so slices are grouped by folder + series number + echo time;
the longer echo of a dual-echo pair is in-phase; folder names are only a cross-check.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from mrisynth.data.dicom_scan import Skipped, SliceHeader

logger = logging.getLogger(__name__)

SEQUENCE_CHOICES: dict[str, str | None] = {
    "t1-in": "t1_in",
    "t1-opp": "t1_opp",
    "t2spir": "t2spir",
    "any": None,
}
FAT_WATER_PPM = 3.4
GYROMAGNETIC_MHZ_PER_T = 42.577


@dataclass
class Series:
    """One sorted, geometrically consistent stack of slices of one sequence."""

    patient_key: str
    series_key: str
    sequence: str  # t1_in, t1_opp, t2spir, other
    slices: list[SliceHeader]
    positions_mm: list[float | None]
    warnings: list[str] = field(default_factory=list)

    @property
    def echo_time_ms(self) -> float | None:
        return self.slices[0].echo_time_ms


def patient_key(patient_ref: str, secret: bytes) -> str:
    """Pseudonymous key: HMAC-SHA256 of the patient reference under a secret that never leaves
    the output folder (or the user's keeping), so a key cannot be reversed by trying IDs."""
    return "p" + hmac.new(secret, patient_ref.encode(), hashlib.sha256).hexdigest()[:10]


def _short_hash(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8]


def _majority(slices: list[SliceHeader], key, what: str) -> tuple[list[SliceHeader], list[Skipped]]:
    """Keep the slices whose `key` is the most common; skip the others with a reason."""
    counts = Counter(key(s) for s in slices)
    (top, n_top), *rest = counts.most_common()
    if rest and rest[0][1] == n_top:
        return [], [Skipped(s.source, f"series mixes {what}s with no majority") for s in slices]
    kept = [s for s in slices if key(s) == top]
    bad = [
        Skipped(s.source, f"{what} {key(s)} differs from the rest of its series ({top})")
        for s in slices
        if key(s) != top
    ]
    return kept, bad


def _orientation_key(s: SliceHeader) -> str:
    if s.orientation is None:
        return "unknown"
    return "[" + ",".join(f"{v:.2f}" for v in s.orientation) + "]"


def _matrix_key(s: SliceHeader) -> str:
    return f"{s.rows}x{s.columns}"


def sort_slices(
    slices: list[SliceHeader],
) -> tuple[list[SliceHeader], list[float | None], list[str]]:
    """Sort by position along the normal cross(row, col); InstanceNumber/name break ties."""
    warnings: list[str] = []
    if all(s.position is not None and s.orientation is not None for s in slices):
        iop = np.asarray(slices[0].orientation, dtype=np.float64)
        normal = np.cross(iop[:3], iop[3:])
        pos = [float(np.dot(s.position, normal)) for s in slices]  # type: ignore[arg-type]
    else:
        pos = [None] * len(slices)
        warnings.append("no ImagePositionPatient/Orientation: slices ordered by InstanceNumber")
    order = sorted(
        range(len(slices)),
        key=lambda i: (
            pos[i] if pos[i] is not None else 0.0,
            slices[i].instance_number if slices[i].instance_number is not None else 0,
            slices[i].rel,
            slices[i].frame or 0,
        ),
    )
    sorted_pos = [pos[i] for i in order]
    known = [p for p in sorted_pos if p is not None]
    if len(known) > 1 and np.min(np.diff(known)) < 1e-3:
        warnings.append("two or more slices share a position (repeated acquisition?)")
    return [slices[i] for i in order], sorted_pos, warnings


def fat_water_phase(echo_time_ms: float, field_t: float) -> str | None:
    """'in' or 'opp' from the fat-water chemical shift period; None when in between."""
    period_ms = 1000.0 / (FAT_WATER_PPM * GYROMAGNETIC_MHZ_PER_T * field_t)  # 4.6 ms at 1.5 T
    frac = (echo_time_ms / period_ms) % 1.0
    if min(frac, 1 - frac) < 0.15:
        return "in"
    if abs(frac - 0.5) < 0.15:
        return "opp"
    return None


def _is_t1_gre(s: SliceHeader) -> bool:
    te, tr = s.echo_time_ms, s.repetition_time_ms
    gre = "GR" in s.scanning_sequence.upper() or not s.scanning_sequence
    return te is not None and te < 10 and gre and (tr is None or tr < 600)


def _base_sequence(s: SliceHeader) -> tuple[str, list[str]]:
    """Sequence from one group's headers, before dual-echo pairing ('t1' = needs a phase)."""
    if s.modality and s.modality != "MR":
        return "other", []
    if s.echo_time_ms is None:
        hint = s.folder_hint
        if hint is not None:
            return hint, ["no EchoTime; sequence taken from the folder name"]
        return "other", []
    if s.echo_time_ms >= 30 or "T2" in s.series_description.upper():
        return ("t2spir" if s.echo_time_ms >= 30 else "other"), []
    return ("t1" if _is_t1_gre(s) else "other"), []


def classify_groups(
    groups: list[list[SliceHeader]], positions: list[list[float | None]]
) -> list[tuple[str, list[str]]]:
    """Name each group's sequence; T1 echoes are paired by patient + geometry (longer = in)."""
    result = [_base_sequence(g[0]) for g in groups]
    clusters: dict[tuple, list[int]] = defaultdict(list)
    for i, (g, (seq, _)) in enumerate(zip(groups, result, strict=True)):
        if seq == "t1":
            geom = tuple(round(p, 0) for p in positions[i] if p is not None)
            clusters[(g[0].input_index, g[0].patient_ref, _matrix_key(g[0]), geom)].append(i)
    for members in clusters.values():
        tes = sorted({groups[i][0].echo_time_ms for i in members})
        for i in members:
            s = groups[i][0]
            warnings = list(result[i][1])
            if len(tes) == 2:
                phase = "in" if s.echo_time_ms == tes[1] else "opp"
            else:
                field_t = s.field_strength_t or 1.5
                if s.field_strength_t is None:
                    warnings.append("no MagneticFieldStrength; assuming 1.5 T")
                phase = fat_water_phase(s.echo_time_ms or 0.0, field_t)
            seq = {"in": "t1_in", "opp": "t1_opp"}.get(phase or "", "other")
            hint = s.folder_hint
            if hint in ("t1_in", "t1_opp") and seq in ("t1_in", "t1_opp") and hint != seq:
                warnings.append(
                    f"folder name says {hint} but echo time {s.echo_time_ms} ms "
                    f"makes it {seq}; the headers win"
                )
            result[i] = (seq, warnings)
    return result


def build_series(headers: list[SliceHeader], secret: bytes) -> tuple[list[Series], list[Skipped]]:
    """Group, check (orientation, matrix), sort and classify every slice; `secret` keys the
    patient keys (see `patient_key`)."""
    by_key: dict[tuple, list[SliceHeader]] = defaultdict(list)
    for h in headers:
        te = None if h.echo_time_ms is None else round(h.echo_time_ms, 2)
        by_key[(h.input_index, h.patient_ref, h.folder, h.series_number, te)].append(h)
    skipped: list[Skipped] = []
    groups, positions, sort_warnings, keys = [], [], [], []
    for key in sorted(by_key, key=str):
        slices, bad = _majority(by_key[key], _orientation_key, "orientation")
        skipped += bad
        if slices:
            slices, bad = _majority(slices, _matrix_key, "matrix size")
            skipped += bad
        if not slices:
            continue
        ordered, pos, warns = sort_slices(slices)
        groups.append(ordered)
        positions.append(pos)
        sort_warnings.append(warns)
        keys.append(key)
    series: list[Series] = []
    used: set[str] = set()
    for key, g, pos, warns, (seq, seq_warns) in zip(
        keys, groups, positions, sort_warnings, classify_groups(groups, positions), strict=True
    ):
        pkey = patient_key(g[0].patient_ref, secret)
        # content-defined (not path-defined): pointing prepare at a parent or a patient folder
        # gives the same output names
        geometry = [
            (None if p is None else round(p, 1), s.instance_number)
            for s, p in zip(g, pos, strict=True)
        ]
        skey = _short_hash(pkey, key[3], key[4], _matrix_key(g[0]), geometry)
        while skey in used:  # identical geometry twice (e.g. a repeat): deterministic suffix
            skey = _short_hash(skey)
        used.add(skey)
        # warnings name the series by key only (paths may be hidden from the outputs)
        notes = [f"series {pkey}/{skey}: {w}" for w in [*warns, *seq_warns]]
        series.append(Series(pkey, skey, seq, g, pos, notes))
    logger.info("%d series from %d slices", len(series), len(headers))
    return series, skipped


def select_series(series: list[Series], sequence: str | None) -> list[Series]:
    """Series of the wanted sequence (None = any)."""
    return [s for s in series if sequence is None or s.sequence == sequence]
