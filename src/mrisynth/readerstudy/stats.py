"""The statistics of a reader study, from scipy/statsmodels wherever they exist.

Positive class = synthetic (the reader's task is to detect synthetic images): sensitivity is
the fraction of synthetic images called synthetic, specificity the fraction of real ones
called real. Undefined values (0 of 0) are None, never NaN, so JSON stays valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, fisher_exact, mannwhitneyu
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


def binomial_p(correct: int, total: int, chance: float = 0.5) -> float | None:
    """Exact binomial test of `correct` of `total` against chance accuracy `chance`.

    Balanced (chance 0.5): two-sided, since an accuracy far below 0.5 also shows the reader
    tells the classes apart (inverted). Unbalanced (chance = the larger class share): one-sided
    'greater', since any accuracy between the two class shares is reached without looking
    (always the same answer, or guessing at some rate)."""
    if total == 0:
        return None
    alternative = "two-sided" if chance == 0.5 else "greater"
    return float(binomtest(correct, total, chance, alternative=alternative).pvalue)


def chance_accuracy(c: Confusion) -> float | None:
    """The accuracy of a reader who cannot tell real from synthetic and gives the more common
    answer: the larger class share of the images answered (0.5 in a balanced study)."""
    if c.total == 0:
        return None
    return max(c.tp + c.fn, c.tn + c.fp) / c.total


def independence_p(c: Confusion) -> float | None:
    """Two-sided Fisher exact test that the answers are independent of the truth (the 2x2
    table truth x answer): valid whatever the class balance and the reader's answer bias.
    None until the reader has answered images of both classes."""
    if c.tp + c.fn == 0 or c.tn + c.fp == 0:
        return None
    return float(fisher_exact([[c.tp, c.fn], [c.fp, c.tn]]).pvalue)


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
