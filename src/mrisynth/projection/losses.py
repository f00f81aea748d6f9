"""Image distances and the noise regulariser of StyleGAN2's projector (arXiv 1912.04958, sec. 5).

The paper's projector minimises LPIPS between the target and the synthesised image. Offline,
without LPIPS weights, mrisynth uses pixel MSE plus 1 - MS-SSIM; when NVIDIA's VGG16 detector
file is present (`mrisynth weights`), its LPIPS features (`return_lpips=True`, the call NVIDIA's
projector makes) replace them. The MS-SSIM here is a differentiable torch port of
`mrisynth.metrics.msssim` (same window, constants, scales and weights; float32), checked
against it in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mrisynth.metrics import msssim as ref

# A negative mean cs/ssim counts as this (the reference uses 0; a fractional power of 0 has
# an infinite gradient).
_FLOOR = 1e-6
VGG_MAX_SIDE = 256  # NVIDIA's projector area-downsamples larger targets to 256 for VGG16


def _gauss_filter(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian over H and W, valid positions only. [B, 1, H, W] -> [B, 1, H-10, W-10]"""
    k = taps.numel()
    x = F.conv2d(x, taps.view(1, 1, 1, k))
    return F.conv2d(x, taps.view(1, 1, k, 1))


def _ssim_terms(a: torch.Tensor, b: torch.Tensor, taps: torch.Tensor, data_range: float):
    c1, c2 = (ref.K1 * data_range) ** 2, (ref.K2 * data_range) ** 2
    mu_a, mu_b = _gauss_filter(a, taps), _gauss_filter(b, taps)
    var_a = _gauss_filter(a * a, taps) - mu_a**2
    var_b = _gauss_filter(b * b, taps) - mu_b**2
    cov = _gauss_filter(a * b, taps) - mu_a * mu_b
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    return (lum * cs).mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))  # [B], [B]


def ms_ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    """Differentiable MS-SSIM of [N, C, H, W] pairs -> [N] (mean over channels).

    Same definition as `metrics.msssim.ms_ssim` (scales chosen by image size); images under 11
    pixels raise ValueError.
    """
    n, c, h, w = a.shape
    m = ref.num_scales(h, w)
    weights = [wt / sum(ref.WEIGHTS[:m]) for wt in ref.WEIGHTS[:m]]
    taps = torch.as_tensor(ref.gaussian_window(), dtype=a.dtype, device=a.device)
    x, y = a.reshape(n * c, 1, h, w), b.reshape(n * c, 1, h, w)
    out = torch.ones(n * c, dtype=a.dtype, device=a.device)
    for j in range(m):
        ssim, cs = _ssim_terms(x, y, taps, data_range)
        term = ssim if j == m - 1 else cs
        out = out * term.clamp(min=_FLOOR) ** weights[j]
        x = F.avg_pool2d(x, 2)  # floor: drops an odd last row/column, as the reference
        y = F.avg_pool2d(y, 2)
    return out.view(n, c).mean(dim=1)


def to_grey_levels(img: torch.Tensor) -> torch.Tensor:
    """Network scale [-1, 1] -> the uint8 scale [0, 255] (unrounded, unclamped)."""
    return img * 127.5 + 128


def noise_regularization(noise_maps: list[torch.Tensor]) -> torch.Tensor:
    """Squared autocorrelation of each noise map at a one-pixel shift in x and y, summed over
    a pyramid (2x average pooling down to 8x8): keeps optimised noise from carrying the image."""
    total = torch.zeros((), device=noise_maps[0].device)
    for noise in noise_maps:
        x = noise[None, None]  # [1, 1, H, W]
        while True:
            total = total + (x * torch.roll(x, 1, dims=3)).mean() ** 2
            total = total + (x * torch.roll(x, 1, dims=2)).mean() ** 2
            if x.shape[2] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return total


@dataclass(frozen=True)
class LossWeights:
    """Weights of the image distances (0 turns a term off)."""

    pixel: float = 1.0  # MSE on the network scale [-1, 1]
    msssim: float = 1.0  # 1 - MS-SSIM (grey levels, data range 255)
    vgg: float = 0.0  # squared distance of VGG16 LPIPS features (needs the detector file)


class ImageDistance:
    """Distance of synthesised images to one fixed target; returns the total and its terms.

    `vgg`: NVIDIA's VGG16 TorchScript module (called as `vgg(x, resize_images=False,
    return_lpips=True)` on float [N, 3, H, W] in [0, 255]) or None.
    """

    def __init__(
        self, target: torch.Tensor, weights: LossWeights, vgg: torch.nn.Module | None = None
    ) -> None:
        self.target = target  # [1, C, H, W] on the network scale
        self.weights = weights
        self.vgg = vgg if weights.vgg > 0 else None
        self.use_msssim = weights.msssim > 0 and min(target.shape[-2:]) >= ref.WINDOW
        self.target_features = None
        if self.vgg is not None:
            for p in self.vgg.parameters():  # (ScriptModules have no requires_grad_)
                p.requires_grad_(False)
            with torch.no_grad():  # a constant: the steps must not backpropagate into it
                self.target_features = self._features(target)

    def _features(self, img: torch.Tensor) -> torch.Tensor:
        x = to_grey_levels(img)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)  # [N, 3, H, W]
        if x.shape[-1] > VGG_MAX_SIDE:
            x = F.interpolate(x, size=(VGG_MAX_SIDE, VGG_MAX_SIDE), mode="area")
        return self.vgg(x, resize_images=False, return_lpips=True)

    def __call__(self, img: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """img [1, C, H, W] on the network scale -> (loss, {term: value})."""
        terms: dict[str, torch.Tensor] = {}
        if self.weights.pixel > 0:
            terms["pixel"] = (img - self.target).square().mean()
        if self.use_msssim:
            s = ms_ssim(to_grey_levels(img), to_grey_levels(self.target))
            terms["msssim"] = 1 - s.mean()
        if self.vgg is not None:
            terms["vgg"] = (self._features(img) - self.target_features).square().sum()
        weight = {"pixel": self.weights.pixel, "msssim": self.weights.msssim,
                  "vgg": self.weights.vgg}  # fmt: skip
        loss = sum(weight[k] * v for k, v in terms.items())
        return loss, {k: float(v.detach()) for k, v in terms.items()}
