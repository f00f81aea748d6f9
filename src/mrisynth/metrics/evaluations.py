"""What `mrisynth metrics` evaluates: every snapshot of a run, or a folder/ZIP of images.

Snapshots: records go to the run folder, one line per (snapshot, metric); pairs already
recorded are skipped unless forced. Images (`--images`, from NVIDIA's tool, a diffusion model,
another group): the same metrics, records and memorisation files, written to an output folder
(default `<images>-metrics` beside them) with `snapshot` = the images' folder or ZIP name,
`kimg` null and `source: {"kind": "images", "sha256"}` (content hash of the images, so a
re-run over the same images skips what is recorded, and changed images are evaluated anew).

Images pass the training archive's checks (`ImageArchive`: PNG, 8-bit, 1 or 3 channels,
square power-of-two, all alike) and must match the training data's size and channels. All
images a metric will use are decoded before any work, so a bad file stops the run at once with
its name, never half-way; they are kept in memory when they fit, so each PNG is decoded once.
With fewer images than a metric asks for, the metric uses them all and its name says so
(`fid50k_full` on 3,000 images is recorded as `fid3k_full`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from mrisynth.errors import CheckpointError, ConfigError, InputError
from mrisynth.metrics import records, sources
from mrisynth.metrics.eval_options import EvalOptions, ExtractorPool
from mrisynth.metrics.registry import MetricSpec, parse_metric_list
from mrisynth.metrics.runner import (
    compute_metrics,
    evaluate_and_record,
    open_archive,
    preflight,
    recorder,
)

if TYPE_CHECKING:
    from mrisynth.data.archive import ImageArchive

log = logging.getLogger(__name__)

__all__ = ["ImagesEvaluation", "default_output_dir", "evaluate_images", "evaluate_snapshots"]


def _shared_extractors(specs, device, opts: EvalOptions | None) -> EvalOptions:
    """Load (and probe) every detector once before any work; share them across evaluations."""
    opts = opts or EvalOptions()
    pool = ExtractorPool(torch.device(device), opts)
    preflight(specs, pool)
    return replace(opts, extractors=pool.loaded)


def evaluate_snapshots(
    network: str | os.PathLike,
    data: str | os.PathLike | ImageArchive,
    metrics: list[str] | str,
    device: str | torch.device = "cpu",
    num_gen: int | None = None,
    opts: EvalOptions | None = None,
    force: bool = False,
) -> list[tuple[str, dict[str, dict[str, float]]]]:
    """Evaluate a snapshot file or every snapshot of a run folder, skipping (snapshot, metric)
    pairs already in the run's jsonl files unless `force`; returns [(snapshot, results)]."""
    from mrisynth.training.checkpoint import list_snapshots, load_generator, read_snapshot_info

    archive = open_archive(data)
    specs = parse_metric_list(metrics, num_gen)
    network = Path(network)
    paths = list_snapshots(network) if network.is_dir() else [network]
    if not paths:
        raise ConfigError(f"{network}: run folder has no snapshots to evaluate")
    opts = _shared_extractors(specs, device, opts)
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
            if force
            or path.name
            not in records.recorded_snapshots(info.run_dir, s.name, archive.content_hash())
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
        _check_shapes(G, archive, path)
        results = evaluate_and_record(
            info.run_dir, path, info.kimg, G, archive, todo, device, None, opts
        )
        done.append((path.name, results))
    return done


def _check_shapes(G, archive: ImageArchive, snapshot: Path) -> None:
    """Generated and real images of one size and channel count (a 16 px --data against a 32 px
    run gave numbers, recorded beside the run's real ones)."""
    shape = (int(G.img_channels), int(G.img_resolution), int(G.img_resolution))
    if tuple(archive.image_shape) != shape:
        c, r, _ = archive.image_shape
        raise InputError(
            f"{getattr(archive, 'path', '--data')}: images are {r}x{r} with {c} channel(s) but "
            f"{snapshot.name} generates {shape[1]}x{shape[1]} with {shape[0]}; pass the run's "
            "training archive with --data"
        )


def default_output_dir(images: str | os.PathLike) -> Path:
    """`gen/` or `gen.zip` -> `gen-metrics/` beside it."""
    path = Path(images).resolve()
    stem = path.name[: -len(".zip")] if path.name.lower().endswith(".zip") else path.name
    return path.with_name(f"{stem}-metrics")


def _check_output_dir(out_dir: Path, inputs: dict[str, Path]) -> None:
    """Outputs never land inside an input folder (images or training data: the audit's PNG
    would join them) and never on a file."""
    out = out_dir.resolve()
    for option, path in inputs.items():
        p = Path(path).resolve()
        if p.is_dir() and out.is_relative_to(p):
            raise ConfigError(
                f"-o {out_dir}: inside the {option} folder {path}; inputs are never modified, "
                "choose a folder outside it"
            )
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out_dir}: exists and is not a folder")


