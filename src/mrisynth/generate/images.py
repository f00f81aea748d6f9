"""Reading PNGs back as uint8 [C, H, W] (encoding and grids live in mrisynth.imaging).

Lenient about format (16-bit is scaled to 8-bit, alpha dropped) so images from other tools can
be read, but strict about safety: the file goes through the same checked path as archives
(`mrisynth.data.png`: size and header bounded before decoding, truncation refused).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mrisynth.data.png import MAX_PNG_BYTES, as_uint8_chw, decode_checked
from mrisynth.errors import InputError


def read_png(path: str | Path) -> np.ndarray:
    """Read a PNG as uint8 [C, H, W] (RGB order for colour files)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PNG_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    _, img = decode_checked(data, str(path))
    return as_uint8_chw(img)
