"""Image grids for the page: checked PNG bytes, enlarged by whole pixels so small tiles are seen.

A training run at 16-32 px writes grids of 8 x 4 tiles that are 128-256 px wide: on a screen the
anatomy is invisible. The report enlarges each grid by an integer factor with nearest-neighbour
sampling (no smoothing that would hide or invent detail) so each tile is at least
`MIN_TILE_PX` wide; the page also asks the browser for pixelated scaling.

PNGs from a run folder are untrusted: the header's size claim is checked before decoding, so a
crafted file cannot make the report allocate gigabytes.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from mrisynth.data.png import as_uint8_chw, decode_checked, read_png_header
from mrisynth.errors import InputError
from mrisynth.imaging import encode_png

log = logging.getLogger(__name__)

MIN_TILE_PX = 128  # on-screen width of one tile
MAX_FACTOR = 16
MAX_SIDE_PX = 16384  # decoded or enlarged, per side
MAX_PIXELS = 48 * 2**20


def decode_png(data: bytes) -> np.ndarray | None:
    """uint8 [C, H, W] (C = 1 or 3, RGB) of a plausible PNG, else None (the reason logged).

    Decoded through `mrisynth.data.png` (header, chunks and pixel stream checked first), with
    the report's own tighter size limits applied to the header before anything is decoded.
    """
    try:
        header = read_png_header(data, "grid PNG")
        w, h = header.width, header.height
        if not (w <= MAX_SIDE_PX and h <= MAX_SIDE_PX and w * h <= MAX_PIXELS):
            log.warning("PNG claims %dx%d pixels, more than a grid has; left out", w, h)
            return None
        _, img = decode_checked(data, "grid PNG")
    except InputError as exc:
        log.warning("%s; left out", exc)
        return None
    return as_uint8_chw(img)


def upscale_factor(tile_px: int, min_tile_px: int = MIN_TILE_PX) -> int:
    """Whole-pixel enlargement that makes a `tile_px` tile at least `min_tile_px` wide."""
    if tile_px <= 0:
        return 1
    return max(1, min(MAX_FACTOR, math.ceil(min_tile_px / tile_px)))


def enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of uint8 [C, H, W] by an integer factor (bounded size)."""
    _, h, w = image.shape
    while factor > 1 and (h * factor > MAX_SIDE_PX or w * factor > MAX_SIDE_PX):
        factor -= 1
    if factor <= 1:
        return image
    return image.repeat(factor, axis=1).repeat(factor, axis=2)


def display_grid(data: bytes, tile_px: int | None) -> tuple[bytes, int] | None:
    """A grid PNG ready for the page and its enlargement factor, or None if it is unusable.

    `tile_px` is the width of one tile (the run's resolution); None keeps the grid's size.
    """
    image = decode_png(data)
    if image is None:
        return None
    factor = upscale_factor(tile_px) if tile_px else 1
    big = enlarge(image, factor)
    return encode_png(big), big.shape[2] // image.shape[2]
