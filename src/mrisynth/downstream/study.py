"""Run a downstream study into a folder: one JSON per finished unit, then `downstream.json`
and `downstream.png`, all written atomically.

A killed run resumes: units whose result file carries this study's identity (training options
and the sha256 of the three data sets) are read back, not retrained. A folder holding results
of other data or options is refused instead of mixed in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mrisynth import atomic
from mrisynth import untrusted as u
from mrisynth.downstream.fit import train_unit
from mrisynth.downstream.leakage import check_no_test_slices
from mrisynth.downstream.options import DownstreamOptions
from mrisynth.downstream.pairs import SegSet, check_compatible
from mrisynth.downstream.scoring import (
    chance_dice,
    dice_per_patient,
    hd95_per_organ,
    organ_means,
    predict,
)
from mrisynth.downstream.summary import summarise
from mrisynth.downstream.units import Unit, plan_units
from mrisynth.errors import ConfigError

log = logging.getLogger(__name__)

FORMAT = "mrisynth-downstream"
MARKER = ".mrisynth-downstream"
RESULT_NAME = "downstream.json"
FIGURE_NAME = "downstream.png"
UNITS_DIR = "units"
BUDGET_NOTE = (
    "every unit (arm x real fraction x seed) trains the same number of optimiser steps with "
    "the same batch size; arms differ only in which slices fill the batches"
)


def study_identity(opts: DownstreamOptions, real: SegSet, synthetic: SegSet, test: SegSet) -> str:
    """What a finished unit must share to be reused: training options and the data."""
    training = {k: v for k, v in opts.to_dict().items() if k not in ("seeds", "real_fractions")}
    key = {
        "format": 1,
        "options": training,
        "data": [real.digest(), synthetic.digest(), test.digest()],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def claim_outdir(outdir: Path, identity: str) -> None:
    """A new or empty folder, or one of this same study (its marker) to resume."""
    marker = outdir / MARKER
    if marker.is_file():
        try:
            old = u.loads(marker.read_bytes(), str(marker), max_bytes=4096)
        except (OSError, u.BadValue):
            old = None
        if not isinstance(old, dict) or old.get("identity") != identity:
            raise ConfigError(
                f"--outdir {outdir}: holds a downstream study of other data or training "
                "options; choose another --outdir (or delete that folder)"
            )
        return
    if outdir.exists() and (not outdir.is_dir() or any(outdir.iterdir())):
        raise ConfigError(
            f"--outdir {outdir}: not empty and not a downstream study's folder; choose a new one"
        )
    with atomic.output_errors(outdir, "--outdir"):
        outdir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(marker, {"format": FORMAT, "identity": identity})


def run_study(
    outdir: str | Path,
    real: SegSet,
    synthetic: SegSet,
    test: SegSet,
    opts: DownstreamOptions,
    device: torch.device,
    echo: Callable[[str], None] = log.info,
    generator: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and score every unit (resuming finished ones); returns downstream.json's object.
    `generator`: what was checked of the generator's training data (`leakage.check_generator`),
    recorded as `data.generator`."""
    opts.check()
    check_compatible(real, synthetic, test)
    check_no_test_slices(real, synthetic, test)
    outdir = Path(outdir)
    identity = study_identity(opts, real, synthetic, test)
    claim_outdir(outdir, identity)
    atomic.remove_stale_temps(outdir)
    atomic.remove_stale_temps(outdir / UNITS_DIR)
    labels = list(real.label_names or [])
    organs = labels[1:]
    units = plan_units(opts)
    results, t0 = [], time.time()
    for i, unit in enumerate(units, start=1):
        path = outdir / UNITS_DIR / f"{unit.name}.json"
        result = read_unit(path, identity, unit, organs)
        how = "resumed"
        if result is None:
            result = _run_unit(unit, opts, real, synthetic, test, len(labels), device)
            result["identity"] = identity
            atomic.write_json(path, result)
            how = f"{result['budget']['train_seconds']:.0f} s"
        mean = [v for v in result["dice"].values() if v is not None]
        shown = f"{sum(mean) / len(mean):.3f}" if mean else "n/a"
        echo(f"unit {i}/{len(units)} {unit.name}: mean Dice {shown} ({how})")
        results.append(result)
    doc = _document(opts, real, synthetic, test, results, organs)
    doc["data"]["generator"] = generator or {"checked": False, "detail": "not given"}
    doc["wall_seconds"] = round(time.time() - t0, 1)
    from mrisynth.downstream.figure import downstream_figure

    atomic.write_bytes(outdir / FIGURE_NAME, downstream_figure(doc))
    atomic.write_json(outdir / RESULT_NAME, doc)
    return doc


