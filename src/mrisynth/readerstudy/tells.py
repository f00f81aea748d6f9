"""Low-level "tells": pixel statistics that separate a study's real from its synthetic images.

Identical encoding does not make the pixels alike. The demo's real images, for instance, never
go below 1 while the generator's clamp to 0: a reader who narrows window/level onto the darkest
values, or opens an image in any tool, tells every image apart without judging anatomy. Such
differences are real properties of the images, so they are not hidden (that would alter the
pixels readers judge); create finds them and warns, and the analysis names them beside the
results they may explain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mrisynth.readerstudy.stats import auc_from_scores

MIN_PER_CLASS = 5  # fewer images per class: no claim either way
SEPARATION = 0.9  # AUC >= 0.9 or <= 0.1: one threshold on the statistic sorts nearly all

FEATURES: dict[str, Callable[[np.ndarray], float]] = {
    "darkest value": lambda px: float(px.min()),
    "brightest value": lambda px: float(px.max()),
    "share of pixels at 0": lambda px: float(np.mean(px == 0)),
    "share of pixels at 255": lambda px: float(np.mean(px == 255)),
    "number of distinct values": lambda px: float(np.unique(px).size),
}


def find_tells(real: Sequence[np.ndarray], synthetic: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """Each feature whose values separate the classes (AUC of 'real higher' >= SEPARATION or
    <= 1 - SEPARATION), with the AUC and the range of the feature in each class."""
    if min(len(real), len(synthetic)) < MIN_PER_CLASS:
        return []
    found = []
    for name, feature in FEATURES.items():
        r = [feature(px) for px in real]
        s = [feature(px) for px in synthetic]
        auc = auc_from_scores(r, s)
        if auc is not None and max(auc, 1 - auc) >= SEPARATION:
            found.append(
                {
                    "feature": name,
                    "auc": round(auc, 3),
                    "real": [min(r), max(r)],
                    "synthetic": [min(s), max(s)],
                }
            )
    return found


def describe(tell: dict[str, Any]) -> str:
    """One sentence for the organiser."""

    def span(v: list[float]) -> str:
        return f"{v[0]:.3g}" if v[0] == v[1] else f"{v[0]:.3g}..{v[1]:.3g}"

    separation = max(tell["auc"], 1 - tell["auc"])  # which class is higher is in the ranges
    return (
        f"{tell['feature']}: real {span(tell['real'])}, synthetic {span(tell['synthetic'])} "
        f"(AUC {separation:.2f})"
    )
