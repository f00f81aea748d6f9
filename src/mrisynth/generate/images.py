"""uint8 image helpers shared by generate and report: PNG encoding/decoding and grids."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mrisynth.errors import InputError


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of a uint8 image [C, H, W] (C = 1 or 3, RGB order)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(
            f"expected uint8 [C, H, W] with C in (1, 3), got {image.dtype} {image.shape}"
        )
    hwc = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)[:, :, ::-1]  # RGB->BGR
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(hwc))
    if not ok:  # pragma: no cover - OpenCV fails only on invalid input, checked above
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


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
