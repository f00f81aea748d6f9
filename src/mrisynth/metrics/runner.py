"""Evaluating snapshots: metric names -> computations, records in the run folder.

One pass of generated images per image count feeds every requested metric (detector features,
pixel statistics, kept images for FRD and the memorisation audit); real-image features come
from the on-disk cache. The training loop calls `check_metric_names` before any work and
`evaluate_and_record` at every snapshot (Karras et al. 2020's cadence); `mrisynth metrics`
goes through `metrics.evaluations` (every snapshot of a run, or a folder of images).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from mrisynth import atomic
from mrisynth.errors import ConfigError, MissingDependencyError
from mrisynth.metrics import memorisation as mem
from mrisynth.metrics import records, registry, sources
from mrisynth.metrics.extractor import FeatureExtractor, load_detector, standin_detector
from mrisynth.metrics.feature_stats import FeatureStats
from mrisynth.metrics.fid import fid_from_stats
from mrisynth.metrics.kid import kernel_inception_distance
from mrisynth.metrics.pixfd import CAVEAT as PIXFD_CAVEAT
from mrisynth.metrics.pixfd import PixelFeatures, pixel_frechet_distance
from mrisynth.metrics.precision_recall import precision_recall_density_coverage
from mrisynth.metrics.registry import MetricSpec, parse_metric_list
from mrisynth.metrics.weightfree import BodyArea, IntensityHistogram
from mrisynth.training.kimg import rounded_kimg

if TYPE_CHECKING:
    from mrisynth.data.archive import ImageArchive

__all__ = ["EvalOptions", "check_metric_names", "compute_metrics", "evaluate_and_record"]

log = logging.getLogger(__name__)
# Warning verdicts (mode collapse, data-copying): a caller evaluating many snapshots may gather
# them into one line (`mrisynth metrics --network RUN`).
verdict_log = logging.getLogger(f"{__name__}.verdicts")


def check_metric_names(
    names: list[str], detector_dir: str | os.PathLike | None = None, requirements: bool = True
) -> None:
    """Raise ConfigError for unknown names and, with `requirements`, MissingDependencyError
    for a detector file or optional package that is absent and InputError for a detector file
    that fails the interface probe, so that training stops before its first step rather than
    at its first snapshot. Loads each needed detector once on the CPU (seconds)."""
    registry.check_metric_names(names)
    if not requirements:
        return
    for det in sorted({s.detector for s in parse_metric_list(names) if s.reference_exact}):
        load_detector(det, "cpu", detector_dir)  # found, loadable, the right interface
    for spec in parse_metric_list(names):
        if spec.family == "frd":
            from mrisynth.metrics.frd import import_frd

            import_frd()


@dataclass
class EvalOptions:
    """How to evaluate; defaults follow the reference where it has one."""

    batch_size: int = 32  # generated images per forward pass
    detector_dir: str | os.PathLike | None = None  # searched before the caches
    extractors: dict[str, FeatureExtractor] = field(default_factory=dict)  # preloaded, by key
    seed: int = 0  # KID subsets, FRD's real subset, holdout split
    first_seed: int = 0  # seed of the first generated image
    use_cache: bool = True  # real features cached by dataset hash + detector hash
    pr_fp16: bool = True  # NVIDIA casts features to float16 for PR (False: not reference-exact)
    copy_percentile: float = 1.0  # memorisation: flag below this percentile of real
    # between-patient nearest-neighbour distances (calibrated from the data, not a constant)
    frd_workers: int | None = 1
    trusted_sha256: tuple[str, ...] = ()  # detector hashes the user confirms (--trust-detector)


class _Extractors:
    """Loads each detector once per evaluation; never swaps a stand-in for a real detector."""

    def __init__(self, device: torch.device, opts: EvalOptions) -> None:
        self.device, self.opts = device, opts
        self.loaded: dict[str, FeatureExtractor] = dict(opts.extractors)

    def get(self, key: str) -> FeatureExtractor:
        if key not in self.loaded:
            if key.startswith("standin-"):
                self.loaded[key] = standin_detector(key.removeprefix("standin-"), self.device)
            else:
                self.loaded[key] = load_detector(
                    key, self.device, self.opts.detector_dir, self.opts.trusted_sha256
                )
        ext = self.loaded[key]
        if ext.reference_exact != (not key.startswith("standin-")):
            raise ConfigError(
                f"detector {ext.name!r} given for {key!r}: stand-ins are only for standin_* metrics"
            )
        return ext

    def optional(self, key: str) -> FeatureExtractor | None:
        try:
            return self.get(key)
        except MissingDependencyError:
            return None


@dataclass
class _Outcome:
    results: dict[str, float]
    detector: dict | None
    num_real: int
    audit: mem.AuditResult | None = None
    picture: np.ndarray | None = None
    reference_exact: bool = False  # NVIDIA's definition with a confirmed detector file
    caveats: list[str] = field(default_factory=list)  # shown beside the numbers (report, CLI)
    verdicts: list[dict] = field(default_factory=list)  # issue-10 contract: topic, level, ...


@dataclass
class _Generated:
    """What one pass over the generated images accumulated."""

    stats: dict[str, FeatureStats]  # per detector key
    hist: IntensityHistogram
    area: BodyArea
    pix: PixelFeatures
    images: np.ndarray | None  # uint8 [N, C, H, W] when kept
    seeds: list[int | None]
    names: list[str]  # `seed<N>` or the image's file name


_FEATURE_FAMILIES = ("kid", "pr", "standin_kd", "standin_pr")


def _group_needs(specs: list[MetricSpec], pool: _Extractors) -> dict:
    """What one generated stream must feed: detector keys, pixel stats, kept images."""
    dets = {s.detector for s in specs if s.detector}
    wants_features = any(s.family == "memorisation" for s in specs)
    if wants_features and pool.optional("inception") is not None:
        dets.add("inception")  # feature-space neighbours too, when the detector is present
    keep = {s.detector for s in specs if s.family in _FEATURE_FAMILIES}
    if wants_features:
        keep.add("inception")
    return {
        "detectors": sorted(dets),
        "keep_features": keep,  # KID, PR and the audit need features; FID only moments
        "hist": any(s.family == "intensity_hist" for s in specs),
        "area": any(s.family == "body_area" for s in specs),
        "pix": any(s.family == "pixfd" for s in specs),
        "keep": any(s.family in ("frd", "memorisation", "diversity") for s in specs),
    }


def _generate_group(source, num, noise_mode, needs, pool, opts) -> _Generated:
    """Stream `num` generated images once into every accumulator the group needs."""
    gen_stats = {
        k: FeatureStats(keep_features=k in needs["keep_features"]) for k in needs["detectors"]
    }
    out = _Generated(gen_stats, IntensityHistogram(), BodyArea(), PixelFeatures(), None, [], [])
    kept = []
    for batch in source.batches(num, opts.batch_size, noise_mode):
        for key, stats in gen_stats.items():
            stats.update(pool.get(key)(batch.images))
        arr = batch.images.numpy()
        for flag, acc in (("hist", out.hist), ("area", out.area), ("pix", out.pix)):
            if needs[flag]:
                acc.update(arr, real=False)
        if needs["keep"]:
            kept.append(arr)
        out.seeds += batch.seeds
        out.names += batch.names
    out.images = np.concatenate(kept) if kept else None
    return out


def _compute_one(spec, archive, generated: _Generated, pool, opts, device) -> _Outcome:
    """Results of one metric from the group's generated data and the real side."""
    name = spec.name
    gen_stats, gen_images, seeds = generated.stats, generated.images, generated.seeds
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
        return _detector_outcome(spec, res, ext, real.num_items, opts)
    if spec.family == "pixfd":
        real = sources.real_pixel_features(archive, use_cache=opts.use_cache)
        value = pixel_frechet_distance(real, generated.pix.generated())
        return _Outcome({name: value}, None, len(archive), caveats=[PIXFD_CAVEAT])
    if spec.family in ("intensity_hist", "body_area"):
        acc = generated.hist if spec.family == "intensity_hist" else generated.area
        for batch in sources.real_batches(archive):
            acc.update(batch, real=True)
        return _Outcome({f"{name}_{k}": v for k, v in acc.compute().items()}, None, len(archive))
    if spec.family == "frd":
        from mrisynth.metrics.frd import frechet_radiomics_distance

        rng = np.random.default_rng(opts.seed)
        n_real = min(spec.num_gen, len(archive))
        idx = np.sort(rng.choice(len(archive), n_real, replace=False))
        real = sources.read_real_images(archive, idx)
        value = frechet_radiomics_distance(real, gen_images[: spec.num_gen], opts.frd_workers)
        return _Outcome({name: value}, None, n_real)
    if spec.family == "diversity":
        from mrisynth.metrics import diversity as dv

        div = dv.diversity_vs_archive(gen_images[: spec.num_gen], archive, seed=opts.seed)
        n_real = min(len(archive), dv.MAX_REAL)
        return _Outcome(dv.finite_results(name, div.results), None, n_real, verdicts=div.verdicts)
    return _memorisation(spec, archive, gen_stats, gen_images, seeds, pool, opts, generated.names)


