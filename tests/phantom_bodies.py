"""Realistic abdominal slices in memory for the audit and diversity tests (no DICOM round trip).

Each patient is `mrisynth.data.phantom`'s anatomy rendered at `matrix` px, min-max scaled to
0..255 as `prepare` does, and area-resized to `size` px.
"""

import cv2
import numpy as np

from mrisynth.data.phantom import render_slice, sample_anatomy


def patient_slices(pid: int, num_slices: int = 12, size: int = 32, seed: int = 0, matrix=64):
    """uint8 [num_slices, 1, size, size] of one phantom patient."""
    rng = np.random.default_rng([seed, pid])
    spacing = float(rng.uniform(380, 440)) / matrix
    step = 7.0
    extent = num_slices * step
    anatomy = sample_anatomy(rng, extent)
    out = []
    for k in range(num_slices):
        img = render_slice(anatomy, (k + 0.5) * step, matrix, spacing, rng, extent)["in"]
        img = img.astype(np.float64)
        img = (img - img.min()) / max(1e-9, float(img.max() - img.min())) * 255
        img = cv2.resize(img.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
        out.append(np.clip(np.rint(img), 0, 255).astype(np.uint8))
    return np.stack(out)[:, None]


def cohort(first: int, count: int, num_slices: int = 12, size: int = 32, seed: int = 0):
    """Images uint8 [count * num_slices, 1, size, size] and their patient keys."""
    images = np.concatenate(
        [patient_slices(p, num_slices, size, seed) for p in range(first, first + count)]
    )
    keys = [f"pt{p:03d}" for p in range(first, first + count) for _ in range(num_slices)]
    return images, keys


def shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """[1, H, W] image moved by (dx, dy) px, zero fill (not wrapped)."""
    h, w = image.shape[-2:]
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image[0], m, (w, h), flags=cv2.INTER_NEAREST)[None]


def collapsed(image: np.ndarray, count: int, noise: float, seed: int = 0) -> np.ndarray:
    """One [1, H, W] image repeated `count` times with Gaussian noise (a mode-collapsed set)."""
    rng = np.random.default_rng(seed)
    x = image.astype(np.float64)[None] + rng.normal(0, noise, (count, *image.shape))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
