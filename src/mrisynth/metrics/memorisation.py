"""Memorisation audit: does the generator copy training images? (beyond Karras et al. 2020)

For each generated image, its nearest training images by normalised cross-correlation (NCC) of
the uint8 pixels (the same quantised images the detectors see, area-downsampled to at most
`compare_size`) and, when detector features are given, by Euclidean feature distance. Reported:
the distribution of nearest distances (pixel distance = 1 - NCC), the nearest/second-nearest
ratio (small = one training image stands out), images flagged as near-copies (NCC >=
`copy_ncc`), and, with a patient-level holdout, generated-to-reference vs holdout-to-reference
distances (a generator closer to its training patients than unseen patients are is a warning).
Works without any downloaded weights.

The JSON summary (`memorisation-<snapshot>.json`, written by the runner/CLI) has the keys:
`metric, snapshot, kimg, num_gen, num_train, compare_size, copy_ncc, seeds: [first, last],
pixel: {nearest_ncc, nearest_distance, ratio: {min, p05, median, p95, max, mean},
histogram: {bin_edges, counts}}, feature: same shape | null, num_flagged, flagged_fraction,
flagged: [{gen_index, seed, train_index, train_name, ncc, second_ncc, ratio,
feature_distance}], holdout: {num_holdout_patients, num_reference_patients,
num_holdout_images, num_reference_images, gen_to_reference, holdout_to_reference (quantiles of
1 - NCC), fraction_gen_below_holdout_p05, mannwhitney_p, warning} | null, picture`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from scipy.stats import mannwhitneyu

log = logging.getLogger(__name__)


def ncc_vectors(images: np.ndarray, compare_size: int = 128) -> np.ndarray:
    """uint8 [N, C, H, W] -> [N, D] float32 rows with zero mean and unit norm.

    The dot product of two rows is their normalised cross-correlation (1 = identical up to
    brightness/contrast). Images larger than `compare_size` are area-downsampled first.
    """
    x = np.asarray(images)
    n, c, h, w = x.shape
    if max(h, w) > compare_size:
        hwc = x.transpose(0, 2, 3, 1)  # [N, H, W, C]
        x = np.stack(
            [
                cv2.resize(im, (compare_size, compare_size), interpolation=cv2.INTER_AREA).reshape(
                    compare_size, compare_size, c
                )
                for im in hwc
            ]
        ).transpose(0, 3, 1, 2)
    rows = x.reshape(n, -1).astype(np.float32)
    rows -= rows.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norm, 1e-6)  # flat images become zero rows (NCC 0 with all)


def top2_similar(
    queries: np.ndarray, refs: np.ndarray, batch: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Two largest dot products of each query row among `refs`: values and indices [Q, 2]."""
    q = torch.from_numpy(np.ascontiguousarray(queries, np.float32))
    r = torch.from_numpy(np.ascontiguousarray(refs, np.float32))
    if r.shape[0] < 2:
        raise ValueError("need at least 2 reference images")
    vals, idx = [], []
    for s in range(0, q.shape[0], batch):
        sim = q[s : s + batch] @ r.T  # [b, R]
        top = torch.topk(sim, 2, dim=1)
        vals.append(top.values)
        idx.append(top.indices)
    return torch.cat(vals).numpy().astype(np.float64), torch.cat(idx).numpy()