def open_images(images: str | os.PathLike, train: ImageArchive) -> ImageArchive:
    """The images as an ImageArchive, checked against the training data's size and channels.
    A `mrisynth generate` folder gives the images its manifest lists (not grid.png, masks)."""
    from mrisynth.data.archive import ImageArchive
    from mrisynth.generate.folder_files import listed_images
    from mrisynth.generate.output_folder import PLAN_NAME

    try:
        arch = ImageArchive(images, only=listed_images(images, "--images"))
        unfinished = arch.read_member(PLAN_NAME) is not None
    except InputError as e:
        raise InputError(f"--images: {e}") from None
    if unfinished:
        raise InputError(
            f"--images {images}: an unfinished `mrisynth generate` output ({PLAN_NAME} is "
            "there); re-run the same generate command to finish it first"
        )
    if sources.metric_shape(arch.image_shape) != sources.metric_shape(train.image_shape):
        c, r, _ = arch.image_shape
        tc, tr, _ = train.image_shape
        raise InputError(
            f"--images {images}: {r}x{r} with {c} channel(s), but the training data "
            f"{getattr(train, 'path', '--data')} is {tr}x{tr} with {tc}; convert the images "
            "to the training data's size and channels (or pass the matching --data)"
        )
    return arch


def fit_counts(specs: list[MetricSpec], available: int, images: str) -> list[MetricSpec]:
    """Cap each metric's image count at what there is; the name then says the real count."""
    if available < 2:
        raise InputError(f"--images {images}: {available} image(s); metrics need at least 2")
    fitted = []
    for spec in specs:
        if spec.num_gen > available:
            capped = replace(spec, num_gen=available, count_in_name=True)
            log.warning(
                "%s asks for %d images, %s has %d: recorded as %s",
                spec.name,
                spec.num_gen,
                images,
                available,
                capped.name,
            )
            spec = capped
        if spec.family in ("pr", "standin_pr") and spec.num_gen <= spec.k:
            raise InputError(f"--images {images}: {spec.name} needs more than k={spec.k} images")
        fitted.append(spec)
    names = [s.name for s in fitted]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"--metrics: with {available} images, several metrics become {', '.join(dupes)}; "
            "ask for each once"
        )
    return fitted


def _decode_used(arch: ImageArchive, count: int) -> np.ndarray | None:
    """Decode every image that will be used, so a bad file stops the run before any work.

    The decoded images (metric channel only) are kept when they fit in half the memory
    available now, so every metric's stream reads them from memory instead of decoding each
    PNG again; otherwise (say 50k images of 512 px on a small machine) None, and the streams
    decode from the files."""
    from mrisynth.data import archive as archive_mod

    shape = sources.metric_shape(arch.image_shape)
    free = archive_mod._available_memory()
    fits = free is None or count * int(np.prod(shape)) <= free // 2
    out = np.empty((count, *shape), dtype=np.uint8) if fits else None  # [N, C, H, W]
    for i in range(count):
        try:
            img = arch[i]
        except InputError as e:
            raise InputError(f"--images: {e}; remove or replace that file") from None
        if out is not None:
            out[i] = sources.metric_images(img[None])[0]
    if out is None:
        log.info("--images: %d images do not fit in memory; decoding them per metric", count)
    return out


@dataclass(frozen=True)
class ImagesEvaluation:
    snapshot: str  # the images' folder or ZIP name (the records' `snapshot`)
    out_dir: Path
    results: dict[str, dict[str, float]]  # {metric: {key: value}} computed now
    skipped: list[str]  # metrics already recorded for these exact images


def evaluate_images(
    images: str | os.PathLike,
    data: str | os.PathLike | ImageArchive,
    metrics: list[str] | str,
    out_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    num_gen: int | None = None,
    opts: EvalOptions | None = None,
    force: bool = False,
) -> ImagesEvaluation:
    """Evaluate a folder or ZIP of generated PNGs against training archive `data`."""
    images = Path(images)
    archive = open_archive(data)
    arch = open_images(images, archive)
    specs = fit_counts(parse_metric_list(metrics, num_gen), len(arch), str(images))
    out = Path(out_dir) if out_dir is not None else default_output_dir(images)
    if out_dir is None and out.is_symlink():  # not a folder the user named: maybe planted
        raise ConfigError(
            f"{out}: the default output folder beside --images is a symbolic link; pass -o "
            "with the folder to write to"
        )
    inputs = {"--images": images, "--data": Path(getattr(archive, "path", images))}
    _check_output_dir(out, inputs)
    snapshot = images.resolve().name
    source = {"kind": "images", "sha256": arch.content_hash()}
    data_sha256 = archive.content_hash()
    todo = [s for s in specs if force or not _recorded(out, s.name, snapshot, source, data_sha256)]
    skipped = [s.name for s in specs if s not in todo]
    if not todo:
        return ImagesEvaluation(snapshot, out, {}, skipped)
    decoded = _decode_used(arch, max(s.num_gen for s in todo))
    opts = _shared_extractors(todo, device, opts)
    out.mkdir(parents=True, exist_ok=True)
    outcomes = compute_metrics(
        sources.FolderImages(arch, decoded),
        archive,
        todo,
        device,
        opts,
        recorder(out, snapshot, None, source, data_sha256),
    )
    return ImagesEvaluation(
        snapshot, out, {name: o.results for name, o in outcomes.items()}, skipped
    )


def _recorded(folder: Path, name: str, snapshot: str, source: dict, data_sha256: str) -> bool:
    """A record of `name` for these exact images (same folder name and content hash) against
    the same real images (records from before data hashes count as a match)."""
    for r in records.read_records(records.metric_file(folder, name)):
        src = r.get("source")
        same_images = isinstance(src, dict) and src.get("sha256") == source["sha256"]
        if r["snapshot"] == snapshot and same_images and records.same_data(r, data_sha256):
            return True
    return False
