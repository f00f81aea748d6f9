"""Diversity of generated images against real ones, and the mode-collapse alarm.

FID cannot tell realism from variety, and a collapsed generator (one anatomy, many seeds) can
still look realistic sample by sample. Measured here, generated vs real (the training images):

- `msssim_gen`: mean MS-SSIM (`mrisynth.metrics.msssim`) over random pairs of generated images;
  `msssim_real` over random pairs of real images of DIFFERENT patients (any two images when no
  patient keys are known). Higher = more alike = less diverse. `msssim_ratio` = gen / real.
- spread (population std) of body area (fraction of the image inside the body mask) and of mean
  grey level inside the body: `body_area_std_gen/real`, `mean_intensity_std_gen/real`.
- `coverage` (Naeem et al. 2020, k = 5) on the weight-free body representation
  (`mrisynth.metrics.body_features`): the fraction of real images whose k-NN ball among the
  real images holds at least one generated image. Near 1 = every kind of real slice has a
  generated neighbour; a collapsed set covers a small part.

Mode-collapse warning (a `warning` verdict) when any holds:
- `msssim_gen - msssim_real > 0.25` (MSSSIM_GAP),
- `body_area_std_gen < 0.25 * body_area_std_real` (SPREAD_RATIO),
- `mean_intensity_std_gen < 0.25 * mean_intensity_std_real`.
Calibration on phantom data (32 px, 10 training patients x 12 slices; six draws): the real
images of 4 held-out patients, as if generated, give a gap of -0.10..+0.18 (their random pairs
include same-patient pairs, which real pairs here exclude), body-area spread ratios of 0.37-1.64
and intensity spread ratios of 0.77-1.18; one slice repeated with noise gives a gap of
+0.40..+0.62 and both ratios 0.02-0.06. Tighter thresholds (gap 0.1, ratio 0.5) would call
4 real patients collapsed.

A second `warning` when `coverage < 0.1` (COVERAGE_MIN) without those signs: generated images
cover little of the real data, by dropping modes or by being unlike any real slice (coverage
mixes both). 48 real images of 4 held-out patients cover 0.22-0.50 of the training set on this
representation (k-NN balls are mostly one patient's neighbouring slices), a collapsed set
0.03-0.08, and a phantom generator after 8 kimg on a CPU 0.03 (blurry, alike bodies whose
MS-SSIM gap, +0.20, and area-spread ratio, 0.44, stay under the collapse thresholds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mrisynth.errors import ConfigError
from mrisynth.metrics import body_features as bf
from mrisynth.metrics.msssim import WINDOW, ms_ssim

if TYPE_CHECKING:
    from mrisynth.data.archive import ImageArchive

MSSSIM_GAP = 0.25
SPREAD_RATIO = 0.25
COVERAGE_MIN = 0.1
DEFAULT_PAIRS = 500
COVERAGE_K = 5


def random_pairs(
    n: int, num_pairs: int, rng: np.random.Generator, groups: list[str] | None = None
) -> np.ndarray:
    """int [P, 2] index pairs i != j (and groups[i] != groups[j] when groups are given).

    All admissible pairs when there are at most `num_pairs` of them, else a random sample.
    """
    i, j = np.triu_indices(n, k=1)
    if groups is not None:
        g = np.unique(np.asarray(groups), return_inverse=True)[1]  # ints: no string compares
        keep = g[i] != g[j]
        i, j = i[keep], j[keep]
    if len(i) > num_pairs:
        pick = rng.choice(len(i), num_pairs, replace=False)
        i, j = i[pick], j[pick]
    return np.stack([i, j], axis=1)


def mean_pair_msssim(gray: np.ndarray, pairs: np.ndarray) -> float:
    """Mean MS-SSIM over the given pairs of float [N, H, W] grey images (NaN for no pairs)."""
    if len(pairs) == 0:
        return float("nan")
    chunks = np.array_split(pairs, max(1, len(pairs) // 128))
    vals = [ms_ssim(gray[p[:, 0]], gray[p[:, 1]]) for p in chunks]
    return float(np.concatenate(vals).mean())


def coverage(real_vec: np.ndarray, gen_vec: np.ndarray, k: int = COVERAGE_K) -> float:
    """Naeem et al.'s coverage with the body-representation distance (float64)."""
    n = real_vec.shape[0]
    if n <= k or gen_vec.shape[0] == 0:
        return float("nan")
    radii = np.empty(n)
    for start, block in bf.distance_blocks(real_vec, real_vec):
        rows = np.arange(block.shape[0])
        block[rows, start + rows] = np.inf  # itself is not a neighbour
        radii[start : start + len(rows)] = np.partition(block, k - 1, axis=1)[:, k - 1]
    to_gen = bf.nearest(real_vec, gen_vec)[0]  # symmetric: min over mirror of either side
    return float((to_gen < radii).mean())


@dataclass
class DiversityResult:
    results: dict[str, float]
    verdicts: list[dict]