def top2_nearest(
    queries: np.ndarray, refs: np.ndarray, batch: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Two smallest Euclidean distances of each query among `refs`: values, indices [Q, 2]."""
    q = torch.from_numpy(np.ascontiguousarray(queries, np.float32))
    r = torch.from_numpy(np.ascontiguousarray(refs, np.float32))
    vals, idx = [], []
    for s in range(0, q.shape[0], batch):
        top = torch.topk(torch.cdist(q[s : s + batch], r), 2, dim=1, largest=False)
        vals.append(top.values)
        idx.append(top.indices)
    return torch.cat(vals).numpy().astype(np.float64), torch.cat(idx).numpy()


def quantiles(values: np.ndarray) -> dict[str, float]:
    """min, p05, median, p95, max, mean of a 1-D sample (JSON-able floats)."""
    v = np.asarray(values, dtype=np.float64)
    p05, med, p95 = np.percentile(v, [5, 50, 95])
    return {
        "min": float(v.min()),
        "p05": float(p05),
        "median": float(med),
        "p95": float(p95),
        "max": float(v.max()),
        "mean": float(v.mean()),
    }


def _ratio(d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    return np.where(d2 > 0, d1 / np.maximum(d2, 1e-12), 1.0)


@dataclass
class AuditInputs:
    """Everything the audit looks at. Arrays are uint8 [N, C, H, W]; features [N, D]."""

    gen: np.ndarray
    train: np.ndarray
    seeds: list[int]
    train_names: list[str]
    patient_keys: list[str] | None = None  # per training image, from manifest.csv
    gen_features: np.ndarray | None = None
    train_features: np.ndarray | None = None


def holdout_comparison(
    gen_vec: np.ndarray,
    train_vec: np.ndarray,
    patient_keys: list[str],
    holdout_fraction: float = 0.2,
    seed: int = 0,
) -> dict | None:
    """Split patients into reference and holdout; compare gen->ref with holdout->ref distances.

    The holdout patients' images give the natural distance from a new patient's slice to the
    reference patients. The archive is the training set, so the generator saw the holdout
    patients too: this measures whether samples sit closer to training images than real
    between-patient similarity explains, not generalisation to unseen patients.
    Returns None when fewer than two patients are known.
    """
    patients = sorted(set(patient_keys))
    if len(patients) < 2:
        return None
    rng = np.random.default_rng(seed)
    num_holdout = min(max(1, round(len(patients) * holdout_fraction)), len(patients) - 1)
    holdout = set(rng.choice(patients, num_holdout, replace=False).tolist())
    is_holdout = np.array([k in holdout for k in patient_keys])
    ref = train_vec[~is_holdout]
    if ref.shape[0] < 2:
        return None
    gen_d = 1 - top2_similar(gen_vec, ref)[0][:, 0]
    hold_d = 1 - top2_similar(train_vec[is_holdout], ref)[0][:, 0]
    p05 = float(np.percentile(hold_d, 5))
    p_value = float(mannwhitneyu(gen_d, hold_d, alternative="less").pvalue)
    return {
        "num_holdout_patients": num_holdout,
        "num_reference_patients": len(patients) - num_holdout,
        "num_holdout_images": int(is_holdout.sum()),
        "num_reference_images": int((~is_holdout).sum()),
        "gen_to_reference": quantiles(gen_d),
        "holdout_to_reference": quantiles(hold_d),
        "fraction_gen_below_holdout_p05": float((gen_d < p05).mean()),
        "mannwhitney_p": p_value,
        "warning": bool(p_value < 0.01 and np.median(gen_d) < np.median(hold_d)),
    }


@dataclass
class AuditResult:
    """`summary`: the JSON-able dict above; `closest_pairs`: (gen, train, ncc), closest first."""

    summary: dict
    closest_pairs: list[tuple[int, int, float]]


def audit(
    inputs: AuditInputs,
    copy_ncc: float = 0.97,
    compare_size: int = 128,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    bins: int = 50,
) -> AuditResult:
    """Run the audit. The summary is the dict described in the module docstring, without
    `metric/snapshot/kimg/picture` (the caller adds those)."""
    gen_vec = ncc_vectors(inputs.gen, compare_size)  # [G, D]
    train_vec = ncc_vectors(inputs.train, compare_size)  # [N, D]
    sims, idx = top2_similar(gen_vec, train_vec)
    d1, d2 = 1 - sims[:, 0], 1 - sims[:, 1]
    ratio = _ratio(d1, d2)
    counts, edges = np.histogram(d1, bins=bins, range=(0.0, max(1.0, float(d1.max()))))
    summary: dict = {
        "num_gen": int(gen_vec.shape[0]),
        "num_train": int(train_vec.shape[0]),
        "compare_size": int(min(compare_size, inputs.train.shape[-1])),
        "copy_ncc": copy_ncc,
        "seeds": [inputs.seeds[0], inputs.seeds[-1]] if inputs.seeds else None,
        "pixel": {
            "nearest_ncc": quantiles(sims[:, 0]),
            "nearest_distance": quantiles(d1),
            "ratio": quantiles(ratio),
            "histogram": {"bin_edges": edges.tolist(), "counts": counts.tolist()},
        },
        "feature": None,
    }
    feat_d1 = None
    if inputs.gen_features is not None and inputs.train_features is not None:
        fd, _ = top2_nearest(inputs.gen_features, inputs.train_features)
        feat_d1 = fd[:, 0]
        fcounts, fedges = np.histogram(feat_d1, bins=bins)
        summary["feature"] = {
            "nearest_distance": quantiles(feat_d1),
            "ratio": quantiles(_ratio(fd[:, 0], fd[:, 1])),
            "histogram": {"bin_edges": fedges.tolist(), "counts": fcounts.tolist()},
        }
    flagged_idx = np.flatnonzero(sims[:, 0] >= copy_ncc)
    flagged_idx = flagged_idx[np.argsort(-sims[flagged_idx, 0])]
    summary["flagged"] = [
        {
            "gen_index": int(i),
            "seed": int(inputs.seeds[i]) if inputs.seeds else None,
            "train_index": int(idx[i, 0]),
            "train_name": inputs.train_names[idx[i, 0]],
            "ncc": float(sims[i, 0]),
            "second_ncc": float(sims[i, 1]),
            "ratio": float(ratio[i]),
            "feature_distance": None if feat_d1 is None else float(feat_d1[i]),
        }
        for i in flagged_idx
    ]
    summary["num_flagged"] = len(flagged_idx)
    summary["flagged_fraction"] = len(flagged_idx) / max(1, gen_vec.shape[0])
    summary["holdout"] = None
    if inputs.patient_keys is not None:
        summary["holdout"] = holdout_comparison(
            gen_vec, train_vec, inputs.patient_keys, holdout_fraction, seed
        )
    order = np.argsort(-sims[:, 0])
    pairs = [(int(i), int(idx[i, 0]), float(sims[i, 0])) for i in order]
    return AuditResult(summary, pairs)


def side_by_side(
    gen: np.ndarray, train: np.ndarray, pairs: list[tuple[int, int, float]], max_rows: int = 8
) -> np.ndarray:
    """Picture of the closest pairs: rows of [generated | nearest training | |difference|].

    uint8 [rows*H, 3*W] grey (first channel of colour images), 2-pixel separators.
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
