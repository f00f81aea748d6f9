"""The memorisation audit in the report: a readable summary table and the distance histogram.

Reads the `memorisation-<snapshot>.json` that `mrisynth.metrics.memorisation` describes
(`copy_test`, `distances`, `images`, `verdicts`, ...). Files from runs before the calibrated
copy test (`copy_ncc`, `pixel`, `flagged`, `holdout`) still get their old summary. The file is
untrusted: unknown or malformed values are skipped, never shown raw.
"""

from __future__ import annotations

from typing import Any

from mrisynth.report.figures import histogram_figure as draw_histogram
from mrisynth.report.plaintext import plain
from mrisynth.report.runfiles import finite, record_kimg

_QUANTILES = ("min", "p05", "median", "p95", "max")
_MAX_LISTED = 5  # flagged images named in the table


def _quantile_text(q: Any) -> str | None:
    if not isinstance(q, dict):
        return None
    parts = [f"{k} {v:.3f}" for k in _QUANTILES if (v := finite(q.get(k))) is not None]
    return ", ".join(parts) or None


def _dict(obj: Any, key: str) -> dict[str, Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


def _count(obj: dict[str, Any], key: str) -> int | None:
    value = finite(obj.get(key), 0)
    return None if value is None else int(value)


def _sizes(obj: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    if isinstance(obj.get("snapshot"), str):
        rows.append(("snapshot", plain(obj["snapshot"], 80)))
    if (kimg := record_kimg(obj.get("kimg"), obj.get("snapshot"))) is not None:
        rows.append(("kimg", f"{kimg:g}"))  # the fraction from a sub-kimg snapshot's name
    for key, label in (
        ("num_gen", "generated images"),
        ("num_train", "training images"),
        ("num_holdout", "held-out patients' images"),
    ):
        if (n := _count(obj, key)) is not None:
            rows.append((label, str(n)))
    return rows


def _copy_test_rows(test: dict[str, Any], num_gen: int | None) -> list[tuple[str, str]]:
    rows = []
    value, p = finite(test.get("value")), finite(test.get("p_value"), 0, 1)
    if value is not None and p is not None:
        rows.append(
            (
                "data-copying test, Meehan et al. Z_U (negative = closer than new patients)",
                f"{value:.2f} (one-sided p {p:.3g})",
            )
        )
    elif test.get("holdout") is False:
        rows.append(
            (
                "data-copying test",
                "not run: no held-out patients (mrisynth dataset --holdout-patients N)",
            )
        )
    else:
        rows.append(("data-copying test", "not run: too few images per region"))
    threshold = finite(test.get("threshold"), 0)
    if threshold is not None:
        pct = finite(test.get("threshold_percentile"), 0, 100)
        source = plain(test.get("threshold_source") or "", 200)
        at = f"the lowest {pct:g} % of " if pct is not None else ""
        rows.append(("copy threshold (distance below)", f"{threshold:.3f}: {at}{source}"))
    n_flag, frac = _count(test, "num_flagged"), finite(test.get("flagged_fraction"), 0, 1)
    if n_flag is not None:
        share = f" ({100 * frac:.1f} %)" if frac is not None else ""
        total = f" of {num_gen}" if num_gen is not None else ""
        rows.append(("generated images flagged as copies", f"{n_flag}{total}{share}"))
    hold = finite(test.get("holdout_flagged_fraction"), 0, 1)
    if hold is not None:
        rows.append(("held-out patients' images under the threshold", f"{100 * hold:.1f} %"))
    return rows


def _flagged_rows(images: Any) -> list[tuple[str, str]]:
    if not isinstance(images, list):
        return []
    flagged = [r for r in images if isinstance(r, dict) and r.get("flagged") is True]
    flagged.sort(key=lambda r: finite(r.get("distance")) or 0.0)
    rows = []
    for r in flagged[:_MAX_LISTED]:
        dist = finite(r.get("distance"))
        patient = r.get("patient_key")
        who = f", patient {plain(patient, 24)}" if patient not in (None, "") else ""
        rows.append(
            (
                f"  {plain(r.get('gen_name') or r.get('gen_index'), 40)}",
                f"~ {plain(r.get('train_name') or '', 40)}{who}"
                + (f", distance {dist:.3f}" if dist is not None else ""),
            )
        )
    return rows


def summary_rows(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) rows a reader needs: sizes, the copy test, flags, distance spreads."""
    if not isinstance(obj, dict):
        return []
    if "copy_test" not in obj:
        return _legacy_rows(obj)
    rows = _sizes(obj)
    rep = _dict(obj, "representation")
    if finite(rep.get("size")) is not None:
        rows.append(
            (
                "compared on",
                f"the body only (mask, {int(rep['size'])} px crop, grey levels standardised "
                "inside it, mirror image counted)",
            )
        )
    rows += _copy_test_rows(_dict(obj, "copy_test"), _count(obj, "num_gen"))
    rows += _flagged_rows(obj.get("images"))
    dist = _dict(obj, "distances")
    for key, label in (
        ("generated", "generated -> nearest training image, distance"),
        ("holdout", "held-out patients -> nearest training image, distance"),
        ("between_patient", "training image -> nearest other patient, distance"),
    ):
        if text := _quantile_text(dist.get(key)):
            rows.append((label, text))
    if text := _quantile_text(_dict(obj, "feature").get("nearest_distance")):
        rows.append(("nearest in detector features, distance", text))
    return rows


def _legacy_rows(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows of an audit written before the calibrated copy test (whole-image NCC)."""
    rows = _sizes(obj)
    if finite(obj.get("copy_ncc")) is not None:
        rows.append(("copy threshold (NCC >=), uncalibrated", f"{obj['copy_ncc']:g}"))
    pixel = _dict(obj, "pixel")
    for key, label in (
        ("nearest_ncc", "nearest training image, NCC"),
        ("ratio", "nearest / second-nearest distance"),
    ):
        if text := _quantile_text(pixel.get(key)):
            rows.append((label, text))
    if (n := _count(obj, "num_flagged")) is not None:
        frac = finite(obj.get("flagged_fraction"), 0, 1)
        share = f" ({100 * frac:.1f} %)" if frac is not None else ""
        rows.append(("flagged as near-copies", f"{n}{share}"))
    for f in (obj.get("flagged") or [])[:_MAX_LISTED]:
        if isinstance(f, dict) and (ncc := finite(f.get("ncc"))) is not None:
            name = plain(f.get("train_name") or "", 40)
            rows.append((f"  seed {plain(f.get('seed'), 20)}", f"~ {name} (NCC {ncc:.3f})"))
    return rows


def histogram_figure(obj: dict[str, Any]) -> bytes | None:
    """Distances to the nearest training image: generated, held-out patients and real
    between-patient pairs on shared bins, with the copy threshold marked."""
    if not isinstance(obj, dict):
        return None
    if "copy_test" not in obj:
        return _legacy_histogram(obj)
    hist = _dict(_dict(obj, "distances"), "histogram")
    edges = hist.get("bin_edges")
    if not (_numbers(edges) and len(edges) >= 2):
        return None
    labels = {
        "generated": "generated",
        "holdout": "held-out patients",
        "between_patient": "training, other patients",
    }
    counts = {}
    for key, label in labels.items():
        c = hist.get(key)
        if _numbers(c, 0) and len(c) == len(edges) - 1:
            counts[label] = [float(v) for v in c]
    if "generated" not in counts:
        return None
    threshold = finite(_dict(obj, "copy_test").get("threshold"), 0)
    marks = [(threshold, f"copy threshold {threshold:.3f}")] if threshold is not None else []
    return draw_histogram(
        [float(e) for e in edges],
        counts,
        title=f"Nearest training image: {plain(obj.get('snapshot') or '', 60)}",
        xlabel="distance on the body (RMS of standardised grey levels, unitless)",
        marks=marks,
    )


def _legacy_histogram(obj: dict[str, Any]) -> bytes | None:
    """Histogram of an audit written before the calibrated copy test (1 - NCC)."""
    hist = _dict(_dict(obj, "pixel"), "histogram")
    edges, counts = hist.get("bin_edges"), hist.get("counts")
    if not (_numbers(edges) and _numbers(counts, 0) and len(edges) == len(counts) + 1):
        return None
    copy = finite(obj.get("copy_ncc"))
    marks = [(1 - copy, f"uncalibrated threshold (NCC {copy:g})")] if copy is not None else []
    return draw_histogram(
        [float(e) for e in edges],
        {"generated": [float(c) for c in counts]},
        title=f"Memorisation audit: {plain(obj.get('snapshot') or '', 60)}",
        xlabel="distance to nearest training image (1 - NCC, unitless)",
        marks=marks,
    )


def _numbers(values: Any, low: float = float("-inf")) -> bool:
    if not isinstance(values, list) or not values:
        return False
    return all(finite(v, low) is not None for v in values)
