"""Evaluating snapshots: metric names -> computations, records in the run folder.

One pass of generated images per image count feeds every requested metric (detector features,
pixel statistics, kept images for FRD and the memorisation audit); real-image features come
from the on-disk cache. The training loop calls `check_metric_names` before any work and
`evaluate_and_record` at every snapshot (Karras et al. 2020's cadence); `mrisynth metrics`
uses `evaluate_snapshots` over a run folder, skipping snapshots already recorded.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from mrisynth import atomic
from mrisynth.errors import CheckpointError, ConfigError, MissingDependencyError
from mrisynth.metrics import memorisation as mem
from mrisynth.metrics import records, registry, sources
from mrisynth.metrics.extractor import FeatureExtractor, load_detector, standin_detector
from mrisynth.metrics.feature_stats import FeatureStats
from mrisynth.metrics.fid import fid_from_stats
from mrisynth.metrics.kid import kernel_inception_distance
from mrisynth.metrics.precision_recall import precision_recall_density_coverage
from mrisynth.metrics.registry import MetricSpec, parse_metric_list
from mrisynth.metrics.weightfree import BodyArea, IntensityHistogram

__all__ = ["EvalOptions", "check_metric_names", "evaluate_and_record", "evaluate_snapshots"]

log = logging.getLogger(__name__)


def check_metric_names(
    names: list[str], detector_dir: str | os.PathLike | None = None, requirements: bool = True
) -> None:
    """Raise ConfigError for unknown names and, with `requirements`, MissingDependencyError
    for a detector file or optional package that is absent, so that training stops before
    its first step rather than at its first snapshot. Loads nothing."""
    from mrisynth.metrics.detectors import locate_detector

    registry.check_metric_names(names)
    if not requirements:
        return
    for spec in parse_metric_list(names):
        if spec.detector and spec.reference_exact:
            locate_detector(spec.detector, detector_dir)
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
                self.loaded[key] = load_detector(key, self.device, self.opts.detector_dir)
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
    verdicts: list[dict] = field(default_factory=list)  # issue-10 contract: topic, level, ...


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
        "keep": any(s.family in ("frd", "memorisation", "diversity") for s in specs),
    }


def _generate_group(G, archive, num, noise_mode, needs, pool, device, opts):
    """Stream `num` generated images once into every accumulator the group needs."""
    gen_stats = {
        k: FeatureStats(keep_features=k in needs["keep_features"]) for k in needs["detectors"]
    }
    hist, area = IntensityHistogram(), BodyArea()
    kept, seeds = [], []
    labels = archive.labels if int(getattr(G, "c_dim", 0)) > 0 else None
    for batch_seeds, imgs in sources.generate_batches(
        G, num, device, opts.batch_size, opts.first_seed, labels, noise_mode
    ):
        for key, stats in gen_stats.items():
            stats.update(pool.get(key)(imgs))
        arr = imgs.numpy()
        if needs["hist"]:
            hist.update(arr, real=False)
        if needs["area"]:
            area.update(arr, real=False)
        if needs["keep"]:
            kept.append(arr)
            seeds += batch_seeds
    gen_images = np.concatenate(kept) if kept else None
    return gen_stats, hist, area, gen_images, seeds


def _compute_one(spec, archive, gen_stats, hist, area, gen_images, seeds, pool, opts, device):
    """Results of one metric from the group's generated data and the real side."""
    name = spec.name
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
        return _Outcome(res, ext.record(), real.num_items)
    if spec.family in ("intensity_hist", "body_area"):
        acc = hist if spec.family == "intensity_hist" else area
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
    return _memorisation(spec, archive, gen_stats, gen_images, seeds, pool, opts, None)


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
        None if names is None else names[:n],  # `seed<N>` or the file names (--images)
        gen_feat,
        train_feat,
        seed=opts.seed,
        percentile=opts.copy_percentile,
    )
    picture = mem.side_by_side(gen_images[:n], train, audit.closest_pairs)
    res = mem.record_results(spec.name, audit.summary)
    verdicts = audit.summary["verdicts"]
    return _Outcome(res, detector, len(train), audit, picture, verdicts=verdicts)


def preflight(specs: list[MetricSpec], pool: _Extractors) -> None:
    """Fail before any generation: load every needed detector, check optional packages."""
    for spec in specs:
        if spec.detector:
            pool.get(spec.detector)
        if spec.family == "frd":
            from mrisynth.metrics.frd import import_frd

            import_frd()


