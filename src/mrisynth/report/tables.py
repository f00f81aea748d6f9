"""Metric series and the best-snapshot table in the layout of the study's Table 1.

The study (StyleGAN2-ADA on CHAOS T1 in-phase) lists, for the best snapshot by each metric,
kimg, precision, recall, FID and KID. Precision/recall are best high, FID/KID best low. A number
computed with a stand-in detector or with fewer than 50k generated images is not comparable to
published ones; `caveats` says so next to the numbers. Without NVIDIA's detectors Table 1 shows
a weight-free distribution distance instead (category "offline": `pixfd<n>`, `frd<n>`), under
its own name and never as FID.

Records come cleaned by `runfiles.clean_metric_record`; kimg is None for an evaluation of a
folder of images, so rows are matched by snapshot name, not by kimg.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mrisynth.report.runfiles import record_order

REFERENCE_NUM_GEN = 50_000

# category -> (label, True if higher is better)
CATEGORIES: dict[str, tuple[str, bool]] = {
    "precision": ("Precision", True),
    "recall": ("Recall", True),
    "fid": ("FID", False),
    "kid": ("KID", False),
    "offline": ("Offline distance", False),
}
OFFLINE_NAMES = {
    "pixfd": "Pixel Fréchet distance (weight-free, not FID)",
    "frd": "Fréchet radiomics distance (FRD, not FID)",
}


def category_of(key: str) -> str | None:
    """Which of the study's four numbers a result key is (NVIDIA's naming), or None."""
    if key.startswith("pr") and key.endswith("_precision"):
        return "precision"
    if key.startswith("pr") and key.endswith("_recall"):
        return "recall"
    if key.startswith("fid") and "std" not in key:
        return "fid"
    if key.startswith("kid") and not key.endswith("_std"):
        return "kid"
    if key.startswith(tuple(OFFLINE_NAMES)) and not key.endswith("_std"):
        return "offline"
    return None


def category_label(category: str, series: Series | None = None) -> str:
    """Column name of a category; the offline one says which distance it is."""
    if category == "offline" and series is not None:
        for prefix, name in OFFLINE_NAMES.items():
            if series.key.startswith(prefix):
                return name
    return CATEGORIES[category][0]


@dataclass
class Series:
    """One result key over snapshots, with what is needed to judge its numbers."""

    metric: str  # the metric-<name>.jsonl name
    key: str  # the result key
    kimg: list[float | None] = field(default_factory=list)  # None: not a training snapshot
    values: list[float] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    num_gen: int | None = None
    detector: str | None = None
    reference_exact: bool | None = None
    notes: list[str] = field(default_factory=list)  # the records' own caveats

    @property
    def category(self) -> str | None:
        return category_of(self.key)

    def caveats(self) -> list[str]:
        """Why these numbers are not comparable with the study's (empty when they are)."""
        notes = []
        if self.category is None:
            if self.detector and self.detector.startswith("standin"):
                notes.append(
                    f"{self.detector}: a randomly initialised stand-in network (a "
                    "wiring check), not FID/KID/PR"
                )
            return notes + [n.rstrip(".") for n in self.notes]
        if self.category == "offline" and self.notes:  # the metric's own words first
            notes.append(f"{self.key}: computed without NVIDIA's detectors")
            notes += [n.rstrip(".") for n in self.notes]
        elif self.category == "offline":
            notes.append(
                f"{self.key}: a weight-free distance computed without NVIDIA's detectors; not "
                "FID and not comparable with the study's or any published FID; compare only "
                "evaluations made the same way (image count, resolution, real set)"
            )
        elif self.reference_exact is False or self.detector is None:
            name = self.detector or "no reference detector"
            notes.append(f"stand-in detector ({name}): not FID/KID/PR as published")
        if self.num_gen is not None and self.num_gen < REFERENCE_NUM_GEN:
            notes.append(
                f"{self.num_gen:,} generated images, not 50k: not comparable with the study"
            )
        if self.category != "offline":
            notes += [n.rstrip(".") for n in self.notes]
        return notes


def collect_series(metrics: dict[str, list[dict[str, Any]]]) -> list[Series]:
    """Every (metric, result key) pair as a series over kimg (records cleaned by runfiles)."""
    out: list[Series] = []
    for name, records in sorted(metrics.items()):
        # A snapshot evaluated twice (re-run, or a file rewritten at the same kimg): the last
        # record describes the file as it is now.
        latest = {str(r.get("snapshot", i)): r for i, r in enumerate(records)}
        by_key: dict[str, Series] = {}
        for rec in sorted(latest.values(), key=record_order):
            det = rec.get("detector")
            for key, value in rec["results"].items():
                s = by_key.setdefault(key, Series(metric=name, key=key))
                s.kimg.append(rec["kimg"])
                s.values.append(value)
                s.snapshots.append(rec["snapshot"])
                if rec.get("num_gen") is not None:
                    n = rec["num_gen"]
                    s.num_gen = n if s.num_gen is None else min(s.num_gen, n)
                s.detector = det.get("name") if isinstance(det, dict) else s.detector
                s.notes += [n for n in rec.get("caveats", []) if n not in s.notes]
                exact = rec["reference_exact"]
                s.reference_exact = exact and s.reference_exact is not False
        out.extend(by_key.values())
    return out


def pick_series(series: list[Series], category: str) -> Series | None:
    """The series standing for a category: reference-exact first, then the most images."""
    cands = [s for s in series if s.category == category and s.values]
    if not cands:
        return None
    return max(cands, key=lambda s: (bool(s.reference_exact), s.num_gen or 0, len(s.values)))


@dataclass(frozen=True)
class BestRow:
    """One row of Table 1: the snapshot that is best by `category`, with all four numbers."""

    category: str
    kimg: float | None
    snapshot: str
    values: dict[str, float | None]  # category -> value at that snapshot (None: not computed)


def best_table(series: list[Series]) -> list[BestRow]:
    """Best snapshot per metric (precision/recall max, FID/KID min), Table 1 style.

    Ties go to the earlier snapshot; the other columns are the values at the same snapshot.
    """
    chosen = {c: pick_series(series, c) for c in CATEGORIES}
    rows: list[BestRow] = []
    for cat, (_, higher) in CATEGORIES.items():
        s = chosen[cat]
        if s is None:
            continue
        sign = 1.0 if higher else -1.0
        i = max(range(len(s.values)), key=lambda j: (sign * s.values[j], -j))
        snapshot = s.snapshots[i]
        values: dict[str, float | None] = {}
        for other, o in chosen.items():
            values[other] = None
            if o is not None and snapshot in o.snapshots:
                values[other] = o.values[o.snapshots.index(snapshot)]
        rows.append(BestRow(category=cat, kimg=s.kimg[i], snapshot=snapshot, values=values))
    return rows


def kimg_text(kimg: float | None) -> str:
    """kimg as a table shows it; a dash for an evaluation of images from elsewhere."""
    return "–" if kimg is None else f"{kimg:g}"


def format_value(category: str, value: float | None) -> str:
    """Numbers as the study prints them: P/R in %, FID 2 decimals, KID x1e3."""
    if value is None:
        return "–"
    if category in ("precision", "recall"):
        return f"{100 * value:.2f} %"
    if category == "kid":
        return f"{1e3 * value:.2f}e-3"
    if category == "offline":
        return f"{value:.4g}"
    return f"{value:.2f}"
