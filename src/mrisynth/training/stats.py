"""Per-tick training statistics: accumulate values, reduce over ranks, report num/mean/std.

Sums (count, sum, sum of squares in float64) are what cross ranks, so reduction costs one small
all-reduce per tick whatever the number of steps.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import torch

from mrisynth import atomic
from mrisynth.training import distributed

log = logging.getLogger(__name__)


class TickStats:
    """Collects named scalars/tensors during a tick; `reduce()` gives {name: {num, mean, std}}."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}  # name -> float64 [3]: count, sum, sum of sq.

    def add(self, name: str, value: torch.Tensor | float) -> None:
        # Sums stay on the value's device (no host sync inside a training step); non-finite
        # values are left out of count and sums.
        v = torch.as_tensor(value).detach().flatten().to(torch.float64)
        ok = torch.isfinite(v)
        v = torch.where(ok, v, 0.0)
        step = torch.stack([ok.sum().to(torch.float64), v.sum(), v.square().sum()])
        acc = self._sums.get(name)
        self._sums[name] = step if acc is None else acc + step.to(acc.device)

    def add_dict(self, values: dict[str, torch.Tensor]) -> None:
        for name, v in values.items():
            self.add(name, v)

    def reduce(self, names: list[str] | None = None) -> dict[str, dict[str, float]]:
        """Sum over ranks, then mean and std per name; names without values are left out.

        Pass `names` in multi-process runs so all ranks reduce the same keys (a rank that saw no
        value of a stat contributes zeros).
        """
        keys = sorted(self._sums) if names is None else sorted(names)
        if not keys:
            return {}
        zero = torch.zeros(3, dtype=torch.float64)
        table = torch.stack([self._sums[k].cpu() if k in self._sums else zero for k in keys])
        distributed.all_reduce_sum(table)
        out = {}
        for k, (num, total, sq) in zip(keys, table.tolist(), strict=True):
            if num == 0:
                continue  # not seen this tick (e.g. R1 runs every 16 steps): left out
            mean = total / num
            out[k] = {"num": int(num), "mean": mean, "std": math.sqrt(max(sq / num - mean**2, 0))}
        self._sums.clear()
        return out

    def names(self) -> list[str]:
        return sorted(self._sums)


class StatsWriter:
    """rank 0: appends each tick's stats to `stats.jsonl` and TensorBoard (if importable)."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.path = run_dir / "stats.jsonl"
        self.enabled = enabled
        self._tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(run_dir))
            except ImportError as e:  # tensorboard is a dependency, but do not die without it
                log.warning("TensorBoard disabled: %s", e)

    def write(self, stats: dict[str, dict[str, float]], nimg: int) -> None:
        if not self.enabled:
            return
        record = {k: v for k, v in stats.items()}
        record["timestamp"] = time.time()
        atomic.append_line(self.path, json.dumps(record))
        if self._tb is not None:
            step = int(nimg)  # x axis: images shown (exact also for sub-kimg ticks)
            for k, v in stats.items():
                self._tb.add_scalar(k, v["mean"], global_step=step)
            self._tb.flush()

    def scalar(self, name: str, value: float, nimg: int) -> None:
        if self._tb is not None:
            self._tb.add_scalar(name, value, global_step=int(nimg))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def format_time(seconds: float) -> str:
    """'42s', '3m 07s', '5h 02m': the tick log's elapsed time."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s // 60 % 60:02d}m"


def record_metrics(run_dir, path, kimg, G_ema, archive, r, device, writer, nimg) -> None:
    """Evaluate the chosen metrics on this snapshot's G_ema and log them to TensorBoard."""
    from mrisynth.metrics.runner import evaluate_and_record

    results = evaluate_and_record(run_dir, path, kimg, G_ema, archive, list(r.user.metrics), device)
    for metric, values in results.items():
        for key, value in values.items():
            log.info("metric %s: %s = %.6g", metric, key, value)
            writer.scalar(f"Metrics/{key}", value, nimg)
