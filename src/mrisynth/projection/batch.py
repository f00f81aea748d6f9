"""`mrisynth project` as a library call: many targets, resumable, bad images skipped.

OUTDIR holds `.mrisynth-projection` (the settings; a later run with other settings is refused),
one folder per target (`outputs.py`) under `targets/`, or under `train/` and `holdout/` when
comparing, then `projection.csv` / `projection.json` (every target's errors, the skipped ones
with the reason, the comparison) and, when comparing, `comparison.png`. A killed run is resumed
by the same command: targets with a matching `summary.json` are not projected again.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mrisynth import atomic, untrusted
from mrisynth.errors import ConfigError, InputError, MrisynthError
from mrisynth.projection import outputs
from mrisynth.projection.compare import compare_errors, comparison_png
from mrisynth.projection.losses import VGG_MAX_SIDE, LossWeights
from mrisynth.projection.projector import ProjectionOptions, latent_stats, project
from mrisynth.projection.targets import MAX_TARGETS, Target, iter_targets, open_sources

log = logging.getLogger(__name__)

MARKER = ".mrisynth-projection"
LOSS_MODES = ("auto", "pixel", "vgg")
COMPARE_METRIC = "rmse"


@dataclass(frozen=True)
class ProjectJob:
    """Everything `mrisynth project` was asked to do."""

    network: str | Path
    outdir: Path
    targets: tuple[Path, ...]
    holdout: tuple[Path, ...] = ()  # non-empty: compare training (targets) with these
    compare: bool = False  # compare with the holdout found beside the training archive
    num: int | None = None  # at most this many images per source, spread evenly
    options: ProjectionOptions = field(default_factory=ProjectionOptions)
    loss: str = "auto"  # auto: VGG16 features if the detector file is present, else pixel
    class_idx: int | None = None
    device: str = "auto"
    detector_dir: str | None = None


def groups_of(job: ProjectJob) -> dict[str, tuple[Path, ...]]:
    """Sources by group: `targets`, or `train` + `holdout` when comparing."""
    if not job.holdout and not job.compare:
        return {"targets": job.targets}
    holdout = job.holdout
    if not holdout:
        from mrisynth.data.holdout import find_holdout, holdout_path

        if len(job.targets) != 1:
            raise ConfigError("--compare finds the holdout of ONE training archive; give one "
                              "--target, or name the held-out images with --holdout")  # fmt: skip
        held = find_holdout(job.targets[0])
        if held is None:
            raise ConfigError(f"--compare: no held-out archive {holdout_path(job.targets[0])} "
                              "beside the target; pass --holdout PATH")  # fmt: skip
        holdout = (held.path,)
    return {"train": job.targets, "holdout": holdout}


def check_outdir(outdir: Path, sources: list[Path]) -> None:
    """OUTDIR must be new, empty or an earlier projection's, and outside every source folder
    (its PNGs would become targets of the next run)."""
    if outdir.exists() and not outdir.is_dir():
        raise ConfigError(f"--outdir {outdir}: exists and is not a folder")
    for src in sources:
        if src.is_dir() and outdir.resolve().is_relative_to(src.resolve()):
            raise ConfigError(f"--outdir {outdir} lies inside the target folder {src}; "
                              "choose a folder outside it")  # fmt: skip
    if outdir.is_dir() and any(outdir.iterdir()) and not (outdir / MARKER).is_file():
        raise ConfigError(f"--outdir {outdir}: not empty and not an earlier projection; "
                          "choose a new or empty folder")  # fmt: skip


def claim_outdir(outdir: Path, settings: dict[str, Any]) -> None:
    """Write the settings marker, or check it: a resumed run must use the same settings."""
    path = outdir / MARKER
    if path.is_file():
        try:
            old = untrusted.loads(path.read_text(encoding="utf-8"), str(path))
        except (OSError, ValueError, untrusted.BadValue) as e:
            raise InputError(f"{path}: unreadable ({e}); use a new --outdir") from None
        if not isinstance(old, dict) or old.get("settings_hash") != settings["settings_hash"]:
            raise ConfigError(f"--outdir {outdir} holds a projection with other settings "
                              "(network, steps, loss, ...); use a new --outdir")  # fmt: skip
        return
    atomic.write_json(path, settings)


def loss_setup(job: ProjectJob, device: torch.device, resolution: int):
    """(LossWeights, VGG16 module or None, its sha256 or None) for the chosen --loss."""
    from mrisynth.metrics import detectors

    if job.loss not in LOSS_MODES:
        raise ConfigError(f"--loss must be one of {', '.join(LOSS_MODES)}, got {job.loss!r}")
    found = detectors.find_detector("vgg16", job.detector_dir)
    if job.loss == "pixel" or (job.loss == "auto" and found is None):
        return job.options.weights, None, None
    from mrisynth.metrics.extractor import load_detector_file

    path = detectors.locate_detector("vgg16", job.detector_dir)  # one Error line if absent
    extractor = load_detector_file(path, "vgg16", device)
    probe_lpips(extractor.net, path, device, min(resolution, VGG_MAX_SIDE))
    return LossWeights(pixel=0.0, msssim=0.0, vgg=1.0), extractor.net, extractor.sha256


def probe_lpips(net: torch.nn.Module, path: Path, device: torch.device, size: int) -> None:
    """The VGG16 file must answer NVIDIA's projector call, at the targets' size, with finite
    features (before any target is projected)."""
    x = torch.full((1, 3, size, size), 128.0, device=device)
    try:
        out = net(x, resize_images=False, return_lpips=True)
        ok = isinstance(out, torch.Tensor) and out.ndim == 2 and bool(torch.isfinite(out).all())
    except Exception as e:  # any failure of a foreign module's call is "wrong interface"
        raise InputError(f"{path}: does not answer vgg(x, resize_images=False, return_lpips="
                         f"True) ({type(e).__name__}); re-fetch it or use --loss pixel") from e
    if not ok:
        raise InputError(f"{path}: its LPIPS features are not a finite [N, D] tensor; "
                         "re-fetch it or use --loss pixel")  # fmt: skip


def run_projection(job: ProjectJob, progress: bool = True) -> dict[str, Any]:
    """Project every target (skipping bad ones and those already done) and write the record."""
    from tqdm import tqdm

    from mrisynth.devices import resolve_device
    from mrisynth.generate.sampling import SamplingOptions
    from mrisynth.hashing import sha256_file
    from mrisynth.training.checkpoint import load_generator

    job.options.check()
    if job.num is not None and not 1 <= job.num <= MAX_TARGETS:
        raise ConfigError(f"--num must be in 1..{MAX_TARGETS}, got {job.num}")
    groups = groups_of(job)
    sources = {g: open_sources(paths) for g, paths in groups.items()}  # fail early on typos
    check_outdir(job.outdir, [p for paths in groups.values() for p in paths])
    device = resolve_device(job.device)
    G, info = load_generator(job.network, device=str(device))
    SamplingOptions(class_idx=job.class_idx).check(int(G.c_dim))
    weights, vgg, vgg_sha = loss_setup(job, device, int(G.img_resolution))
    options = dataclasses.replace(job.options, weights=weights)
    settings = settings_record(job, options, sha256_file(info.path), Path(info.path).name, vgg_sha)
    stats = latent_stats(G, options.w_avg_samples, job.class_idx, device)
    claim_outdir(job.outdir, settings)  # the first write: everything before can refuse
    shape = (int(G.img_channels), int(G.img_resolution), int(G.img_resolution))

    rows, skipped = [], []
    total = sum(len(s) if job.num is None else min(len(s), job.num)
                for srcs in sources.values() for s in srcs)  # fmt: skip
    with tqdm(total=total, desc="project", unit="img", disable=not progress) as bar:
        for group, srcs in sources.items():
            for target in iter_targets(srcs, shape, job.num):
                row = _one_target(G, target, group, job.outdir, stats, options, vgg, settings)
                (rows if "errors" in row else skipped).append(row)
                bar.update(1)
    record = {**settings, "targets": rows, "skipped": skipped}
    if len(groups) == 2:
        record["comparison"] = _comparison(rows)
    write_record(job.outdir, record)
    return record


def settings_record(job: ProjectJob, options: ProjectionOptions, snapshot_sha: str,
                    snapshot_name: str, vgg_sha: str | None) -> dict[str, Any]:  # fmt: skip
    settings = {
        "network": str(job.network), "snapshot": snapshot_name, "snapshot_sha256": snapshot_sha,
        "options": dataclasses.asdict(options), "loss": "vgg" if vgg_sha else "pixel",
        "vgg16_sha256": vgg_sha, "class_idx": job.class_idx,
    }  # fmt: skip
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    return {**settings, "settings_hash": digest}


def _one_target(G, target: Target, group: str, outdir: Path, stats, options, vgg,
                settings: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Project one target (or take its earlier result); a row with `errors`, or with `problem`."""
    base = {"group": group, "target": target.name, "key": target.key}
    if target.image is None:
        log.warning("skipped %s: %s", target.name, target.problem)
        return {**base, "problem": target.problem}
    folder = outdir / group / target.key
    sha = target.sha256
    done = outputs.read_summary(folder)
    if done and done.get("target_sha256") == sha and done.get("settings_hash") == \
            settings["settings_hash"] and isinstance(done.get("errors"), dict):  # fmt: skip
        return {**base, "errors": done["errors"], "resumed": True}
    start = time.monotonic()
    try:
        result = project(G, torch.from_numpy(target.image), stats, options, vgg)
    except MrisynthError as e:  # e.g. the loss went non-finite: skip, report, go on
        log.warning("skipped %s: %s", target.name, e)
        return {**base, "problem": str(e)}
    summary = {**base, "target_sha256": sha, "settings_hash": settings["settings_hash"],
               "steps": options.num_steps, "seconds": round(time.monotonic() - start, 3)}
    meta = {"snapshot": settings["snapshot"], "snapshot_sha256": settings["snapshot_sha256"],
            "target_sha256": sha, "steps": options.num_steps, "loss": settings["loss"]}
    summary = outputs.write_target(folder, result, target.image, summary, meta)
    return {**base, "errors": summary["errors"]}


