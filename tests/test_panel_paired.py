"""Figure 4 on a paired (image + mask) model: the similarity search looks at the image only."""

from __future__ import annotations

import numpy as np

from mrisynth.report.panel import nearest_by_ncc


def _pair(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.stack([image, mask]).astype(np.uint8)


def test_paired_search_ignores_the_mask_channel():
    # Low-contrast image channels, high-contrast masks: over both channels the mask decides.
    yy, xx = np.mgrid[0:16, 0:16]
    img_a, img_b = 100 + xx, 100 + yy  # different images
    mask_x = np.where(xx < 8, 0, 255)
    mask_y = np.where(yy < 8, 0, 255)
    train = np.stack([_pair(img_a, mask_x), _pair(img_b, mask_y)])
    generated = _pair(img_a, mask_y)[None]  # image of train[0], mask of train[1]
    idx, ncc = nearest_by_ncc(generated, train)
    assert idx[0] == 0 and ncc[0] > 0.99


def test_single_and_rgb_channels_still_search_every_channel():
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)
    generated = train[4:5].copy()
    generated[0, 2] = 255 - generated[0, 2]  # blue inverted: no longer an exact copy
    idx, ncc = nearest_by_ncc(generated, train)
    assert idx[0] == 4 and ncc[0] < 0.99
