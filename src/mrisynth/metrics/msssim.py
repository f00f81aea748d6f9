"""Multi-scale structural similarity (Wang, Simoncelli & Bovik 2003), float64, grey images.

As in the authors' reference: an 11x11 Gaussian window (sigma 1.5, normalised to sum 1)
applied without padding ("valid"), K1 = 0.01, K2 = 0.03, C1 = (K1 L)^2, C2 = (K2 L)^2 with L
the data range, statistics as population moments (E[x^2] - mu^2), five scales with weights
0.0448, 0.2856, 0.3001, 0.2363, 0.1333, each next scale a 2x2 average with stride 2 (an odd
last row/column is dropped). MS-SSIM = prod_{j<M} cs_j^{w_j} * ssim_M^{w_M}, where cs_j is the
mean contrast-structure term at scale j and ssim_M the mean SSIM at the coarsest scale.

Small images: the window needs at least 11 pixels at the coarsest scale, so five scales need
176 pixels. Smaller images use the largest M <= 5 scales that fit (M = 2 at 32 px, 3 at 64 px,
1 at 16 px: plain SSIM) with the first M weights renormalised to sum 1; `num_scales` says how
many were used. Images under 11 pixels are refused. A negative mean cs or ssim (anti-correlated
structure, which a fractional power cannot take) counts as 0, as pytorch-msssim does.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA) -> np.ndarray:
    """1-D Gaussian taps summing to 1 (the 2-D window is its outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def num_scales(height: int, width: int, max_scales: int = len(WEIGHTS)) -> int:
    """How many scales fit: the coarsest must still hold one window."""
    side = min(height, width)
    if side < WINDOW:
        raise ValueError(f"MS-SSIM needs images of at least {WINDOW} pixels, got {height}x{width}")
    m = 1
    while m < max_scales and side // 2**m >= WINDOW:
        m += 1
    return m


def _filter_valid(x: np.ndarray) -> np.ndarray:
    """Separable Gaussian over the last two axes, keeping only fully covered positions."""
    g = gaussian_window()
    r = WINDOW // 2
    y = correlate1d(x, g, axis=-1, mode="constant")
    y = correlate1d(y, g, axis=-2, mode="constant")
    return y[..., r:-r, r:-r]


def ssim_terms(a: np.ndarray, b: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean SSIM and mean contrast-structure per image of float64 [N, H, W] pairs."""
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_a, mu_b = _filter_valid(a), _filter_valid(b)
    var_a = _filter_valid(a * a) - mu_a**2
    var_b = _filter_valid(b * b) - mu_b**2
    cov = _filter_valid(a * b) - mu_a * mu_b
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    return (lum * cs).mean(axis=(-2, -1)), cs.mean(axis=(-2, -1))


def _downsample(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    return 0.25 * (
        x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2]
    )


def ms_ssim(
    a: np.ndarray, b: np.ndarray, data_range: float = 255.0, max_scales: int = len(WEIGHTS)
) -> np.ndarray:
    """MS-SSIM of each pair of [N, H, W] (or [H, W]) grey images -> float64 [N] (or scalar)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim not in (2, 3):
        raise ValueError(
            f"need two [N, H, W] or [H, W] arrays of one shape, got {a.shape}, {b.shape}"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("MS-SSIM of images with NaN or infinite values")
    single = a.ndim == 2
    if single:
        a, b = a[None], b[None]
    m = num_scales(a.shape[-2], a.shape[-1], max_scales)
    w = np.asarray(WEIGHTS[:m]) / sum(WEIGHTS[:m])
    out = np.ones(a.shape[0])
    for j in range(m):
        ssim, cs = ssim_terms(a, b, data_range)
        term = ssim if j == m - 1 else cs
        out *= np.maximum(term, 0.0) ** w[j]
        a, b = _downsample(a), _downsample(b)
    return float(out[0]) if single else out
