"""Memorisation audit: planted copies are flagged, fresh samples are not; holdout comparison."""

import cv2
import numpy as np
import pytest

from mrisynth.metrics import memorisation as mem


def _phantoms(n, seed, size=32):
    """Distinct random 'anatomies': a few ellipses of random place, size and grey level."""
    rng = np.random.default_rng(seed)
    out = np.zeros([n, 1, size, size], np.uint8)
    for i in range(n):
        img = np.zeros([size, size], np.float64)
        for _ in range(4):
            centre = tuple(int(v) for v in rng.integers(6, size - 6, 2))
            axes = tuple(int(v) for v in rng.integers(2, 9, 2))
            cv2.ellipse(
                img,
                centre,
                axes,
                float(rng.uniform(0, 180)),
                0,
                360,
                float(rng.uniform(60, 250)),
                -1,
            )
        out[i, 0] = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    return out


def test_ncc_vectors_are_invariant_to_brightness_and_contrast():
    img = _phantoms(1, 0)
    brighter = np.clip(img.astype(np.float64) * 0.8 + 20, 0, 255).astype(np.uint8)
    v = mem.ncc_vectors(np.concatenate([img, brighter]))
    assert v[0] @ v[1] > 0.999
    assert not mem.ncc_vectors(np.zeros([1, 1, 8, 8], np.uint8)).any()


def test_planted_copy_is_flagged_and_fresh_samples_are_not():
    train = _phantoms(40, 1)
    fresh = _phantoms(12, 2)
    gen = fresh.copy()
    gen[5] = train[17]  # an exact copy
    gen[9] = np.clip(train[3].astype(int) + 15, 0, 255).astype(np.uint8)  # brightened copy
    inputs = mem.AuditInputs(
        gen=gen,
        train=train,
        seeds=list(range(100, 112)),
        train_names=[f"t{i}.png" for i in range(40)],
    )
    result = mem.audit(inputs, copy_ncc=0.97)
    s = result.summary
    assert s["num_flagged"] == 2 and s["flagged_fraction"] == pytest.approx(2 / 12)
    flagged = {f["gen_index"]: f for f in s["flagged"]}
    assert flagged[5]["train_name"] == "t17.png" and flagged[5]["ncc"] == pytest.approx(1.0)
    assert flagged[5]["seed"] == 105 and flagged[9]["train_index"] == 3
    assert flagged[5]["ratio"] < 0.05  # the copy stands out from the second-nearest
    assert s["pixel"]["nearest_ncc"]["median"] < 0.9
    assert sum(s["pixel"]["histogram"]["counts"]) == 12
    assert result.closest_pairs[0][0] in (5, 9)
    pic = mem.side_by_side(gen, train, result.closest_pairs, max_rows=3)
    assert pic.shape == (3 * 32 + 2 * 2, 3 * 32 + 2 * 2) and pic.dtype == np.uint8
    np.testing.assert_array_equal(pic[:32, :32], gen[result.closest_pairs[0][0], 0])


def test_feature_space_neighbours_are_reported():
    train = _phantoms(10, 3)
    gen = _phantoms(4, 4)
    rng = np.random.default_rng(0)
    inputs = mem.AuditInputs(
        gen=gen,
        train=train,
        seeds=[0, 1, 2, 3],
        train_names=[str(i) for i in range(10)],
        gen_features=rng.normal(size=[4, 5]),
        train_features=rng.normal(size=[10, 5]),
    )
    s = mem.audit(inputs).summary
    assert s["feature"]["nearest_distance"]["min"] > 0 and s["num_flagged"] == 0


def test_holdout_comparison_warns_only_for_copies():
    train = _phantoms(60, 5)
    keys = [f"p{i // 6}" for i in range(60)]  # 10 patients x 6 slices
    copies = train[:30]  # the generator reproduces training slices
    warn = mem.holdout_comparison(
        mem.ncc_vectors(copies), mem.ncc_vectors(train), keys, holdout_fraction=0.3, seed=0
    )
    assert warn["num_holdout_patients"] == 3 and warn["num_holdout_images"] == 18
    fresh = mem.holdout_comparison(
        mem.ncc_vectors(_phantoms(30, 6)),
        mem.ncc_vectors(train),
        keys,
        holdout_fraction=0.3,
        seed=0,
    )
    assert fresh["warning"] is False
    # copies of reference-patient slices sit at distance 0 (the holdout never does)
    assert warn["gen_to_reference"]["min"] == pytest.approx(0, abs=1e-6)
    assert warn["fraction_gen_below_holdout_p05"] > 0.5 and warn["warning"] is True
    assert (
        mem.holdout_comparison(mem.ncc_vectors(copies), mem.ncc_vectors(train), ["same"] * 60)
        is None
    )
