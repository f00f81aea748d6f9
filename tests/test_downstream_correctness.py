"""`mrisynth downstream` against computations by hand: empty organs in Dice, the averaging
(patients, then seeds), the Wilcoxon pairing (seed x organ), one initialisation per seed."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from scipy.stats import wilcoxon

from downstream_data import LABELS
from mrisynth.downstream import fit
from mrisynth.downstream.options import DownstreamOptions
from mrisynth.downstream.pairs import SegSet
from mrisynth.downstream.scoring import dice_per_patient, organ_means
from mrisynth.downstream.summary import arm_table, paired_test
from mrisynth.downstream.units import Unit


def test_empty_truth_leaves_the_patient_out_whatever_the_prediction():
    """MONAI's DiceMetric(ignore_empty=True) gives NaN when the truth lacks the organ, also
    when the prediction shows it (false positives there are not scored); an organ present
    but not predicted is 0."""
    truth = np.zeros((4, 8, 8), np.uint8)
    truth[2:, 2:5, 2:5] = 1  # patient b has a liver; nobody has label 2
    pred = np.zeros_like(truth)
    pred[0, 0:3, 0:3] = 1  # a liver predicted on patient a, who has none
    test = SegSet("t", truth, truth, ("a", "a", "b", "b"), LABELS[:3])
    got = dice_per_patient(pred, test, 3)
    assert np.isnan(got["a"][0]) and np.isnan(got["a"][1])  # empty truth: left out
    assert got["b"][0] == 0.0 and np.isnan(got["b"][1])  # missed organ: 0
    assert organ_means(got, 2) == [0.0, None]  # no patient has label 2: no mean at all


def test_means_are_over_patients_then_seeds():
    rng = np.random.default_rng(5)
    organs = ["liver", "spleen"]
    per_seed = {s: rng.random((3, 2)) for s in range(3)}  # seed -> [patient, organ] Dice
    per_seed[1][0, 1] = np.nan  # absent organ: left out of that seed's mean
    rows = []
    for s, d in per_seed.items():
        means = organ_means({f"p{i}": list(row) for i, row in enumerate(d)}, 2)
        for arm in ("real", "synthetic", "real+synthetic"):
            rows.append({"arm": arm, "fraction": 1.0, "seed": s,
                         "dice": dict(zip(organs, means, strict=True))})  # fmt: skip
    got = arm_table(rows, organs, "dice")["means"]["real"]
    by_seed = np.array([np.nanmean(d, axis=0) for d in per_seed.values()])  # [seed, organ]
    for k, organ in enumerate(organs):
        assert got[organ]["mean"] == pytest.approx(by_seed[:, k].mean())
        assert got[organ]["std"] == pytest.approx(by_seed[:, k].std(ddof=1))
    assert got["all_organs"]["mean"] == pytest.approx(by_seed.mean(axis=1).mean())


def test_wilcoxon_pairs_seed_with_seed_and_organ_with_organ():
    rng = np.random.default_rng(7)
    organs = ["liver", "right_kidney", "spleen"]
    values = {(arm, s): rng.random(3) for arm in ("real", "real+synthetic") for s in range(5)}
    rows = [{"arm": arm, "fraction": 1.0, "seed": s, "dice": dict(zip(organs, v, strict=True))}
            for (arm, s), v in values.items()]  # fmt: skip
    random.Random(0).shuffle(rows)  # order of the units must not matter
    rows.append({"arm": "real", "fraction": 0.5, "seed": 0, "dice": dict.fromkeys(organs, 0.0)})
    diffs = np.concatenate([values["real+synthetic", s] - values["real", s] for s in range(5)])
    want = wilcoxon(diffs, alternative="two-sided")
    got = paired_test(rows, organs, "real+synthetic")
    assert got["pairs"] == 15 and got["mean_difference"] == pytest.approx(diffs.mean())
    assert got["p_value"] == pytest.approx(want.pvalue)
    assert got["statistic"] == pytest.approx(want.statistic)


def test_every_arm_of_a_seed_starts_from_the_same_weights(monkeypatch):
    """Captured at construction: the arms' initial U-Nets are identical per seed, not across."""
    first: dict[tuple[str, int], dict] = {}
    build = fit.build_unet

    def spy(num_labels, channels):
        net = build(num_labels, channels)
        spy.state = {k: v.clone() for k, v in net.state_dict().items()}
        return net

    monkeypatch.setattr(fit, "build_unet", spy)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 16, 16), dtype=np.uint8)
    labels = rng.integers(0, 3, (6, 16, 16), dtype=np.uint8)
    data = SegSet("r", images, labels, ("",) * 6, LABELS[:3])
    opts = DownstreamOptions(seeds=(0, 1), steps=1, batch_size=4, channels=(4, 8))
    for seed in (0, 1):
        for arm in ("real", "synthetic", "real+synthetic"):
            torch.manual_seed(1234 + len(first))  # whatever ran before must not matter
            fit.train_unit(Unit(arm, 1.0, seed), opts, data, data, 3, torch.device("cpu"))
            first[arm, seed] = spy.state
    for seed in (0, 1):
        for arm in ("synthetic", "real+synthetic"):
            a, b = first["real", seed], first[arm, seed]
            assert all(torch.equal(a[k], b[k]) for k in a)
    a, b = first["real", 0], first["real", 1]
    assert not all(torch.equal(a[k], b[k]) for k in a)
