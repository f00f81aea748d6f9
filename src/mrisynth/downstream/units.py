"""Units of a study (arm x real fraction x seed) and the batches each one trains on.

Pairing: for one seed every arm starts from the same U-Net initialisation and draws its real
slices from the same stream, and the real subset of a fraction depends only on (fraction,
seed); so real vs real + synthetic differ only in the synthetic share of the batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mrisynth.downstream.options import ARMS, DownstreamOptions, synthetic_per_batch


@dataclass(frozen=True)
class Unit:
    """One trained network: which slices fill its batches, and its seed."""

    arm: str  # one of options.ARMS
    fraction: float  # share of the real training slices available to it
    seed: int

    @property
    def name(self) -> str:
        return f"{self.arm.replace('+', '-plus-')}-f{self.fraction:g}-seed{self.seed}"

    def batch_split(self, opts: DownstreamOptions) -> tuple[int, int]:
        """(real, synthetic) slices per batch; their sum is always `opts.batch_size`."""
        if self.arm == "real":
            return opts.batch_size, 0
        if self.arm == "synthetic":
            return 0, opts.batch_size
        n_syn = synthetic_per_batch(opts.batch_size, opts.ratio)
        return opts.batch_size - n_syn, n_syn


def plan_units(opts: DownstreamOptions) -> list[Unit]:
    """Main arms at fraction 1 for every seed, then the fractions curve (real and mixed arms;
    the synthetic arm uses no real slice, so it has no curve)."""
    units = [Unit(arm, 1.0, s) for s in opts.seeds for arm in ARMS]
    for f in opts.fractions[:-1]:
        units += [Unit(arm, f, s) for s in opts.seeds for arm in ("real", "real+synthetic")]
    return units


def real_subset(num_real: int, fraction: float, seed: int) -> np.ndarray:
    """Indices of the real slices a fraction keeps (at least one), fixed by (fraction, seed)."""
    if fraction >= 1.0:
        return np.arange(num_real)
    count = max(1, round(fraction * num_real))
    rng = np.random.default_rng([seed, round(fraction * 1e6), 7])
    return np.sort(rng.permutation(num_real)[:count])


def _stream(pool: np.ndarray, rng: np.random.Generator) -> Iterator[int]:
    """Endless epochs over `pool`, reshuffled each epoch."""
    while True:
        yield from pool[rng.permutation(len(pool))].tolist()


def batches(
    unit: Unit, opts: DownstreamOptions, real_pool: np.ndarray, num_synthetic: int
) -> Iterator[tuple[list[int], list[int]]]:
    """`opts.steps` batches of (real indices, synthetic indices) for one unit."""
    n_real, n_syn = unit.batch_split(opts)
    real = _stream(real_pool, np.random.default_rng([unit.seed, 1]))
    syn = _stream(np.arange(num_synthetic), np.random.default_rng([unit.seed, 2]))
    for _ in range(opts.steps):
        yield [next(real) for _ in range(n_real)], [next(syn) for _ in range(n_syn)]
