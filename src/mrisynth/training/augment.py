"""Adaptive discriminator augmentation (ADA; Karras et al. 2020, arXiv 2006.06676, App. B).

`AugmentPipe` applies the published transforms, each per image with probability
`multiplier * p`, to every image the discriminator sees (reals, fakes, the R1 pass).
`AdaController` (`training.ada`, re-exported here) adjusts p from the discriminator's outputs
on augmented reals.

Usage in a training loop (one process)::

    pipe = AugmentPipe("bg", num_channels=1, p=0.0)
    ctrl = AdaController(target=0.6, interval=4, speed_kimg=500, p_max=0.8)
    for step in range(1, num_steps + 1):          # step = D steps done, 1 after the first
        logits = D(pipe(reals), c)
        ctrl.accumulate(logits)                    # every D step, on augmented reals
        r_t = ctrl.maybe_update(pipe, batch_size, step, all_reduce=sum_over_ranks)

Randomness comes from the global torch RNG of the images' device, or from `generator`
(`pipe(images, generator=g)`); saving and restoring that RNG state makes runs resumable exactly.

One-channel images: hue and saturation rotate/scale the chroma plane, which grey images do not
have, so for `num_channels=1` they are a documented no-op (not drawn, images untouched);
brightness, contrast and luma flip act on grey as on a grey RGB image.

Deviation from the original: images whose combined geometric matrix maps pixel centres onto
pixel centres (any mix of x-flip, quarter turns and integer translation, no `geom` transform)
are gathered exactly instead of being resampled, so blit-only images are not blurred; images
with no transform at all are returned untouched (p = 0 is an exact identity).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import torch
from torch import nn

from mrisynth.errors import ConfigError
from mrisynth.training import augment_ops as ops
from mrisynth.training import augment_warp
from mrisynth.training.ada import AdaController

__all__ = ["AUGMENT_PRESETS", "TRANSFORMS", "AdaController", "AugmentPipe", "resolve_multipliers"]

logger = logging.getLogger(__name__)

# Published constants (ADA App. B); strengths are in units of the image size where relevant.
XINT_MAX = 0.125  # integer translation, uniform, fraction of the size
SCALE_STD = 0.2  # isotropic scale 2^N(0, SCALE_STD)
ROTATE_MAX = 1.0  # arbitrary rotation, uniform in (-ROTATE_MAX*pi, ROTATE_MAX*pi)
ANISO_STD = 0.2  # anisotropic scale 2^N(0, ANISO_STD) as (s, 1/s)
XFRAC_STD = 0.125  # fractional translation N(0, XFRAC_STD), fraction of the size
BRIGHTNESS_STD = 0.2  # additive N(0, BRIGHTNESS_STD)
CONTRAST_STD = 0.5  # multiplicative 2^N(0, CONTRAST_STD)
HUE_MAX = 1.0  # hue rotation uniform in (-HUE_MAX*pi, HUE_MAX*pi)
SATURATION_STD = 1.0  # chroma scale 2^N(0, SATURATION_STD)
IMGFILTER_STD = 1.0  # band gains 2^N(0, IMGFILTER_STD)
IMGFILTER_POWER = (10.0, 1.0, 1.0, 1.0)  # expected power per band (lowest first), sums to 13
NOISE_STD = 0.1  # noise sigma |N(0, 1)| * NOISE_STD
CUTOUT_SIZE = 0.5  # cutout square side, fraction of the size

BLIT = ("xflip", "rotate90", "xint")
GEOM = ("scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
TRANSFORMS = (*BLIT, *GEOM, *COLOR, "imgfilter", "noise", "cutout")


def _preset(*groups: tuple[str, ...]) -> dict[str, float]:
    return {name: 1.0 for group in groups for name in group}


AUGMENT_PRESETS: dict[str, dict[str, float]] = {
    "blit": _preset(BLIT),
    "geom": _preset(GEOM),
    "color": _preset(COLOR),
    "filter": _preset(("imgfilter",)),
    "noise": _preset(("noise",)),
    "cutout": _preset(("cutout",)),
    "bg": _preset(BLIT, GEOM),
    "bgc": _preset(BLIT, GEOM, COLOR),
    "bgcf": _preset(BLIT, GEOM, COLOR, ("imgfilter",)),
    "bgcfn": _preset(BLIT, GEOM, COLOR, ("imgfilter", "noise")),
    "bgcfnc": _preset(BLIT, GEOM, COLOR, ("imgfilter", "noise", "cutout")),
}


def resolve_multipliers(preset: str | Mapping[str, float]) -> dict[str, float]:
    """Per-transform probability multipliers from a preset name or an explicit mapping."""
    if isinstance(preset, str):
        if preset not in AUGMENT_PRESETS:
            raise ConfigError(
                f"unknown augmentation preset {preset!r}; choose one of: "
                f"{', '.join(AUGMENT_PRESETS)}"
            )
        preset = AUGMENT_PRESETS[preset]
    unknown = sorted(set(preset) - set(TRANSFORMS))
    if unknown:
        raise ConfigError(
            f"unknown augmentation transform(s) {', '.join(unknown)}; "
            f"known: {', '.join(TRANSFORMS)}"
        )
    mult = {name: float(preset.get(name, 0.0)) for name in TRANSFORMS}
    bad = [name for name, m in mult.items() if not (m >= 0 and math.isfinite(m))]
    if bad:
        raise ConfigError(f"augmentation multipliers must be finite and >= 0: {', '.join(bad)}")
    return mult


class _Draw:
    """Random draws of shape [N, ...] from one source, delivered on the images' device."""

    def __init__(self, generator: torch.Generator | None, device: torch.device, dtype: torch.dtype):
        self.generator = generator
        self.device = device
        self.dtype = dtype
        self.src_device = generator.device if generator is not None else device

    def _out(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(device=self.device, dtype=self.dtype)

    def uniform(self, *shape: int) -> torch.Tensor:
        return self._out(torch.rand(shape, generator=self.generator, device=self.src_device))

    def normal(self, *shape: int) -> torch.Tensor:
        return self._out(torch.randn(shape, generator=self.generator, device=self.src_device))

    def gate(self, value: torch.Tensor, identity: float, prob: float) -> torch.Tensor:
        """Keep `value` with probability `prob` per image, else the transform's identity."""
        keep = self.uniform(len(value)) < prob
        return torch.where(keep, value, torch.full_like(value, identity))


class AugmentPipe(nn.Module):
    """The ADA augmentation pipeline; `p` is a float buffer (saved, loaded, DDP-broadcast)."""

    p: torch.Tensor

    def __init__(
        self,
        preset: str | Mapping[str, float] = "bg",
        num_channels: int = 1,
        p: float = 0.0,
    ) -> None:
        super().__init__()
        if num_channels < 1:
            raise ConfigError(f"AugmentPipe needs num_channels >= 1, got {num_channels}")
        self.preset = preset if isinstance(preset, str) else "custom"
        self.num_channels = int(num_channels)
        self.multipliers = resolve_multipliers(preset)
        uses_color = any(self.multipliers[name] > 0 for name in COLOR)
        if uses_color and num_channels not in (1, 3):
            raise ConfigError(
                f"colour augmentations need 1 or 3 channels, got {num_channels}; "
                "use a preset without 'c' (e.g. bg)"
            )
        if num_channels == 1 and (self.multipliers["hue"] or self.multipliers["saturation"]):
            logger.debug("hue and saturation are no-ops for 1-channel images")
        self.register_buffer("p", torch.tensor(float(p), dtype=torch.float32))

    def extra_repr(self) -> str:
        return f"preset={self.preset!r}, num_channels={self.num_channels}, p={float(self.p):.4f}"

    def _m(self, name: str) -> float:
        return self.multipliers[name]

    def forward(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Augment a batch # [N, C, H, W] -> [N, C, H, W]; an exact identity when p == 0."""
        if images.ndim != 4 or images.shape[1] != self.num_channels:
            raise ConfigError(
                f"AugmentPipe(num_channels={self.num_channels}) expects images [N, "
                f"{self.num_channels}, H, W], got {list(images.shape)}"
            )
        p = float(self.p)
        if p <= 0 or images.shape[0] == 0:
            return images
        param_dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        draw = _Draw(generator, images.device, param_dtype)
        if any(self._m(name) > 0 for name in (*BLIT, *GEOM)):
            g_inv = self._geometric_matrix(images, p, draw)
            images = augment_warp.warp_geometric(images, g_inv)
        if any(self._m(name) > 0 for name in COLOR):
            images = self._color(images, p, draw)
        if self._m("imgfilter") > 0:
            images = self._filter(images, p, draw)
        if self._m("noise") > 0:
            images = self._noise(images, p, draw)
        if self._m("cutout") > 0:
            images = self._cutout(images, p, draw)
        return images

    def sample_geometric(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The inverse geometric matrices a call with this RNG state would draw. # [N, 3, 3]

        Output pixel -> input pixel, in pixels from the image centre (for inspection and tests).
        """
        dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        return self._geometric_matrix(images, float(self.p), _Draw(generator, images.device, dtype))

    # ------------------------------------------------------------------------------------------
    # Geometric: build the inverse matrix (output -> input, centred pixel units) per image.

    def _geometric_matrix(self, images: torch.Tensor, p: float, draw: _Draw) -> torch.Tensor:
        """Compose the inverse of every geometric transform in application order. # [N, 3, 3]"""
        n, _, h, w = images.shape
        g_inv = torch.eye(3, dtype=draw.dtype, device=draw.device).repeat(n, 1, 1)
        # Forward transforms A1, A2, ... give output = ... A2 A1 input, so G_inv = A1^-1 A2^-1 ...
        if self._m("xflip") > 0:
            flip = draw.gate(torch.floor(draw.uniform(n) * 2), 0.0, self._m("xflip") * p)
            g_inv = g_inv @ ops.scale2d(1 - 2 * flip, torch.ones_like(flip))
        if self._m("rotate90") > 0:
            k = draw.gate(torch.floor(draw.uniform(n) * 4), 0.0, self._m("rotate90") * p)
            g_inv = g_inv @ ops.rotate90_2d(-k)
        if self._m("xint") > 0:
            t = (draw.uniform(n, 2) * 2 - 1) * XINT_MAX
            keep = draw.uniform(n) < self._m("xint") * p
            tx = torch.where(keep, torch.round(t[:, 0] * w), 0.0)
            ty = torch.where(keep, torch.round(t[:, 1] * h), 0.0)
            g_inv = g_inv @ ops.translate2d(-tx, -ty)
        if self._m("scale") > 0:
            s = draw.gate(torch.exp2(draw.normal(n) * SCALE_STD), 1.0, self._m("scale") * p)
            g_inv = g_inv @ ops.scale2d(1 / s, 1 / s)
        # The rotation is split in two (before and after aniso) so that the chance of at least
        # one rotation is mult * p: each half fires with 1 - sqrt(1 - mult * p).
        p_rot = 1 - math.sqrt(1 - min(max(self._m("rotate") * p, 0.0), 1.0))
        if self._m("rotate") > 0:
            theta = draw.gate((draw.uniform(n) * 2 - 1) * math.pi * ROTATE_MAX, 0.0, p_rot)
            g_inv = g_inv @ ops.rotate2d(-theta)
        if self._m("aniso") > 0:
            s = draw.gate(torch.exp2(draw.normal(n) * ANISO_STD), 1.0, self._m("aniso") * p)
            g_inv = g_inv @ ops.scale2d(1 / s, s)
        if self._m("rotate") > 0:
            theta = draw.gate((draw.uniform(n) * 2 - 1) * math.pi * ROTATE_MAX, 0.0, p_rot)
            g_inv = g_inv @ ops.rotate2d(-theta)
        if self._m("xfrac") > 0:
            t = draw.normal(n, 2) * XFRAC_STD
            keep = draw.uniform(n) < self._m("xfrac") * p
            tx = torch.where(keep, t[:, 0] * w, 0.0)
            ty = torch.where(keep, t[:, 1] * h, 0.0)
            g_inv = g_inv @ ops.translate2d(-tx, -ty)
        return g_inv

    # ------------------------------------------------------------------------------------------
    # Intensity transforms.

    def _color(self, images: torch.Tensor, p: float, draw: _Draw) -> torch.Tensor:
        """Compose brightness, contrast, luma flip, hue, saturation into one 4x4 matrix."""
        n = images.shape[0]
        c = torch.eye(4, dtype=draw.dtype, device=draw.device).repeat(n, 1, 1)
        if self._m("brightness") > 0:
            b = draw.gate(draw.normal(n) * BRIGHTNESS_STD, 0.0, self._m("brightness") * p)
            c = ops.translate3d(b) @ c
        if self._m("contrast") > 0:
            s = draw.gate(torch.exp2(draw.normal(n) * CONTRAST_STD), 1.0, self._m("contrast") * p)
            c = ops.scale3d(s) @ c
        if self._m("lumaflip") > 0:
            flip = draw.gate(torch.floor(draw.uniform(n) * 2), 0.0, self._m("lumaflip") * p)
            c = ops.luma_flip3d(flip) @ c
        if self.num_channels == 3 and self._m("hue") > 0:
            theta = (draw.uniform(n) * 2 - 1) * math.pi * HUE_MAX
            theta = draw.gate(theta, 0.0, self._m("hue") * p)
            c = ops.hue_rotate3d(theta) @ c
        if self.num_channels == 3 and self._m("saturation") > 0:
            s = torch.exp2(draw.normal(n) * SATURATION_STD)
            s = draw.gate(s, 1.0, self._m("saturation") * p)
            c = ops.saturation3d(s) @ c
        eye = torch.eye(4, dtype=c.dtype, device=c.device)
        if bool((c == eye).all()):
            return images
        return ops.apply_color_matrix(images, c)

    def _filter(self, images: torch.Tensor, p: float, draw: _Draw) -> torch.Tensor:
        """Random gains for 4 frequency bands, renormalised to keep the expected power."""
        n = images.shape[0]
        power = torch.tensor(IMGFILTER_POWER, dtype=draw.dtype, device=draw.device)
        gains = torch.ones(n, len(power), dtype=draw.dtype, device=draw.device)
        applied = torch.zeros(n, dtype=torch.bool, device=draw.device)
        for band in range(len(power)):
            keep = draw.uniform(n) < self._m("imgfilter") * p
            t_band = torch.where(keep, torch.exp2(draw.normal(n) * IMGFILTER_STD), 1.0)
            t = torch.ones_like(gains)
            t[:, band] = t_band
            # Divide by the RMS gain under the expected power spectrum (exactly 1 for t == 1).
            t = t / ((power * t.square()).sum(dim=1, keepdim=True) / power.sum()).sqrt()
            gains = gains * t
            applied |= keep
        idx = applied.nonzero().squeeze(1)
        if len(idx) == 0:
            return images
        taps = gains[idx] @ ops.band_filter_bank(gains)  # [M, K]
        filtered = ops.apply_separable_filter(images.index_select(0, idx), taps)
        if len(idx) == n:
            return filtered
        return images.index_copy(0, idx, filtered)

    def _noise(self, images: torch.Tensor, p: float, draw: _Draw) -> torch.Tensor:
        """Additive Gaussian noise with a per-image sigma |N(0, 1)| * 0.1."""
        n, c, h, w = images.shape
        sigma = draw.gate(draw.normal(n).abs() * NOISE_STD, 0.0, self._m("noise") * p)
        if not bool((sigma != 0).any()):
            return images
        noise = draw.normal(n, c, h, w).to(images.dtype)
        return images + noise * sigma.to(images.dtype)[:, None, None, None]

    def _cutout(self, images: torch.Tensor, p: float, draw: _Draw) -> torch.Tensor:
        """Zero a square of half the image size at a uniformly random centre."""
        n, _, h, w = images.shape
        size = draw.gate(
            torch.full((n,), CUTOUT_SIZE, dtype=draw.dtype, device=draw.device),
            0.0,
            self._m("cutout") * p,
        )
        center = draw.uniform(n, 2)
        if not bool((size > 0).any()):
            return images
        return images * ops.cutout_mask(center, size, h, w).to(images.dtype)
