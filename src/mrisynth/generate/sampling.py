"""Sampling images from a StyleGAN2 generator (Karras et al. 2020, arXiv 1912.04958).

Latents come from the seeds (see `seeds.py`); images are quantised exactly as NVIDIA's tools
and metrics do, `(x * 127.5 + 128).clamp(0, 255)` to uint8, so a saved PNG is what the metrics
saw.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from mrisynth.errors import ConfigError
from mrisynth.generate.seeds import latents_from_seeds
from mrisynth.imaging import quantize_images

log = logging.getLogger(__name__)

NOISE_MODES = ("const", "random", "none")
MAX_BATCH = 4096


@dataclass(frozen=True)
class SamplingOptions:
    """How to sample; the defaults are the original generate.py's."""

    truncation_psi: float = 1.0  # 1 = no truncation, 0 = every seed gives the mean image
    truncation_cutoff: int | None = None  # None: truncate all ws layers
    noise_mode: str = "const"  # const: reproducible per seed; random: fresh noise per batch
    class_idx: int | None = None  # for conditional generators (c_dim > 0)
    batch_size: int = 16

    def check_values(self) -> None:
        """Raise ConfigError for values that fit no generator (before any model is loaded)."""
        if self.noise_mode not in NOISE_MODES:
            raise ConfigError(
                f"--noise-mode {self.noise_mode!r} unknown; choose one of {', '.join(NOISE_MODES)}"
            )
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise ConfigError(f"--batch must be in 1..{MAX_BATCH}, got {self.batch_size}")
        if not math.isfinite(self.truncation_psi):
            raise ConfigError(f"--trunc must be a finite number, got {self.truncation_psi}")
        if self.truncation_cutoff is not None and self.truncation_cutoff < 0:
            raise ConfigError(f"--trunc-cutoff must be >= 0, got {self.truncation_cutoff}")

    def check(self, c_dim: int) -> None:
        """Raise ConfigError for options that do not fit a generator with `c_dim` labels."""
        self.check_values()
        if c_dim > 0 and self.class_idx is None:
            raise ConfigError(
                f"the generator is conditional ({c_dim} classes): pass --class 0..{c_dim - 1}"
            )
        if c_dim == 0 and self.class_idx is not None:
            raise ConfigError("--class given, but the generator is unconditional; drop --class")
        if c_dim > 0 and not 0 <= self.class_idx < c_dim:  # type: ignore[operator]
            raise ConfigError(f"--class {self.class_idx} out of range 0..{c_dim - 1}")


def quantize(images: torch.Tensor) -> np.ndarray:
    """Float images ~[-1, 1] -> uint8 as the reference does. [N, C, H, W] -> [N, C, H, W]"""
    return quantize_images(images).cpu().numpy()


def class_labels(c_dim: int, class_idx: int | None, num: int) -> torch.Tensor:
    """One-hot labels for `num` images (shape [num, 0] for unconditional generators)."""
    c = torch.zeros(num, c_dim)  # [N, c_dim]
    if c_dim > 0 and class_idx is not None:
        c[:, class_idx] = 1
    return c


@torch.no_grad()
def sample_images(
    G: torch.nn.Module,
    seeds: list[int],
    opts: SamplingOptions = SamplingOptions(),
    device: torch.device | str = "cpu",
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield `(seed, uint8 image [C, H, W])` for each seed, in order, batch by batch.

    With noise_mode="const" an image depends only on its seed (and psi/class), not on the
    batch it was drawn in; with "random" the noise is seeded from the batch's first seed.
    """
    opts.check(int(G.c_dim))
    device = torch.device(device)
    G = G.to(device).eval()
    for start in range(0, len(seeds), opts.batch_size):
        batch_seeds = seeds[start : start + opts.batch_size]
        z = torch.from_numpy(latents_from_seeds(batch_seeds, int(G.z_dim))).to(device)  # [B, z]
        c = class_labels(int(G.c_dim), opts.class_idx, len(batch_seeds)).to(device)
        # Seeded random noise without disturbing the caller's global RNG streams.
        cuda_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices, enabled=opts.noise_mode == "random"):
            if opts.noise_mode == "random":
                torch.manual_seed(batch_seeds[0])
            img = G(  # [B, C, H, W]
                z,
                c,
                truncation_psi=opts.truncation_psi,
                truncation_cutoff=opts.truncation_cutoff,
                noise_mode=opts.noise_mode,
            )
        yield from zip(batch_seeds, quantize(img), strict=True)
    log.info(
        "sampled %d images (psi=%s, noise=%s)", len(seeds), opts.truncation_psi, opts.noise_mode
    )
