"""Named training/network presets: the single source of StyleGAN2-ADA's published constants.

Values follow NVIDIA's stylegan2-ada configurations (Karras et al. 2020, arXiv 2006.06676,
Table/`cfg_specs`), restated as data. `None` in a preset means "derived from resolution and
number of GPUs", as the original `auto` config does. `resolve_preset` turns a preset into
concrete numbers; command-line overrides are applied by the caller on top of those.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mrisynth.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """One row of the configuration table. `None` = derive as `auto` does."""

    name: str
    ref_gpus: int | None  # None: the number of GPUs actually used
    batch: int | None  # total batch over all GPUs
    mbstd_group: int | None
    fmaps: float | None  # channel_base = fmaps * 32768
    lr: float | None
    gamma: float | None  # R1 weight
    ema_kimg: float | None
    ema_rampup: float | None  # None: no rampup
    map_depth: int
    channel_max: int = 512
    z_dim: int = 512
    w_dim: int = 512
    pl_weight: float = 2.0  # path-length regularisation weight (0 = off)
    style_mixing_prob: float = 0.9
    d_architecture: str = "resnet"  # 'resnet' or 'orig'
    ada_kimg: float = 500.0  # ADA speed: kimg for p to move by 1 (the paper's 500)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("auto", None, None, None, None, None, None, None, 0.05, 2),
        Preset("stylegan2", 8, 32, 4, 1.0, 0.002, 10.0, 10.0, None, 8),
        Preset("paper256", 8, 64, 8, 0.5, 0.0025, 1.0, 20.0, None, 8),
        Preset("paper512", 8, 64, 8, 1.0, 0.0025, 0.5, 20.0, None, 8),
        Preset("paper1024", 8, 32, 4, 1.0, 0.002, 2.0, 10.0, None, 8),
        Preset(
            "cifar", 2, 64, 32, 1.0, 0.0025, 0.01, 500.0, 0.05, 2,
            pl_weight=0.0, style_mixing_prob=0.0, d_architecture="orig",
        ),
        # Small CPU preset for tests and the demo (not a published config): batch 8, a strong
        # R1 and a fast ADA so that a few kimg on 2 cores already give body-like shapes.
        Preset(
            "tiny", 1, 8, 4, 1024 / 32768, 0.0025, 0.5, 2.0, 0.05, 2,
            channel_max=64, z_dim=128, w_dim=128, ada_kimg=20.0,
        ),
    ]
}


@dataclass(frozen=True)
class ResolvedPreset:
    """A preset with every number filled in for a given resolution and GPU count."""

    name: str
    resolution: int
    num_gpus: int
    ref_gpus: int
    batch: int
    batch_gpu: int  # per-GPU batch per step; batch / (batch_gpu * num_gpus) = accumulation
    mbstd_group: int
    channel_base: int
    channel_max: int
    lr: float
    gamma: float
    ema_kimg: float
    ema_rampup: float | None
    map_depth: int
    z_dim: int
    w_dim: int
    pl_weight: float
    style_mixing_prob: float
    d_architecture: str
    ada_kimg: float = 500.0

    def channels_at(self, res: int) -> int:
        """Feature maps of the block working at resolution `res`."""
        return min(self.channel_base // res, self.channel_max)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def get_preset(name: str | Preset) -> Preset:
    """Look a preset up by name (or pass one through)."""
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown --cfg {name!r}; choose one of: {', '.join(PRESETS)}") from None


def resolve_preset(name: str | Preset, resolution: int, num_gpus: int = 1) -> ResolvedPreset:
    """Fill a preset's derived values as the original `auto` config does."""
    p = get_preset(name)
    if resolution < 4 or resolution & (resolution - 1):
        raise ConfigError(f"resolution must be a power of two >= 4, got {resolution}")
    if num_gpus < 1:
        raise ConfigError(f"number of GPUs must be >= 1, got {num_gpus}")
    res = resolution
    ref_gpus = p.ref_gpus if p.ref_gpus is not None else num_gpus
    batch = p.batch
    if batch is None:
        batch = max(min(num_gpus * min(4096 // res, 32), 64), num_gpus)
    mbstd = p.mbstd_group if p.mbstd_group is not None else min(batch // num_gpus, 4)
    fmaps = p.fmaps if p.fmaps is not None else (1.0 if res >= 512 else 0.5)
    lr = p.lr if p.lr is not None else (0.002 if res >= 1024 else 0.0025)
    gamma = p.gamma if p.gamma is not None else 0.0002 * res**2 / batch
    ema_kimg = p.ema_kimg if p.ema_kimg is not None else batch * 10 / 32
    return ResolvedPreset(
        name=p.name,
        resolution=res,
        num_gpus=num_gpus,
        ref_gpus=ref_gpus,
        batch=batch,
        batch_gpu=max(batch // ref_gpus, 1),
        mbstd_group=mbstd,
        channel_base=int(fmaps * 32768),
        channel_max=p.channel_max,
        lr=lr,
        gamma=gamma,
        ema_kimg=ema_kimg,
        ema_rampup=p.ema_rampup,
        map_depth=p.map_depth,
        z_dim=p.z_dim,
        w_dim=p.w_dim,
        pl_weight=p.pl_weight,
        style_mixing_prob=p.style_mixing_prob,
        d_architecture=p.d_architecture,
        ada_kimg=p.ada_kimg,
    )