def _comparison(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    by_group = {g: [r["errors"][COMPARE_METRIC] for r in rows if r["group"] == g]
                for g in ("train", "holdout")}  # fmt: skip
    if not by_group["train"] or not by_group["holdout"]:
        return None
    return compare_errors(by_group["train"], by_group["holdout"], COMPARE_METRIC)


def write_record(outdir: Path, record: dict[str, Any]) -> None:
    """projection.csv (one row per target, skipped ones with their reason), projection.json
    and, when comparing, comparison.png."""
    out = io.StringIO()
    cols = ["group", "target", "key", "mse", "rmse", "psnr_db", "msssim", "problem"]
    writer = csv.DictWriter(out, cols, lineterminator="\n")
    writer.writeheader()
    for row in record["targets"] + record["skipped"]:
        writer.writerow({**{k: row.get(k, "") for k in ("group", "target", "key", "problem")},
                         **row.get("errors", {})})  # fmt: skip
    atomic.write_text(outdir / "projection.csv", out.getvalue())
    atomic.write_json(outdir / "projection.json", record)
    if record.get("comparison"):
        rows = record["targets"]
        train = [r["errors"][COMPARE_METRIC] for r in rows if r["group"] == "train"]
        held = [r["errors"][COMPARE_METRIC] for r in rows if r["group"] == "holdout"]
        atomic.write_bytes(outdir / "comparison.png", comparison_png(train, held, COMPARE_METRIC))
