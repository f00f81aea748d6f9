"""Helpers of the training loop: networks and optimisers from options, EMA, and the exact-resume
state (kimg, tick, data position, p, ADA sums, pl_mean, optimisers, RNG) saved in snapshots.

Lazy regularisation and its Adam correction follow Karras et al. 2020 (arXiv 1912.04958, App. C).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import resource
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrisynth import atomic
from mrisynth import untrusted as u
from mrisynth.errors import CheckpointError, ConfigError, MrisynthError
from mrisynth.networks import NetworkConfig, network_config_from_preset
from mrisynth.training import checkpoint, run_files
from mrisynth.training.options import (
    ResolvedOptions,
    TrainOptions,
    resolve_options,
    run_description,
)
from mrisynth.training.run_lock import RunLock, create_numbered_run
from mrisynth.training.snapshot_schema import check_resume_state

log = logging.getLogger(__name__)

# A full resume keeps the run's options, except these: always the new invocation's ...
RESUME_PER_INVOCATION = (
    "data", "outdir", "resume", "resume_mode", "stop_after_kimg", "workers", "device",
    "cpu_threads", "modconv", "compile",
)  # fmt: skip
# ... and these, when the new command line sets them (differ from the default).
RESUME_OVERRIDABLE = (
    "kimg", "tick", "snap", "metrics", "precision", "max_bad_steps", "min_free_gb", "ada_kimg",
    "p_max", "desc",
)  # fmt: skip


class TrainingDiverged(MrisynthError):
    """Too many consecutive steps with non-finite losses; the last good snapshot is kept."""


@dataclasses.dataclass
class LoopState:
    """Counters of the loop; with the snapshot's tensors, all a resumed run needs."""

    nimg: int = 0  # real images shown so far (all processes)
    step: int = 0  # optimisation steps done
    tick: int = 0  # index of the tick in progress
    data_batches: int = 0  # global micro-batches consumed from the sampler
    bad_steps: int = 0  # consecutive steps with non-finite losses


# ---- Options and networks -----------------------------------------------------------------------


def set_cpu_threads(requested: int | None) -> int:
    """Threads for CPU training. OpenMP threads spin-wait, so more threads than free cores
    (other processes, data workers) slow training down many times; default to half the cores
    unless OMP_NUM_THREADS says otherwise."""
    if requested is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        requested = int(env) if env.isdigit() else max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(max(1, requested))
    return torch.get_num_threads()


def merge_resume_options(saved: dict[str, Any], new: TrainOptions) -> TrainOptions:
    """The resumed run's options: the original run's, except what the user changed and may."""
    defaults = TrainOptions(data="")
    fields = {f.name for f in dataclasses.fields(TrainOptions)}
    merged = {k: v for k, v in saved.items() if k in fields}
    merged["metrics"] = tuple(merged.get("metrics", ()))
    for name in RESUME_PER_INVOCATION:
        merged[name] = getattr(new, name)
    for name in RESUME_OVERRIDABLE:
        value = getattr(new, name)
        if value != getattr(defaults, name) or name not in merged:
            merged[name] = value
    merged["gpus"] = new.gpus
    return TrainOptions(**merged)


def resolve_for_archive(opts: TrainOptions, archive, resuming: bool) -> ResolvedOptions:
    return resolve_options(
        opts,
        resolution=archive.resolution,
        img_channels=archive.num_channels,
        label_dim=archive.label_dim,
        num_images=len(archive),
        dataset_hash=archive.content_hash(),
        resuming=resuming,
    )


def network_configs(
    r: ResolvedOptions, snap: checkpoint.Snapshot | None
) -> tuple[NetworkConfig, NetworkConfig]:
    """G and D configs: the snapshot's on a full resume, else from the resolved preset."""
    mixed = "off" if r.precision == "fp32" else r.precision
    if snap is not None:
        g = NetworkConfig.from_dict(snap.configs["G"]).replace(mixed_precision=mixed)
        d = NetworkConfig.from_dict(snap.configs.get("D", snap.configs["G"]))
        return g, d.replace(mixed_precision=mixed)
    cfg = network_config_from_preset(r.preset, r.img_channels, r.c_dim, mixed_precision=mixed)
    return cfg, cfg


