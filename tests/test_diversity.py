"""Diversity measures and the mode-collapse alarm: a collapsed set rings it, real held-out
patients do not; coverage and pair sampling checked against brute force."""

import json

import numpy as np
import pytest

from mrisynth.errors import ConfigError
from mrisynth.metrics import body_features as bf
from mrisynth.metrics import diversity as dv
from phantom_bodies import cohort, collapsed

KEYS = {
    "msssim_gen",
    "msssim_real",
    "msssim_ratio",
    "body_area_std_gen",
    "body_area_std_real",
    "mean_intensity_std_gen",
    "mean_intensity_std_real",
    "coverage",
}


@pytest.fixture(scope="module")
def data():
    train, keys = cohort(0, 10)
    holdout, _ = cohort(10, 4)
    return train, keys, holdout


def test_collapsed_set_rings_the_alarm_and_real_unseen_patients_do_not(data):
    train, keys, holdout = data
    real = dv.diversity(holdout, train, keys)
    bad = dv.diversity(collapsed(train[30], 48, noise=6.0), train, keys)
    r, c = real.results, bad.results
    gap = {k: v["msssim_gen"] - v["msssim_real"] for k, v in (("held-out", r), ("collapsed", c))}
    area = {k: v["body_area_std_gen"] / v["body_area_std_real"] for k, v in (("r", r), ("c", c))}
    print(f"MS-SSIM gap {gap}, area spread ratio {area}, coverage {r['coverage']}/{c['coverage']}")
    assert set(r) == KEYS and set(c) == KEYS
    assert [v["level"] for v in real.verdicts] == ["ok"]
    assert [v["level"] for v in bad.verdicts] == ["warning"]
    assert bad.verdicts[0]["topic"] == "diversity" and "Mode collapse" in bad.verdicts[0]["title"]
    assert c["msssim_gen"] > 0.9 and c["coverage"] < r["coverage"]
    assert r["msssim_real"] == c["msssim_real"]  # same seed, same real pairs
    json.dumps([real.verdicts, bad.verdicts], allow_nan=False)
    assert "`" not in bad.verdicts[0]["text"] and "*" not in bad.verdicts[0]["text"]


def test_each_criterion_alone_rings(data):
    base = {k: 1.0 for k in KEYS} | {"msssim_gen": 0.4, "msssim_real": 0.4}
    assert dv.collapse_verdict(base)["level"] == "ok"
    for change in (
        {"msssim_gen": 0.66},
        {"body_area_std_gen": 0.24},
        {"mean_intensity_std_gen": 0.2},
    ):
        assert dv.collapse_verdict(base | change)["level"] == "warning", change
    assert dv.collapse_verdict(base | {"msssim_gen": 0.64})["level"] == "ok"
    low = dv.collapse_verdict(base | {"coverage": 0.05})
    assert low["level"] == "warning" and "cover little" in low["title"]
    assert dv.collapse_verdict(base | {"coverage": float("nan")})["level"] == "ok"


def test_real_pairs_are_of_different_patients():
    rng = np.random.default_rng(0)
    groups = ["a"] * 5 + ["b"] * 3 + ["c"]
    pairs = dv.random_pairs(9, 1000, rng, groups)
    assert len(pairs) == 5 * 3 + 5 + 3  # all admissible pairs when fewer than asked
    assert all(groups[i] != groups[j] for i, j in pairs)
    few = dv.random_pairs(100, 50, rng)
    assert few.shape == (50, 2) and (few[:, 0] != few[:, 1]).all()
    assert len({tuple(p) for p in few}) == 50


def test_coverage_equals_brute_force(data):
    train, _, holdout = data
    real = bf.body_vectors(train[::3])
    gen = bf.body_vectors(holdout[::2])
    d_rr = np.array([[_dist(a, b) for b in real] for a in real])
    np.fill_diagonal(d_rr, np.inf)
    radius = np.sort(d_rr, axis=1)[:, 4]  # 5th nearest other real image
    d_rg = np.array([[_dist(a, b) for b in gen] for a in real])
    expected = float((d_rg.min(axis=1) < radius).mean())
    assert dv.coverage(real, gen) == pytest.approx(expected, abs=1e-12)
    assert dv.coverage(real, real) == 1.0
    assert np.isnan(dv.coverage(real[:5], gen))  # k = 5 needs more than 5 real images


def _dist(a, b):
    flip = a.reshape(32, 32)[:, ::-1].ravel()
    d = min(np.sum((a.astype(float) - b) ** 2), np.sum((flip.astype(float) - b) ** 2))
    return np.sqrt(d / a.size)


def test_hostile_sets(data):
    train, keys, _ = data
    with pytest.raises(ValueError, match="at least 2"):
        dv.diversity(train[:1], train, keys)
    blank = np.zeros([6, 1, 32, 32], np.uint8)
    res = dv.diversity(blank, train, keys)  # no body anywhere: defined numbers, an alarm
    assert res.verdicts[0]["level"] == "warning"
    rec = dv.finite_results("diversity6", res.results)
    assert all(np.isfinite(v) for v in rec.values()) and "diversity6_msssim_gen" in rec
    json.dumps(rec, allow_nan=False)
    tiny = np.zeros([4, 1, 8, 8], np.uint8)
    with pytest.raises(ConfigError, match="at least 11 px, these are 8x8"):
        dv.diversity(tiny, tiny)
