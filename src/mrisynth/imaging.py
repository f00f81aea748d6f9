"""Image conventions shared by training grids, generation and metrics.

Networks see `x / 127.5 - 1`; their output goes back to uint8 exactly as NVIDIA's reference
metrics do, so a saved PNG is what FID/KID/PR measure.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def quantize_images(img: torch.Tensor) -> torch.Tensor:
    """Generator output ~[-1, 1] float -> uint8 as the reference: (x*127.5+128).clamp(0,255)."""
    return (img.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def make_grid(
    images: np.ndarray, cols: int | None = None, pad: int = 0, pad_value: int = 0
) -> np.ndarray:
    """Tile uint8 images [N, C, H, W] row by row into one image [C, rows*H, cols*W].

    `cols=None` makes the grid as square as possible; missing cells are filled with pad_value.
    """
    n, c, h, w = images.shape
    if n == 0:
        raise ValueError("make_grid needs at least one image")
    cols = cols or math.ceil(math.sqrt(n))
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    grid = np.full((c, rows * (h + pad) - pad, cols * (w + pad) - pad), pad_value, np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        y, x = r * (h + pad), q * (w + pad)
        grid[:, y : y + h, x : x + w] = images[i]
    return grid
