"""The memorisation audit in the report: a readable summary table and the distance histogram.

Reads the `memorisation-<snapshot>.json` that `mrisynth.metrics.memorisation` describes (keys
`num_gen, num_train, copy_ncc, pixel: {nearest_ncc, nearest_distance, ratio, histogram},
num_flagged, flagged, holdout, ...`). Unknown or missing keys are skipped, so older or newer
files still give a summary.
"""

from __future__ import annotations

import itertools
from typing import Any

from mrisynth.report.figures import figure_png, new_figure

_QUANTILES = ("min", "p05", "median", "p95", "max")


def _quantile_text(q: Any) -> str | None:
    if not isinstance(q, dict):
        return None
    parts = [f"{k} {q[k]:.3f}" for k in _QUANTILES if isinstance(q.get(k), int | float)]
    return ", ".join(parts) or None


def summary_rows(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) rows a reader needs: sizes, nearest-NCC spread, flagged copies, holdout."""
    rows: list[tuple[str, str]] = []
    for key, label in (
        ("snapshot", "snapshot"),
        ("kimg", "kimg"),
        ("num_gen", "generated images"),
        ("num_train", "training images"),
        ("copy_ncc", "copy threshold (NCC >=)"),
    ):
        if key in obj and obj[key] is not None:
            rows.append((label, str(obj[key])))
    pixel = obj.get("pixel") if isinstance(obj.get("pixel"), dict) else {}
    for key, label in (
        ("nearest_ncc", "nearest training image, NCC"),
        ("ratio", "nearest / second-nearest distance"),
    ):
        text = _quantile_text(pixel.get(key))
        if text:
            rows.append((label, text))
    feature = obj.get("feature")
    if isinstance(feature, dict) and (text := _quantile_text(feature.get("nearest_distance"))):
        rows.append(("nearest in detector features, distance", text))
    if "num_flagged" in obj:
        frac = obj.get("flagged_fraction")
        share = f" ({100 * frac:.1f} %)" if isinstance(frac, int | float) else ""
        rows.append(("flagged as near-copies", f"{obj['num_flagged']}{share}"))
    for f in (obj.get("flagged") or [])[:5]:
        if isinstance(f, dict):
            rows.append(
                (
                    f"  seed {f.get('seed')}",
                    f"~ {f.get('train_name')} (NCC {f.get('ncc', float('nan')):.3f})",
                )
            )
    holdout = obj.get("holdout")
    if isinstance(holdout, dict):
        g = _quantile_text(holdout.get("gen_to_reference"))
        h = _quantile_text(holdout.get("holdout_to_reference"))
        if g and h:
            rows.append(("generated -> training patients, 1-NCC", g))
            rows.append(("held-out patients -> training patients, 1-NCC", h))
        if "warning" in holdout:
            rows.append(
                (
                    "closer to training than unseen patients are (warning)",
                    "YES" if holdout["warning"] else "no",
                )
            )
    return rows


def histogram_figure(obj: dict[str, Any]) -> bytes | None:
    """Histogram of each generated image's distance (1 - NCC) to its nearest training image."""
    pixel = obj.get("pixel") if isinstance(obj.get("pixel"), dict) else {}
    hist = pixel.get("histogram") if isinstance(pixel.get("histogram"), dict) else None
    if not hist:
        return None
    edges, counts = hist.get("bin_edges"), hist.get("counts")
    if not (
        isinstance(edges, list)
        and isinstance(counts, list)
        and len(edges) == len(counts) + 1
        and counts
    ):
        return None
    fig, axes = new_figure(figsize=(6.4, 3.6))
    ax = axes[0, 0]
    widths = [b - a for a, b in itertools.pairwise(edges)]
    ax.bar(edges[:-1], counts, width=widths, align="edge", color="#4a7ab5")
    copy = obj.get("copy_ncc")
    if isinstance(copy, int | float):
        ax.axvline(1 - copy, color="#c33", ls="--", lw=1, label=f"copy threshold (NCC {copy:g})")
        ax.legend(fontsize=8)
    ax.set_xlabel("distance to nearest training image (1 - NCC)")
    ax.set_ylabel("generated images")
    ax.set_title(f"Memorisation audit: {obj.get('snapshot', '')}", fontsize=10)
    ax.grid(True, alpha=0.3)
    return figure_png(fig)
