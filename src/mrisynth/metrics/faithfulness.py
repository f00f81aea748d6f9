"""Faithfulness of a conditional generator: does an image asked for class c look like class c?

A classifier is fitted on the real training slices to predict their label (position bin,
sequence, or pair; `metrics.label_probe`), then applied to (a) held-out real slices and (b)
slices generated for each class. The generated accuracy next to the real one is the
"classification accuracy score" idea (Shmelkov et al. 2018, "GAN-test"): a generator that
ignores its label scores at chance (1 / number of classes), a faithful one close to the real
accuracy, which is the ceiling this classifier allows. Held-out real slices come from the
patient-level holdout archive (`data/holdout.py`); without one, from a seeded split of the
training archive's patients that the classifier does not see.

Per class it also compares generated with real training slices of the same class: body-area
Wasserstein distance and grey-level Jensen-Shannon divergence (weight-free), and FID when the
Inception detector is present. Result keys (prefix = the metric name, e.g. `faithfulness1k`):
`_acc_gen`, `_acc_real` (class-balanced), `_chance`, `_acc_ratio`, `_classes`, and with at most
`MAX_PER_CLASS` classes `_<class>_acc_gen`, `_<class>_acc_real`, `_<class>_body_area_w1`,
`_<class>_intensity_jsd` (+ `_<class>_fid`, `_<class>_kid` with the Inception detector).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mrisynth.data.holdout import choose_holdout_patients, find_holdout
from mrisynth.data.labels import archive_class_names
from mrisynth.errors import ConfigError, InputError
from mrisynth.generate.seeds import latents_from_seeds
from mrisynth.imaging import quantize_images
from mrisynth.metrics.fid import FrechetDistance
from mrisynth.metrics.kid import kernel_inception_distance
from mrisynth.metrics.label_probe import (
    LinearProbe,
    balanced_accuracy,
    image_features,
    per_class_accuracy,
)
from mrisynth.metrics.weightfree import BodyArea, IntensityHistogram

log = logging.getLogger(__name__)

MAX_PER_CLASS = 32  # per-class keys only up to this many classes (records stay readable)
EVAL_FRACTION = 0.2  # patients held back from the classifier when there is no holdout archive
CAVEAT = ("faithfulness: a logistic-regression classifier on 16x16 grey images, fitted on the "
          "real training slices; compare the generated accuracy with the real one, not with 1")


@dataclass
class Faithfulness:
    """What `evaluate` measured (the runner turns it into a metric record)."""

    results: dict[str, float]
    num_real: int  # held-out real images behind acc_real
    num_gen: int
    caveats: list[str] = field(default_factory=list)


def training_classes(archive) -> np.ndarray:
    """int64 [N]: the class of every image of a one-hot labelled archive."""
    labels = np.asarray(archive.labels)
    if labels.shape[1] == 0:
        raise ConfigError(f"faithfulness: {archive.path} has no labels; make the archive with "
                          "`mrisynth dataset --labels position:K` (or sequence)")
    if not (np.all((labels == 0) | (labels == 1)) and np.all(labels.sum(1) == 1)):
        raise ConfigError(f"faithfulness: {archive.path} has float labels; it needs classes "
                          "(`mrisynth dataset --labels ...`)")
    return labels.argmax(1)


def _batches(archive, indices: list[int], size: int = 64) -> Iterator[tuple[list[int], np.ndarray]]:
    for start in range(0, len(indices), size):
        idx = indices[start : start + size]
        yield idx, np.stack([archive[i] for i in idx])  # uint8 [B, C, H, W]


def _patient_split(archive, seed: int) -> tuple[list[int], list[int], str]:
    """(classifier indices, evaluation indices, caveat) within the training archive."""
    n = len(archive)
    keys = archive.patient_keys
    if keys is not None and len(set(keys)) >= 2:
        count = max(1, round(EVAL_FRACTION * len(set(keys))))
        held = choose_holdout_patients(keys, count, seed)
        why = (f"no holdout archive: real accuracy from {count} training patient(s) the "
               "classifier did not see (seeded split)")
        return ([i for i in range(n) if keys[i] not in held],
                [i for i in range(n) if keys[i] in held], why)
    order = np.random.default_rng(seed).permutation(n)
    cut = max(1, round(EVAL_FRACTION * n))
    why = ("no holdout archive and no patient keys: real accuracy from a random fifth of the "
           "slices; slices of one patient on both sides make it optimistic")
    return sorted(order[cut:].tolist()), sorted(order[:cut].tolist()), why


@torch.no_grad()
def class_images(G, cls: int, seeds: list[int], device, batch_size: int) -> Iterator[np.ndarray]:
    """uint8 [B, C, H, W] batches generated for class `cls` (constant noise: reproducible)."""
    c_dim = int(G.c_dim)
    for start in range(0, len(seeds), batch_size):
        batch = seeds[start : start + batch_size]
        z = torch.from_numpy(latents_from_seeds(batch, int(G.z_dim))).to(device)
        c = torch.zeros(len(batch), c_dim, device=device)
        c[:, cls] = 1
        yield quantize_images(G(z, c, noise_mode="const")).cpu().numpy()


class _PerClass:
    """Weight-free (and optional detector) comparisons of one class's real and generated sets."""

    def __init__(self, extractor) -> None:
        self.area, self.hist = BodyArea(), IntensityHistogram()
        self.fid = FrechetDistance() if extractor is not None else None
        self.features: dict[bool, list[np.ndarray]] = {True: [], False: []}  # for KID

    def update_features(self, features: np.ndarray, real: bool) -> None:
        if self.fid is not None:
            self.fid.update(features, real=real)
            self.features[real].append(features)

    def results(self) -> dict[str, float]:
        out = {"body_area_w1": self.area.compute()["w1"],
               "intensity_jsd": self.hist.compute()["jsd"]}
        if self.fid is not None and self.fid.real.num_items >= 2 and self.fid.gen.num_items >= 2:
            out["fid"] = self.fid.compute()
            real, gen = (np.concatenate(self.features[k]) for k in (True, False))
            out["kid"] = kernel_inception_distance(gen, real, num_subsets=50, seed=0).mean
        return out


