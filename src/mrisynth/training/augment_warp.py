"""The geometric warp of ADA (Karras et al. 2020, arXiv 2006.06676, App. B), in one resampling.

Geometric transforms arrive as one inverse matrix per image (output pixel -> input pixel, in
pixel units relative to the image centre). Images with the identity are passed through, images
whose matrix maps pixel centres onto pixel centres (flips, quarter turns, integer shifts) are
gathered exactly, the rest are resampled once: mirror padding as wide as the transformed corners
need, 2x upsampling with the sym6 wavelet low-pass, bilinear `grid_sample`, low-pass and 2x
downsampling. Differentiable twice (R1 runs through the pipeline).
"""

from __future__ import annotations

import functools

import numpy as np
import pywt
import torch
import torch.nn.functional as F

from mrisynth.training.augment_ops import mirror_pad, reflect_index

# How far (in output pixels) the 2x grid reaches beyond the output image on each side, so that the
# 12-tap downsampling filter sees real samples for every output pixel.
_OUT_MARGIN = 3
# Extra input pixels beyond the sampled area: the 12-tap upsampling filter is only valid 3 pixels
# inside the padded image, plus half a 2x sample for bilinear interpolation, rounded up.
_IN_MARGIN = 4


@functools.cache
def _wavelet_lowpass(name: str) -> tuple[tuple[float, ...], float]:
    """Decomposition low-pass taps of a PyWavelets wavelet (sum 1) and their delay error.

    The delay error is how far (in input pixels) `_upsample2x` moves low-frequency content from
    the nominal sample positions: sym6 is only nearly symmetric, its centroid is 5.10 taps, not
    5.5. The downsampler's reversed taps move it back, so the identity is exact; but a flip or
    rotation between the two would double the shift (~0.4 pixels), so `resample_affine`
    corrects its sampling positions by this amount.
    """
    taps = np.asarray(pywt.Wavelet(name).dec_lo, dtype=np.float64)
    taps = taps / taps.sum()
    centroid = float((np.arange(len(taps)) * taps).sum())
    return tuple(taps.tolist()), (centroid - (len(taps) - 1) / 2) / 2


# ----------------------------------------------------------------------------------------------
# Geometric warps.


def _tap_slice(ndim: int, dim: int, first: int, count: int, step: int) -> tuple[slice, ...]:
    index = [slice(None)] * ndim
    index[dim] = slice(first, first + step * (count - 1) + 1, step)
    return tuple(index)


class _Fir(torch.autograd.Function):
    """`out[i] = sum_k taps[k] * x[start + k + step * i]` along `dim`, as a sum of shifted views.

    Faster on CPU than (transposed) convolutions for the 2x upsampling filters. Its backward
    is the transposed filter (`_FirT`) and vice versa, so any order of derivative works without
    the full-size zero tensors that autograd's slice backward would allocate per tap.
    """

    @staticmethod
    def forward(ctx, x, taps, dim, start, count, step):  # type: ignore[override]
        ctx.args = (taps, dim, start, step, x.shape[dim])
        out = None
        for k, tap in enumerate(taps):
            if tap != 0:
                view = x[_tap_slice(x.ndim, dim, start + k, count, step)]
                out = view * tap if out is None else out.add_(view, alpha=tap)
        assert out is not None
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        taps, dim, start, step, size = ctx.args
        return _FirT.apply(grad, taps, dim, start, step, size), None, None, None, None, None


class _FirT(torch.autograd.Function):
    """Transpose of `_Fir`: scatter each input sample back through the taps."""

    @staticmethod
    def forward(ctx, grad, taps, dim, start, step, size):  # type: ignore[override]
        ctx.args = (taps, dim, start, grad.shape[dim], step)
        shape = list(grad.shape)
        shape[dim] = size
        out = grad.new_zeros(shape)
        for k, tap in enumerate(taps):
            if tap != 0:
                out[_tap_slice(grad.ndim, dim, start + k, grad.shape[dim], step)].add_(
                    grad, alpha=tap
                )
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        taps, dim, start, count, step = ctx.args
        return _Fir.apply(grad, taps, dim, start, count, step), None, None, None, None, None


def _fir(
    x: torch.Tensor, taps: list[float], dim: int, start: int, count: int, step: int = 1
) -> torch.Tensor:
    """Filter along `dim`: `out[i] = sum_k taps[k] * x[start + k + step * i]`, i < count."""
    return _Fir.apply(x, tuple(taps), dim % x.ndim, start, count, step)


