"""`mrisynth downstream`: budgets, scores against an independent computation, the phantom study
(real-only Dice well above chance on held-out phantom patients), resume, the paired test."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from downstream_data import LABELS, phantom_set
from mrisynth.downstream import fit, study
from mrisynth.downstream.options import ARMS, DownstreamOptions, synthetic_per_batch
from mrisynth.downstream.pairs import SegSet
from mrisynth.downstream.scoring import dice_per_patient, hd95_per_organ, organ_means
from mrisynth.downstream.summary import paired_test
from mrisynth.downstream.units import Unit, batches, plan_units, real_subset
from mrisynth.errors import ConfigError

CPU = torch.device("cpu")
# 150 steps of 8 slices at 32 px: ~7 s per network on 2 busy cores
STUDY = DownstreamOptions(seeds=(0,), steps=150, batch_size=8, channels=(16, 32, 64))


@pytest.fixture(scope="module")
def phantom():
    """4 training patients, 2 held-out patients, 4 other phantom patients as 'synthetic'."""
    real = phantom_set(range(1, 5), 32, 8, "real")
    test = phantom_set(range(7, 9), 32, 8, "test")
    synthetic = phantom_set(range(11, 15), 32, 8, "synthetic")
    return real, synthetic, test


@pytest.fixture(scope="module")
def phantom_study(phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "study"
    doc = study.run_study(out, *phantom, STUDY, CPU, echo=lambda _: None)
    return out, doc


def test_every_arm_has_the_same_budget():
    opts = DownstreamOptions(seeds=(0, 1), steps=7, batch_size=6, ratio=0.5,
                             real_fractions=(0.25,))  # fmt: skip
    units = plan_units(opts)
    assert {(u.arm, u.fraction) for u in units} == {
        *((a, 1.0) for a in ARMS), ("real", 0.25), ("real+synthetic", 0.25)}  # fmt: skip
    for unit in units:
        drawn = list(batches(unit, opts, real_subset(40, unit.fraction, unit.seed), 30))
        assert len(drawn) == opts.steps
        assert all(len(r) + len(s) == opts.batch_size for r, s in drawn)
    mixed = Unit("real+synthetic", 1.0, 0).batch_split(opts)
    assert mixed == (4, 2) and synthetic_per_batch(6, 0.5) == 2


def test_arms_of_one_seed_are_paired():
    """Same real stream for real and mixed arms of one seed; a fraction's subset fixed."""
    opts = DownstreamOptions(steps=5, batch_size=4)
    pool = real_subset(50, 0.5, 3)
    assert len(pool) == 25 and np.array_equal(pool, real_subset(50, 0.5, 3))
    real = [r for r, _ in batches(Unit("real", 0.5, 3), opts, pool, 10)]
    mixed = [r for r, _ in batches(Unit("real+synthetic", 0.5, 3), opts, pool, 10)]
    flat = [i for b in real for i in b]
    assert [i for b in mixed for i in b] == flat[: sum(len(b) for b in mixed)]
    assert set(flat) <= set(pool.tolist())


def test_dice_matches_an_independent_count():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (6, 16, 16)).astype(np.uint8)
    labels[:3][labels[:3] == 4] = 0  # patient a has no spleen
    pred = np.where(rng.random(labels.shape) < 0.3, rng.integers(0, 5, labels.shape), labels)
    pred = pred.astype(np.uint8)
    groups = ("a",) * 3 + ("b",) * 3
    test = SegSet("t", labels, labels, groups, LABELS)
    got = dice_per_patient(pred, test, 5)
    for g, idx in (("a", slice(0, 3)), ("b", slice(3, 6))):
        for k in range(1, 5):
            t, p = labels[idx] == k, pred[idx] == k
            want = 2 * (t & p).sum() / (t.sum() + p.sum()) if t.any() else np.nan
            np.testing.assert_allclose(got[g][k - 1], want, rtol=1e-6)
    assert np.isnan(got["a"][3])  # absent organ: not a zero, left out of the mean
    assert organ_means(got, 4)[3] == pytest.approx(got["b"][3])


def test_hd95_of_a_shifted_square_is_the_shift():
    truth = np.zeros((2, 32, 32), dtype=np.uint8)
    truth[:, 8:20, 8:20] = 1
    pred = np.roll(truth, 3, axis=2)
    test = SegSet("t", truth, truth, ("a", "a"), ("background", "liver"))
    assert hd95_per_organ(truth, test, 2) == [0.0]
    assert hd95_per_organ(pred, test, 2) == [pytest.approx(3.0)]