def build_augment(r: ResolvedOptions, num_channels: int, device: torch.device):
    """(AugmentPipe or None, AdaController or None) for --aug ada|fixed|noaug."""
    if r.aug == "noaug":
        return None, None
    from mrisynth.training.augment import AdaController, AugmentPipe

    pipe = AugmentPipe(preset=r.user.augpipe, num_channels=num_channels, p=r.p_init).to(device)
    pipe.requires_grad_(False)
    if r.aug == "fixed":
        return pipe, None
    ada = AdaController(target=r.user.target, interval=4, speed_kimg=r.ada_kimg, p_max=r.user.p_max)
    return pipe, ada


def lazy_adam(module: torch.nn.Module, lr: float, reg_interval: int) -> torch.optim.Adam:
    """Adam (betas 0, 0.99) corrected for a regulariser run every `reg_interval` steps.

    Fused kernel: one launch per step on CUDA, ~4x faster on CPU, and it skips an update on a
    device-side flag (`training.step.adam_step`) without a host sync."""
    ratio = reg_interval / (reg_interval + 1)
    return torch.optim.Adam(
        module.parameters(), lr=lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8, fused=True
    )


def random_labels(dataset, n: int, device: torch.device) -> torch.Tensor:
    """Labels [n, c_dim] for fakes, drawn from the dataset's (empty when unconditional)."""
    labels = dataset.labels  # [N, c_dim]
    if labels.shape[1] == 0:
        return torch.zeros(n, 0, device=device)
    return labels[torch.randint(len(labels), (n,))].to(device)


@torch.no_grad()
def update_ema(G_ema: torch.nn.Module, G: torch.nn.Module, r: ResolvedOptions, nimg: int) -> None:
    """G_ema <- lerp towards G with a half-life of ema_kimg (ramped up early in training)."""
    ema_nimg = r.preset.ema_kimg * 1000
    if r.preset.ema_rampup is not None:
        ema_nimg = min(ema_nimg, nimg * r.preset.ema_rampup)
    beta = 0.5 ** (r.batch / max(ema_nimg, 1e-8))
    for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)


def check_finite(G: torch.nn.Module, D: torch.nn.Module, run_dir: Path) -> None:
    """Refuse to snapshot broken weights (the previous snapshot stays the latest good one)."""
    for name, module in (("G", G), ("D", D)):
        if not all(torch.isfinite(p).all() for p in module.parameters()):
            raise TrainingDiverged(f"{run_dir}: {name} weights are not finite; snapshot skipped")


# ---- Run folder ---------------------------------------------------------------------------------


def open_run_dir(setup, num_params: dict[str, int], cleanup: contextlib.ExitStack) -> Path:
    """Rank 0: the folder to write to (the resumed run's on a full resume), locked for this
    process (released by `cleanup`), checked writable and with room for snapshots."""
    r = setup.options
    if r.user.min_free_gb is not None:
        need = int(r.user.min_free_gb * 1e9)
    else:
        need = 2 * run_files.snapshot_bytes(num_params["G"], num_params["D"]) + 50_000_000
    if setup.full_resume:
        run_dir = setup.resume.info.run_dir
        run_files.check_writable(run_dir)
        cleanup.enter_context(RunLock(run_dir))
        run_files.check_free_space(run_dir, need)
        for tmp in atomic.remove_stale_temps(run_dir):
            log.info("removed %s, left by a killed write", tmp.name)
        return run_dir
    if not r.user.outdir:
        raise ConfigError("--outdir is required (except when fully resuming a run)")
    outdir = Path(r.user.outdir)
    run_files.check_writable(outdir)
    run_files.check_free_space(outdir, need)
    run_dir, lock = create_numbered_run(outdir, run_description(r, setup.archive.path.stem))
    cleanup.enter_context(lock)
    run_files.check_writable(run_dir)
    return run_dir


# ---- Exact-resume state -------------------------------------------------------------------------


def capture_rng(device: torch.device) -> dict[str, Any]:
    """This process's RNG states (torch CPU/CUDA as tensors, numpy/python as JSON)."""
    np_state = np.random.get_state()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def _restore_rng(saved: dict[str, Any], tensors: dict[str, torch.Tensor], rank: int) -> None:
    torch.set_rng_state(tensors[f"rng.rank{rank}.torch"])
    if f"rng.rank{rank}.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors[f"rng.rank{rank}.cuda"])
    name, keys, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), cached))
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))


