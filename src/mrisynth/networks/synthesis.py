"""StyleGAN2 synthesis network, 'skip' architecture (Karras et al. 2020, arXiv 1912.04958).

Blocks at 4, 8, ..., resolution; the 4x4 block starts from a learned constant; every block
adds its ToRGB output to the 2x-upsampled image so far. The highest-resolution blocks run in
fp16/bf16 on GPU (as the ADA paper's implementation does), always fp32 on CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from mrisynth.errors import ConfigError
from mrisynth.networks.config import NetworkConfig
from mrisynth.networks.layers import SynthesisLayer, ToRGBLayer, make_fir_filter, upsample2d

REDUCED_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def block_dtype(use_reduced: bool, mixed_precision: str, device: torch.device,
                force_fp32: bool = False) -> torch.dtype:
    """Compute dtype of a block: reduced precision only on CUDA and only where configured."""
    if use_reduced and not force_fp32 and device.type == "cuda" and mixed_precision != "off":
        return REDUCED_DTYPES[mixed_precision]
    return torch.float32


def block_memory_format(cfg_channels_last: bool, dtype: torch.dtype,
                        channels_last: bool | None = None) -> torch.memory_format:
    """channels_last None: the config's choice (reduced-precision blocks only); True / False:
    every block / none (training on CPU uses every block: ~12% faster with oneDNN)."""
    use = (cfg_channels_last and dtype != torch.float32) if channels_last is None else channels_last
    return torch.channels_last if use else torch.contiguous_format


class SynthesisBlock(nn.Module):
    """One resolution: [const] or up-conv + conv, then ToRGB added to the upsampled image."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
        img_channels: int, use_reduced: bool, cfg: NetworkConfig,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.use_reduced = resolution, use_reduced
        self.mixed_precision, self.channels_last = cfg.mixed_precision, cfg.channels_last
        self.register_buffer("resample_filter", make_fir_filter(), persistent=False)
        clamp = cfg.conv_clamp
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
            self.num_conv = 1
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        conv_clamp=clamp)
            self.num_conv = 2
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution,
                                    conv_clamp=clamp)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=clamp)
        self.num_torgb = 1

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
        noise_mode: str = "random", fused: bool = True, force_fp32: bool = False,
        channels_last: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ws: [N, num_conv + 1, w_dim]; x: [N, in, res/2, res/2]; img: [N, C, res/2, res/2]."""
        dtype = block_dtype(self.use_reduced, self.mixed_precision, ws.device, force_fp32)
        fmt = block_memory_format(self.channels_last, dtype, channels_last)
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)  # [N, out, 4, 4]
            x = x.to(memory_format=fmt)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused=fused)
        else:
            if x is None:
                raise ConfigError("synthesis block above 4x4 needs the previous features")
            x = x.to(dtype=dtype, memory_format=fmt)
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused=fused)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused=fused)
        y = self.torgb(x, next(w_iter), fused=fused)
        y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img  # [N, out, res, res], [N, C, res, res]

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, reduced_precision={self.use_reduced}"


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, C, H, W] (float32, roughly in [-1, 1])."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.w_dim, self.img_channels = cfg.w_dim, cfg.img_channels
        self.img_resolution = cfg.img_resolution
        self.block_resolutions = [2**i for i in range(2, cfg.log2_resolution + 1)]
        self.num_ws = 0
        fp16_res = cfg.fp16_resolution
        for res in self.block_resolutions:
            in_ch = cfg.channels_at(res // 2) if res > 4 else 0
            block = SynthesisBlock(in_ch, cfg.channels_at(res), cfg.w_dim, res,
                                   cfg.img_channels, use_reduced=res >= fp16_res, cfg=cfg)
            setattr(self, f"b{res}", block)
            self.num_ws += block.num_conv
        self.num_ws += 1  # the last block's ToRGB
        self.fused_modconv = cfg.fused_modconv
        if self.num_ws != cfg.num_ws:
            raise AssertionError("num_ws bookkeeping disagrees with the config")

    def forward(
        self, ws: torch.Tensor, noise_mode: str = "random", fused_modconv: bool | None = None,
        force_fp32: bool = False, update_emas: bool = False, channels_last: bool | None = None,
    ) -> torch.Tensor:
        """Differentiable w.r.t. ws (path-length regularisation and style mixing use that).

        Block i reads ws[:, k : k + num_conv + 1]: its ToRGB shares the w of the next block's
        first conv. fused_modconv: None = the config's choice. update_emas is accepted for
        call compatibility and has no effect here (only the mapping tracks an average).
        channels_last: None = the config's memory format, True / False = channels-last in
        every block / in none.
        """
        del update_emas
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ConfigError(f"expected ws of shape [N, {self.num_ws}, {self.w_dim}], "
                              f"got {list(ws.shape)}")
        fused = self.fused_modconv if fused_modconv is None else fused_modconv
        ws = ws.float()
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            x, img = block(x, img, block_ws, noise_mode=noise_mode, fused=fused,
                           force_fp32=force_fp32, channels_last=channels_last)
            w_idx += block.num_conv
        return img  # [N, C, H, W]

    def extra_repr(self) -> str:
        return f"w_dim={self.w_dim}, num_ws={self.num_ws}, resolution={self.img_resolution}"
