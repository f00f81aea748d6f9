"""Weight-free metrics: intensity histogram distances and body-area statistics."""

import cv2
import numpy as np
import pytest

from mrisynth.metrics.weightfree import (
    BodyArea,
    IntensityHistogram,
    body_mask,
    jensen_shannon_bits,
)


def _slices(n, seed, brightness=150, axes=(20, 14), size=64):
    """Noisy body-like ellipses with a dark 'organ' hole inside: uint8 [N, 1, S, S]."""
    rng = np.random.default_rng(seed)
    out = np.zeros([n, 1, size, size], np.uint8)
    for i in range(n):
        img = np.zeros([size, size], np.float64)
        cv2.ellipse(img, (size // 2, size // 2), axes, 0, 0, 360, brightness, -1)
        cv2.circle(img, (size // 2, size // 2), 4, 5, -1)
        out[i, 0] = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return out


def test_intensity_hist_zero_for_same_images_and_w1_equals_shift():
    real = _slices(6, 0)
    same = IntensityHistogram()
    same.update(real, real=True)
    same.update(real, real=False)
    assert same.compute() == {"w1": 0.0, "jsd": 0.0}
    shifted = IntensityHistogram()
    shifted.update(real, real=True)
    shifted.update(np.clip(real.astype(int) + 10, 0, 255).astype(np.uint8), real=False)
    res = shifted.compute()
    assert res["w1"] == pytest.approx(10, abs=0.05)
    assert 0 < res["jsd"] < 1


def test_jensen_shannon_bounds():
    p = np.array([1.0, 0, 0])
    assert jensen_shannon_bits(p, np.array([0, 0, 2.0])) == pytest.approx(1.0)
    assert jensen_shannon_bits(p, p * 3) == 0.0


def test_body_mask_fills_holes_and_ignores_specks():
    img = _slices(1, 1)[0, 0]
    img[2:4, 2:4] = 200  # a bright speck outside the body
    mask = body_mask(img)
    assert mask[32, 32]  # the dark hole inside is filled
    assert not mask[2, 2]  # not the largest component
    assert mask.mean() == pytest.approx(np.pi * 20 * 14 / 64**2, rel=0.06)
    assert not body_mask(np.zeros([8, 8], np.uint8)).any()


def test_body_area_compares_distributions():
    acc = BodyArea()
    acc.update(_slices(5, 2, axes=(20, 14)), real=True)
    acc.update(_slices(5, 3, axes=(26, 20)), real=False)
    res = acc.compute()
    assert res["gen_mean"] > res["real_mean"]
    expected = np.pi * (26 * 20 - 20 * 14) / 64**2
    assert res["w1"] == pytest.approx(expected, rel=0.1)
    with pytest.raises(ValueError):
        BodyArea().compute()


def test_body_area_and_the_diversity_figures_measure_one_body(tmp_path):
    """`body_area` and `diversity`'s body-area spread once used two masks (Otsu alone vs half
    Otsu + closing) and quoted different 'body area' spreads for the same archive (0.037 vs
    0.032 on the demo's). Phantom slices, with a fat ring the plain Otsu mask cuts open."""
    from mrisynth.data.phantom import render_slice, sample_anatomy
    from mrisynth.metrics.body_features import body_stats
    from mrisynth.metrics.weightfree import body_area_fractions

    rng = np.random.default_rng(3)
    imgs = []
    for _ in range(3):
        anatomy = sample_anatomy(rng, 360.0)
        for z in np.linspace(-60, 60, 5):
            s = render_slice(anatomy, float(z), 48, 7.5, rng, 360.0)["in"].astype(np.float64)
            imgs.append(np.rint(255 * (s - s.min()) / max(np.ptp(s), 1e-9)).astype(np.uint8))
    x = np.stack(imgs)[:, None]
    area, _ = body_stats(x)
    np.testing.assert_array_equal(body_area_fractions(x), area)
