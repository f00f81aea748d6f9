"""StyleGAN2 generator = mapping network + synthesis network (arXiv 1912.04958, 2006.06676)."""

from __future__ import annotations

import torch
from torch import nn

from mrisynth.networks.config import NetworkConfig
from mrisynth.networks.mapping import MappingNetwork
from mrisynth.networks.synthesis import SynthesisNetwork


class Generator(nn.Module):
    """z [N, z_dim], c [N, c_dim] -> image [N, C, H, W] float32, roughly in [-1, 1].

    For style mixing or path-length regularisation build ws with `G.mapping` and call
    `G.synthesis(ws)` directly; `G.synthesis` is differentiable with respect to ws.
    """

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.config = cfg
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.img_channels, self.img_resolution = cfg.img_channels, cfg.img_resolution
        self.synthesis = SynthesisNetwork(cfg)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            cfg.z_dim, cfg.c_dim, cfg.w_dim, num_ws=self.num_ws, num_layers=cfg.map_depth,
            lr_multiplier=cfg.mapping_lr_mul, w_avg_beta=cfg.w_avg_beta,
        )

    def forward(
        self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None, noise_mode: str = "random",
        update_emas: bool = False, fused_modconv: bool | None = None, force_fp32: bool = False,
    ) -> torch.Tensor:
        """c may be None (or [N, 0]) when unconditional; update_emas: track w_avg (training)."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi,
                          truncation_cutoff=truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode, fused_modconv=fused_modconv,
                              force_fp32=force_fp32)


def build_generator(cfg: NetworkConfig) -> Generator:
    """A freshly initialised generator for `cfg` (on CPU, float32)."""
    return Generator(cfg)
