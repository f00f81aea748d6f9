"""Projection error of training vs held-out images: a memorisation signal.

A generator that memorised its training images reproduces them more closely than unseen images
of the same kind (Webster et al. 2019, "Detecting overfitting of deep generative networks via
latent recovery"). The two error distributions are compared with the one-sided Mann-Whitney U
test (scipy): is a training image's error stochastically smaller than a held-out image's?
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

from mrisynth.errors import ConfigError

ALPHA = 0.05


def describe(values: Sequence[float]) -> dict[str, float | int]:
    x = np.asarray(values, np.float64)
    return {
        "n": int(x.size), "mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1
        else 0.0, "median": float(np.median(x)), "q10": float(np.quantile(x, 0.1)),
        "q90": float(np.quantile(x, 0.9)), "min": float(x.min()), "max": float(x.max()),
    }  # fmt: skip


def compare_errors(
    train: Sequence[float], holdout: Sequence[float], metric: str = "rmse"
) -> dict[str, Any]:
    """Distributions of both groups, the Mann-Whitney U test and a plain-text verdict.

    `prob_train_lower` = P(train error < held-out error) + P(equal) / 2 (the U statistic over
    n_train * n_holdout): 0.5 when the model treats both alike, near 1 when it memorised.
    """
    a, b = np.asarray(train, np.float64), np.asarray(holdout, np.float64)
    if a.size == 0 or b.size == 0:
        raise ConfigError("the comparison needs at least one projected image in each group")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ConfigError("projection errors must be finite numbers")
    less = mannwhitneyu(a, b, alternative="less")
    both = mannwhitneyu(a, b, alternative="two-sided")
    prob_lower = 1.0 - float(less.statistic) / (a.size * b.size)
    return {
        "metric": metric,
        "train": describe(a),
        "holdout": describe(b),
        "mann_whitney": {
            "u_train": float(less.statistic),
            "p_value_less": float(less.pvalue),
            "p_value_two_sided": float(both.pvalue),
            "prob_train_lower": prob_lower,
        },
        "verdict": verdict(float(less.pvalue), prob_lower, int(a.size), int(b.size)),
    }


def verdict(p_less: float, prob_lower: float, n_train: int, n_holdout: int) -> str:
    if p_less < ALPHA:
        return (f"training images are projected more closely than held-out ones (one-sided "
                f"Mann-Whitney p = {p_less:.3g}, P(train lower) = {prob_lower:.2f}): a sign "
                "of memorisation")  # fmt: skip
    small = " (few images: little power)" if min(n_train, n_holdout) < 20 else ""
    return (f"no evidence that training images are projected more closely than held-out ones "
            f"(one-sided Mann-Whitney p = {p_less:.3g}, P(train lower) = {prob_lower:.2f})"
            f"{small}")  # fmt: skip


def comparison_png(train: Sequence[float], holdout: Sequence[float], metric: str) -> bytes:
    """Histograms of both groups' errors on shared bins."""
    from mrisynth.report.figures import figure_png, new_figure

    fig, axes = new_figure(figsize=(6.0, 3.6))
    ax = axes[0][0]
    values = np.concatenate([np.asarray(train, float), np.asarray(holdout, float)])
    bins = np.histogram_bin_edges(values, bins=min(30, max(5, values.size // 3)))
    ax.hist(train, bins=bins, alpha=0.6, label=f"training (n={len(train)})")
    ax.hist(holdout, bins=bins, alpha=0.6, label=f"held-out (n={len(holdout)})")
    ax.set_xlabel(f"projection error ({metric}, grey levels)")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    return figure_png(fig)