def compute_metrics(
    G: torch.nn.Module,
    archive,
    specs: list[MetricSpec],
    device: str | torch.device = "cpu",
    opts: EvalOptions | None = None,
) -> dict[str, _Outcome]:
    """Compute every spec for one generator; returns {canonical name: outcome}."""
    opts = opts or EvalOptions()
    device = torch.device(device)
    pool = _Extractors(device, opts)
    preflight(specs, pool)
    # One generated stream per (count, noise mode). The reference draws fresh noise; the audit
    # uses constant noise so that `mrisynth generate --seeds S` reproduces a flagged image.
    groups: dict[tuple[int, str], list[MetricSpec]] = defaultdict(list)
    for spec in specs:
        noise = "const" if spec.family == "memorisation" else "random"
        groups[(spec.num_gen, noise)].append(spec)
    out: dict[str, _Outcome] = {}
    for (num, noise), group in sorted(groups.items()):
        needs = _group_needs(group, pool)
        generated = _generate_group(G, archive, num, noise, needs, pool, device, opts)
        for spec in group:
            out[spec.name] = _compute_one(spec, archive, *generated, pool, opts, device)
            log.info("%s: %s", spec.name, out[spec.name].results)
            for v in out[spec.name].verdicts:  # mode collapse, data-copying: say it loudly
                if v.get("level") == "warning":
                    log.warning("%s: %s. %s", spec.name, v["title"], v["text"])
    return out


def _open_archive(data):
    if isinstance(data, str | os.PathLike):
        from mrisynth.data.archive import ImageArchive

        return ImageArchive(data)
    return data


def evaluate_and_record(
    run_dir: str | os.PathLike | None,
    snapshot: str | os.PathLike,
    kimg: int,
    G: torch.nn.Module,
    data,
    metrics: list[str] | str,
    device: str | torch.device = "cpu",
    num_gen: int | None = None,
    opts: EvalOptions | None = None,
) -> dict[str, dict[str, float]]:
    """Compute `metrics` for one snapshot's G and append one line per metric to
    `run_dir/metric-<name>.jsonl` (plus `memorisation-<snapshot>.json/.png`); returns
    {name: results}. `data` is an ImageArchive or its path; `run_dir` None records nothing."""
    opts = opts or EvalOptions()
    archive = _open_archive(data)
    specs = parse_metric_list(metrics, num_gen)
    outcomes = compute_metrics(G, archive, specs, device, opts)
    snap_name = Path(snapshot).name
    for spec in specs:
        o = outcomes[spec.name]
        if run_dir is None:
            continue
        line = records.make_record(
            spec.name,
            snap_name,
            kimg,
            o.results,
            spec.num_gen,
            o.num_real,
            o.detector,
            spec.reference_exact and (spec.family != "pr" or opts.pr_fp16),
        )
        if o.verdicts:
            line["verdicts"] = o.verdicts
        records.append_record(run_dir, line)
        if o.audit is not None:
            write_audit(Path(run_dir), spec.name, snap_name, kimg, o)
    return {name: o.results for name, o in outcomes.items()}


def write_audit(folder: Path, name: str, snapshot: str, kimg: int, o: _Outcome) -> Path:
    """`memorisation-<snapshot stem>.json` + side-by-side `.png` next to it."""
    stem = f"memorisation-{Path(snapshot).name.split('.')[0]}"
    ok, png = cv2.imencode(".png", o.picture)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    atomic.write_bytes(folder / f"{stem}.png", png.tobytes())
    summary = {
        "metric": name,
        "snapshot": snapshot,
        "kimg": int(kimg),
        **o.audit.summary,
        "picture": f"{stem}.png",
    }
    atomic.write_json(folder / f"{stem}.json", summary)
    return folder / f"{stem}.json"


def evaluate_snapshots(
    network: str | os.PathLike,
    data,
    metrics: list[str] | str,
    device: str | torch.device = "cpu",
    num_gen: int | None = None,
    opts: EvalOptions | None = None,
    force: bool = False,
) -> list[tuple[str, dict[str, dict[str, float]]]]:
    """Evaluate a snapshot file or every snapshot of a run folder, skipping (snapshot, metric)
    pairs already in the run's jsonl files unless `force`; returns [(snapshot, results)]."""
    from mrisynth.training.checkpoint import list_snapshots, load_generator, read_snapshot_info

    archive = _open_archive(data)
    specs = parse_metric_list(metrics, num_gen)
    network = Path(network)
    paths = list_snapshots(network) if network.is_dir() else [network]
    if not paths:
        raise ConfigError(f"{network}: run folder has no snapshots to evaluate")
    opts = opts or EvalOptions()
    pool = _Extractors(torch.device(device), opts)
    preflight(specs, pool)
    opts = replace(opts, extractors=pool.loaded)  # loaded once, shared by every snapshot
    done = []
    for path in paths:
        G = None
        try:
            info = read_snapshot_info(path)
        except CheckpointError:
            if network.is_dir():
                raise
            G, info = load_generator(path, device=device)  # a plain `save_network` file
        todo = [
            s.name
            for s in specs
            if force or path.name not in records.recorded_snapshots(info.run_dir, s.name)
        ]
        if not todo:
            log.info("%s: all metrics already recorded; skipped", path.name)
            continue
        if info.dataset_hash and info.dataset_hash != archive.content_hash():
            log.warning(
                "%s was trained on another dataset (hash %s...) than %s",
                path.name,
                info.dataset_hash[:12],
                getattr(archive, "path", "--data"),
            )
        if G is None:
            G, _ = load_generator(path, device=device)
        results = evaluate_and_record(
            info.run_dir, path, info.kimg, G, archive, todo, device, None, opts
        )
        done.append((path.name, results))
    return done
