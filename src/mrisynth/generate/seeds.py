"""Seeds -> latents, as StyleGAN2-ADA's generate.py does (Karras et al. 2020, arXiv 2006.06676).

One seed gives one z, drawn with `np.random.RandomState(seed).randn(z_dim)` on the CPU, so the
same seed gives the same latent on any machine and is comparable with NVIDIA's tools.
"""

from __future__ import annotations

import numpy as np

from mrisynth.errors import ConfigError

MAX_SEED = 2**32 - 1  # numpy's RandomState accepts seeds in [0, 2**32)
MAX_SEEDS = 1_000_000  # images per run: a seed list is held in memory (and in the manifest)


def parse_seeds(
    text: str, limit: int = MAX_SEEDS, counted: str = "images in one run; split it"
) -> list[int]:
    """Parse `"0-9,12,20-22"` into `[0, ..., 9, 12, 20, 21, 22]` (order kept, duplicates dropped).

    Ranges are inclusive, as in the original tools, so `0-9` is ten seeds. More than `limit`
    is refused before the list is built; `counted` says what the seeds stand for.
    """
    seeds: list[int] = []
    seen: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo_text, sep, hi_text = part.partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if sep else lo
        except ValueError:
            raise ConfigError(
                f"--seeds: cannot read {part!r}; use numbers and ranges like 0-9,12,20-22"
            ) from None
        if hi < lo:
            raise ConfigError(f"--seeds: range {part!r} runs backwards; write it as {hi}-{lo}")
        if lo < 0 or hi > MAX_SEED:
            raise ConfigError(f"--seeds: {part!r} is outside 0..{MAX_SEED}")
        if len(seeds) + hi - lo + 1 > limit:
            raise ConfigError(f"--seeds: more than {limit} {counted}")
        for s in range(lo, hi + 1):
            if s not in seen:
                seen.add(s)
                seeds.append(s)
    if not seeds:
        raise ConfigError("--seeds: no seeds given; use e.g. 0-9 or 1,5,7")
    return seeds


def seeds_for_count(num: int, start: int = 0) -> list[int]:
    """The seeds `--num N` stands for: `start .. start+N-1`."""
    if num < 1:
        raise ConfigError(f"--num must be >= 1, got {num}")
    if num > MAX_SEEDS:
        raise ConfigError(f"--num {num}: at most {MAX_SEEDS} images in one run; split it")
    if start < 0 or start + num - 1 > MAX_SEED:
        raise ConfigError(f"--num {num} from seed {start} runs outside 0..{MAX_SEED}")
    return list(range(start, start + num))


def latents_from_seeds(seeds: list[int], z_dim: int) -> np.ndarray:
    """Latents for the seeds, one row each, float32. # [N, z_dim]"""
    z = np.empty((len(seeds), z_dim), dtype=np.float32)
    for i, seed in enumerate(seeds):
        z[i] = np.random.RandomState(seed).randn(z_dim)
    return z


def format_seeds(seeds: list[int]) -> str:
    """Compact text of a seed list (`0-9,12`), the inverse of `parse_seeds` for sorted lists."""
    parts: list[str] = []
    i = 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if i == j else f"{seeds[i]}-{seeds[j]}")
        i = j + 1
    return ",".join(parts)
