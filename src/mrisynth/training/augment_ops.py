"""Per-image transform builders behind ADA's augmentations (Karras et al. 2020, arXiv 2006.06676).

Batched 2-D (geometric, 3x3) and colour (4x4) matrices, mirror padding of any width, the
image-space filter bank, and the colour, filter and cutout ops. The geometric warp itself lives
in `augment_warp`. Every op is built from standard torch ops and supports double backward.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pywt
import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------
# Batched matrices: every parameter is a tensor [N]; constants may be plain floats.


def _matrix(rows: list[list[torch.Tensor | float]], ref: torch.Tensor) -> torch.Tensor:
    """Stack per-image entries into matrices. # [N, R, K]"""
    entries = [
        [e if isinstance(e, torch.Tensor) else torch.full_like(ref, float(e)) for e in row]
        for row in rows
    ]
    return torch.stack([torch.stack(row, dim=-1) for row in entries], dim=-2)


def translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """Homogeneous 2-D translation by (tx, ty) pixels. # [N, 3, 3]"""
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """Homogeneous 2-D scaling about the image centre. # [N, 3, 3]"""
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def rotate2d(theta: torch.Tensor) -> torch.Tensor:
    """Homogeneous 2-D rotation by theta radians about the image centre. # [N, 3, 3]"""
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


def rotate90_2d(k: torch.Tensor) -> torch.Tensor:
    """Rotation by k quarter turns with exact 0/+-1 entries (cos(pi/2) is not 0 in floats)."""
    k = k.remainder(4)
    cos = torch.where(k == 0, 1.0, torch.where(k == 2, -1.0, 0.0)).to(k.dtype)
    sin = torch.where(k == 1, 1.0, torch.where(k == 3, -1.0, 0.0)).to(k.dtype)
    return _matrix([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], k)


def translate3d(t: torch.Tensor) -> torch.Tensor:
    """Colour-space shift of all three channels by t. # [N, 4, 4]"""
    return _matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], t)


def scale3d(s: torch.Tensor) -> torch.Tensor:
    """Colour-space scaling of all three channels about 0 (mid grey). # [N, 4, 4]"""
    return _matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], s)


def luma_axis(ref: torch.Tensor) -> torch.Tensor:
    """Unit luma direction (1, 1, 1, 0) / sqrt(3) as a column. # [4, 1]"""
    v = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=ref.dtype, device=ref.device) / math.sqrt(3)
    return v[:, None]


def luma_flip3d(flip: torch.Tensor) -> torch.Tensor:
    """Householder reflection of the luma component where flip == 1. # [N, 4, 4]"""
    v = luma_axis(flip)
    eye = torch.eye(4, dtype=flip.dtype, device=flip.device)
    return eye - 2 * (v @ v.T) * flip[:, None, None]


def hue_rotate3d(theta: torch.Tensor) -> torch.Tensor:
    """Rotation of the chroma plane about the luma axis (Rodrigues' formula). # [N, 4, 4]"""
    v = luma_axis(theta)[:3, 0]
    vvt = torch.outer(v, v)
    cross = torch.tensor(
        [[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]],
        dtype=theta.dtype,
        device=theta.device,
    )
    eye3 = torch.eye(3, dtype=theta.dtype, device=theta.device)
    c, s = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    rot = c * eye3 + s * cross + (1 - c) * vvt  # [N, 3, 3]
    out = torch.eye(4, dtype=theta.dtype, device=theta.device).repeat(len(theta), 1, 1)
    out[:, :3, :3] = rot
    return out


def saturation3d(s: torch.Tensor) -> torch.Tensor:
    """Scale the chroma (the part orthogonal to luma) by s. # [N, 4, 4]"""
    v = luma_axis(s)
    vvt = v @ v.T
    eye = torch.eye(4, dtype=s.dtype, device=s.device)
    return vvt + (eye - vvt) * s[:, None, None]


# ----------------------------------------------------------------------------------------------
# Mirror padding of any width and the wavelet filters.


def reflect_index(pos: torch.Tensor, size: int) -> torch.Tensor:
    """Map integer positions onto 0..size-1 by mirror tiling without repeating the edge sample.

    Unlike `F.pad(mode="reflect")` this works for margins wider than the image.
    """
    if size == 1:
        return torch.zeros_like(pos)
    period = 2 * (size - 1)
    r = pos.remainder(period)
    return torch.where(r < size, r, period - r)