def _detector_outcome(spec, results, ext, num_real, opts) -> _Outcome:
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
    return _Outcome(results, ext.record(), num_real, reference_exact=exact, caveats=caveats)


def _memorisation(spec, archive, gen_stats, gen_images, seeds, pool, opts, names) -> _Outcome:
    """The audit against the training archive and its held-out patients, if any."""
    n = spec.num_gen
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
        names[:n],  # `seed<N>` or the file names (--images)
        gen_feat,
        train_feat,
        seed=opts.seed,
        percentile=opts.copy_percentile,
    )
    picture = mem.side_by_side(gen_images[:n], train, audit.closest_pairs)
    res = mem.record_results(spec.name, audit.summary)
    verdicts = audit.summary["verdicts"]
    return _Outcome(res, detector, len(train), audit, picture, verdicts=verdicts)


def _faithfulness(spec, source, archive, pool, opts, device) -> _Outcome:
    """The faithfulness metric (metrics.faithfulness) of a generator source."""
    from mrisynth.metrics import faithfulness

    if not isinstance(source, sources.NetworkImages):
        raise ConfigError(f"{spec.name}: needs a generator (it asks for each class); a folder "
                          "of images does not say which class each was asked for")
    ext = pool.optional("inception")  # per-class FID when the detector is here
    res = faithfulness.evaluate(source.G, archive, spec.num_gen, device, opts.batch_size,
                                opts.first_seed, opts.seed, ext, prefix=spec.name)
    detector = ext.record() if ext is not None else None
    return _Outcome(res.results, detector, res.num_real, caveats=res.caveats)