def _std(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v.std()) if v.size else float("nan")


def diversity(
    gen: np.ndarray,
    real: np.ndarray,
    real_patient_keys: list[str] | None = None,
    num_pairs: int = DEFAULT_PAIRS,
    seed: int = 0,
) -> DiversityResult:
    """The contract's results (`msssim_gen`, ... `coverage`) and a `diversity` verdict for
    uint8 [N, C, H, W] generated and real images."""
    if gen.shape[0] < 2 or real.shape[0] < 2:
        raise ValueError("diversity needs at least 2 generated and 2 real images")
    if min(gen.shape[-2:]) < WINDOW:
        raise ConfigError(
            f"diversity: MS-SSIM needs images of at least {WINDOW} px, these are "
            f"{gen.shape[-2]}x{gen.shape[-1]}; leave diversity out of --metrics"
        )
    rng = np.random.default_rng(seed)
    g_gray, r_gray = bf.to_gray(gen), bf.to_gray(real)
    ms_gen = mean_pair_msssim(g_gray, random_pairs(len(gen), num_pairs, rng))
    ms_real = mean_pair_msssim(r_gray, random_pairs(len(real), num_pairs, rng, real_patient_keys))
    area_g, mean_g = bf.body_stats(gen)
    area_r, mean_r = bf.body_stats(real)
    res = {
        "msssim_gen": ms_gen,
        "msssim_real": ms_real,
        "msssim_ratio": _ratio(ms_gen, ms_real),
        "body_area_std_gen": _std(area_g),
        "body_area_std_real": _std(area_r),
        "mean_intensity_std_gen": _std(mean_g),
        "mean_intensity_std_real": _std(mean_r),
        "coverage": coverage(bf.body_vectors(real), bf.body_vectors(gen)),
    }
    return DiversityResult(res, [collapse_verdict(res)])


def _ratio(gen: float, real: float) -> float:
    return gen / real if real > 0 else float("nan")


def collapse_verdict(res: dict[str, float]) -> dict:
    """The `diversity` verdict (contract: topic, level, title, text) from the results."""
    gap = res["msssim_gen"] - res["msssim_real"]
    area = _ratio(res["body_area_std_gen"], res["body_area_std_real"])
    grey = _ratio(res["mean_intensity_std_gen"], res["mean_intensity_std_real"])
    numbers = (
        f"MS-SSIM between generated images {res['msssim_gen']:.3f} vs {res['msssim_real']:.3f} "
        f"between real patients; spread of body area {res['body_area_std_gen']:.3f} vs "
        f"{res['body_area_std_real']:.3f} and of mean grey level "
        f"{res['mean_intensity_std_gen']:.1f} vs {res['mean_intensity_std_real']:.1f}; "
        f"coverage {res['coverage']:.2f}."
    )
    if gap > MSSSIM_GAP or area < SPREAD_RATIO or grey < SPREAD_RATIO:
        return {
            "topic": "diversity",
            "level": "warning",
            "title": "Mode collapse: generated images are much less varied than real ones",
            "text": f"{numbers} The alarm rings when the MS-SSIM gap exceeds {MSSSIM_GAP} or a "
            f"spread falls below {SPREAD_RATIO} of real.",
        }
    if res["coverage"] < COVERAGE_MIN:  # NaN (too few real images) compares False
        return {
            "topic": "diversity",
            "level": "warning",
            "title": "Generated images cover little of the real data",
            "text": f"{numbers} Coverage under {COVERAGE_MIN}: the generator drops kinds of "
            "slices or draws images unlike any real one; look at the image grids.",
        }
    return {
        "topic": "diversity",
        "level": "ok",
        "title": "No sign of mode collapse",
        "text": numbers,
    }


MAX_REAL = 5000  # real images drawn (seeded) from a larger archive: coverage is quadratic


def archive_patient_keys(archive: ImageArchive) -> list[str] | None:
    """Per-image patient keys of an archive (its manifest), or None."""
    keys = getattr(archive, "patient_keys", None)
    return list(keys) if isinstance(keys, list | tuple) else None


def diversity_vs_archive(
    gen: np.ndarray, archive: ImageArchive, seed: int = 0, max_real: int = MAX_REAL
) -> DiversityResult:
    """`diversity` of generated images against (at most `max_real` of) an archive's images."""
    from mrisynth.metrics.sources import read_real_images

    keys = archive_patient_keys(archive)
    idx = None
    if len(archive) > max_real:
        idx = np.sort(np.random.default_rng(seed).choice(len(archive), max_real, replace=False))
        keys = None if keys is None else [keys[i] for i in idx]
    real = read_real_images(archive, idx)
    return diversity(gen, real, keys, seed=seed)


def finite_results(name: str, results: dict[str, float]) -> dict[str, float]:
    """Results keyed `<metric>_<key>` as the runner records them; NaN (undefined) left out."""
    return {f"{name}_{k}": float(v) for k, v in results.items() if np.isfinite(v)}
