"""A small, weight-free label classifier for the faithfulness metric.

Features: the grey image shrunk to at most 16 x 16 by area averaging (what a slice's level or
contrast shows at a glance: which organs, how bright). Model: scikit-learn's StandardScaler
(the training set's mean and spread; constant pixels such as corners stay zero) and
LogisticRegression (multinomial, L2 penalty, L-BFGS, `class_weight="balanced"` so that a rare
class is not traded for a common one). Deterministic: L-BFGS from zero weights, no random
initialisation, no mini-batches, so the same images always give the same classifier.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

FEATURE_SIDE = 16
L2 = 1e-3  # penalty on the weights per (class-weighted) mean sample loss, after standardising
MAX_ITER = 1000


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
    """Multinomial logistic regression on standardised features (scikit-learn)."""

    def __init__(self, num_classes: int, l2: float = L2) -> None:
        self.num_classes, self.l2 = num_classes, l2
        self.model: Pipeline | None = None

    def fit(self, features: np.ndarray, classes: np.ndarray) -> LinearProbe:
        """features [N, D], classes int [N] in 0..num_classes-1 (at least two distinct)."""
        y = np.asarray(classes, np.int64)
        if len(np.unique(y)) < 2:
            raise ValueError("the classifier needs images of at least two classes")
        if y.min() < 0 or y.max() >= self.num_classes:
            raise ValueError(f"classes must lie in 0..{self.num_classes - 1}")
        # sklearn minimises C * sum(w_i * loss_i) + |W|^2 / 2; C = 1 / (l2 * N) makes that the
        # mean (balanced weights average 1) loss + l2 / 2 * |W|^2, whatever the set's size
        logreg = LogisticRegression(C=1.0 / (self.l2 * len(y)), class_weight="balanced",
                                    solver="lbfgs", max_iter=MAX_ITER, tol=1e-8)
        model = make_pipeline(StandardScaler(), logreg)
        # One BLAS/OpenMP thread: sums then do not depend on the core count, and the small
        # matrices gain nothing from more (20k x 256 x 12 on the busy 2-core VM: 4 s of CPU,
        # 33-44 s with 2 threads spinning)
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            # an ill-conditioned set may stop at max_iter: still a usable classifier, and the
            # metric's caveat already says what it is
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(np.asarray(features, np.float64), y)
        self.model = model
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """int64 [N] predicted classes."""
        if self.model is None:
            raise RuntimeError("fit the classifier first")
        if len(features) == 0:
            return np.zeros(0, np.int64)
        return self.model.predict(np.asarray(features, np.float64)).astype(np.int64)


def per_class_accuracy(pred: np.ndarray, true: np.ndarray) -> dict[int, float]:
    """{class: fraction of its images predicted as it} for every class present in `true`."""
    pred, true = np.asarray(pred), np.asarray(true)
    return {int(c): float((pred[true == c] == c).mean()) for c in np.unique(true)}


def balanced_accuracy(per_class: dict[int, float]) -> float:
    """Mean of the per-class accuracies (chance = 1 / number of classes, whatever the mix)."""
    return float(np.mean(list(per_class.values()))) if per_class else float("nan")
