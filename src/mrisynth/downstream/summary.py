"""Turning unit results into the study's numbers: arms x organs x seeds, means, spread, and a
paired test of real + synthetic against real.

The test is the Wilcoxon signed-rank test (scipy.stats.wilcoxon, two-sided) over the paired
differences of Dice, one pair per (seed, organ): a handful of pairs, differences bounded in
[-1, 1] and often skewed, so no normality is assumed (a paired t-test would). The pairs share
their initialisation and real batches (same seed) and their organ. The organs of one network
are not independent, so the p-value is optimistic; it says whether the sign is consistent, not
how large the effect is (the mean difference says that).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mrisynth.downstream.options import ARMS

TEST_NAME = "wilcoxon signed-rank (two-sided), pairs = seeds x organs"


def spread(values: list[float]) -> dict[str, Any]:
    """mean, sample std (None for one value) and count of the finite values."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
    return {"mean": float(np.mean(vals)), "std": std, "n": len(vals)}


def per_seed(results: list[dict], arm: str, fraction: float, key: str) -> dict[int, dict]:
    """{seed: {organ: value}} of one arm at one real fraction."""
    return {r["seed"]: r[key] for r in results if r["arm"] == arm and r["fraction"] == fraction}


def organ_mean(values: dict[str, float | None]) -> float | None:
    vals = [v for v in values.values() if v is not None]
    return float(np.mean(vals)) if vals else None


def arm_table(results: list[dict], organs: list[str], key: str) -> dict[str, Any]:
    """Main arms (fraction 1): {arm: {organ: {seed: value}}} and their means/std."""
    table, means = {}, {}
    for arm in ARMS:
        seeds = per_seed(results, arm, 1.0, key)
        table[arm] = {o: {str(s): v[o] for s, v in sorted(seeds.items())} for o in organs}
        means[arm] = {o: spread([v[o] for v in seeds.values()]) for o in organs}
        means[arm]["all_organs"] = spread([organ_mean(v) for v in seeds.values()])
    return {"values": table, "means": means}


def paired_test(results: list[dict], organs: list[str], arm: str, base: str = "real") -> dict:
    """`arm` vs `base` at fraction 1: the signed-rank test over (seed, organ) Dice pairs."""
    from scipy.stats import wilcoxon

    a, b = per_seed(results, arm, 1.0, "dice"), per_seed(results, base, 1.0, "dice")
    diffs = [
        a[s][o] - b[s][o]
        for s in sorted(set(a) & set(b))
        for o in organs
        if a[s][o] is not None and b[s][o] is not None
    ]
    out: dict[str, Any] = {"test": TEST_NAME, "compare": f"{arm} vs {base}", "pairs": len(diffs)}
    out["mean_difference"] = float(np.mean(diffs)) if diffs else None
    out["median_difference"] = float(np.median(diffs)) if diffs else None
    out["wins"] = int(sum(d > 0 for d in diffs))
    out["losses"] = int(sum(d < 0 for d in diffs))
    if len(diffs) < 2 or not any(diffs):
        out.update(statistic=None, p_value=None, note="too few non-zero pairs for the test")
        return out
    res = wilcoxon(diffs, alternative="two-sided")
    out.update(statistic=float(res.statistic), p_value=float(res.pvalue))
    return out


def fraction_curve(results: list[dict], fractions: tuple[float, ...]) -> list[dict[str, Any]]:
    """Mean Dice over organs per seed, then mean/std over seeds, for each (fraction, arm)."""
    rows = []
    for f in fractions:
        for arm in ("real", "real+synthetic"):
            seeds = per_seed(results, arm, f, "dice")
            if seeds:
                rows.append(
                    {"fraction": f, "arm": arm, **spread([organ_mean(v) for v in seeds.values()])}
                )
    return rows


def summarise(results: list[dict], organs: list[str], fractions: tuple[float, ...]) -> dict:
    """The result block of downstream.json."""
    out = {
        "dice": arm_table(results, organs, "dice"),
        "hd95": arm_table(results, organs, "hd95"),
        "paired_test": paired_test(results, organs, "real+synthetic"),
        "synthetic_vs_real": paired_test(results, organs, "synthetic"),
    }
    if len(fractions) > 1:
        out["fraction_curve"] = fraction_curve(results, fractions)
    return out
