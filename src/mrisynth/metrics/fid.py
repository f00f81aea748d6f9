"""Fréchet Inception Distance (Heusel et al. 2017, arXiv 1706.08500), NVIDIA-exact definition.

FID = |mu_g - mu_r|^2 + tr(S_g) + tr(S_r) - 2 tr((S_g S_r)^(1/2)). The trace of the matrix
square root is computed as the sum of square roots of the eigenvalues of a symmetric PSD matrix
similar to S_g S_r (S_r^(1/2) S_g S_r^(1/2), or L^T S_r L with a Cholesky factor S_g = L L^T;
eigvalsh, negatives clipped to 0): more stable and faster than `scipy.linalg.sqrtm`, and equal
to it within ~1e-6.
"""

from __future__ import annotations

import numpy as np

from mrisynth.metrics.feature_stats import FeatureStats


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric PSD matrix via eigh (negative round-off clipped to 0)."""
    sym = (matrix + matrix.T) / 2
    eigval, eigvec = np.linalg.eigh(sym)
    return (eigvec * np.sqrt(np.clip(eigval, 0, None))) @ eigvec.T


def _symmetric_inner(sigma1: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """A symmetric PSD matrix with the eigenvalues of S1 S2.

    Cheapest first: with a Cholesky factor S = L L^T of either matrix (full rank, e.g. 50k
    generated images), L^T S' L; when both are singular (fewer images than features, e.g. a
    1,300-image training set), S2^½ S1 S2^½ with the square root from eigh.
    """
    for a, b in ((sigma1, sigma2), (sigma2, sigma1)):
        try:
            low = np.linalg.cholesky(a)
        except np.linalg.LinAlgError:
            continue
        return low.T @ b @ low
    root2 = _sqrt_psd(sigma2)
    return root2 @ sigma1 @ root2


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((S1 S2)^(1/2)) for covariance matrices: sum of square roots of the eigenvalues of a
    symmetric PSD matrix similar to S1 S2 (eigvalsh, negative round-off clipped to 0)."""
    inner = _symmetric_inner(np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64))
    eigval = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(eigval, 0, None)).sum())


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2), in float64."""
    mu1 = np.asarray(mu1, dtype=np.float64)
    mu2 = np.asarray(mu2, dtype=np.float64)
    sigma1 = np.asarray(sigma1, dtype=np.float64)
    sigma2 = np.asarray(sigma2, dtype=np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}")
    mean_term = float(np.square(mu1 - mu2).sum())
    trace_term = float(np.trace(sigma1) + np.trace(sigma2))
    return mean_term + trace_term - 2.0 * trace_sqrt_product(sigma1, sigma2)


def fid_from_stats(gen: FeatureStats, real: FeatureStats) -> float:
    """FID between two accumulated feature statistics."""
    return frechet_distance(gen.mean(), gen.cov(), real.mean(), real.cov())


class FrechetDistance:
    """Accumulator form: `update(features, real=...)`, then `compute()`.

    Keeps only float64 sums, so separate processes can merge their states before computing.
    """

    def __init__(self) -> None:
        self.real = FeatureStats()
        self.gen = FeatureStats()

    def update(self, features: np.ndarray, real: bool) -> None:
        (self.real if real else self.gen).update(features)

    def compute(self) -> float:
        return fid_from_stats(self.gen, self.real)
