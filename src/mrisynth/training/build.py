"""Networks, augmentation and optimisers from the resolved options.

Lazy regularisation and its Adam correction follow Karras et al. 2020 (arXiv 1912.04958, App. C).
"""

from __future__ import annotations

import torch

from mrisynth.networks import NetworkConfig, network_config_from_preset
from mrisynth.training import checkpoint
from mrisynth.training.options import ResolvedOptions


def network_configs(
    r: ResolvedOptions, snap: checkpoint.Snapshot | None
) -> tuple[NetworkConfig, NetworkConfig]:
    """G and D configs: the snapshot's on a full resume, else from the resolved preset."""
    mixed = "off" if r.precision == "fp32" else r.precision
    if snap is not None:
        g = NetworkConfig.from_dict(snap.configs["G"]).replace(mixed_precision=mixed)
        d = NetworkConfig.from_dict(snap.configs.get("D", snap.configs["G"]))
        return g, d.replace(mixed_precision=mixed)
    cfg = network_config_from_preset(r.preset, r.img_channels, r.c_dim, mixed_precision=mixed)
    return cfg, cfg


def build_augment(r: ResolvedOptions, num_channels: int, device: torch.device):
    """(AugmentPipe or None, AdaController or None) for --aug ada|fixed|noaug."""
    if r.aug == "noaug":
        return None, None
    from mrisynth.training.augment import AdaController, AugmentPipe

    pipe = AugmentPipe(preset=r.user.augpipe, num_channels=num_channels, p=r.p_init).to(device)
    pipe.requires_grad_(False)
    if r.aug == "fixed":
        return pipe, None
    ada = AdaController(target=r.user.target, interval=4, speed_kimg=r.ada_kimg, p_max=r.user.p_max)
    return pipe, ada


def lazy_adam(module: torch.nn.Module, lr: float, reg_interval: int) -> torch.optim.Adam:
    """Adam (betas 0, 0.99) corrected for a regulariser run every `reg_interval` steps.

    Fused kernel: one launch per step on CUDA, ~4x faster on CPU, and it skips an update on a
    device-side flag (`training.step.adam_step`) without a host sync."""
    ratio = reg_interval / (reg_interval + 1)
    return torch.optim.Adam(
        module.parameters(), lr=lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8, fused=True
    )