def preflight(specs: list[MetricSpec], pool: _Extractors) -> None:
    """Fail before any generation: load every needed detector, check optional packages."""
    for spec in specs:
        if spec.detector:
            pool.get(spec.detector)
        if spec.family == "frd":
            from mrisynth.metrics.frd import import_frd

            import_frd()


def compute_metrics(
    source,
    archive: ImageArchive,
    specs: list[MetricSpec],
    device: str | torch.device = "cpu",
    opts: EvalOptions | None = None,
    on_done: Callable[[MetricSpec, _Outcome], None] | None = None,
) -> dict[str, _Outcome]:
    """Compute every spec for one generator or image source (`sources.NetworkImages`,
    `sources.FolderImages`); returns {canonical name: outcome}. `on_done` is called as soon
    as each metric is ready (records survive a run killed before the last one)."""
    opts = opts or EvalOptions()
    device = torch.device(device)
    if isinstance(source, torch.nn.Module):
        source = sources.NetworkImages(source, archive.labels, device, opts.first_seed)
    from_network = isinstance(source, sources.NetworkImages)
    pool = _Extractors(device, opts)
    preflight(specs, pool)
    # One generated stream per (count, noise mode). The reference draws fresh noise; the audit
    # uses constant noise so that `mrisynth generate --seeds S` reproduces a flagged image.
    groups: dict[tuple[int, str], list[MetricSpec]] = defaultdict(list)
    out: dict[str, _Outcome] = {}
    for spec in specs:
        if spec.family == "faithfulness":  # its own class-by-class generation
            out[spec.name] = _faithfulness(spec, source, archive, pool, opts, device)
            if on_done is not None:
                on_done(spec, out[spec.name])
            continue
        noise = "const" if spec.family == "memorisation" and from_network else "random"
        groups[(spec.num_gen, noise)].append(spec)
    for (num, noise), group in sorted(groups.items()):
        needs = _group_needs(group, pool)
        generated = _generate_group(source, num, noise, needs, pool, opts)
        for spec in group:
            out[spec.name] = _compute_one(spec, archive, generated, pool, opts, device)
            log.debug("%s: %s", spec.name, out[spec.name].results)  # callers print them
            for v in out[spec.name].verdicts:  # mode collapse, data-copying: say it loudly
                if v.get("level") == "warning":
                    verdict_log.warning("%s: %s. %s", spec.name, v["title"], v["text"])
            if on_done is not None:
                on_done(spec, out[spec.name])
    return out