def mirror_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Reflect-pad the last two dims by any amount (differentiable twice). # [N, C, H', W']"""
    h, w = x.shape[-2:]
    if x.ndim == 4 and max(left, right) < w and max(top, bottom) < h:
        return F.pad(x, [left, right, top, bottom], mode="reflect")  # fast common case
    ix = reflect_index(torch.arange(-left, w + right, device=x.device), w)
    iy = reflect_index(torch.arange(-top, h + bottom, device=x.device), h)
    return x.index_select(-1, ix).index_select(-2, iy)


@functools.cache
def _band_filter_bank(name: str = "sym2", num_bands: int = 4) -> np.ndarray:
    """Zero-phase octave bands [lowest .. highest] that sum exactly to a unit impulse.

    The half-band filter is the wavelet low-pass's autocorrelation; coarser low-passes are built
    a-trous (the half-band filter with 2^k - 1 zeros between taps). Band 0 is the coarsest
    low-pass, band i the difference of consecutive low-passes, the last band impulse - half-band.
    """
    h = np.asarray(pywt.Wavelet(name).dec_lo, dtype=np.float64)
    halfband = np.convolve(h, h[::-1])
    halfband /= halfband.sum()
    lowpasses = [np.array([1.0])]  # cut-off pi, pi/2, pi/4, ...
    for k in range(num_bands - 1):
        dilated = np.zeros((len(halfband) - 1) * 2**k + 1)
        dilated[:: 2**k] = halfband
        lowpasses.append(np.convolve(lowpasses[-1], dilated))
    length = len(lowpasses[-1])
    padded = [np.pad(lp, (length - len(lp)) // 2) for lp in lowpasses]
    bands = [padded[-1]] + [padded[i - 1] - padded[i] for i in range(num_bands - 1, 0, -1)]
    return np.stack(bands)  # [num_bands, taps], lowest band first


def band_filter_bank(ref: torch.Tensor) -> torch.Tensor:
    """The 4-band filter bank as a tensor on ref's device and dtype. # [4, 43]"""
    return torch.as_tensor(_band_filter_bank(), dtype=ref.dtype, device=ref.device)


# ----------------------------------------------------------------------------------------------
# Colour, filtering, cutout.


def apply_color_matrix(images: torch.Tensor, mat: torch.Tensor) -> torch.Tensor:
    """Apply per-image 4x4 colour matrices to RGB, or to grey seen as (g, g, g). # [N, C, H, W]

    For one channel the result is the mean of the three transformed channels, so brightness,
    contrast and luma flip act as on a grey RGB image, and hue/saturation leave grey unchanged.
    """
    mat = mat.to(images.dtype)
    if images.shape[1] == 3:
        out = torch.einsum("nij,njhw->nihw", mat[:, :3, :3], images)
        return out + mat[:, :3, 3, None, None]
    gain = mat[:, :3, :3].sum(dim=2).mean(dim=1)  # [N]
    offset = mat[:, :3, 3].mean(dim=1)  # [N]
    return images * gain[:, None, None, None] + offset[:, None, None, None]


def apply_separable_filter(images: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Filter each image with its own odd-length 1-D kernel along x, then y (mirror padded).

    taps: [N, K]. # [N, C, H, W]
    """
    n, c, h, w = images.shape
    k = taps.shape[1]
    pad = k // 2
    x = mirror_pad(images, pad, pad, pad, pad).reshape(1, n * c, h + 2 * pad, w + 2 * pad)
    weight = taps.to(images.dtype).repeat_interleave(c, dim=0)  # [N*C, K]
    x = F.conv2d(x, weight[:, None, None, :], groups=n * c)
    x = F.conv2d(x, weight[:, None, :, None], groups=n * c)
    return x.reshape(n, c, h, w)


def cutout_mask(center: torch.Tensor, size: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """1 outside, 0 inside a square of side `size` (fraction of the image) at `center`.

    center: [N, 2] as (x, y) in [0, 1); size: [N]. # [N, 1, H, W]
    """
    xs = (torch.arange(width, device=center.device, dtype=center.dtype) + 0.5) / width
    ys = (torch.arange(height, device=center.device, dtype=center.dtype) + 0.5) / height
    half = size[:, None, None] / 2
    outside_x = (xs[None, None, :] - center[:, 0, None, None]).abs() >= half  # [N, 1, W]
    outside_y = (ys[None, :, None] - center[:, 1, None, None]).abs() >= half  # [N, H, 1]
    return (outside_x | outside_y)[:, None].to(center.dtype)