def _upsample2x(x: torch.Tensor, taps: list[float]) -> torch.Tensor:
    """Polyphase 2x upsampling, 12-tap low-pass, gain 2 per axis. # [..,H,W]->[..,2H-12,2W-12]

    Only the samples whose filter lies fully inside the input are kept (3 pixels are lost on each
    side); output sample n sits at input position (n + 0.5) / 2 + 3 (pixels from the top-left).
    """
    even = [2 * t for t in taps[0::2]]  # meets x[m-3 .. m+2] for output 2m
    odd = [2 * t for t in taps[1::2]]  # meets x[m-2 .. m+3] for output 2m+1
    for dim in (-1, -2):
        count = x.shape[dim] - 6  # m = 3 .. size-4
        pair = torch.stack([_fir(x, even, dim, 0, count), _fir(x, odd, dim, 1, count)], dim=dim)
        shape = list(x.shape)
        shape[dim] = 2 * count
        x = pair.reshape(shape) if dim == -1 else pair.flatten(-3, -2)
    return x


def _downsample2x(x: torch.Tensor, taps: list[float], out_h: int, out_w: int) -> torch.Tensor:
    """Low-pass and keep every second sample; the reversed taps cancel the upsampler's phase.

    Input covers the output plus _OUT_MARGIN pixels per side at 2x. # [N,C,2H+12,2W+12]->[N,C,H,W]
    A depthwise strided convolution (one group per image and channel) is several times faster
    here than shifted sums.
    """
    n, c = x.shape[:2]
    rev = torch.tensor(taps[::-1], dtype=x.dtype, device=x.device).repeat(n * c, 1)  # [NC, 12]
    x = x.reshape(1, n * c, *x.shape[2:])[..., 1 : 2 * out_w + 11]
    x = F.conv2d(x, rev[:, None, None, :], stride=(1, 2), groups=n * c)
    x = x[..., 1 : 2 * out_h + 11, :]
    x = F.conv2d(x, rev[:, None, :, None], stride=(2, 1), groups=n * c)
    return x.reshape(n, c, out_h, out_w)


# Resampled images are processed in at most this many groups of similar padding needs, so that
# one outlier's wide margin does not inflate the work for the whole batch (2-3x faster at 64-256
# pixels on CPU). Up to _SMALL_IMAGE pixels the per-group overhead outweighs that: one group.
_MAX_GROUPS = 4
_SMALL_IMAGE = 32 * 32


