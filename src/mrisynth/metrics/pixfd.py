"""`pixfd<n>`: a weight-free Fréchet distance for when NVIDIA's detectors are absent.

"pixel Fréchet distance": the Fréchet distance (Dowson & Landau 1982; the formula FID uses)
between Gaussian fits of a fixed, documented feature vector computed from the pixels alone, so
every user (offline, air-gapped, the demo) gets a distribution distance. It is NOT FID: no
network, no Inception features; its values are comparable only between evaluations against
the same real images, never with FID or across datasets. Records say `reference_exact: false`.

Feature vector (version 2, 85 values per image, grey levels scaled to [0, 1], body mask from
`weightfree.body_mask`: half the Otsu level, largest component, closed, holes filled):
- 64: the image with the background zeroed, area-downsampled to 8 x 8 (layout of the body);
- 11: first-order intensity statistics inside the body, as radiomics defines them: mean,
  standard deviation, skewness, excess kurtosis, 10/25/50/75/90th percentiles, entropy of a
  32-bin histogram (bits / 5) and uniformity (sum of squared bin probabilities);
- 8: shape: area fraction, perimeter^2 / (4 pi area) (1 for a disc), bounding-box width and
  height / side, extent (area / box area), centroid x and y / side, eccentricity;
- 2: texture: mean Sobel gradient magnitude and mean |Laplacian| inside the body.
An image without a body (blank) gets zeros. Each feature is divided by its standard deviation
over the real images (1 where that is 0) before the Gaussian fits, so no feature dominates by
its units; the distance is then in units of the real set's spread.
"""

from __future__ import annotations

import cv2
import numpy as np

from mrisynth.metrics.fid import frechet_distance
from mrisynth.metrics.weightfree import body_mask

FEATURE_VERSION = "pixfd-v2"  # v2: the robust body mask shared by every metric
GRID = 8
NUM_FEATURES = GRID * GRID + 11 + 8 + 2
CAVEAT = (
    "pixfd is a weight-free Fréchet distance on 85 pixel, intensity and shape features "
    "(standardised by the real images), not FID: compare it only between evaluations against "
    "the same real images."
)


def _gray(images: np.ndarray) -> np.ndarray:
    """uint8 [N, C, H, W] -> uint8 [N, H, W] (channel mean)."""
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected uint8 [N, 1|3, H, W], got {x.dtype} {x.shape}")
    return x[:, 0] if x.shape[1] == 1 else np.round(x.mean(axis=1)).astype(np.uint8)


def _intensity_stats(values: np.ndarray) -> list[float]:
    """Radiomics-style first-order statistics of grey levels in [0, 1]."""
    mean, std = float(values.mean()), float(values.std())
    centred = values - mean
    skew = float((centred**3).mean() / std**3) if std > 1e-9 else 0.0
    kurt = float((centred**4).mean() / std**4 - 3.0) if std > 1e-9 else 0.0
    pct = np.percentile(values, [10, 25, 50, 75, 90]).tolist()
    p = np.bincount(np.minimum((values * 32).astype(np.int64), 31), minlength=32) / values.size
    nz = p[p > 0]
    entropy = float(-(nz * np.log2(nz)).sum() / 5.0)
    return [mean, std, skew, kurt, *pct, entropy, float((p * p).sum())]


def _shape_stats(mask: np.ndarray) -> list[float]:
    """Area, roundness, box, extent, centroid and eccentricity of a non-empty mask."""
    side = float(mask.shape[0])
    m8 = mask.astype(np.uint8)
    area = float(m8.sum())
    contours, _ = cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    perimeter = max(cv2.arcLength(c, True) for c in contours) if contours else 0.0
    _, _, w, h = cv2.boundingRect(m8)
    mom = cv2.moments(m8, binaryImage=True)
    cx, cy = mom["m10"] / mom["m00"], mom["m01"] / mom["m00"]
    mu20, mu02, mu11 = mom["mu20"] / area, mom["mu02"] / area, mom["mu11"] / area
    spread = np.sqrt(max((mu20 - mu02) ** 2 + 4 * mu11**2, 0.0))
    major, minor = (mu20 + mu02 + spread) / 2, (mu20 + mu02 - spread) / 2
    ecc = float(np.sqrt(max(1 - minor / major, 0.0))) if major > 1e-12 else 0.0
    return [
        area / side**2,
        perimeter**2 / (4 * np.pi * area),
        w / side,
        h / side,
        area / (w * h),
        cx / side,
        cy / side,
        ecc,
    ]


def image_features(gray: np.ndarray) -> np.ndarray:
    """One uint8 [H, W] slice -> float64 [NUM_FEATURES] (zeros when there is no body)."""
    mask = body_mask(gray)
    if mask.sum() < 2:
        return np.zeros(NUM_FEATURES, np.float64)
    g = gray.astype(np.float32) / 255.0
    body = np.where(mask, g, 0.0).astype(np.float32)
    grid = cv2.resize(body, (GRID, GRID), interpolation=cv2.INTER_AREA).ravel()
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    lap = np.abs(cv2.Laplacian(g, cv2.CV_32F, ksize=1))
    texture = [float(np.sqrt(gx**2 + gy**2)[mask].mean()), float(lap[mask].mean())]
    values = g[mask].astype(np.float64)
    return np.concatenate(
        [grid.astype(np.float64), _intensity_stats(values), _shape_stats(mask), texture]
    )


def pixel_features(images: np.ndarray) -> np.ndarray:
    """uint8 [N, C, H, W] -> float64 [N, NUM_FEATURES]."""
    gray = _gray(images)
    if gray.shape[0] == 0:
        return np.zeros([0, NUM_FEATURES], np.float64)
    return np.stack([image_features(g) for g in gray])


def pixel_frechet_distance(real: np.ndarray, gen: np.ndarray) -> float:
    """pixfd between two feature sets [N, F] and [M, F] (both standardised by the real std)."""
    real = np.asarray(real, np.float64)
    gen = np.asarray(gen, np.float64)
    if real.ndim != 2 or gen.ndim != 2 or real.shape[1] != gen.shape[1]:
        raise ValueError(f"feature arrays must be [N, F] alike: {real.shape} vs {gen.shape}")
    if real.shape[0] < 2 or gen.shape[0] < 2:
        raise ValueError("pixfd needs at least 2 real and 2 generated images")
    if not (np.isfinite(real).all() and np.isfinite(gen).all()):
        raise ValueError("pixfd features contain NaN or inf")
    scale = real.std(axis=0)
    scale[scale < 1e-12] = 1.0
    r, g = real / scale, gen / scale
    return frechet_distance(
        g.mean(0), np.cov(g, rowvar=False, bias=True), r.mean(0), np.cov(r, rowvar=False, bias=True)
    )


class PixelFeatures:
    """Accumulates pixfd features of the generated set (the real side is computed and cached
    by `metrics.sources.real_pixel_features`)."""

    def __init__(self) -> None:
        self.features: list[np.ndarray] = []

    def update(self, images: np.ndarray, real: bool = False) -> None:
        if real:  # same signature as the other accumulators of the generation loop
            raise ValueError("PixelFeatures holds the generated side only")
        self.features.append(pixel_features(images))

    def generated(self) -> np.ndarray:
        """Features of the generated side so far, [M, F]."""
        if not self.features:
            return np.zeros([0, NUM_FEATURES], np.float64)
        return np.concatenate(self.features)
