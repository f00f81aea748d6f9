"""The statistics of a reader study, from scipy/statsmodels wherever they exist.

Positive class = synthetic (the reader's task is to detect synthetic images): sensitivity is
the fraction of synthetic images called synthetic, specificity the fraction of real ones
called real. Undefined values (0 of 0) are None, never NaN, so JSON stays valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, mannwhitneyu
from statsmodels.stats.inter_rater import fleiss_kappa as _fleiss
from statsmodels.stats.proportion import proportion_confint

ALPHA = 0.05  # 95% intervals


@dataclass(frozen=True)
class Proportion:
    count: int
    total: int
    value: float | None
    low: float | None
    high: float | None


def wilson(count: int, total: int) -> Proportion:
    """count/total with its 95% Wilson score interval."""
    if total == 0:
        return Proportion(count, total, None, None, None)
    low, high = proportion_confint(count, total, alpha=ALPHA, method="wilson")
    return Proportion(count, total, count / total, float(low), float(high))


def binomial_p(correct: int, total: int) -> float | None:
    """Two-sided exact binomial test of `correct` of `total` against chance (p = 0.5)."""
    return None if total == 0 else float(binomtest(correct, total, 0.5).pvalue)


def auc_from_scores(real: Sequence[float], synthetic: Sequence[float]) -> float | None:
    """ROC AUC of telling synthetic from real by a LOW realism score: the probability that a
    real image scores higher than a synthetic one, ties counting half. Equals Mann-Whitney's
    U of the real sample over n_real * n_synthetic."""
    if not len(real) or not len(synthetic):
        return None
    u = mannwhitneyu(real, synthetic, alternative="two-sided").statistic  # U of `real`
    return float(u) / (len(real) * len(synthetic))


def rank_test_p(real: Sequence[float], synthetic: Sequence[float]) -> float | None:
    """Two-sided Mann-Whitney U p-value of realism scores, real vs synthetic."""
    if not len(real) or not len(synthetic):
        return None
    if len(set(real) | set(synthetic)) == 1:
        return 1.0  # every score equal: no evidence of a difference (scipy would give NaN)
    return float(mannwhitneyu(real, synthetic, alternative="two-sided").pvalue)


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa of a table [items, categories] of how many raters chose each category
    (every row the same number of raters, at least 2)."""
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return None
    raters = counts.sum(axis=1)
    if raters[0] < 2 or not np.all(raters == raters[0]):
        return None
    p = counts.sum(axis=0) / counts.sum()
    if np.isclose((p**2).sum(), 1.0):
        return None  # everyone chose one category for everything: agreement by chance is 1
    return float(_fleiss(counts, method="fleiss"))


@dataclass(frozen=True)
class Confusion:
    """Counts of one reader (or of everyone): positive = synthetic."""

    tp: int  # synthetic called synthetic
    fn: int  # synthetic called real (the reader was fooled)
    tn: int  # real called real
    fp: int  # real called synthetic

    @property
    def total(self) -> int:
        return self.tp + self.fn + self.tn + self.fp

    @property
    def correct(self) -> int:
        return self.tp + self.tn


def confusion(truths: Sequence[str], labels: Sequence[str]) -> Confusion:
    pairs = list(zip(truths, labels, strict=True))
    return Confusion(
        tp=pairs.count(("synthetic", "synthetic")),
        fn=pairs.count(("synthetic", "real")),
        tn=pairs.count(("real", "real")),
        fp=pairs.count(("real", "synthetic")),
    )
