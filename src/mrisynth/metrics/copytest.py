"""The data-copying test of Meehan, Chaudhuri & Dasgupta (AISTATS 2020), and per-image flags.

Statistic (their C_T, "Z_U"): partition the training set's representation space into k cells
(k-means on the training images). In each cell, compare the distances from generated images to
their nearest training image with the same distances of held-out real images (patients the
generator never saw) by a Mann-Whitney U test, as a z-score
`Z_U = (U - m n / 2) / sqrt(m n (m + n + 1) / 12)`, U = pairs (generated, held-out) where the
generated distance is larger (ties count 1/2). Average the z-scores over cells with at least
`min_gen` generated and `min_holdout` held-out images, weighted by the cell's share of held-out
images. Strongly negative = generated images sit closer to the training set than new real
patients do (data-copying); strongly positive = farther (underfitting). Under no copying each
cell's Z_U is ~N(0, 1) and cells are independent, so the weighted mean has variance
`sum w_i^2`; the one-sided p-value is `Phi(C_T / sqrt(sum w_i^2))` (small = copying).

Per-image flags: an image is a suspected copy when it is closer to a training image than
`threshold`, the `percentile` (1st by default) of the between-patient nearest-neighbour
distances of the training images (each training image to its nearest image of ANOTHER
patient): real images of other patients are that close only 1 % of the time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans2, vq
from scipy.stats import norm

DEFAULT_PERCENTILE = 1.0
MIN_GEN_PER_CELL = 5
MIN_HOLDOUT_PER_CELL = 5
MAX_CELLS = 10
HOLDOUT_PER_CELL = 20  # k = held-out images / 20, at most 10: enough for a z-score per cell


def mann_whitney_z(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(U, z) of sample x against y; U counts pairs with x > y (ties 1/2), no tie correction."""
    x = np.asarray(x, np.float64)
    y = np.sort(np.asarray(y, np.float64))
    m, n = len(x), len(y)
    if m == 0 or n == 0:
        raise ValueError("both samples must be non-empty")
    below = np.searchsorted(y, x, side="left")  # y strictly smaller than each x
    ties = np.searchsorted(y, x, side="right") - below
    u = float(below.sum() + 0.5 * ties.sum())
    z = (u - m * n / 2) / np.sqrt(m * n * (m + n + 1) / 12)
    return u, float(z)


def num_cells(num_train: int, num_holdout: int) -> int:
    """k for the partition: ~20 held-out images per cell, at most 10, never more than half
    the training images."""
    return int(max(1, min(MAX_CELLS, num_holdout // HOLDOUT_PER_CELL, num_train // 2)))


def partition(train_vec: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means centroids [k', D] of the training representation (k' <= k: empty cells dropped)."""
    data = np.asarray(train_vec, np.float64)
    if k <= 1 or data.shape[0] < 2:
        return data.mean(axis=0, keepdims=True)
    centroids, labels = kmeans2(data, k, minit="++", seed=np.random.default_rng(seed))
    return centroids[np.unique(labels)]


@dataclass
class CellResult:
    cell: int
    num_gen: int
    num_holdout: int
    z: float | None  # None: too few images in the cell to test


@dataclass
class ZuResult:
    value: float | None  # C_T; None when no cell had enough images
    p_value: float | None
    cells: list[CellResult]


def zu_statistic(
    gen_dist: np.ndarray,
    holdout_dist: np.ndarray,
    gen_cells: np.ndarray,
    holdout_cells: np.ndarray,
    min_gen: int = MIN_GEN_PER_CELL,
    min_holdout: int = MIN_HOLDOUT_PER_CELL,
) -> ZuResult:
    """Meehan et al.'s C_T from nearest-training distances and cell labels of both sets."""
    cells, weights, zs = [], [], []
    n_hold = len(holdout_dist)
    for c in np.unique(np.concatenate([gen_cells, holdout_cells])):
        g = gen_dist[gen_cells == c]
        h = holdout_dist[holdout_cells == c]
        z = None
        if len(g) >= min_gen and len(h) >= min_holdout:
            z = mann_whitney_z(g, h)[1]
            weights.append(len(h) / n_hold)
            zs.append(z)
        cells.append(CellResult(int(c), len(g), len(h), z))
    if not zs:
        return ZuResult(None, None, cells)
    w = np.asarray(weights) / np.sum(weights)
    value = float(np.dot(w, zs))
    p = float(norm.cdf(value / np.sqrt(np.sum(w * w))))
    return ZuResult(value, p, cells)


def assign_cells(centroids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Index of each vector's nearest centroid."""
    if vectors.shape[0] == 0:
        return np.zeros(0, np.int64)
    return vq(np.asarray(vectors, np.float64), centroids)[0].astype(np.int64)


def copy_threshold(between_patient: np.ndarray, percentile: float = DEFAULT_PERCENTILE) -> float:
    """The flag threshold: a low percentile of the real between-patient NN distances."""
    v = np.asarray(between_patient, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("no between-patient distances to calibrate the copy threshold")
    return float(np.percentile(v, percentile))


def percentile_of(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per value: % of the reference sample at or below it (0 = closer than every real pair)."""
    ref = np.sort(np.asarray(reference, np.float64)[np.isfinite(reference)])
    if ref.size == 0:
        return np.full(len(values), np.nan)
    return 100.0 * np.searchsorted(ref, np.asarray(values, np.float64), side="right") / ref.size
