"""NetworkConfig: every number needed to rebuild a StyleGAN2(-ADA) generator/discriminator.

Built from a named preset (`mrisynth.config`, the single source of the published constants),
stored as JSON next to the weights so a network can be rebuilt from its file alone.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from mrisynth import untrusted as u
from mrisynth.config import ResolvedPreset
from mrisynth.errors import ConfigError

logger = logging.getLogger(__name__)

MIXED_PRECISION = ("fp16", "bf16", "off")
D_ARCHITECTURES = ("resnet", "orig")


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of G and D (StyleGAN2 'skip' generator, 'resnet'/'orig' discriminator)."""

    img_resolution: int
    img_channels: int
    c_dim: int = 0  # label dimensions (0 = unconditional)
    z_dim: int = 512
    w_dim: int = 512
    map_depth: int = 8  # FC layers in G's mapping network
    d_map_depth: int = 8  # FC layers in D's label mapping (conditional D only)
    channel_base: int = 32768  # feature maps at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    mbstd_group: int = 4
    mbstd_channels: int = 1
    d_architecture: str = "resnet"
    mapping_lr_mul: float = 0.01
    w_avg_beta: float = 0.995
    num_fp16_res: int = 4  # highest-resolution blocks run in reduced precision on GPU
    mixed_precision: str = "fp16"  # dtype of those blocks on GPU: 'fp16', 'bf16' or 'off'
    conv_clamp: float | None = 256.0  # activation clamp (None = off)
    fused_modconv: bool = True  # grouped-conv formulation of the modulated conv
    channels_last: bool = False  # channels-last memory format in reduced-precision blocks
    preset: str | None = None  # name of the preset it came from (informational)

    def __post_init__(self) -> None:
        r = self.img_resolution
        if r < 4 or r & (r - 1):
            raise ConfigError(f"img_resolution must be a power of two >= 4, got {r}")
        if self.img_channels < 1:
            raise ConfigError(f"img_channels must be >= 1, got {self.img_channels}")
        if self.c_dim < 0 or self.z_dim < 1 or self.w_dim < 1 or self.map_depth < 1:
            raise ConfigError("c_dim must be >= 0 and z_dim, w_dim, map_depth >= 1")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(
                f"mixed_precision {self.mixed_precision!r} unknown; use one of {MIXED_PRECISION}"
            )
        if self.d_architecture not in D_ARCHITECTURES:
            raise ConfigError(
                f"d_architecture {self.d_architecture!r} unknown; use one of {D_ARCHITECTURES}"
            )
        if self.channels_at(4) % max(self.mbstd_channels, 1) != 0:
            raise ConfigError("mbstd_channels must divide the channels of the 4x4 block")

    @property
    def log2_resolution(self) -> int:
        return self.img_resolution.bit_length() - 1

    @property
    def num_ws(self) -> int:
        """Number of w vectors the synthesis network consumes (14 at 256x256)."""
        return 2 * self.log2_resolution - 2

    @property
    def fp16_resolution(self) -> int:
        """Blocks at this resolution and above use reduced precision (GPU only)."""
        if self.num_fp16_res <= 0 or self.mixed_precision == "off":
            return self.img_resolution * 2  # none
        return max(2 ** (self.log2_resolution + 1 - self.num_fp16_res), 8)

    def channels_at(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkConfig:
        """Rebuild from `to_dict` output; unknown keys (from newer versions) are ignored."""
        if not isinstance(d, dict):
            raise ConfigError(f"network config must be an object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            logger.warning("ignoring unknown network config keys: %.200s", ", ".join(unknown))
        missing = [k for k in ("img_resolution", "img_channels") if k not in d]
        if missing:
            raise ConfigError(f"network config lacks {', '.join(missing)}")
        try:  # values come from files: check them before anything is sized from them
            checked = {k: _check_value(k, v) for k, v in d.items() if k in names}
        except u.BadValue as e:
            raise ConfigError(f"network config: {e}") from None
        cfg = cls(**checked)
        if cfg.estimated_parameters() > MAX_PARAMETERS:
            raise ConfigError(
                f"network config asks for ~{cfg.estimated_parameters():.3g} parameters (at most "
                f"{MAX_PARAMETERS:.0e}); not a StyleGAN2 network"
            )
        return cfg

    def estimated_parameters(self) -> float:
        """Rough parameter count of G + D (convolutions and mapping), to bound configs read
        from files before building them."""
        convs = sum(2 * 9 * self.channels_at(2**k) ** 2 for k in range(2, self.log2_resolution + 1))
        mapping = (self.map_depth + 1) * max(self.z_dim, self.w_dim) ** 2
        return 2.0 * convs + mapping + self.c_dim * self.w_dim

    def replace(self, **changes: Any) -> NetworkConfig:
        return dataclasses.replace(self, **changes)


# Bounds on values read from files (well above every published configuration).
MAX_PARAMETERS = 5e8
_INT_RANGES = {
    "img_resolution": (4, 8192), "img_channels": (1, 4), "c_dim": (0, 65536),
    "z_dim": (1, 4096), "w_dim": (1, 4096), "map_depth": (1, 64), "d_map_depth": (0, 64),
    "channel_base": (1, 2**22), "channel_max": (1, 4096), "mbstd_group": (1, 4096),
    "mbstd_channels": (0, 64), "num_fp16_res": (0, 16),
}  # fmt: skip
_FLOAT_RANGES = {"mapping_lr_mul": (1e-9, 1e3), "w_avg_beta": (0.0, 1.0)}


def _check_value(name: str, value: Any) -> Any:
    where = f"{name}"
    if name in _INT_RANGES:
        return u.integer(value, where, *_INT_RANGES[name])
    if name in _FLOAT_RANGES:
        return u.number(value, where, *_FLOAT_RANGES[name])
    if name == "conv_clamp":
        return u.optional(u.number, value, where, 1e-6, 1e9)
    if name in ("fused_modconv", "channels_last"):
        return u.boolean(value, where)
    if name == "mixed_precision":
        return u.choice(value, where, MIXED_PRECISION)
    if name == "d_architecture":
        return u.choice(value, where, D_ARCHITECTURES)
    return u.optional(u.text, value, where, 200)


def network_config_from_preset(
    preset: ResolvedPreset, img_channels: int, c_dim: int = 0, **overrides: Any
) -> NetworkConfig:
    """Network architecture of a resolved preset for images with `img_channels` channels."""
    cfg = NetworkConfig(
        img_resolution=preset.resolution,
        img_channels=img_channels,
        c_dim=c_dim,
        z_dim=preset.z_dim,
        w_dim=preset.w_dim,
        map_depth=preset.map_depth,
        channel_base=preset.channel_base,
        channel_max=preset.channel_max,
        mbstd_group=preset.mbstd_group,
        d_architecture=preset.d_architecture,
        preset=preset.name,
    )
    return cfg.replace(**overrides) if overrides else cfg