def test_phantom_study_real_only_well_above_chance(phantom_study):
    out, doc = phantom_study
    real = doc["results"]["dice"]["means"]["real"]
    chance = dict(zip(doc["organs"], doc["chance_dice"], strict=True))
    # measured 2026-11-29: liver ~0.83, kidneys ~0.2-0.3, spleen ~0.4; chance <= 0.065
    assert real["liver"]["mean"] > 0.6 > 5 * chance["liver"]
    assert real["all_organs"]["mean"] > 10 * np.mean(doc["chance_dice"])
    assert doc["budget"]["steps"] == 150 and doc["budget"]["batch_size"] == 8
    for unit in doc["units"]:  # identical budgets, recorded per unit
        b = unit["budget"]
        assert (b["steps"], b["batch_real"] + b["batch_synthetic"]) == (150, 8)
    assert {u["arm"] for u in doc["units"]} == set(ARMS)
    assert json.loads((out / study.RESULT_NAME).read_text())["organs"] == list(LABELS[1:])
    assert (out / study.FIGURE_NAME).read_bytes().startswith(b"\x89PNG")


def test_resume_reuses_finished_units(phantom, phantom_study, monkeypatch):
    out, doc = phantom_study

    def no_training(*args, **kwargs):
        raise AssertionError("a finished unit was trained again")

    monkeypatch.setattr(study, "train_unit", no_training)
    again = study.run_study(out, *phantom, STUDY, CPU, echo=lambda _: None)
    assert again["results"]["dice"] == doc["results"]["dice"]


def test_tampered_unit_is_trained_again(phantom, tmp_path):
    real, synthetic, test = phantom
    opts = DownstreamOptions(seeds=(0,), steps=2, batch_size=4, channels=(4, 8), hd95=False)
    study.run_study(tmp_path, real, synthetic, test, opts, CPU, echo=lambda _: None)
    unit = tmp_path / study.UNITS_DIR / "real-f1-seed0.json"
    obj = json.loads(unit.read_text())
    obj["dice"]["liver"] = "NaN"
    unit.write_text(json.dumps(obj))
    lines: list[str] = []
    study.run_study(tmp_path, real, synthetic, test, opts, CPU, echo=lines.append)
    assert "resumed" not in lines[0] and all("resumed" in line for line in lines[1:])
    assert isinstance(json.loads(unit.read_text())["dice"]["liver"], float)


def test_other_options_refuse_the_folder(phantom, tmp_path):
    opts = DownstreamOptions(seeds=(0,), steps=1, batch_size=4, channels=(4, 8), hd95=False)
    study.run_study(tmp_path, *phantom, opts, CPU, echo=lambda _: None)
    with pytest.raises(ConfigError, match="other data or training options"):
        study.run_study(tmp_path, *phantom, DownstreamOptions(seeds=(0,), steps=2, batch_size=4,
                        channels=(4, 8)), CPU, echo=lambda _: None)  # fmt: skip
    (tmp_path.parent / "foreign").mkdir()
    (tmp_path.parent / "foreign" / "x.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        study.run_study(tmp_path.parent / "foreign", *phantom, opts, CPU, echo=lambda _: None)


def test_paired_test_signs_and_pairs():
    organs = ["liver", "spleen"]
    rows = [
        {"arm": arm, "fraction": 1.0, "seed": s, "dice": {"liver": v + s / 100, "spleen": v}}
        for s in range(4)
        for arm, v in (("real", 0.5), ("real+synthetic", 0.6), ("synthetic", 0.5))
    ]
    t = paired_test(rows, organs, "real+synthetic")
    assert t["pairs"] == 8 and t["wins"] == 8 and t["mean_difference"] == pytest.approx(0.1)
    assert t["p_value"] == pytest.approx(2 / 2**8)  # exact: all 8 differences positive
    assert paired_test(rows, organs, "synthetic")["p_value"] is None  # all differences zero


def test_unet_is_monai_and_shapes():
    from monai.networks.nets import UNet

    net = fit.build_unet(5, (4, 8, 16))
    assert isinstance(net, UNet)
    assert net(torch.zeros(2, 1, 16, 16)).shape == (2, 5, 16, 16)


def test_fraction_curve_units_and_figure(phantom, tmp_path):
    opts = DownstreamOptions(seeds=(0, 1), steps=1, batch_size=4, channels=(4, 8), hd95=False,
                             real_fractions=(0.25,))  # fmt: skip
    doc = study.run_study(tmp_path, *phantom, opts, CPU, echo=lambda _: None)
    curve = doc["results"]["fraction_curve"]
    assert [(r["fraction"], r["arm"], r["n"]) for r in curve] == [
        (0.25, "real", 2), (0.25, "real+synthetic", 2), (1.0, "real", 2),
        (1.0, "real+synthetic", 2)]  # fmt: skip
    quarter = [u for u in doc["units"] if u["fraction"] == 0.25]
    assert all(u["budget"]["real_slices_available"] == 8 for u in quarter)  # 25 % of 32
    values = doc["results"]["dice"]["values"]
    assert set(values) == set(ARMS) and set(values["real"]["liver"]) == {"0", "1"}
    png = (tmp_path / study.FIGURE_NAME).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
