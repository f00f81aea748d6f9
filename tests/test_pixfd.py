"""pixfd: the weight-free Fréchet distance (maths, features against scipy, hostile input)."""

import cv2
import numpy as np
import pytest
import scipy.stats

from mrisynth.metrics.pixfd import (
    NUM_FEATURES,
    image_features,
    pixel_features,
    pixel_frechet_distance,
)


def _bodies(n, seed, brightness=140.0, scale=1.0, size=48):
    """Noisy textured ellipses of varied size and position: uint8 [n, 1, size, size]."""
    rng = np.random.default_rng(seed)
    out = np.zeros([n, 1, size, size], np.uint8)
    for i in range(n):
        img = np.zeros([size, size], np.float32)
        ax = (
            int(size * scale * rng.uniform(0.25, 0.35)),
            int(size * scale * rng.uniform(0.18, 0.28)),
        )
        centre = (size // 2 + int(rng.integers(-3, 4)), size // 2 + int(rng.integers(-3, 4)))
        cv2.ellipse(img, centre, ax, 0, 0, 360, brightness * rng.uniform(0.85, 1.15), -1)
        organ = (centre[0] + int(rng.integers(-4, 5)), centre[1])
        cv2.circle(img, organ, int(size * scale * 0.08), brightness * 0.6, -1)
        body = img > 0
        img[body] += rng.normal(0, 8, body.sum())
        out[i, 0] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def test_identical_sets_give_zero_and_same_distribution_is_small():
    a = pixel_features(_bodies(150, 0))
    assert abs(pixel_frechet_distance(a, a.copy())) < 1e-6
    b = pixel_features(_bodies(150, 1))
    shifted = pixel_features(_bodies(150, 1, brightness=180))
    assert pixel_frechet_distance(a, b) < pixel_frechet_distance(a, shifted) / 3


@pytest.mark.parametrize(
    "kwargs", [{"brightness": v} for v in (140, 160, 185, 215)], ids=lambda k: str(k)
)
def test_feature_extraction_is_deterministic(kwargs):
    imgs = _bodies(4, 5, **kwargs)
    np.testing.assert_array_equal(pixel_features(imgs), pixel_features(imgs.copy()))


def test_distance_grows_monotonically_with_brightness_and_size_shifts():
    real = pixel_features(_bodies(150, 2))
    by_brightness = [
        pixel_frechet_distance(real, pixel_features(_bodies(150, 3, brightness=v)))
        for v in (140, 155, 175, 205)
    ]
    assert by_brightness == sorted(by_brightness) and by_brightness[-1] > 3 * by_brightness[0]
    by_size = [
        pixel_frechet_distance(real, pixel_features(_bodies(150, 3, scale=s)))
        for s in (1.0, 0.9, 0.8, 0.65)
    ]
    assert by_size == sorted(by_size) and by_size[-1] > 3 * by_size[0]


def test_features_of_a_disc_match_independent_values():
    size, r, grey = 64, 20, 150
    img = np.zeros([size, size], np.uint8)
    cv2.circle(img, (32, 30), r, grey, -1)
    f = image_features(img)
    assert f.shape == (NUM_FEATURES,)
    grid, inten, shape, texture = f[:64], f[64:75], f[75:83], f[83:]
    mask = img > 0
    assert grid.mean() == pytest.approx((img / 255.0).mean(), rel=1e-5)
    assert inten[0] == pytest.approx(grey / 255, abs=1e-6) and inten[1] == pytest.approx(
        0, abs=1e-6
    )
    assert shape[0] == pytest.approx(mask.mean(), rel=1e-9)
    assert shape[1] == pytest.approx(1.0, abs=0.15)  # perimeter^2 / (4 pi area) of a disc
    assert shape[5] == pytest.approx(32 / size, abs=0.01) and shape[6] == pytest.approx(
        30 / size, abs=0.01
    )
    assert shape[7] < 0.2  # a disc is not elongated
    assert texture[0] > 0  # the rim has edges
    # a textured body: skewness/kurtosis/percentiles against scipy/numpy on the same values
    rng = np.random.default_rng(0)
    img2 = img.astype(np.float64)
    img2[mask] += rng.gamma(2.0, 10.0, mask.sum())
    img2 = np.clip(img2, 0, 255).astype(np.uint8)
    got = image_features(img2)[64:75]
    vals = img2[mask] / 255.0
    want = [vals.mean(), vals.std(), scipy.stats.skew(vals), scipy.stats.kurtosis(vals)]
    np.testing.assert_allclose(got[:4], want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got[4:9], np.percentile(vals, [10, 25, 50, 75, 90]), atol=1e-6)


def test_blank_and_rgb_images_and_hostile_input():
    blank = np.zeros([3, 1, 16, 16], np.uint8)
    assert not pixel_features(blank).any()
    rgb = np.repeat(_bodies(2, 4, size=16), 3, axis=1)
    np.testing.assert_allclose(pixel_features(rgb), pixel_features(rgb[:, :1]), atol=1e-12)
    with pytest.raises(ValueError):
        pixel_features(np.zeros([2, 1, 16, 16], np.uint16))
    with pytest.raises(ValueError):
        pixel_features(np.zeros([2, 2, 16, 16], np.uint8))
    a = np.random.default_rng(0).normal(size=[10, NUM_FEATURES])
    bad = a.copy()
    bad[2, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        pixel_frechet_distance(a, bad)
    with pytest.raises(ValueError):
        pixel_frechet_distance(a, a[:, :5])
    with pytest.raises(ValueError, match="at least 2"):
        pixel_frechet_distance(a, a[:1])