def warp_geometric(images: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
    """Apply per-image inverse matrices, each image by the cheapest exact means. # [N, C, H, W]

    Identity matrices leave the image untouched (bit for bit), pixel-exact ones (flips, quarter
    turns, integer shifts) are gathered, the rest go through `resample_affine` in groups.
    """
    n, _, h, w = images.shape
    g_cpu = g_inv.detach().cpu()
    identity = (g_cpu == torch.eye(3, dtype=g_cpu.dtype)).all(dim=2).all(dim=1)
    if bool(identity.all()):
        return images
    exact = is_pixel_exact(g_cpu, h, w) & ~identity
    margins = resample_margins(g_cpu, h, w)  # [N, 4]
    area = (w + margins[:, 0] + margins[:, 1]) * (h + margins[:, 2] + margins[:, 3])
    # Order: identity, pixel-exact, then resampled images by growing padded area.
    kind = torch.where(identity, 0, torch.where(exact, 1, 2))
    perm = torch.argsort(kind * (area.max() + 1) + torch.where(kind == 2, area, 0), stable=True)
    counts = torch.bincount(kind, minlength=3).tolist()
    x = images if bool((perm == torch.arange(n)).all()) else images[perm.to(images.device)]
    g = g_inv[perm.to(g_inv.device)]

    parts = [x[: counts[0]]]
    lo, hi = counts[0], counts[0] + counts[1]
    if hi > lo:
        parts.append(warp_pixel_exact(x[lo:hi], g[lo:hi]))
    general = torch.arange(hi, n)
    num_groups = 1 if h * w <= _SMALL_IMAGE else min(_MAX_GROUPS, max(len(general), 1))
    for chunk in torch.tensor_split(general, num_groups):
        if len(chunk):
            lo, hi = int(chunk[0]), int(chunk[-1]) + 1
            group_margins = margins[perm[lo:hi]].amax(0).tolist()
            parts.append(resample_affine(x[lo:hi], g[lo:hi], group_margins))
    out = torch.cat(parts)
    if x is images:
        return out
    return out[torch.argsort(perm).to(images.device)]


def resample_margins(g_inv: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Mirror padding (left, right, top, bottom) each image needs for `resample_affine`. # [N, 4]

    From the bounding box of the output corners (plus the downsampler's margin) mapped back,
    plus the upsampler's support; capped at 2 sizes + 16 only to bound memory.
    """
    _, delay = _wavelet_lowpass("sym6")
    g_inv = g_inv.detach().cpu().double()
    cx, cy = width / 2 + _OUT_MARGIN, height / 2 + _OUT_MARGIN
    corners = torch.tensor(
        [[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], dtype=torch.float64
    )
    src = g_inv @ corners.T  # [N, 3, 4]
    extent = torch.stack(
        [-src[:, 0].amin(1), src[:, 0].amax(1), -src[:, 1].amin(1), src[:, 1].amax(1)], dim=1
    )  # [N, 4] from the centre
    size = torch.tensor([width, width, height, height], dtype=torch.float64)
    need = torch.ceil(extent + abs(delay) - size / 2) + _IN_MARGIN
    return torch.minimum(need.clamp(min=0), size * 2 + 16).long()


def resample_affine(
    images: torch.Tensor, g_inv: torch.Tensor, margins: list[int] | None = None
) -> torch.Tensor:
    """Warp each image by its inverse matrix in one filtered resampling. # [N, C, H, W]

    `g_inv[n]` maps output pixel positions to input positions, both in pixels relative to the
    image centre. Areas outside the input are filled by mirror tiling (zeros beyond 2 sizes).
    `margins` (left, right, top, bottom) defaults to the most any image needs.
    """
    h, w = images.shape[-2:]
    if margins is None:
        margins = resample_margins(g_inv, h, w).amax(0).tolist()
    taps, delay = _wavelet_lowpass("sym6")
    return _resample_group(images, g_inv, margins, taps, delay)


def _resample_group(
    images: torch.Tensor,
    g_inv: torch.Tensor,
    margins: list[int],
    taps: tuple[float, ...],
    delay: float,
) -> torch.Tensor:
    """Pad by `margins` (left, right, top, bottom), upsample, sample, downsample. # [N,C,H,W]"""
    h, w = images.shape[-2:]
    dtype, e = g_inv.dtype, _OUT_MARGIN
    ml, mr, mt, mb = margins
    padded = mirror_pad(images, ml, mr, mt, mb)  # [N, C, Hp, Wp]
    hp, wp = padded.shape[-2:]
    up = _upsample2x(padded, list(taps))  # [N, C, 2Hp-12, 2Wp-12], 3 pixels cropped per side

    # Output positions on the 2x grid in centred coordinates, corrected for the downsampler's
    # delay; mapped back, then into the padded, upsampled image's (delayed) frame.
    pos = functools.partial(torch.arange, dtype=dtype, device=g_inv.device)
    xs = (pos(2 * (w + 2 * e)) + 0.5) / 2 - e - w / 2 + delay  # [Wo]
    ys = (pos(2 * (h + 2 * e)) + 0.5) / 2 - e - h / 2 + delay  # [Ho]
    mat = g_inv[:, :2].clone()  # [N, 2, 3]
    mat[:, 0, 2] += (ml - mr) / 2 - delay
    mat[:, 1, 2] += (mt - mb) / 2 - delay
    # The upsampled image spans the padded one less 3 pixels per side: same centre, smaller.
    mat[:, 0] *= 2 / (wp - 6)
    mat[:, 1] *= 2 / (hp - 6)
    grid = (
        mat[:, None, None, :, 0] * xs[None, None, :, None]
        + mat[:, None, None, :, 1] * ys[None, :, None, None]
        + mat[:, None, None, :, 2]
    )  # [N, Ho, Wo, 2]
    sampled = F.grid_sample(
        up, grid.to(images.dtype), mode="bilinear", padding_mode="zeros", align_corners=False
    )  # [N, C, 2(H+2e), 2(W+2e)]
    return _downsample2x(sampled, list(taps), h, w)


def is_pixel_exact(g_inv: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Which matrices send pixel centres onto pixel centres (signed permutation, integer shift)."""
    lin, shift = g_inv[:, :2, :2], g_inv[:, :2, 2]
    signed_perm = ((lin == 0) | (lin.abs() == 1)).all(dim=(1, 2))
    nonzero = lin != 0
    signed_perm &= nonzero.sum(dim=1).eq(1).all(dim=1) & nonzero.sum(dim=2).eq(1).all(dim=1)
    integral = (shift == shift.round()).all(dim=1)
    swaps = lin[:, 0, 0] == 0
    return signed_perm & integral & (~swaps | (height == width))


def warp_pixel_exact(images: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
    """Apply flips, quarter turns and integer shifts by gathering (mirror tiling outside).

    Only valid where `is_pixel_exact` holds. # [N, C, H, W]
    """
    n, c, h, w = images.shape
    dtype = g_inv.dtype
    xs = torch.arange(w, dtype=dtype, device=g_inv.device) + 0.5 - w / 2
    ys = torch.arange(h, dtype=dtype, device=g_inv.device) + 0.5 - h / 2
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(-1, 3)  # [H*W, 3]
    src = torch.einsum("nij,pj->npi", g_inv[:, :2], pts)  # [N, H*W, 2]
    col = reflect_index((src[..., 0] + w / 2 - 0.5).round().long(), w)
    row = reflect_index((src[..., 1] + h / 2 - 0.5).round().long(), h)
    index = (row * w + col).to(images.device)[:, None, :].expand(n, c, h * w)
    return images.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)
