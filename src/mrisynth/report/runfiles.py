"""Read what a training run left in its folder (the run-folder contract in DEVELOPERS.md).

Every file is optional: a report of a run that has only started shows what exists. Broken
lines in .jsonl files (a run killed mid-write) are skipped with a warning, never fatal.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrisynth import untrusted
from mrisynth.errors import InputError
from mrisynth.report.plaintext import plain

log = logging.getLogger(__name__)

_FAKES_RE = re.compile(r"^fakes-?(\d+)(?:\.(\d{3}))?\.png$")  # kimg, thousandths
_METRIC_RE = re.compile(r"^metric-(.+)\.jsonl$")
_SNAPSHOT_RE = re.compile(r"^network-snapshot-(\d+)(?:\.(\d{3}))?\.safetensors$")


@dataclass
class RunFiles:
    """The parsed contents of a run folder."""

    run_dir: Path
    options: dict[str, Any] | None = None  # training_options.json
    stats: list[dict[str, Any]] = field(default_factory=list)  # stats.jsonl, one per tick
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # name -> records
    fakes: list[tuple[float, Path]] = field(default_factory=list)  # (kimg, grid), by kimg
    reals: Path | None = None
    snapshots: list[tuple[float, Path]] = field(default_factory=list)  # (kimg, .safetensors)
    memorisation: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    memorisation_images: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def is_evaluation(self) -> bool:
        """A folder written by `mrisynth metrics --images ... -o OUT`: records, no training."""
        records = [r for rs in self.metrics.values() for r in rs]
        audits = [a for _, a in self.memorisation]
        return (
            bool(records or audits)
            and not (self.stats or self.snapshots or self.fakes or self.options)
            and all(r["kimg"] is None for r in records)
        )


MAX_FILE_BYTES = 64 * 2**20  # a run file larger than this is not one we wrote; left out
MAX_KIMG = 1e9
MAX_COUNT = 10**9
MAX_RESULT_KEYS = 200


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """JSON objects of a .jsonl file; malformed lines are logged and skipped."""
    return untrusted.read_jsonl(path, MAX_FILE_BYTES)


def _read_json(path: Path) -> dict[str, Any] | None:
    """A run file's JSON object, or None (logged) when unreadable, oversized or malformed."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            log.warning("%s: %d bytes, more than a run file holds; left out", path, size)
            return None
        text = path.read_text(encoding="utf-8", errors="replace")
        obj = untrusted.loads(text, str(path), MAX_FILE_BYTES, allow_nan=True)
    except OSError as e:
        log.warning("%s: unreadable (%s); left out", path, e)
        return None
    except untrusted.BadValue as e:
        log.warning("%s; left out of the report", e)
        return None
    return obj if isinstance(obj, dict) else None


def finite(value: Any, low: float = -math.inf, high: float = math.inf) -> float | None:
    """A real number within [low, high] as float, else None (bools, strings, NaN, inf)."""
    try:
        return untrusted.number(value, "value", low, high)
    except untrusted.BadValue:
        return None


def _count(value: Any) -> int | None:
    x = finite(value, 0, MAX_COUNT)
    return int(x) if x is not None and x == int(x) else None


def clean_metric_record(obj: dict[str, Any], index: int) -> dict[str, Any] | None:
    """A metric record with the contract's types, or None when it has no usable result.

    Everything the report shows of a record passes through here: numbers must be finite, counts
    whole and bounded, names plain text; `reference_exact` is true only when it is JSON true.
    kimg is None for an evaluation of a folder of images (`mrisynth metrics --images`).
    """
    raw = obj.get("results")
    if not isinstance(raw, dict):
        return None
    results: dict[str, float] = {}
    for key, value in list(raw.items())[:MAX_RESULT_KEYS]:
        x = finite(value)
        if isinstance(key, str) and key and x is not None:
            results[plain(key, 120)] = x
    if not results:
        return None
    det = obj.get("detector")
    name = det.get("name") if isinstance(det, dict) else None
    snapshot = obj.get("snapshot")
    return {
        "metric": plain(obj.get("metric", ""), 120),
        "snapshot": plain(snapshot, 200) if isinstance(snapshot, str) else f"record {index}",
        "kimg": record_kimg(obj.get("kimg"), snapshot),
        "results": results,
        "num_gen": _count(obj.get("num_gen")),
        "num_real": _count(obj.get("num_real")),
        "detector": {"name": plain(name, 120)} if isinstance(name, str) and name else None,
        "reference_exact": obj.get("reference_exact") is True,
        "timestamp": finite(obj.get("timestamp")) or 0.0,
        "verdicts": obj.get("verdicts"),
        "caveats": _texts(obj.get("caveats")),
    }


def _texts(value: Any, count: int = 5) -> list[str]:
    """A record's list of plain-text remarks (e.g. `caveats`), bounded; anything else: []."""
    if not isinstance(value, list):
        return []
    return [plain(v, 300) for v in value[:count] if isinstance(v, str) and v.strip()]


def record_kimg(value: Any, snapshot: Any) -> float | None:
    """The record's kimg, refined by a snapshot name that has the fraction (`000000.160`):
    records store whole kimg, so two early snapshots would otherwise share kimg 0."""
    kimg = finite(value, 0, MAX_KIMG)
    m = _SNAPSHOT_RE.match(snapshot) if isinstance(snapshot, str) else None
    if kimg is not None and m and m.group(2) and int(m.group(1)) == int(kimg):
        return _name_kimg(m)
    return kimg


def record_order(record: dict[str, Any]) -> tuple[bool, float, float]:
    """Sort key of cleaned records: by kimg, evaluations without kimg last, then by time."""
    kimg = record.get("kimg")
    return (kimg is None, kimg if kimg is not None else 0.0, record.get("timestamp") or 0.0)


def audit_order(audit: tuple[Path, dict[str, Any]]) -> tuple[tuple[bool, float, float], str]:
    """Sort key of (path, memorisation audit): as metric records (kimg with the fraction from
    the snapshot name, then time), then the file name; the summary box and the audit section
    both take the last one."""
    path, obj = audit
    kimg = record_kimg(obj.get("kimg"), obj.get("snapshot"))
    return record_order({"kimg": kimg, "timestamp": finite(obj.get("timestamp"))}), path.name


def _name_kimg(m: re.Match) -> float:
    """kimg of `...-KKKKKK[.FFF]...` file names (the fraction in thousandths of a kimg)."""
    return int(m.group(1)) + (int(m.group(2)) / 1000 if m.group(2) else 0.0)


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
        if not p.is_file():
            continue
        if m := _FAKES_RE.match(p.name):
            run.fakes.append((_name_kimg(m), p))
        elif m := _METRIC_RE.match(p.name):
            cleaned = (clean_metric_record(r, i) for i, r in enumerate(read_jsonl(p)))
            records = [r for r in cleaned if r is not None]
            if records:
                run.metrics[m.group(1)] = sorted(records, key=record_order)
        elif m := _SNAPSHOT_RE.match(p.name):  # one file commits a snapshot; the .json is a copy
            run.snapshots.append((_name_kimg(m), p))
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


def stat_series(stats: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(kimg, mean) pairs of one stats.jsonl key over ticks, skipping ticks without it."""
    xs: list[float] = []
    ys: list[float] = []
    for tick in stats:
        value = tick.get(key)
        kimg = tick.get("Progress/kimg")
        mean = finite(value.get("mean") if isinstance(value, dict) else value)
        x = finite(kimg.get("mean") if isinstance(kimg, dict) else kimg, 0, MAX_KIMG)
        if mean is not None and x is not None:
            xs.append(x)
            ys.append(mean)
    return xs, ys
