"""Per-organ scores on held-out real patients with MONAI's metrics (DiceMetric, HD95).

Dice is computed per patient over the stack of that patient's slices (a 3D overlap, as CHAOS
scores), then averaged over patients; a patient without the organ does not count for it, even
when the prediction shows it there (MONAI's ignore_empty gives NaN for an empty truth whatever
the prediction; false positives on such a patient cost no Dice), and a missed organ scores 0.
HD95 (MONAI's HausdorffDistanceMetric, 95th percentile) is per slice in pixels, averaged over
slices where both the truth and the prediction show the organ (undefined otherwise).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from mrisynth.downstream.fit import as_tensors
from mrisynth.downstream.pairs import SegSet

EVAL_BATCH = 64


@torch.no_grad()
def predict(model: torch.nn.Module, test: SegSet, device: torch.device) -> np.ndarray:
    """uint8 labels [N, H, W]: the argmax of the U-Net's logits per pixel."""
    out = []
    for i in range(0, len(test), EVAL_BATCH):
        x, _ = as_tensors(test.images[i : i + EVAL_BATCH], test.labels[i : i + EVAL_BATCH], device)
        out.append(model(x).argmax(dim=1).to(torch.uint8).cpu().numpy())
    return np.concatenate(out)


def _one_hot(labels: np.ndarray, num_labels: int) -> torch.Tensor:
    """uint8 [N, H, W] -> float one-hot [N, K, H, W] (MONAI's metric input)."""
    from monai.networks.utils import one_hot

    return one_hot(torch.from_numpy(labels.astype(np.int64))[:, None], num_labels, dim=1)


def dice_per_patient(pred: np.ndarray, test: SegSet, num_labels: int) -> dict[str, list[float]]:
    """{patient: [Dice of labels 1..K-1]} (NaN where the patient lacks the organ)."""
    from monai.metrics import DiceMetric

    metric = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
    groups = np.asarray(test.groups)
    out = {}
    for g in sorted(set(test.groups)):
        idx = np.flatnonzero(groups == g)
        # the patient's slices as one volume [1, K, S, H, W]
        p = _one_hot(pred[idx], num_labels).permute(1, 0, 2, 3)[None]
        t = _one_hot(test.labels[idx], num_labels).permute(1, 0, 2, 3)[None]
        out[g or "all"] = [float(v) for v in metric(p, t)[0]]
    return out


def hd95_per_organ(pred: np.ndarray, test: SegSet, num_labels: int) -> list[float | None]:
    """Mean per-slice HD95 (pixels) of labels 1..K-1; None when no slice has it defined."""
    from monai.metrics import HausdorffDistanceMetric

    metric = HausdorffDistanceMetric(include_background=False, percentile=95, reduction="none")
    with warnings.catch_warnings():  # MONAI warns for every slice missing an organ
        warnings.simplefilter("ignore")
        values = metric(_one_hot(pred, num_labels), _one_hot(test.labels, num_labels))  # [N, K-1]
    values = values.numpy()
    out = []
    for k in range(values.shape[1]):
        finite = values[:, k][np.isfinite(values[:, k])]
        out.append(float(finite.mean()) if finite.size else None)
    return out


def organ_means(per_patient: dict[str, list[float]], num_organs: int) -> list[float | None]:
    """Mean over patients per organ, ignoring patients without it; None if none has it."""
    out = []
    for k in range(num_organs):
        vals = [v[k] for v in per_patient.values() if math.isfinite(v[k])]
        out.append(float(np.mean(vals)) if vals else None)
    return out


def chance_dice(test: SegSet, num_labels: int) -> list[float]:
    """Expected Dice of guessing each pixel's label at random with the test set's label
    frequencies: 2p^2 / 2p = p, the organ's share of the pixels (the floor to beat)."""
    counts = np.bincount(test.labels.ravel(), minlength=num_labels).astype(np.float64)
    share = counts / counts.sum()
    return [float(share[k]) for k in range(1, num_labels)]
