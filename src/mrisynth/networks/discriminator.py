"""StyleGAN2 discriminator, 'resnet' (and 'orig') architecture, with label projection (ADA).

Karras et al. 2020 (arXiv 1912.04958, 2006.06676): FromRGB at the top block, blocks of two 3x3
convs (the second downsamples with the [1,3,3,1] FIR filter), a 1x1 downsampling residual skip
scaled by sqrt(0.5), and a 4x4 epilogue with minibatch standard deviation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mrisynth.errors import ConfigError
from mrisynth.networks.config import NetworkConfig
from mrisynth.networks.layers import Conv2dLayer, FullyConnectedLayer, MinibatchStdLayer
from mrisynth.networks.mapping import MappingNetwork
from mrisynth.networks.synthesis import block_dtype, block_memory_format


class DiscriminatorBlock(nn.Module):
    """[FromRGB], conv 3x3, conv 3x3 down 2, [+ 1x1 down 2 skip]: res -> res/2."""

    def __init__(
        self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int,
        img_channels: int, architecture: str, use_reduced: bool, cfg: NetworkConfig,
    ) -> None:
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.architecture, self.use_reduced = architecture, use_reduced
        self.mixed_precision, self.channels_last = cfg.mixed_precision, cfg.channels_last
        clamp = cfg.conv_clamp
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu",
                                       conv_clamp=clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu",
                                 conv_clamp=clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2,
                                 conv_clamp=clamp)
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor, force_fp32: bool = False,
        channels_last: bool | None = None,
    ) -> torch.Tensor:  # img: [N, C, res, res] -> [N, out, res/2, res/2]
        dtype = block_dtype(self.use_reduced, self.mixed_precision, img.device, force_fp32)
        fmt = block_memory_format(self.channels_last, dtype, channels_last)
        if self.in_channels == 0:
            x = self.fromrgb(img.to(dtype=dtype, memory_format=fmt))  # [N, tmp, res, res]
        else:
            x = x.to(dtype=dtype, memory_format=fmt)
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=math.sqrt(0.5))
            return y + x
        return self.conv1(self.conv0(x))

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}"


class DiscriminatorEpilogue(nn.Module):
    """4x4: minibatch std, conv 3x3, FC lrelu, FC -> 1 logit (or projection onto cmap)."""

    def __init__(self, in_channels: int, cmap_dim: int, cfg: NetworkConfig) -> None:
        super().__init__()
        self.cmap_dim = cmap_dim
        self.mbstd = (MinibatchStdLayer(cfg.mbstd_group, cfg.mbstd_channels)
                      if cfg.mbstd_channels > 0 else None)
        self.conv = Conv2dLayer(in_channels + cfg.mbstd_channels, in_channels, 3,
                                activation="lrelu", conv_clamp=cfg.conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * 16, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, cmap_dim if cmap_dim > 0 else 1)

    def forward(self, x: torch.Tensor, cmap: torch.Tensor | None) -> torch.Tensor:
        x = x.float()  # [N, C, 4, 4]
        if self.mbstd is not None:
            x = self.mbstd(x)  # [N, C+1, 4, 4]
        x = self.conv(x)
        x = self.fc(x.flatten(1))  # [N, C]
        x = self.out(x)  # [N, cmap_dim or 1]
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1.0 / math.sqrt(self.cmap_dim))
        return x  # [N, 1]


class Discriminator(nn.Module):
    """img [N, C, H, W] (~[-1, 1]), c [N, c_dim] -> logits [N, 1]."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        if cfg.img_resolution < 8:
            raise ConfigError("the discriminator needs img_resolution >= 8")
        self.config = cfg
        self.c_dim, self.img_channels = cfg.c_dim, cfg.img_channels
        self.img_resolution = cfg.img_resolution
        self.block_resolutions = [2**i for i in range(cfg.log2_resolution, 2, -1)]
        fp16_res = cfg.fp16_resolution
        for res in self.block_resolutions:
            in_ch = cfg.channels_at(res) if res < cfg.img_resolution else 0
            block = DiscriminatorBlock(
                in_ch, cfg.channels_at(res), cfg.channels_at(res // 2), res, cfg.img_channels,
                cfg.d_architecture, use_reduced=res >= fp16_res, cfg=cfg,
            )
            setattr(self, f"b{res}", block)
        cmap_dim = cfg.channels_at(4) if cfg.c_dim > 0 else 0
        if cfg.c_dim > 0:
            self.mapping = MappingNetwork(0, cfg.c_dim, cmap_dim, num_ws=None,
                                          num_layers=cfg.d_map_depth,
                                          lr_multiplier=cfg.mapping_lr_mul, w_avg_beta=None)
        self.b4 = DiscriminatorEpilogue(cfg.channels_at(4), cmap_dim, cfg)

    def forward(
        self, img: torch.Tensor, c: torch.Tensor | None = None, force_fp32: bool = False,
        channels_last: bool | None = None, **_unused: object,
    ) -> torch.Tensor:
        """Extra keyword arguments (e.g. update_emas) are accepted and ignored. channels_last:
        None = the config's memory format, True / False = channels-last in every block / none."""
        size = (self.img_channels, self.img_resolution, self.img_resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != size:
            raise ConfigError(f"discriminator expects images [N, {size[0]}, {size[1]}, "
                              f"{size[2]}], got {list(img.shape)}")
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32, channels_last=channels_last)
        cmap = None
        if self.c_dim > 0:
            if c is None:
                raise ConfigError(f"conditional discriminator needs labels c [N, {self.c_dim}]")
            cmap = self.mapping(None, c)  # [N, cmap_dim]
        return self.b4(x, cmap)


def build_discriminator(cfg: NetworkConfig) -> Discriminator:
    """A freshly initialised discriminator for `cfg` (on CPU, float32)."""
    return Discriminator(cfg)
