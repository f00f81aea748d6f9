"""One metric's result (`Outcome`) from what a generated stream accumulated (`Generated`) and
the real side: detector metrics (FID/KID/PR and their stand-ins), pixel statistics, FRD,
diversity, the memorisation audit and faithfulness. `runner` drives the streams and records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from mrisynth.errors import ConfigError
from mrisynth.metrics import memorisation as mem
from mrisynth.metrics import sources
from mrisynth.metrics.eval_options import EvalOptions, ExtractorPool
from mrisynth.metrics.extractor import FeatureExtractor
from mrisynth.metrics.feature_stats import FeatureStats
from mrisynth.metrics.fid import fid_from_stats
from mrisynth.metrics.kid import kernel_inception_distance
from mrisynth.metrics.pixfd import CAVEAT as PIXFD_CAVEAT
from mrisynth.metrics.pixfd import PixelFeatures, pixel_frechet_distance
from mrisynth.metrics.precision_recall import precision_recall_density_coverage
from mrisynth.metrics.registry import MetricSpec
from mrisynth.metrics.weightfree import BodyArea, IntensityHistogram

if TYPE_CHECKING:
    from mrisynth.data.archive import ImageArchive

__all__ = ["Generated", "Outcome", "compute_one"]


@dataclass
class Outcome:
    results: dict[str, float]
    detector: dict | None
    num_real: int
    audit: mem.AuditResult | None = None
    picture: np.ndarray | None = None
    reference_exact: bool = False  # NVIDIA's definition with a confirmed detector file
    caveats: list[str] = field(default_factory=list)  # shown beside the numbers (report, CLI)
    verdicts: list[dict] = field(default_factory=list)  # issue-10 contract: topic, level, ...


@dataclass
class Generated:
    """What one pass over the generated images accumulated."""

    stats: dict[str, FeatureStats]  # per detector key
    hist: IntensityHistogram
    area: BodyArea
    pix: PixelFeatures
    images: np.ndarray | None  # uint8 [N, C, H, W] when kept
    seeds: list[int | None]
    names: list[str]  # `seed<N>` or the image's file name


def compute_one(
    spec: MetricSpec,
    archive: ImageArchive,
    generated: Generated,
    pool: ExtractorPool,
    opts: EvalOptions,
    device: torch.device,
) -> Outcome:
    """Results of one metric from the group's generated data and the real side."""
    name = spec.name
    gen_stats, gen_images = generated.stats, generated.images
    if spec.detector:
        ext = pool.get(spec.detector)
        real = sources.real_features(archive, ext, use_cache=opts.use_cache)
        gen = gen_stats[spec.detector]
        if spec.family in ("fid", "standin_fd"):
            res = {name: fid_from_stats(gen, real)}
        elif spec.family in ("kid", "standin_kd"):
            kid = kernel_inception_distance(gen.features(), real.features(), seed=opts.seed)
            res = {name: kid.mean, f"{name}_std": kid.std}
        else:
            pr = precision_recall_density_coverage(
                real.features(), gen.features(), k=spec.k, fp16=opts.pr_fp16, device=device
            )
            res = {
                f"{name}_{k}": getattr(pr, k)
                for k in ("precision", "recall", "density", "coverage")
            }
        return detector_outcome(spec, res, ext, real.num_items, opts)
    if spec.family == "pixfd":
        real = sources.real_pixel_features(archive, use_cache=opts.use_cache)
        value = pixel_frechet_distance(real, generated.pix.generated())
        return Outcome({name: value}, None, len(archive), caveats=[PIXFD_CAVEAT])
    if spec.family in ("intensity_hist", "body_area"):
        acc = generated.hist if spec.family == "intensity_hist" else generated.area
        for batch in sources.real_batches(archive):
            acc.update(batch, real=True)
        return Outcome({f"{name}_{k}": v for k, v in acc.compute().items()}, None, len(archive))
    if spec.family == "frd":
        from mrisynth.metrics.frd import frechet_radiomics_distance

        rng = np.random.default_rng(opts.seed)
        n_real = min(spec.num_gen, len(archive))
        idx = np.sort(rng.choice(len(archive), n_real, replace=False))
        real = sources.read_real_images(archive, idx)
        value = frechet_radiomics_distance(real, gen_images[: spec.num_gen], opts.frd_workers)
        return Outcome({name: value}, None, n_real)
    if spec.family == "diversity":
        from mrisynth.metrics import diversity as dv

        div = dv.diversity_vs_archive(gen_images[: spec.num_gen], archive, seed=opts.seed)
        n_real = min(len(archive), dv.MAX_REAL)
        return Outcome(dv.finite_results(name, div.results), None, n_real, verdicts=div.verdicts)
    return memorisation_outcome(spec, archive, generated, pool, opts)


