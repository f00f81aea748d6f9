"""What a training run resolves before any training work: the archive (every image decoded),
the resume snapshot and whether it is a full resume, the resolved options, G and D with the
snapshot's weights. `mrisynth train --dry-run` shows exactly this (`describe`), and `check` is
the cheap part that a `--gpus N` launcher runs before starting processes.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from mrisynth.data.archive import ImageArchive
from mrisynth.errors import CheckpointError, ConfigError
from mrisynth.networks import build_discriminator, build_generator
from mrisynth.training import build, checkpoint, transfer
from mrisynth.training.options import (
    ResolvedOptions,
    TrainOptions,
    merge_resume_options,
    resolve_for_archive,
)
from mrisynth.training.snapshot_schema import check_resumable

__all__ = ["Setup", "check", "check_run_inputs", "describe", "prepare"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Setup:
    """What `prepare` resolves before any training work (also what --dry-run shows)."""

    options: ResolvedOptions
    archive: ImageArchive
    G: torch.nn.Module
    D: torch.nn.Module
    resume: checkpoint.Snapshot | None
    full_resume: bool


def prepare(opts: TrainOptions) -> Setup:
    """Read the archive and any resume snapshot, resolve options, build G and D (on CPU).

    Every user error (missing archive, resolution mismatch, bad batch) surfaces here, before
    training starts.
    """
    archive = ImageArchive(opts.data)
    archive.validate()  # decode every image now rather than fail hours into training
    snap = checkpoint.load_snapshot(opts.resume) if opts.resume else None
    full = False
    if snap is not None:
        snap = transfer.adapt_channels(snap, archive.num_channels, opts.resume_channels,
                                       full=opts.resume_mode == "full")
        g_cfg = snap.configs.get("G", {})
        if g_cfg.get("img_resolution") != archive.resolution:
            raise CheckpointError(transfer.resolution_mismatch(snap, opts.data, archive.resolution))
        if g_cfg.get("img_channels") != archive.num_channels:
            raise CheckpointError(
                f"{snap.info.path}: trained on {g_cfg.get('img_channels')}-channel images, "
                f"{opts.data} has {archive.num_channels}; --resume-channels average adapts "
                "its first and last layers"
            )
        same_data = snap.info.dataset_hash == archive.content_hash()
        has_state = "options" in snap.state and "nimg" in snap.state
        full = opts.resume_mode == "full" or (opts.resume_mode == "auto" and same_data)
        if full and not has_state:
            raise CheckpointError(
                f"{snap.info.path}: holds no training state; --resume-mode weights"
            )
        if full and not same_data:
            log.warning("full resume on a different dataset than %s was trained on", snap.info.path)
        if full:
            check_resumable(snap)
            opts = merge_resume_options(snap.state["options"], opts)
    # ADA restarts slower (100 kimg) only when p is not restored, as the original did.
    resolved = resolve_for_archive(opts, archive, resuming=snap is not None and not full)
    check_run_inputs(resolved.user, full)
    if snap is not None and not full:  # a new run from its weights: its architecture
        G_cfg, D_cfg = transfer.weights_configs(snap, resolved)
    else:
        G_cfg, D_cfg = build.network_configs(resolved, snap if full else None)
    torch.manual_seed(resolved.user.seed)  # identical initial weights on every rank
    G, D = build_generator(G_cfg), build_discriminator(D_cfg)
    if snap is not None:
        transfer.load_weights(G, D, snap, full)
    return Setup(resolved, archive, G, D, snap, full)


def check(opts: TrainOptions) -> ResolvedOptions:
    """Cheap pre-flight check (archive readable, options consistent) for `--gpus N` launches."""
    archive = ImageArchive(opts.data)
    try:
        resolved = resolve_for_archive(opts, archive, resuming=False)
    finally:
        archive.close()
    check_run_inputs(resolved.user, full_resume=opts.resume is not None)  # ranks know exactly
    return resolved


def check_run_inputs(opts: TrainOptions, full_resume: bool) -> None:
    """What a run needs beyond consistent options: where to write, and metrics that can run.

    Part of `prepare`, so that `--dry-run` refuses exactly what a real run refuses.
    """
    if not opts.outdir and not full_resume:
        why = (
            f" (--resume {opts.resume} starts a new run from its weights here: its data or "
            "--resume-mode differs)"
            if opts.resume
            else ""
        )
        raise ConfigError(f"--outdir is required{why}; give the folder for run folders")
    if opts.outdir and not full_resume:
        from mrisynth.training.run_files import check_outdir_kind

        check_outdir_kind(Path(opts.outdir))  # what opening the run folder would refuse
    if opts.metrics:
        from mrisynth.metrics.runner import check_metric_names

        check_metric_names(list(opts.metrics))


def describe(opts: TrainOptions) -> dict[str, Any]:
    """The resolved options and parameter counts, for `--dry-run`."""
    s = prepare(opts)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {
        "options": s.options.to_dict(),
        "G_config": s.G.config.to_dict(),
        "num_params": {"G": count(s.G), "D": count(s.D)},
        "resume": None if s.resume is None else str(s.resume.info.path),
        "resume_mode": None if s.resume is None else ("full" if s.full_resume else "weights"),
    }