def _real_side(archive, classes: np.ndarray, per_class: dict, extractor) -> np.ndarray:
    """Features of every training image; per-class real statistics on the way."""
    feats = []
    real_feats = None
    if extractor is not None:
        from mrisynth.metrics.sources import real_features

        real_feats = real_features(archive, extractor).features()  # cached by content hash
    for idx, imgs in _batches(archive, list(range(len(archive)))):
        feats.append(image_features(imgs))
        for c in np.unique(classes[idx]):
            pick = classes[idx] == c
            pc = per_class[int(c)]
            pc.area.update(imgs[pick], real=True)
            pc.hist.update(imgs[pick], real=True)
            if real_feats is not None:
                pc.update_features(real_feats[np.asarray(idx)[pick]], real=True)
    return np.concatenate(feats)


def _eval_set(archive, feats, classes, seed) -> tuple[np.ndarray, np.ndarray, list[int], list[str]]:
    """(eval features, eval classes, classifier indices, caveats): the holdout archive when
    there is one, else a patient split of the training archive."""
    held = find_holdout(archive)
    if held is None:
        fit_idx, eval_idx, why = _patient_split(archive, seed)
        return feats[eval_idx], classes[eval_idx], fit_idx, [why]
    if held.label_dim != archive.label_dim:
        raise InputError(f"{held.path}: {held.label_dim} classes, the training archive "
                         f"{archive.label_dim}; re-create both with `mrisynth dataset --labels`")
    if archive_class_names(held) != archive_class_names(archive):
        raise InputError(f"{held.path}: other classes than the training archive "
                         f"{archive.path} ({_shown(archive_class_names(held))} vs "
                         f"{_shown(archive_class_names(archive))}); re-create both with one "
                         "`mrisynth dataset --labels ... --holdout-patients`")
    held_classes = training_classes(held)
    every = list(range(len(held)))
    held_feats = np.concatenate([image_features(b) for _, b in _batches(held, every)])
    return held_feats, held_classes, list(range(len(archive))), []


def check_generator_classes(snapshot, archive) -> None:
    """InputError when the snapshot's recorded class names are not the archive's: class c of
    the generator would be scored against another class c of the data (same count, other
    `--labels`). Unnamed snapshots or archives are not checked (nothing to compare)."""
    from mrisynth.generate.classes import snapshot_class_names

    trained = snapshot_class_names(snapshot) if Path(snapshot).is_file() else None
    data = archive_class_names(archive)
    if trained is not None and data is not None and trained != data:
        raise InputError(f"faithfulness: {Path(snapshot).name} was trained on the classes "
                         f"{_shown(trained)}, but {archive.path} has {_shown(data)}; give the "
                         "archive it was trained on (--data), or one made with the same "
                         "`mrisynth dataset --labels`")


