"""A small, weight-free label classifier for the faithfulness metric.

Features: the grey image shrunk to at most 16 x 16 by area averaging (what a slice's level or
contrast shows at a glance: which organs, how bright), standardised with the training set's
mean and spread. Model: multinomial logistic regression with an L2 penalty, fitted full-batch
by L-BFGS from zero weights, with class weights inversely proportional to class frequency so
that a rare class is not traded for a common one. Deterministic: no random initialisation, no
mini-batches, so the same images always give the same classifier.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

FEATURE_SIDE = 16
L2 = 1e-3  # penalty on the weights (per feature, after standardisation)
MAX_ITER = 300


def image_features(images: np.ndarray) -> np.ndarray:
    """uint8 [N, C, H, W] -> float32 [N, side * side] in [0, 1] (channels averaged)."""
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != x.shape[3]:
        raise ValueError(f"expected uint8 [N, C, H, W] square images, got {x.dtype} {x.shape}")
    gray = x.astype(np.float32).mean(axis=1) / 255.0  # [N, H, W]
    side = min(FEATURE_SIDE, x.shape[2])
    if side != x.shape[2]:
        gray = np.stack([cv2.resize(g, (side, side), interpolation=cv2.INTER_AREA) for g in gray])
    return gray.reshape(len(gray), -1)  # [N, side * side]


class LinearProbe:
    """Multinomial logistic regression on standardised features."""

    def __init__(self, num_classes: int, l2: float = L2) -> None:
        self.num_classes, self.l2 = num_classes, l2
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.weight: torch.Tensor | None = None  # [D + 1, K] (last row: bias)

    def _design(self, features: np.ndarray) -> torch.Tensor:
        x = (np.asarray(features, np.float64) - self.mean) / self.scale
        return torch.from_numpy(np.hstack([x, np.ones((len(x), 1))]))  # [N, D + 1]

    def fit(self, features: np.ndarray, classes: np.ndarray) -> LinearProbe:
        """features [N, D], classes int [N] in 0..num_classes-1 (at least two distinct)."""
        y = np.asarray(classes, np.int64)
        if len(np.unique(y)) < 2:
            raise ValueError("the classifier needs images of at least two classes")
        f = np.asarray(features, np.float64)
        self.mean = f.mean(0)
        self.scale = np.maximum(f.std(0), 1e-6)  # constant pixels (e.g. corners) stay zero
        x, target = self._design(f), torch.from_numpy(y)
        counts = np.bincount(y, minlength=self.num_classes).astype(np.float64)
        weights = torch.from_numpy(np.where(counts > 0, len(y) / np.maximum(counts, 1), 0.0))
        weights = weights / weights[target].mean()  # mean sample weight 1
        w = torch.zeros(x.shape[1], self.num_classes, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=MAX_ITER, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-9, tolerance_change=1e-12)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ w, target, weight=weights)
            loss = loss + 0.5 * self.l2 * (w[:-1] ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        self.weight = w.detach()
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """int64 [N] predicted classes."""
        if self.weight is None:
            raise RuntimeError("fit the classifier first")
        if len(features) == 0:
            return np.zeros(0, np.int64)
        with torch.no_grad():
            return (self._design(features) @ self.weight).argmax(1).numpy()


def per_class_accuracy(pred: np.ndarray, true: np.ndarray) -> dict[int, float]:
    """{class: fraction of its images predicted as it} for every class present in `true`."""
    pred, true = np.asarray(pred), np.asarray(true)
    return {int(c): float((pred[true == c] == c).mean()) for c in np.unique(true)}


def balanced_accuracy(per_class: dict[int, float]) -> float:
    """Mean of the per-class accuracies (chance = 1 / number of classes, whatever the mix)."""
    return float(np.mean(list(per_class.values()))) if per_class else float("nan")
