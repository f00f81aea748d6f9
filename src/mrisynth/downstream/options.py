"""What one downstream study runs: arms, seeds, the shared training budget, the fractions curve."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from mrisynth.errors import ConfigError

ARMS = ("real", "synthetic", "real+synthetic")
MAX_STEPS = 1_000_000
MAX_BATCH = 4096
MAX_SEEDS = 100


@dataclass(frozen=True)
class DownstreamOptions:
    """Every unit (arm x real fraction x seed) trains `steps` optimiser steps of `batch_size`
    slices: identical budgets, so arms differ only in which slices fill the batches."""

    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 300  # optimiser steps per unit
    batch_size: int = 16  # slices per step
    lr: float = 1e-3  # Adam learning rate
    ratio: float = 1.0  # synthetic slices per real slice in each batch of the mixed arm
    real_fractions: tuple[float, ...] = ()  # extra curve; () = only the full real set
    channels: tuple[int, ...] = (16, 32, 64, 128)  # U-Net feature maps per level
    hd95: bool = True  # also the 95th-percentile Hausdorff distance (pixels)

    def check(self) -> DownstreamOptions:
        """ConfigError naming the option for any value out of range (NaN included)."""
        if not self.seeds or len(self.seeds) > MAX_SEEDS:
            raise ConfigError(f"--seeds: give 1 to {MAX_SEEDS} seeds, got {len(self.seeds)}")
        for seed in self.seeds:
            _in_range("--seeds", seed, 0, 2**32 - 1)
        _in_range("--steps", self.steps, 1, MAX_STEPS)
        _in_range("--batch-size", self.batch_size, 2, MAX_BATCH)
        _finite("--lr", self.lr, 0.0, 10.0)
        _finite("--ratio", self.ratio, 0.0, 100.0)
        n_syn = synthetic_per_batch(self.batch_size, self.ratio)
        if not 1 <= n_syn < self.batch_size:
            raise ConfigError(
                f"--ratio {self.ratio:g} with --batch-size {self.batch_size} leaves "
                f"{n_syn} synthetic and {self.batch_size - n_syn} real slices per batch of the "
                "mixed arm; both must be at least 1 (choose a ratio nearer 1 or a larger batch)"
            )
        for f in self.real_fractions:
            _finite("--real-fractions", f, 0.0, 1.0)
        if len(self.channels) < 2 or any(not 1 <= c <= 1024 for c in self.channels):
            raise ConfigError(f"U-Net channels must be 2+ levels of 1..1024, got {self.channels}")
        return self

    @property
    def fractions(self) -> tuple[float, ...]:
        """Real fractions to train at, ascending, always ending with 1.0 (the main arms)."""
        return tuple(sorted({*self.real_fractions, 1.0}))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def synthetic_per_batch(batch_size: int, ratio: float) -> int:
    """Synthetic slices in each batch of the mixed arm (ratio 1: half the batch)."""
    return round(batch_size * ratio / (1.0 + ratio))


def parse_fractions(text: str) -> tuple[float, ...]:
    """`"0.1,0.25,0.5,1"` -> (0.1, 0.25, 0.5, 1.0); each in (0, 1]."""
    out = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(
                f"--real-fractions: cannot read {part!r}; use numbers in (0, 1] like 0.1,0.5,1"
            ) from None
        _finite("--real-fractions", value, 0.0, 1.0)
        out.append(value)
    if not out:
        raise ConfigError("--real-fractions: no fractions given; use e.g. 0.1,0.25,0.5,1")
    return tuple(sorted(set(out)))


def _in_range(option: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{option} must be a whole number in [{lo}, {hi}], got {value!r}")


def _finite(option: str, value: Any, lo: float, hi: float) -> None:
    """A finite number in (lo, hi]: NaN, infinities and zero are refused."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not lo < value <= hi:
        raise ConfigError(f"{option} must be a number in ({lo:g}, {hi:g}], got {value!r}")
