"""Streaming feature statistics (float64 sums), as NVIDIA's FID code accumulates them.

Heusel et al. 2017 (FID) need only the mean and the biased covariance of detector features;
KID and precision/recall need the features themselves, so `keep_features=True` stores them.
Statistics save to / load from `.npz` without pickle so they can be cached on disk.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mrisynth.errors import InputError


class FeatureStats:
    """Accumulate features batch by batch: `update()` adds, `mean()`/`cov()` derive.

    Sums are float64 (sum of x and of x x^T), so the result does not depend on the batch split
    beyond float64 round-off. The covariance is biased (divides by N), as the reference is.
    """

    def __init__(self, keep_features: bool = False, keep_moments: bool = True) -> None:
        self.keep_features = keep_features
        self.keep_moments = keep_moments
        self.num_items = 0
        self.num_features: int | None = None
        self._sum: np.ndarray | None = None  # [D] float64
        self._sum_outer: np.ndarray | None = None  # [D, D] float64
        self._chunks: list[np.ndarray] = []  # each [n, D] float32

    def update(self, features: np.ndarray) -> None:
        """Add a batch `[N, D]` of features."""
        x = np.asarray(features)
        if x.ndim != 2:
            raise ValueError(f"features must be [N, D], got shape {x.shape}")
        if self.num_features is None:
            self.num_features = x.shape[1]
            if self.keep_moments:
                self._sum = np.zeros([x.shape[1]], dtype=np.float64)
                self._sum_outer = np.zeros([x.shape[1], x.shape[1]], dtype=np.float64)
        elif x.shape[1] != self.num_features:
            raise ValueError(f"expected {self.num_features} features, got {x.shape[1]}")
        if x.shape[0] == 0:
            return
        if self.keep_moments:
            x64 = x.astype(np.float64)
            self._sum += x64.sum(axis=0)
            self._sum_outer += x64.T @ x64
        if self.keep_features:
            self._chunks.append(np.array(x, dtype=np.float32))
        self.num_items += x.shape[0]

    def _require_moments(self) -> None:
        if not self.keep_moments or self._sum is None or self.num_items == 0:
            raise ValueError("no moments accumulated (empty stats or keep_moments=False)")

    def mean(self) -> np.ndarray:
        """Mean feature vector `[D]` (float64)."""
        self._require_moments()
        return self._sum / self.num_items

    def cov(self) -> np.ndarray:
        """Biased covariance `[D, D]` (float64): sum(x x^T)/N - mu mu^T."""
        self._require_moments()
        mu = self.mean()
        return self._sum_outer / self.num_items - np.outer(mu, mu)

    def features(self) -> np.ndarray:
        """All features seen, `[N, D]` float32 (needs keep_features=True)."""
        if not self.keep_features:
            raise ValueError("features were not kept (keep_features=False)")
        if not self._chunks:
            return np.zeros([0, self.num_features or 0], dtype=np.float32)
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks, axis=0)]
        return self._chunks[0]

    def merge(self, other: FeatureStats) -> None:
        """Add another accumulator's state (e.g. from another process) into this one."""
        if other.num_items == 0:
            return
        if self.num_features is not None and other.num_features != self.num_features:
            raise ValueError("cannot merge stats with different feature sizes")
        if self.num_features is None:
            self.num_features = other.num_features
            if self.keep_moments:
                self._sum = np.zeros_like(other._sum)
                self._sum_outer = np.zeros_like(other._sum_outer)
        if self.keep_moments:
            self._sum += other._sum
            self._sum_outer += other._sum_outer
        if self.keep_features:
            self._chunks.append(other.features())
        self.num_items += other.num_items

    # ---- persistence (no pickle) --------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the state to an `.npz` file at `path` (callers pass an atomic temp path)."""
        arrays: dict[str, np.ndarray] = {
            "num_items": np.array(self.num_items, dtype=np.int64),
            "num_features": np.array(self.num_features or 0, dtype=np.int64),
            "flags": np.array([self.keep_moments, self.keep_features], dtype=bool),
        }
        if self.keep_moments and self._sum is not None:
            arrays["sum"] = self._sum
            arrays["sum_outer"] = self._sum_outer
        if self.keep_features:
            arrays["features"] = self.features()
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureStats:
        """Read a state written by `save`."""
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                keep_moments, keep_features = (bool(v) for v in z["flags"])
                stats = cls(keep_features=keep_features, keep_moments=keep_moments)
                stats.num_items = int(z["num_items"])
                stats.num_features = int(z["num_features"]) or None
                if keep_moments and "sum" in z:
                    stats._sum = z["sum"].astype(np.float64)
                    stats._sum_outer = z["sum_outer"].astype(np.float64)
                if keep_features:
                    stats._chunks = [z["features"].astype(np.float32)]
        except (OSError, KeyError, ValueError) as e:
            raise InputError(f"{path}: unreadable feature cache ({e}); delete it to rebuild") from e
        return stats
