"""How long a training run will take, measured by a short timed warm-up run of the same options.

The warm-up is the real training loop (same networks, data, augmentation and metrics) for one
step plus `steps` more, in a scratch run folder that is deleted afterwards. With 16 steps the
lazy regularisers come in the proportion of a long run (R1 every 16 steps, path length every 4),
so its sec/kimg is the long run's on an equally loaded machine. The cost of one snapshot (image
grid, file and metrics) is the time from the last tick's log line to the end of the run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from mrisynth.training.options import TrainOptions

WARMUP_STEPS = 16  # one R1 step (interval 16) and four path-length steps (interval 4)


@dataclass(frozen=True)
class DurationEstimate:
    sec_per_kimg: float  # optimisation steps, lazy regularisers included
    sec_per_snapshot: float  # image grid, snapshot file and the chosen metrics
    warmup_sec: float  # what the measurement cost, start-up included
    steps: int  # optimisation steps timed
    batch: int  # images per step

    def training_sec(self, kimg: float, tick: float, snap: int) -> float:
        """Expected wall time of `train` with these lengths (start-up excluded)."""
        snapshots = snapshot_count(kimg, tick, snap, self.batch)
        return kimg * self.sec_per_kimg + snapshots * self.sec_per_snapshot


def snapshot_count(kimg: float, tick: float, snap: int, batch: int) -> int:
    """Snapshots a run of `kimg` with `batch` images per step takes: tick 0 (after the first
    step), every `snap` ticks after it, and the end (once)."""
    if not (math.isfinite(kimg) and math.isfinite(tick) and tick > 0 and batch > 0):
        raise ValueError(f"need finite kimg, tick > 0 and batch > 0: {kimg}, {tick}, {batch}")
    first = batch / 1000
    ticks = max(math.ceil(round((kimg - first) / tick, 6)), 1) if kimg > first else 0
    if ticks == 0:
        return 1  # done at tick 0
    if snap <= 0:
        return 2
    return 1 + ticks // snap + (1 if ticks % snap else 0)


class _TickTimes(logging.Handler):
    """(arrival time, sec/tick) of the loop's per-tick log lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.ticks: list[tuple[float, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("tick ") and isinstance(record.args, tuple):
            self.ticks.append((record.created, float(record.args[3])))


def measure(opts: TrainOptions, workdir: Path, steps: int = WARMUP_STEPS) -> DurationEstimate:
    """Train `opts` for 1 + `steps` steps into `workdir` (removed afterwards) and time it."""
    from mrisynth.training.loop import check, train

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    batch = check(opts).batch
    warm = dataclasses.replace(
        opts,
        outdir=str(workdir),
        kimg=(steps + 1) * batch / 1000,  # tick 0 ends after the first step ...
        tick=steps * batch / 1000,  # ... tick 1 after `steps` more
        snap=0,
        stop_after_kimg=None,
        resume=None,
        desc="warmup",
    )
    clock = _TickTimes()
    loop_log = logging.getLogger("mrisynth.training.loop")
    loop_log.addHandler(clock)
    t0 = time.time()
    try:
        train(warm)
        t_end = time.time()
    finally:
        loop_log.removeHandler(clock)
        shutil.rmtree(workdir, ignore_errors=True)
    if len(clock.ticks) < 2:
        raise RuntimeError(f"warm-up logged {len(clock.ticks)} tick(s), expected 2")
    (_, _), (t1_at, t1_sec) = clock.ticks[:2]
    return DurationEstimate(
        sec_per_kimg=t1_sec / (steps * batch / 1000),
        sec_per_snapshot=max(t_end - t1_at, 0.0),
        warmup_sec=t_end - t0,
        steps=steps,
        batch=batch,
    )
