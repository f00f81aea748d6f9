"""Image conventions shared by training grids, generation and metrics.

Networks see `x / 127.5 - 1`; their output goes back to uint8 exactly as NVIDIA's reference
metrics do, so a saved PNG is what FID/KID/PR measure.
"""

from __future__ import annotations

import math

import cv2
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
    Paired images (C = 2: image + mask) become one grey tile each, image left, mask right.
    """
    if images.ndim == 4 and images.shape[1] == 2:
        images = np.concatenate([images[:, :1], images[:, 1:]], axis=3)  # [N, 1, H, 2W]
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


def encode_png(image: np.ndarray, compression: int | None = None) -> bytes:
    """Lossless PNG bytes of a uint8 image [C, H, W] (C = 1 or 3, RGB order); `compression`
    0-9 is zlib's level (OpenCV's default when None; 0 stores the pixels uncompressed, so the
    byte length depends on the shape alone)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(
            f"expected uint8 [C, H, W] with C in (1, 3), got {image.dtype} {image.shape}"
        )
    hwc = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)[:, :, ::-1]  # RGB->BGR
    params = [] if compression is None else [cv2.IMWRITE_PNG_COMPRESSION, int(compression)]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(hwc), params)
    if not ok:  # pragma: no cover - OpenCV fails only on invalid input, checked above
        raise ValueError("PNG encoding failed")
    return buf.tobytes()