def open_archive(data: str | os.PathLike | ImageArchive) -> ImageArchive:
    if isinstance(data, str | os.PathLike):
        from mrisynth.data.archive import ImageArchive

        return ImageArchive(data)
    return data


def evaluate_and_record(
    run_dir: str | os.PathLike | None,
    snapshot: str | os.PathLike,
    kimg: float,
    G: torch.nn.Module,
    data: str | os.PathLike | ImageArchive,
    metrics: list[str] | str,
    device: str | torch.device = "cpu",
    num_gen: int | None = None,
    opts: EvalOptions | None = None,
) -> dict[str, dict[str, float]]:
    """Compute `metrics` for one snapshot's G and append one line per metric to
    `run_dir/metric-<name>.jsonl` (plus `memorisation-<snapshot>.json/.png`); returns
    {name: results}. `data` is an ImageArchive or its path; `run_dir` None records nothing."""
    opts = opts or EvalOptions()
    archive = open_archive(data)
    specs = parse_metric_list(metrics, num_gen)
    snap = Path(snapshot).name
    on_done = None
    if run_dir is not None:  # records say which real images they were measured against
        on_done = recorder(Path(run_dir), snap, kimg, None, archive.content_hash())
    outcomes = compute_metrics(G, archive, specs, device, opts, on_done)
    return {name: o.results for name, o in outcomes.items()}


def recorder(
    folder: Path,
    snapshot: str,
    kimg: float | None,
    source: dict | None = None,
    data_sha256: str | None = None,
) -> Callable[[MetricSpec, _Outcome], None]:
    """`on_done` for compute_metrics: one `metric-<name>.jsonl` line (+ memorisation files)."""

    def record(spec: MetricSpec, o: _Outcome) -> None:
        line = records.make_record(
            spec.name,
            snapshot,
            kimg,
            o.results,
            spec.num_gen,
            o.num_real,
            o.detector,
            o.reference_exact,
            caveats=o.caveats,
            source=source,
            data_sha256=data_sha256,
        )
        if o.verdicts:
            line["verdicts"] = o.verdicts
        records.append_record(folder, line)
        if o.audit is not None:
            write_audit(folder, spec.name, snapshot, kimg, o)

    return record


def write_audit(folder: Path, name: str, snapshot: str, kimg: float | None, o: _Outcome) -> Path:
    """`memorisation-<snapshot stem>.json` + side-by-side `.png` next to it."""
    stem = mem.audit_stem(snapshot)
    ok, png = cv2.imencode(".png", o.picture)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    atomic.write_bytes(folder / f"{stem}.png", png.tobytes())
    summary = {
        "metric": name,
        "snapshot": snapshot,
        "kimg": None if kimg is None else rounded_kimg(kimg),
        **o.audit.summary,
        "picture": f"{stem}.png",
    }
    atomic.write_json(folder / f"{stem}.json", summary)
    return folder / f"{stem}.json"
