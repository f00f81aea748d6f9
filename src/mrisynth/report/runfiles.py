"""Read what a training run left in its folder (the run-folder contract in DEVELOPERS.md).

Every file is optional: a report of a run that has only started shows what exists. Broken
lines in .jsonl files (a run killed mid-write) are skipped with a warning, never fatal.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrisynth.errors import InputError

log = logging.getLogger(__name__)

_FAKES_RE = re.compile(r"^fakes-?(\d+)\.png$")
_METRIC_RE = re.compile(r"^metric-(.+)\.jsonl$")
_SNAPSHOT_RE = re.compile(r"^network-snapshot-(\d+)\.safetensors$")


@dataclass
class RunFiles:
    """The parsed contents of a run folder."""

    run_dir: Path
    options: dict[str, Any] | None = None  # training_options.json
    stats: list[dict[str, Any]] = field(default_factory=list)  # stats.jsonl, one per tick
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # name -> records
    fakes: list[tuple[int, Path]] = field(default_factory=list)  # (kimg, grid), by kimg
    reals: Path | None = None
    snapshots: list[tuple[int, Path]] = field(default_factory=list)  # (kimg, .safetensors)
    memorisation: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    memorisation_images: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.run_dir.name


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """JSON objects of a .jsonl file; malformed lines are logged and skipped."""
    records: list[dict[str, Any]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s:%d: skipping a malformed line", path, n)
            continue
        if isinstance(obj, dict):
            records.append(obj)
    return records


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        log.warning("%s: unreadable JSON (%s); left out of the report", path, e)
        return None
    return obj if isinstance(obj, dict) else None


def read_run(run_dir: str | Path) -> RunFiles:
    """Collect the run's files; raises InputError only when `run_dir` is not a folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: not a run folder (no such directory)")
    run = RunFiles(run_dir=run_dir)
    opts = run_dir / "training_options.json"
    if opts.is_file():
        run.options = _read_json(opts)
    if (run_dir / "stats.jsonl").is_file():
        run.stats = read_jsonl(run_dir / "stats.jsonl")
    if (run_dir / "reals.png").is_file():
        run.reals = run_dir / "reals.png"
    for p in sorted(run_dir.iterdir()):
        if m := _FAKES_RE.match(p.name):
            run.fakes.append((int(m.group(1)), p))
        elif m := _METRIC_RE.match(p.name):
            records = [r for r in read_jsonl(p) if isinstance(r.get("results"), dict)]
            if records:
                run.metrics[m.group(1)] = sorted(records, key=lambda r: _kimg(r))
        elif (m := _SNAPSHOT_RE.match(p.name)) and p.with_suffix(".json").is_file():
            run.snapshots.append((int(m.group(1)), p))
        elif p.name.startswith("memorisation") and p.suffix == ".json":
            obj = _read_json(p)
            if obj is not None:
                run.memorisation.append((p, obj))
        elif p.name.startswith("memorisation") and p.suffix == ".png":
            run.memorisation_images.append(p)
    run.fakes.sort()
    run.snapshots.sort()
    log.info(
        "run %s: %d ticks, %d metric files, %d grids, %d snapshots",
        run_dir,
        len(run.stats),
        len(run.metrics),
        len(run.fakes),
        len(run.snapshots),
    )
    return run


def _kimg(record: dict[str, Any]) -> float:
    try:
        return float(record.get("kimg", 0))
    except (TypeError, ValueError):
        return 0.0


def stat_series(stats: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(kimg, mean) pairs of one stats.jsonl key over ticks, skipping ticks without it."""
    xs: list[float] = []
    ys: list[float] = []
    for tick in stats:
        value = tick.get(key)
        kimg = tick.get("Progress/kimg")
        mean = value.get("mean") if isinstance(value, dict) else value
        x = kimg.get("mean") if isinstance(kimg, dict) else kimg
        if isinstance(mean, int | float) and isinstance(x, int | float):
            xs.append(float(x))
            ys.append(float(mean))
    return xs, ys