def _run_unit(
    unit: Unit,
    opts: DownstreamOptions,
    real: SegSet,
    synthetic: SegSet,
    test: SegSet,
    num_labels: int,
    device: torch.device,
) -> dict[str, Any]:
    organs = list(real.label_names or [])[1:]
    model, budget = train_unit(unit, opts, real, synthetic, num_labels, device)
    pred = predict(model, test, device)
    per_patient = dice_per_patient(pred, test, num_labels)
    hd95 = hd95_per_organ(pred, test, num_labels) if opts.hd95 else [None] * len(organs)
    return {
        "unit": unit.name,
        "arm": unit.arm,
        "fraction": unit.fraction,
        "seed": unit.seed,
        "budget": budget,
        "dice": dict(zip(organs, organ_means(per_patient, len(organs)), strict=True)),
        "hd95": dict(zip(organs, hd95, strict=True)),
        "dice_per_patient": {g: [_finite(v) for v in vals] for g, vals in per_patient.items()},
    }


def _finite(v: float) -> float | None:
    return v if v == v else None  # NaN (organ absent) -> null: JSON has no NaN


def read_unit(path: Path, identity: str, unit: Unit, organs: list[str]) -> dict | None:
    """A finished unit's result, or None (absent, foreign, tampered: then it is retrained)."""
    if not path.is_file():
        return None
    try:
        obj = u.loads(path.read_bytes(), str(path), max_bytes=16 * 2**20)
        u.mapping(obj, path.name)
        if obj.get("identity") != identity:
            raise u.BadValue("another study's result")
        if (obj.get("arm"), obj.get("fraction"), obj.get("seed")) != (
            unit.arm,
            unit.fraction,
            unit.seed,
        ):
            raise u.BadValue("another unit's result")
        for key in ("dice", "hd95"):
            table = u.mapping(obj.get(key), f"{path.name}.{key}")
            if sorted(table) != sorted(organs):
                raise u.BadValue(f"{key} lists other organs")
            for o in organs:
                u.optional(u.number, table[o], f"{key}.{o}", 0.0, 1e9)
        u.number(u.mapping(obj.get("budget"), "budget").get("train_seconds"), "train_seconds")
    except (OSError, u.BadValue) as e:
        log.warning("%s: not reused (%s); training the unit again", path, e)
        return None
    return obj


def _document(
    opts: DownstreamOptions,
    real: SegSet,
    synthetic: SegSet,
    test: SegSet,
    results: list[dict[str, Any]],
    organs: list[str],
) -> dict[str, Any]:
    num_labels = len(organs) + 1
    return {
        "format": FORMAT,
        "version": 1,
        "organs": organs,
        "labels": list(real.label_names or []),
        "options": opts.to_dict(),
        "budget": {
            "steps": opts.steps,
            "batch_size": opts.batch_size,
            "slices_per_unit": opts.steps * opts.batch_size,
            "note": BUDGET_NOTE,
        },
        "network": "monai.networks.nets.UNet (2D, num_res_units=1), DiceCELoss, Adam",
        "scores": "Dice per patient volume (MONAI DiceMetric) averaged over held-out patients; "
        "HD95 per slice in pixels (MONAI HausdorffDistanceMetric) averaged over slices where "
        "truth and prediction both show the organ",
        "data": {
            "real": real.describe(),
            "synthetic": synthetic.describe(),
            "test": test.describe(),
        },
        "chance_dice": chance_dice(test, num_labels),
        "results": summarise(results, organs, opts.fractions),
        "units": [
            {k: r[k] for k in ("unit", "arm", "fraction", "seed", "dice", "hd95", "budget")}
            for r in results
        ],
    }