def _shown(names: list[str] | None) -> str:
    return "unnamed" if names is None else ", ".join(names[:4]) + (", ..." * (len(names) > 4))


def evaluate(
    G,
    archive,
    num_gen: int,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    first_seed: int = 0,
    seed: int = 0,
    extractor=None,
    prefix: str = "faithfulness",
) -> Faithfulness:
    """Faithfulness of conditional `G` to the classes of `archive` (see the module doc)."""
    if int(getattr(G, "c_dim", 0)) != archive.label_dim or archive.label_dim == 0:
        raise ConfigError(
            f"faithfulness needs a conditional generator trained on {archive.path}'s classes "
            f"(its c_dim {int(getattr(G, 'c_dim', 0))}, the archive {archive.label_dim}); train "
            "with --cond on a `dataset --labels` archive"
        )
    classes = training_classes(archive)
    names = archive_class_names(archive) or [f"c{i}" for i in range(archive.label_dim)]
    present = sorted(int(c) for c in np.unique(classes))
    per_class = {c: _PerClass(extractor) for c in present}
    feats = _real_side(archive, classes, per_class, extractor)
    eval_feats, eval_classes, fit_idx, caveats = _eval_set(archive, feats, classes, seed)
    if len(np.unique(classes[fit_idx])) < 2:
        raise InputError(f"faithfulness: the classifier's real slices of {archive.path} hold one "
                         "class only; use more patients or fewer position bins")
    probe = LinearProbe(archive.label_dim).fit(feats[fit_idx], classes[fit_idx])
    real_acc = per_class_accuracy(probe.predict(eval_feats), eval_classes)
    per_gen = max(2, num_gen // len(present))
    seeds = list(range(first_seed, first_seed + per_gen))
    gen_acc: dict[int, float] = {}
    for c in present:
        preds = []
        for imgs in class_images(G, c, seeds, torch.device(device), batch_size):
            preds.append(probe.predict(image_features(imgs)))
            per_class[c].area.update(imgs, real=False)
            per_class[c].hist.update(imgs, real=False)
            if extractor is not None:
                per_class[c].update_features(extractor(torch.from_numpy(imgs)), real=False)
        gen_acc[c] = float((np.concatenate(preds) == c).mean())
    results = _results(prefix, gen_acc, real_acc, per_class, names, present)
    if set(real_acc) != set(present):
        caveats.append(f"the held-out real slices lack {len(set(present) - set(real_acc))} of "
                       f"the {len(present)} classes")
    if len(present) < archive.label_dim:
        caveats.append(f"{archive.label_dim - len(present)} class(es) have no training image "
                       "and were not generated")
    log.info("%s: generated %.3f, real %.3f, chance %.3f", prefix, results[f"{prefix}_acc_gen"],
             results.get(f"{prefix}_acc_real", float("nan")), results[f"{prefix}_chance"])
    return Faithfulness(results, len(eval_classes), per_gen * len(present), [CAVEAT, *caveats])


def _results(prefix, gen_acc, real_acc, per_class, names, present) -> dict[str, float]:
    acc_gen, acc_real = balanced_accuracy(gen_acc), balanced_accuracy(real_acc)
    out = {
        f"{prefix}_acc_gen": acc_gen,
        f"{prefix}_acc_real": acc_real,
        f"{prefix}_chance": 1.0 / len(present),
        f"{prefix}_classes": float(len(present)),
    }
    if acc_real > 0:
        out[f"{prefix}_acc_ratio"] = acc_gen / acc_real
    if len(present) <= MAX_PER_CLASS:
        for c in present:  # the class name first: the quantity ends the key (records.py)
            out[f"{prefix}_{names[c]}_acc_gen"] = gen_acc[c]
            if c in real_acc:
                out[f"{prefix}_{names[c]}_acc_real"] = real_acc[c]
            for key, value in per_class[c].results().items():
                out[f"{prefix}_{names[c]}_{key}"] = value
    return {k: v for k, v in out.items() if np.isfinite(v)}