def save(run_dir, kimg, st, r, G, D, G_ema, opt_G, opt_D, pipe, loss, rng, ada_states) -> Path:
    """Write the snapshot of this tick with everything an exact resume needs."""
    tensors_G, meta_G = checkpoint.optimizer_to_tensors(opt_G, "opt_G")
    tensors_D, meta_D = checkpoint.optimizer_to_tensors(opt_D, "opt_D")
    tensors = {**tensors_G, **tensors_D}
    if pipe is not None:
        tensors.update(checkpoint.add_prefix(pipe.state_dict(), "augment_pipe"))
    rng_json = []
    for rank, state in enumerate(rng):
        tensors[f"rng.rank{rank}.torch"] = state["torch"]
        if "cuda" in state:
            tensors[f"rng.rank{rank}.cuda"] = state["cuda"]
        rng_json.append({"numpy": state["numpy"], "python": state["python"]})
    loop = dataclasses.asdict(st)
    loop["tick"] = st.tick + 1  # the tick a resumed run starts with
    state = {
        "kimg": int(kimg),
        "nimg": st.nimg,
        "tick": st.tick,
        "loop": loop,
        "augment_p": float(pipe.p) if pipe is not None else 0.0,
        "ada": ada_states,
        "pl_mean": float(loss.pl_mean),
        "opt_G": meta_G,
        "opt_D": meta_D,
        "rng": rng_json,
        "world_size": len(rng),
        "dataset_hash": r.dataset_hash,
        "options": r.to_dict()["user"],
        "resolved": r.to_dict(),
    }
    path = run_dir / f"{checkpoint.snapshot_stem(st.nimg)}.safetensors"
    return checkpoint.save_snapshot(path, G=G, D=D, G_ema=G_ema, state=state, tensors=tensors)


def check_resumable(snap: checkpoint.Snapshot) -> None:
    """A full resume needs the whole training state; checked before anything is changed."""
    try:
        check_resume_state(snap.state)
    except u.BadValue as e:
        raise CheckpointError(f"{snap.info.path}: cannot continue this run ({e})") from None


def restore(snap, opt_G, opt_D, pipe, ada, loss, rank: int, world: int) -> LoopState:
    """Put the optimisers, p, ADA sums, pl_mean and RNG back as they were at the snapshot."""
    try:
        return _restore(snap, opt_G, opt_D, pipe, ada, loss, rank, world)
    except (CheckpointError, ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:
        why = str(e).removeprefix(f"{snap.info.path}: ")
        raise CheckpointError(f"{snap.info.path}: cannot restore training state ({why})") from None


def _restore(snap, opt_G, opt_D, pipe, ada, loss, rank: int, world: int) -> LoopState:
    s = snap.state
    checkpoint.optimizer_from_tensors(opt_G, snap.tensors, s["opt_G"], "opt_G")
    checkpoint.optimizer_from_tensors(opt_D, snap.tensors, s["opt_D"], "opt_D")
    if pipe is not None:
        saved_p = snap.module_state("augment_pipe").get("p")
        pipe.p.copy_(saved_p if saved_p is not None else torch.tensor(s.get("augment_p", 0.0)))
    loss.pl_mean.fill_(float(s.get("pl_mean", 0.0)))
    same_world = s.get("world_size") == world
    ada_states = s.get("ada") or []
    if ada is not None and ada_states and ada_states[0] is not None:
        if same_world:
            ada.load_state_dict(ada_states[rank])
        elif rank == 0:
            ada.load_state_dict(ada_states[0])
    if same_world:
        _restore_rng(s["rng"][rank], snap.tensors, rank)
    else:
        log.warning(
            "resuming with %d processes instead of %s: RNG streams restart (not bitwise "
            "identical to an uninterrupted run)",
            world,
            s.get("world_size"),
        )
    return LoopState(**s["loop"])


def run_metrics(run_dir, path, kimg, G_ema, archive, r, device, writer, nimg) -> None:
    """Evaluate the chosen metrics on this snapshot's G_ema and log them to TensorBoard."""
    from mrisynth.metrics.runner import evaluate_and_record

    results = evaluate_and_record(run_dir, path, kimg, G_ema, archive, list(r.user.metrics), device)
    for metric, values in results.items():
        for key, value in values.items():
            log.info("metric %s: %s = %.6g", metric, key, value)
            writer.scalar(f"Metrics/{key}", value, nimg)


# ---- Small formatting helpers ---------------------------------------------------------------


def peak_cpu_mem_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def peak_gpu_mem_gb(device: torch.device) -> float:
    if device.type != "cuda":
        return 0.0
    return torch.cuda.max_memory_allocated(device) / 2**30


def format_time(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s // 60 % 60:02d}m"
