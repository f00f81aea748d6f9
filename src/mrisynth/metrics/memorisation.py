"""Memorisation audit: does the generator copy training images? (beyond Karras et al. 2020)

Every generated image is compared with every training image on the body, not the background
(`mrisynth.metrics.body_features`: stable body mask, shift-robust crop, grey levels standardised
inside the body, mirror image counted). Two answers:

- Per image: its nearest training image, that image's patient, the distance, its percentile
  among the real between-patient nearest-neighbour distances (each training image to its
  nearest image of ANOTHER patient), and a flag when it is closer than the 1st percentile of
  those: closer to a training image than real images of other patients are 99 % of the time.
  The threshold comes from the data, never a constant.
- For the set: the data-copying test of Meehan et al. 2020 (`mrisynth.metrics.copytest`)
  against real images of held-out patients (`mrisynth dataset --holdout-patients N` writes
  them beside the training archive). Without a holdout there is no statistic, and a verdict
  says how to make one.

The JSON summary (`memorisation-<snapshot>.json`, written by the runner) has the keys
`metric, snapshot, kimg` (the caller's), `num_gen, num_train, num_holdout, representation,
copy_test: {statistic, value, p_value, threshold, threshold_source, threshold_percentile,
num_flagged, flagged_fraction, holdout, holdout_flagged_fraction, num_cells, cells},
distances: {generated, holdout, between_patient (quantiles), histogram}, images: [{gen_index,
gen_name, seed, train_index, train_name, patient_key, distance, percentile, flagged}] (every
generated image), feature: {nearest_distance quantiles} | null, verdicts, picture`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from mrisynth.metrics import body_features as bf
from mrisynth.metrics import copytest as ct
from mrisynth.metrics.audit_verdicts import copy_verdicts

log = logging.getLogger(__name__)

CALIBRATION_MAX = 5000  # training images whose between-patient distance sets the threshold


def quantiles(values: np.ndarray) -> dict[str, float] | None:
    """min, p05, median, p95, max, mean of the finite values (None when there are none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    p05, med, p95 = np.percentile(v, [5, 50, 95])
    return {
        "min": float(v.min()),
        "p05": float(p05),
        "median": float(med),
        "p95": float(p95),
        "max": float(v.max()),
        "mean": float(v.mean()),
    }


@dataclass
class AuditInputs:
    """Everything the audit looks at. Images are uint8 [N, C, H, W]; features [N, D]."""

    gen: np.ndarray
    train: np.ndarray
    train_names: list[str]
    patient_keys: list[str] | None = None  # per training image
    holdout: np.ndarray | None = None  # real images of patients training never saw
    seeds: list[int] | None = None  # per generated image, when it came from a network
    gen_names: list[str] | None = None  # `seed<N>` or file names; default from seeds/index
    gen_features: np.ndarray | None = None
    train_features: np.ndarray | None = None

    def names(self) -> list[str]:
        if self.gen_names is not None:
            return list(self.gen_names)
        if self.seeds:
            return [f"seed{s}" for s in self.seeds]
        return [f"image{i}" for i in range(len(self.gen))]


@dataclass
class AuditResult:
    """`summary`: the JSON-able dict above; `closest_pairs`: (gen, train, distance), closest
    first."""

    summary: dict
    closest_pairs: list[tuple[int, int, float]]


def _calibration(
    train_vec: np.ndarray, keys: list[str] | None, seed: int
) -> tuple[np.ndarray, str]:
    """Real nearest-neighbour distances the threshold is taken from, and what they are."""
    rows = np.arange(len(train_vec))
    if len(rows) > CALIBRATION_MAX:
        rows = np.sort(np.random.default_rng(seed).choice(rows, CALIBRATION_MAX, replace=False))
    if keys is not None and len(set(keys)) > 1:
        dist = bf.nearest_other_patient(train_vec, keys, rows)
        return dist, "between-patient nearest-neighbour distances of the training images"
    dist = bf.nearest_other_image(train_vec, rows)
    return dist, (
        "nearest other training image (no patient keys: neighbouring slices of one patient "
        "count too, so the threshold is lower and flags fewer images)"
    )


def _histogram(parts: dict[str, np.ndarray], bins: int) -> dict:
    finite = [v[np.isfinite(v)] for v in parts.values() if v is not None]
    top = max([float(v.max()) for v in finite if v.size] + [1e-6])
    edges = np.linspace(0.0, top * 1.02, bins + 1)
    out = {"bin_edges": edges.tolist()}
    for key, v in parts.items():
        out[key] = None if v is None else np.histogram(v[np.isfinite(v)], edges)[0].tolist()
    return out


def _copy_test(gen_vec, train_vec, gen_dist, holdout_vec, seed) -> tuple[dict, np.ndarray | None]:
    """Meehan et al.'s Z_U with the held-out patients (nothing without them)."""
    if holdout_vec is None or len(holdout_vec) == 0:
        return {"value": None, "p_value": None, "num_cells": 0, "cells": []}, None
    hold_dist = bf.nearest(holdout_vec, train_vec)[0]
    centroids = ct.partition(train_vec, ct.num_cells(len(train_vec), len(holdout_vec)), seed)
    zu = ct.zu_statistic(
        gen_dist,
        hold_dist,
        ct.assign_cells(centroids, gen_vec),
        ct.assign_cells(centroids, holdout_vec),
    )
    cells = [
        {"cell": c.cell, "num_gen": c.num_gen, "num_holdout": c.num_holdout, "z": c.z}
        for c in zu.cells
    ]
    return {
        "value": zu.value,
        "p_value": zu.p_value,
        "num_cells": len(centroids),
        "cells": cells,
    }, hold_dist


def audit(
    inputs: AuditInputs,
    percentile: float = ct.DEFAULT_PERCENTILE,
    size: int = bf.DEFAULT_SIZE,
    seed: int = 0,
    bins: int = 40,
) -> AuditResult:
    """Run the audit; the summary is the dict of the module docstring without
    `metric/snapshot/kimg/picture` (the caller adds those)."""
    if len(inputs.gen) == 0 or len(inputs.train) < 2:
        raise ValueError("the audit needs generated images and at least 2 training images")
    train_vec = bf.body_vectors(inputs.train, size)
    gen_vec = bf.body_vectors(inputs.gen, size)
    hold_vec = None if inputs.holdout is None else bf.body_vectors(inputs.holdout, size)
    gen_dist, gen_idx = bf.nearest(gen_vec, train_vec)
    between, source = _calibration(train_vec, inputs.patient_keys, seed)
    finite = between[np.isfinite(between)]
    threshold = ct.copy_threshold(finite, percentile) if finite.size else None
    flagged = gen_dist < threshold if threshold is not None else np.zeros(len(gen_dist), bool)
    pct = ct.percentile_of(gen_dist, finite)
    test, hold_dist = _copy_test(gen_vec, train_vec, gen_dist, hold_vec, seed)
    copy_test = {
        "statistic": "meehan_zu",
        **{k: test[k] for k in ("value", "p_value")},
        "threshold": threshold,
        "threshold_source": source,
        "threshold_percentile": percentile,
        "num_flagged": int(flagged.sum()),
        "flagged_fraction": float(flagged.mean()),
        "holdout": hold_dist is not None,
        "holdout_flagged_fraction": (
            None
            if hold_dist is None or threshold is None
            else float((hold_dist < threshold).mean())
        ),
        "num_cells": test["num_cells"],
        "cells": test["cells"],
    }
    summary = {
        "num_gen": len(gen_vec),
        "num_train": len(train_vec),
        "num_holdout": 0 if hold_vec is None else len(hold_vec),
        "representation": {
            "name": "body",
            "size": size,
            "mirror": True,
            "distance": "RMS difference of grey levels standardised inside the body mask",
        },
        "copy_test": copy_test,
        "distances": {
            "generated": quantiles(gen_dist),
            "holdout": None if hold_dist is None else quantiles(hold_dist),
            "between_patient": quantiles(finite),
            "histogram": _histogram(
                {"generated": gen_dist, "holdout": hold_dist, "between_patient": finite}, bins
            ),
        },
        "images": _image_records(inputs, gen_idx, gen_dist, pct, flagged),
        "feature": None,
    }
    feat = _feature_distances(inputs)
    if feat is not None:  # a second view: the detector's idea of the nearest training image
        summary["feature"] = {"nearest_distance": quantiles(feat)}
        for rec, d in zip(summary["images"], feat, strict=True):
            rec["feature_distance"] = float(d)
    summary["verdicts"] = copy_verdicts(copy_test, summary["num_gen"])
    order = np.argsort(gen_dist, kind="stable")
    pairs = [(int(i), int(gen_idx[i]), float(gen_dist[i])) for i in order]
    return AuditResult(summary, pairs)


def _image_records(inputs, gen_idx, gen_dist, pct, flagged) -> list[dict]:
    names = inputs.names()
    keys = inputs.patient_keys
    return [
        {
            "gen_index": i,
            "gen_name": names[i],
            "seed": int(inputs.seeds[i]) if inputs.seeds else None,
            "train_index": int(gen_idx[i]),
            "train_name": inputs.train_names[gen_idx[i]],
            "patient_key": keys[gen_idx[i]] if keys else None,
            "distance": float(gen_dist[i]),
            "percentile": None if np.isnan(pct[i]) else float(pct[i]),
            "flagged": bool(flagged[i]),
        }
        for i in range(len(gen_dist))
    ]


def _feature_distances(inputs: AuditInputs) -> np.ndarray | None:
    """Distance to the nearest training image in detector-feature space, when present."""
    if inputs.gen_features is None or inputs.train_features is None:
        return None
    g = np.asarray(inputs.gen_features, np.float64)
    t = np.asarray(inputs.train_features, np.float64)
    d = (g * g).sum(1)[:, None] + (t * t).sum(1)[None, :] - 2 * g @ t.T
    return np.sqrt(np.maximum(d.min(axis=1), 0.0))


def side_by_side(
    gen: np.ndarray, train: np.ndarray, pairs: list[tuple[int, int, float]], max_rows: int = 8
) -> np.ndarray:
    """Picture of the closest pairs: rows of [generated | nearest training | |difference|].

    uint8 [rows*H, 3*W] grey (first channel of colour images), 2-pixel separators. The
    difference is of the raw pixels: a flipped or shifted copy shows a large one.
    """
    pairs = pairs[:max_rows]
    if not pairs:
        raise ValueError("no pairs to draw")
    h, w = gen.shape[-2:]
    sep = 2
    out = np.full([len(pairs) * (h + sep) - sep, 3 * w + 2 * sep], 255, np.uint8)
    for row, (gi, ti, _) in enumerate(pairs):
        g = gen[gi, 0].astype(np.int16)
        t = train[ti, 0].astype(np.int16)
        y = row * (h + sep)
        for col, tile in enumerate((g, t, np.abs(g - t))):
            x = col * (w + sep)
            out[y : y + h, x : x + w] = tile.astype(np.uint8)
    return out


def audit_archive(
    archive,
    gen: np.ndarray,
    seeds: list[int] | None,
    gen_names: list[str] | None,
    gen_features: np.ndarray | None = None,
    train_features: np.ndarray | None = None,
    seed: int = 0,
    percentile: float = ct.DEFAULT_PERCENTILE,
) -> tuple[AuditResult, np.ndarray]:
    """Audit generated images against a training archive and its held-out patients (the
    sibling `-holdout` archive, `mrisynth.data.holdout`); returns (result, training images).

    InputError when the holdout shares a patient with the training archive."""
    from mrisynth.data.archive import ImageArchive
    from mrisynth.data.holdout import find_holdout
    from mrisynth.errors import InputError
    from mrisynth.metrics.diversity import archive_patient_keys
    from mrisynth.metrics.sources import read_real_images

    train = read_real_images(archive)
    if len(train) < 2:
        where = getattr(archive, "path", "the training archive")
        raise InputError(f"{where}: the memorisation audit needs at least 2 training images")
    held = find_holdout(archive) if isinstance(archive, ImageArchive) else None
    inputs = AuditInputs(
        gen=gen,
        train=train,
        train_names=list(archive.names),
        patient_keys=archive_patient_keys(archive),
        holdout=None if held is None else read_real_images(held),
        seeds=seeds or None,
        gen_names=gen_names,
        gen_features=gen_features,
        train_features=train_features,
    )
    return audit(inputs, percentile=percentile, seed=seed), train


def record_results(name: str, summary: dict) -> dict[str, float]:
    """The numbers of an audit that go into `metric-<name>.jsonl` (defined ones only)."""
    c = summary["copy_test"]
    values = {
        "flagged_fraction": c["flagged_fraction"],
        "threshold": c["threshold"],
        "zu": c["value"],
        "zu_p": c["p_value"],
        "holdout_flagged_fraction": c["holdout_flagged_fraction"],
        "distance_median": (summary["distances"]["generated"] or {}).get("median"),
    }
    return {f"{name}_{k}": float(v) for k, v in values.items() if v is not None}


def audit_stem(snapshot: str) -> str:
    """`memorisation-<snapshot>` without `.safetensors`/`.zip`, keeping any other dot, so that
    sub-kimg snapshots (`network-snapshot-000000.008`) do not overwrite each other's audit."""
    name = str(snapshot).replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".safetensors", ".zip"):
        name = name.removesuffix(suffix)
    return f"memorisation-{name}"
