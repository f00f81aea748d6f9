"""The diversity section: generated vs real spread from the latest `diversity<n>` evaluation.

Keys follow the issue-10 contract (`msssim_gen`, `msssim_real`, `msssim_ratio`,
`body_area_std_gen`, ..., `coverage`), optionally prefixed with the metric's name as the runner
writes them (`diversity64_msssim_gen`). Higher MS-SSIM between random pairs means more alike
images, i.e. less diversity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mrisynth.report.runfiles import RunFiles, record_order
from mrisynth.report.tables import kimg_text

# (quantity, key stem, unit, how to read it)
MEASURES: tuple[tuple[str, str, str, str], ...] = (
    (
        "MS-SSIM of random pairs",
        "msssim",
        "0-1, unitless",
        "higher = images more alike (less diverse); real pairs are of different patients",
    ),
    ("Body area spread (std)", "body_area_std", "fraction of image area", "lower = less varied"),
    (
        "Mean intensity in body, spread (std)",
        "mean_intensity_std",
        "grey levels (0-255)",
        "lower = less varied",
    ),
)


@dataclass(frozen=True)
class DiversityTable:
    """Rows (quantity, generated, real, unit, reading) and where they come from."""

    metric: str
    snapshot: str
    kimg: float | None
    rows: list[list[str]]

    @property
    def where(self) -> str:
        at = "" if self.kimg is None else f" at {kimg_text(self.kimg)} kimg"
        return f"metric {self.metric}, {self.snapshot}{at}"


def _value(results: dict[str, float], metric: str, key: str) -> float | None:
    return results.get(f"{metric}_{key}", results.get(key))


def _text(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def diversity_table(run: RunFiles) -> DiversityTable | None:
    """The latest diversity evaluation as a generated-vs-real table, or None when there is none."""
    candidates = [(n, r) for n, rs in run.metrics.items() if n.startswith("diversity") for r in rs]
    if not candidates:
        return None
    metric, rec = max(candidates, key=lambda nr: record_order(nr[1]))
    res: dict[str, Any] = rec["results"]
    rows = []
    for quantity, stem, unit, reading in MEASURES:
        gen, real = _value(res, metric, f"{stem}_gen"), _value(res, metric, f"{stem}_real")
        if gen is not None or real is not None:
            rows.append([quantity, _text(gen), _text(real), unit, reading])
    ratio = _value(res, metric, "msssim_ratio")
    if ratio is not None:
        rows.append(
            ["MS-SSIM ratio generated / real", _text(ratio), "–", "unitless", "> 1 = less diverse"]
        )
    coverage = _value(res, metric, "coverage")
    if coverage is not None:
        rows.append(
            [
                "Coverage of real images",
                _text(coverage),
                "–",
                "fraction (0-1)",
                "share of real images with a generated image among their nearest neighbours",
            ]
        )
    if not rows:
        return None
    return DiversityTable(metric, rec["snapshot"], rec["kimg"], rows)
