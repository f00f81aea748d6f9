"""The StyleGAN2-ADA training loop (Karras et al. 2020, arXiv 2006.06676), one top-down function.

Phases: setup (processes, data, options, run folder; what is resolved before any training work
is `training.run_setup`, re-exported here) -> networks and resume -> loop (data ->
G/D phases with accumulation -> EMA -> ADA -> tick bookkeeping -> snapshot). Everything a resumed
run needs to continue exactly is written in every snapshot; see `training.state`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path

import torch

from mrisynth import atomic
from mrisynth.devices import resolve_device
from mrisynth.errors import ConfigError, MrisynthError
from mrisynth.training import (
    build,
    distributed,
    ema,
    held_log,
    resources,
    run_files,
    run_lock,
    run_record,
    step,
    transfer,
)
from mrisynth.training.data_loader import (
    MirroredDataset,
    batch_stream,
    random_labels,
    to_network_range,
)
from mrisynth.training.kimg import kimg_number
from mrisynth.training.options import TrainOptions
from mrisynth.training.rng import capture_rng
from mrisynth.training.run_setup import Setup, check, check_run_inputs, describe, prepare
from mrisynth.training.state import TrainingDiverged
from mrisynth.training.stats import StatsWriter, TickStats, format_time, record_metrics

__all__ = [
    "Setup", "TrainingDiverged", "check", "check_run_inputs", "describe", "prepare", "train",
]  # fmt: skip

log = logging.getLogger(__name__)


def train(opts: TrainOptions) -> Path:
    """Train until `opts.kimg` (or `stop_after_kimg`); returns the run folder."""
    with contextlib.ExitStack() as cleanup:  # releases the run lock however training ends
        return _train(opts, cleanup)


def _train(opts: TrainOptions, cleanup: contextlib.ExitStack) -> Path:
    # ---- Setup: processes, device -----------------------------------------------------------
    device_type = resolve_device(opts.device).type
    cuda_device = distributed.init(device_type)
    rank, world = distributed.get_rank(), distributed.get_world_size()
    if world > 1 and opts.gpus not in (1, world):
        raise ConfigError(f"--gpus {opts.gpus} but {world} processes were launched")
    if world == 1 and opts.gpus > 1:
        check(opts)  # report bad options first, then how to launch
        raise ConfigError(
            f"--gpus {opts.gpus} needs {opts.gpus} processes: use `mrisynth train --gpus "
            f"{opts.gpus} ...` or `torchrun --nproc_per_node {opts.gpus} -m mrisynth train ...`"
        )
    opts = dataclasses.replace(opts, gpus=world)
    device = cuda_device or torch.device("cpu")
    threads = resources.set_cpu_threads(opts.cpu_threads) if device.type == "cpu" else None
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    # ---- Data, options, networks, resume snapshot ---------------------------------------------
    if rank == 0 and world == 1 and opts.resume and opts.resume_mode != "weights":
        run_lock.refuse_if_locked(opts.resume)  # a run in training: say so before reading data
    # What is said before the run folder exists (adapted channels, a fresh D, hints) goes
    # into its log.txt too, once that is open.
    held = cleanup.enter_context(held_log.holding()) if rank == 0 else None
    setup = prepare(opts)
    r = setup.options
    u = r.user

    # ---- Training state: new, or restored exactly from the snapshot (before any write) -------
    ts = build.training_state(setup, device)  # networks, augmentation, loss, optimisers
    torch.manual_seed(u.seed * world + rank)
    if setup.full_resume:
        ts.restore(setup.resume, rank, world)
    G, D, G_ema, st = ts.G, ts.D, ts.G_ema, ts.counters  # short names for the loop

    # ---- Run folder (rank 0 creates and locks it; every rank learns its name) -----------------
    found: tuple[str | None, str | None] = (None, None)  # (run folder, error)
    record = run_record.with_resume_source(
        run_record.with_data_resolved(r.to_dict()),
        transfer.source_record(setup.resume, setup.full_resume),
    )  # training_options.json
    if rank == 0:
        if not setup.full_resume:
            run_record.hint_if_repeated(Path(u.outdir), record)
        try:
            found = (str(run_files.open_run_dir(setup, ts.num_params(), cleanup)), None)
        except MrisynthError as e:  # tell the other ranks instead of leaving them waiting
            distributed.broadcast_object((None, str(e)))
            raise
    found = distributed.broadcast_object(found)
    if found[1] is not None:
        raise ConfigError(found[1])
    run_dir = Path(found[0])
    log_handler = run_files.attach_log_file(run_dir / "log.txt") if rank == 0 else None
    if held is not None:
        held.replay_into(log_handler)
    writer = StatsWriter(run_dir, enabled=rank == 0)
    if setup.resume is not None:
        how = "full state: kimg, p, optimisers, EMA, RNG" if setup.full_resume else "weights only"
        log.info("resuming from %s (%s)", setup.resume.info.path, how)
    if rank == 0 and setup.full_resume:
        run_files.drop_stats_after(run_dir / "stats.jsonl", setup.resume.state["nimg"])

    dataset = MirroredDataset(setup.archive, mirror=u.mirror, use_labels=u.cond)
    stream = batch_stream(
        dataset,
        batch_gpu=r.batch_gpu,
        seed=u.seed,
        start_batch=st.data_batches,
        rank=rank,
        world_size=world,
        workers=u.workers,
        pin_memory=device.type == "cuda",
    )
    grid_idx = run_files.grid_indices(len(dataset))
    grid_z = torch.randn(len(grid_idx), G.z_dim, generator=torch.Generator().manual_seed(u.seed))
    grid_c = torch.stack([dataset.label_at(i) for i in grid_idx])
    if rank == 0 and not setup.full_resume:
        reals = torch.stack([dataset[i][0] for i in grid_idx])
        run_files.save_image_grid(run_dir / "reals.png", reals)
        atomic.write_json(run_dir / "training_options.json", record)

    total_nimg = int(u.kimg * 1000)
    stop_nimg = int(u.stop_after_kimg * 1000) if u.stop_after_kimg is not None else None
    tick_nimg = max(int(u.tick * 1000), 1)
    stats = TickStats()
    stat_names: set[str] = set()
    if threads is not None:  # said once the inputs are checked (not before an Error line)
        log.info("CPU training with %d torch thread(s)", threads)
    log.info(
        "training %s for %g kimg on %d %s process(es); run folder %s",
        r.preset.name,
        u.kimg,
        world,
        device.type,
        run_dir,
    )
    start_time = tick_start_time = time.time()
    tick_start_nimg = st.nimg
    done = st.nimg >= total_nimg
    if done:
        log.warning("%s is already at %.3f kimg (--kimg %g): nothing to train; pass a larger "
                    "--kimg to continue it", run_dir, st.nimg / 1e3, u.kimg)
    guard = step.NonFiniteGuard(device, st.bad_steps)

    try:
        while not done:
            # ---- Data: this rank's micro-batches of reals for one optimisation step ----------
            reals_img, reals_c = [], []
            for _ in range(r.num_accum):
                img, c = next(stream)
                reals_img.append(to_network_range(img, device))  # [batch_gpu, C, H, W]
                reals_c.append(c.to(device))
            st.data_batches += r.num_accum

            # ---- G and D phases, gradients summed over micro-batches (no host sync) ---------
            phases = step.phases_at(
                st.step, G, D, ts.opt_G, ts.opt_D, pl_weight=r.preset.pl_weight, gamma=r.gamma,
                g_reg=r.g_reg_interval, d_reg=r.d_reg_interval,
            )  # fmt: skip
            reals = list(zip(reals_img, reals_c, strict=True))
            gen_inputs = lambda: (  # noqa: E731
                torch.randn(r.batch_gpu, G.z_dim, device=device),
                random_labels(dataset, r.batch_gpu, device),
            )
            skipped = [
                step.run_phase(ph, ts.loss, reals, gen_inputs, stats, stat_names, ts.ada)
                for ph in phases
            ]
            guard.record(torch.stack(skipped).amax())

            # ---- EMA of the generator --------------------------------------------------------
            ema.update_ema(G_ema, G, r, st.nimg)

            # ---- Bookkeeping and ADA ---------------------------------------------------------
            st.nimg += r.batch
            st.step += 1
            if ts.ada is not None:
                r_t = ts.ada.maybe_update(
                    ts.augment_pipe, r.batch, st.step, distributed.all_reduce_sum
                )
                if r_t is not None:
                    stats.add("Augment/r_t", r_t)
                    stat_names.add("Augment/r_t")

            # ---- Tick: log line and stats (tick 0 ends after the first step) -----------------
            done = st.nimg >= total_nimg
            stop = stop_nimg is not None and st.nimg >= stop_nimg
            if not (done or stop) and st.tick != 0 and st.nimg < tick_start_nimg + tick_nimg:
                continue
            # Non-finite losses: the steps were skipped on the device; report and stop here.
            bad_in_tick, st.bad_steps, worst = guard.read()
            if bad_in_tick:
                log.warning("%d step(s) with non-finite losses this tick: updates skipped",
                            bad_in_tick)  # fmt: skip
            if worst >= u.max_bad_steps:
                raise TrainingDiverged(
                    f"{run_dir}: {u.max_bad_steps} consecutive steps with non-finite losses by "
                    f"kimg {st.nimg / 1e3:.3f}; stopped, last good snapshot kept (lower "
                    "--glr/--dlr or --gamma, or resume from it)"
                )
            tick_end_time = time.time()
            tick_sec = tick_end_time - tick_start_time
            tick_kimg = max(st.nimg - tick_start_nimg, 1) / 1e3
            p_now = float(ts.augment_pipe.p) if ts.augment_pipe is not None else 0.0
            progress = {
                "Progress/tick": st.tick,
                "Progress/kimg": st.nimg / 1e3,
                "Progress/augment": p_now,
                "Timing/total_sec": tick_end_time - start_time,
                "Timing/sec_per_tick": tick_sec,
                "Timing/sec_per_kimg": tick_sec / tick_kimg,
                "Resources/peak_cpu_mem_gb": resources.peak_cpu_mem_gb(),
                "Resources/peak_gpu_mem_gb": resources.peak_gpu_mem_gb(device),
            }
            tick_stats = stats.reduce(sorted(stat_names | {"Augment/r_t", "Loss/signs/real"}))
            tick_stats.update(
                {k: {"num": 1, "mean": float(v), "std": 0.0} for k, v in progress.items()}
            )
            writer.write(tick_stats, st.nimg)
            log.info(
                "tick %-5d kimg %-8.3f time %-8s sec/tick %-7.1f sec/kimg %-7.2f "
                "cpumem %.2f gpumem %.2f augment %.3f",
                st.tick,
                st.nimg / 1e3,
                format_time(tick_end_time - start_time),
                tick_sec,
                tick_sec / tick_kimg,
                progress["Resources/peak_cpu_mem_gb"],
                progress["Resources/peak_gpu_mem_gb"],
                p_now,
            )

            # ---- Snapshot: image grid, checkpoint, metrics -----------------------------------
            snapshot_due = done or st.tick == 0 or (u.snap > 0 and st.tick % u.snap == 0)
            if snapshot_due and st.bad_steps > 0:
                log.warning("snapshot skipped: the last step had non-finite losses")
            elif snapshot_due:
                ts.check_finite(run_dir)
                distributed.check_in_sync(G, "G")
                distributed.check_in_sync(D, "D")
                rng = distributed.all_gather_object(capture_rng(device))
                ada_states = distributed.all_gather_object(ts.ada.state_dict() if ts.ada else None)
                if rank == 0:
                    kimg = kimg_number(st.nimg)  # 0.112, not 0, in metric records
                    images = run_files.generate_grid(
                        G_ema, grid_z.to(device), grid_c.to(device), r.batch_gpu
                    )
                    run_files.save_image_grid(run_dir / run_files.fakes_name(st.nimg), images)
                    path = ts.save(run_dir, rng, ada_states)
                    if u.metrics:
                        record_metrics(
                            run_dir, path, kimg, G_ema, setup.archive, r, device, writer, st.nimg
                        )
                distributed.barrier()

            st.tick += 1
            tick_start_nimg = st.nimg
            tick_start_time = time.time()
            if stop and not done:
                log.info("stopping at kimg %.3f as asked (--stop-after-kimg)", st.nimg / 1e3)
                break
    finally:
        writer.close()
        if log_handler is not None:
            run_files.detach_log_file(log_handler)
        setup.archive.close()
    return run_dir
