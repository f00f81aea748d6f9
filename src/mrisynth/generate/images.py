"""Reading PNGs back as uint8 [C, H, W] (encoding and grids live in mrisynth.imaging)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mrisynth.errors import InputError


def read_png(path: str | Path) -> np.ndarray:
    """Read a PNG as uint8 [C, H, W] (RGB order for colour files)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise InputError(f"{path}: not a readable PNG image")
    if img.dtype != np.uint8:
        img = (img.astype(np.float64) / 257).round().astype(np.uint8)
    if img.ndim == 2:
        return img[None]
    if img.shape[2] == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))
