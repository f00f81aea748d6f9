"""Evaluating snapshots: metric names -> computations, records in the run folder.

One pass of generated images per image count feeds every requested metric (detector features,
pixel statistics, kept images for FRD and the memorisation audit); real-image features come
from the on-disk cache. How to evaluate is `metrics.eval_options`; each metric's result from a
stream is `metrics.outcomes`. The training loop calls `check_metric_names` before any work and
`evaluate_and_record` at every snapshot (Karras et al. 2020's cadence); `mrisynth metrics`
goes through `metrics.evaluations` (every snapshot of a run, or a folder of images).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from mrisynth import atomic
from mrisynth.metrics import memorisation as mem
from mrisynth.metrics import outcomes, records, registry, sources
from mrisynth.metrics.eval_options import EvalOptions, ExtractorPool
from mrisynth.metrics.extractor import load_detector
from mrisynth.metrics.feature_stats import FeatureStats
from mrisynth.metrics.outcomes import Generated, Outcome
from mrisynth.metrics.pixfd import PixelFeatures
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


_FEATURE_FAMILIES = ("kid", "pr", "standin_kd", "standin_pr")


def _group_needs(specs: list[MetricSpec], pool: ExtractorPool) -> dict:
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


def _generate_group(source, num, noise_mode, needs, pool, opts) -> Generated:
    """Stream `num` generated images once into every accumulator the group needs."""
    gen_stats = {
        k: FeatureStats(keep_features=k in needs["keep_features"]) for k in needs["detectors"]
    }
    out = Generated(gen_stats, IntensityHistogram(), BodyArea(), PixelFeatures(), None, [], [])
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


def preflight(specs: list[MetricSpec], pool: ExtractorPool) -> None:
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
    on_done: Callable[[MetricSpec, Outcome], None] | None = None,
) -> dict[str, Outcome]:
    """Compute every spec for one generator or image source (`sources.NetworkImages`,
    `sources.FolderImages`); returns {canonical name: outcome}. `on_done` is called as soon
    as each metric is ready (records survive a run killed before the last one)."""
    opts = opts or EvalOptions()
    device = torch.device(device)
    if isinstance(source, torch.nn.Module):
        source = sources.NetworkImages(source, archive.labels, device, opts.first_seed)
    from_network = isinstance(source, sources.NetworkImages)
    pool = ExtractorPool(device, opts)
    preflight(specs, pool)
    # One generated stream per (count, noise mode). The reference draws fresh noise; the audit
    # uses constant noise so that `mrisynth generate --seeds S` reproduces a flagged image.
    groups: dict[tuple[int, str], list[MetricSpec]] = defaultdict(list)
    out: dict[str, Outcome] = {}
    for spec in specs:
        if spec.family == "faithfulness":  # its own class-by-class generation
            out[spec.name] = outcomes.faithfulness_outcome(
                spec, source, archive, pool, opts, device
            )
            if on_done is not None:
                on_done(spec, out[spec.name])
            continue
        noise = "const" if spec.family == "memorisation" and from_network else "random"
        groups[(spec.num_gen, noise)].append(spec)
    for (num, noise), group in sorted(groups.items()):
        needs = _group_needs(group, pool)
        generated = _generate_group(source, num, noise, needs, pool, opts)
        for spec in group:
            out[spec.name] = outcomes.compute_one(
                spec, archive, generated, pool, opts, device
            )
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
    if any(spec.family == "faithfulness" for spec in specs):  # classes asked for by index
        from mrisynth.metrics.faithfulness import check_generator_classes

        check_generator_classes(snapshot, archive)
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
) -> Callable[[MetricSpec, Outcome], None]:
    """`on_done` for compute_metrics: one `metric-<name>.jsonl` line (+ memorisation files)."""

    def record(spec: MetricSpec, o: Outcome) -> None:
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


def write_audit(folder: Path, name: str, snapshot: str, kimg: float | None, o: Outcome) -> Path:
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
