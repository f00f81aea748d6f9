"""`metric-<name>.jsonl` in a run folder: one line per evaluated snapshot (DEVELOPERS.md).

Line: `{"metric", "snapshot" (file name), "kimg" (null for --images), "results": {key: float},
"num_gen", "num_real", "detector": {"name", "sha256"} | null, "reference_exact", "timestamp",
"data": {"sha256"}}` plus, when there is something to say, `"caveats": [str]` (why a number is
not the reference's) and `"source": {"kind": "images", "sha256"}` for images evaluated from a
folder or ZIP. Also the best-snapshot query (the study kept the snapshot with the best precision).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from mrisynth import atomic, untrusted
from mrisynth.errors import ConfigError, InputError
from mrisynth.training.kimg import rounded_kimg

HIGHER_IS_BETTER = (
    "_precision",
    "_recall",
    "_density",
    "_coverage",
    "_distance_median",  # memorisation: farther from the nearest training image
    "_zu",  # Meehan Z_U: negative = data-copying
    "_zu_p",
    "_acc_gen",  # faithfulness: generated images classified as the class asked for
    "_acc_ratio",
)
# Keys that describe the real data or a calibration, not the generator: no "best" snapshot.
NO_DIRECTION = ("_threshold", "_holdout_flagged_fraction", "_real", "_chance", "_classes")


def metric_file(run_dir: str | Path, name: str) -> Path:
    return Path(run_dir) / f"metric-{name}.jsonl"


def make_record(
    name: str,
    snapshot: str,
    kimg: float | None,
    results: dict[str, float],
    num_gen: int,
    num_real: int,
    detector: dict | None,
    reference_exact: bool,
    caveats: list[str] | None = None,
    source: dict | None = None,
    data_sha256: str | None = None,
) -> dict:
    record = {
        "metric": name,
        "snapshot": snapshot,
        "kimg": None if kimg is None else rounded_kimg(kimg),  # 0.2 for a sub-kimg snapshot
        "results": {k: float(v) for k, v in results.items()},
        "num_gen": int(num_gen),
        "num_real": int(num_real),
        "detector": detector,
        "reference_exact": bool(reference_exact),
        "timestamp": time.time(),
    }
    if caveats:
        record["caveats"] = list(caveats)
    if source is not None:
        record["source"] = source
    if data_sha256 is not None:
        record["data"] = {"sha256": data_sha256}  # which real images it was measured against
    return record


def append_record(run_dir: str | Path, record: dict) -> Path:
    """Append one record line to `run_dir/metric-<metric>.jsonl`."""
    path = metric_file(run_dir, record["metric"])
    atomic.append_line(path, json.dumps(record))
    return path


def read_records(path: str | Path) -> list[dict]:
    """All records of one metric file; a torn or foreign line is skipped with a warning."""
    return [
        obj
        for obj in untrusted.read_jsonl(Path(path))
        if "snapshot" in obj and isinstance(obj.get("results"), dict)
    ]


def recorded_snapshots(
    run_dir: str | Path, name: str, data_sha256: str | None = None
) -> set[str]:
    """Snapshot file names already evaluated for metric `name` (against the real images with
    content hash `data_sha256` when given; records from before data hashes count as a match)."""
    return {
        r["snapshot"]
        for r in read_records(metric_file(run_dir, name))
        if data_sha256 is None or same_data(r, data_sha256)
    }


def same_data(record: dict, data_sha256: str) -> bool:
    """The record was measured against these real images (or predates data hashes)."""
    data = record.get("data")
    recorded = data.get("sha256") if isinstance(data, dict) else None
    return recorded is None or recorded == data_sha256


def higher_is_better(key: str) -> bool:
    return key.endswith(HIGHER_IS_BETTER)


@dataclass(frozen=True)
class BestSnapshot:
    key: str
    value: float
    snapshot: str
    kimg: int
    metric: str
    higher_is_better: bool


def _resolve_key(name: str, records: list[dict]) -> str:
    """A metric name stands for its main key: PR -> precision (the study's choice)."""
    keys = {k for r in records for k in r["results"]}
    if name in keys:
        return name
    for suffix in ("_precision", "_flagged_fraction", "_w1"):
        if f"{name}{suffix}" in keys:
            return f"{name}{suffix}"
    if len(keys) == 1:
        return next(iter(keys))
    raise ConfigError(f"--best {name}: choose one of the result keys {', '.join(sorted(keys))}")


def best_snapshot(run_dir: str | Path, metric: str) -> BestSnapshot:
    """Best snapshot of a run for a metric name (`pr50k3_full`) or result key
    (`pr50k3_full_recall`); lower is better except precision/recall/density/coverage."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: not a run folder")
    candidates: list[tuple[str, list[dict]]] = []
    for path in sorted(run_dir.glob("metric-*.jsonl")):
        records = read_records(path)
        name = path.name[len("metric-") : -len(".jsonl")]
        if name == metric or any(metric in r["results"] for r in records):
            candidates.append((name, records))
    if not candidates:
        have = ", ".join(p.name for p in sorted(run_dir.glob("metric-*.jsonl"))) or "none"
        raise InputError(
            f"{run_dir}: no metric-*.jsonl records {metric!r} (present: {have}); run "
            f"`mrisynth metrics --network {run_dir} --data ARCHIVE --metrics {metric}` first"
        )
    name, records = candidates[0]
    key = _resolve_key(metric, records)
    latest: dict[str, dict] = {}  # a re-evaluated snapshot counts with its latest line
    for r in records:
        if key in r["results"] and math.isfinite(r["results"][key]):
            latest[r["snapshot"]] = r
    if not latest:
        raise InputError(f"{metric_file(run_dir, name)}: no finite {key} values")
    if key.endswith(NO_DIRECTION):
        raise InputError(
            f"--best {metric}: {key} describes the real data or a calibration, not the "
            "generator, so no snapshot is best by it; choose a key of the generated images"
        )
    up = higher_is_better(key)
    best = (max if up else min)(latest.values(), key=lambda r: r["results"][key])
    return BestSnapshot(key, best["results"][key], best["snapshot"], best["kimg"], name, up)