def detector_outcome(
    spec: MetricSpec,
    results: dict[str, float],
    ext: FeatureExtractor,
    num_real: int,
    opts: EvalOptions,
) -> Outcome:
    """A detector metric's outcome: reference-exact only for NVIDIA's metric, computed the
    reference's way, with a detector file whose sha256 is confirmed."""
    caveats = []
    exact = spec.reference_exact and ext.trusted
    if spec.reference_exact and not ext.trusted:
        caveats.append(
            f"{ext.name} detector sha256 {ext.sha256[:16]}... is not confirmed (neither "
            "published nor trusted with `mrisynth weights trust`): the computation is NVIDIA's "
            "but the numbers are only as good as that file"
        )
    if spec.family == "pr":
        exact = exact and opts.pr_fp16
        caveats.append(
            "density and coverage (Naeem et al. 2020) are not in NVIDIA's reference; they "
            "come from float32 distances"
        )
        if not opts.pr_fp16:
            caveats.append("precision/recall from float32 distances (reference: float16)")
    return Outcome(results, ext.record(), num_real, reference_exact=exact, caveats=caveats)


def memorisation_outcome(
    spec: MetricSpec,
    archive: ImageArchive,
    generated: Generated,
    pool: ExtractorPool,
    opts: EvalOptions,
) -> Outcome:
    """The audit against the training archive and its held-out patients, if any."""
    n = spec.num_gen
    gen_stats, gen_images, seeds = generated.stats, generated.images, generated.seeds
    gen_feat = train_feat = detector = None
    if "inception" in gen_stats:
        ext = pool.get("inception")
        gen_feat = gen_stats["inception"].features()[:n]
        train_feat = sources.real_features(archive, ext, use_cache=opts.use_cache).features()
        detector = ext.record()
    audit, train = mem.audit_archive(
        archive,
        gen_images[:n],
        seeds[:n] if None not in seeds[:n] else None,
        generated.names[:n],  # `seed<N>` or the file names (--images)
        gen_feat,
        train_feat,
        seed=opts.seed,
        percentile=opts.copy_percentile,
    )
    picture = mem.side_by_side(gen_images[:n], train, audit.closest_pairs)
    res = mem.record_results(spec.name, audit.summary)
    verdicts = audit.summary["verdicts"]
    return Outcome(res, detector, len(train), audit, picture, verdicts=verdicts)


def faithfulness_outcome(
    spec: MetricSpec,
    source: sources.NetworkImages | sources.FolderImages,
    archive: ImageArchive,
    pool: ExtractorPool,
    opts: EvalOptions,
    device: torch.device,
) -> Outcome:
    """The faithfulness metric (metrics.faithfulness) of a generator source."""
    from mrisynth.metrics import faithfulness

    if not isinstance(source, sources.NetworkImages):
        raise ConfigError(f"{spec.name}: needs a generator (it asks for each class); a folder "
                          "of images does not say which class each was asked for")
    ext = pool.optional("inception")  # per-class FID when the detector is here
    res = faithfulness.evaluate(source.G, archive, spec.num_gen, device, opts.batch_size,
                                opts.first_seed, opts.seed, ext, prefix=spec.name)
    detector = ext.record() if ext is not None else None
    return Outcome(res.results, detector, res.num_real, caveats=res.caveats)
