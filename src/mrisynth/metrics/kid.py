"""Kernel Inception Distance (Binkowski et al. 2018, arXiv 1801.01401), NVIDIA's subset form.

Unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over
`num_subsets` random subsets of m = min(n_real, n_gen, max_subset_size) points each. For each
subset the generated indices are drawn first, then the real ones, both without replacement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mrisynth.metrics.feature_stats import FeatureStats


@dataclass(frozen=True)
class KidResult:
    """Mean and spread over subsets; `subsets` holds each subset's MMD^2 estimate."""

    mean: float
    std: float
    subsets: np.ndarray  # [num_subsets] float64
    subset_size: int


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for all pairs: [m, d] x [n, d] -> [m, n]."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(gen: np.ndarray, real: np.ndarray) -> float:
    """Unbiased MMD^2 between two equal-sized samples `[m, D]` (float64 arithmetic)."""
    x = np.asarray(gen, dtype=np.float64)
    y = np.asarray(real, dtype=np.float64)
    m = x.shape[0]
    if m < 2 or y.shape[0] != m:
        raise ValueError(f"need two equal samples of >= 2 points, got {x.shape[0]}, {y.shape[0]}")
    kxx = _polynomial_kernel(x, x)
    kyy = _polynomial_kernel(y, y)
    kxy = _polynomial_kernel(x, y)
    within = kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)
    return float(within / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m))


def kernel_inception_distance(
    gen_features: np.ndarray,
    real_features: np.ndarray,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int | None = 0,
) -> KidResult:
    """KID as NVIDIA defines it; `seed` makes the subset draws reproducible (None = random)."""
    gen = np.asarray(gen_features)
    real = np.asarray(real_features)
    if gen.shape[1] != real.shape[1]:
        raise ValueError(f"feature sizes differ: {gen.shape[1]} vs {real.shape[1]}")
    m = min(gen.shape[0], real.shape[0], max_subset_size)
    if m < 2:
        raise ValueError("KID needs at least 2 real and 2 generated images")
    rng = np.random.default_rng(seed)
    values = np.empty([num_subsets], dtype=np.float64)
    for i in range(num_subsets):
        gen_idx = rng.choice(gen.shape[0], m, replace=False)
        real_idx = rng.choice(real.shape[0], m, replace=False)
        values[i] = mmd2_unbiased(gen[gen_idx], real[real_idx])
    return KidResult(float(values.mean()), float(values.std()), values, m)


class KernelDistance:
    """Accumulator form: keeps the features of both sets (KID needs them, not just sums)."""

    def __init__(self, num_subsets: int = 100, max_subset_size: int = 1000, seed: int = 0):
        self.real = FeatureStats(keep_features=True, keep_moments=False)
        self.gen = FeatureStats(keep_features=True, keep_moments=False)
        self.num_subsets = num_subsets
        self.max_subset_size = max_subset_size
        self.seed = seed

    def update(self, features: np.ndarray, real: bool) -> None:
        (self.real if real else self.gen).update(features)

    def compute(self) -> KidResult:
        return kernel_inception_distance(
            self.gen.features(),
            self.real.features(),
            self.num_subsets,
            self.max_subset_size,
            self.seed,
        )
