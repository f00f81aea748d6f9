"""MS-SSIM against an independent float64 implementation and scikit-image's SSIM."""

import numpy as np
import pytest

from mrisynth.metrics.msssim import ms_ssim, num_scales

# Published exponents (Wang, Simoncelli & Bovik 2003), typed here, not imported: the module's own
# constant must not be its own reference.
PUBLISHED_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _reference(a: np.ndarray, b: np.ndarray, scales: int) -> float:
    """Straight from Wang et al. 2003: explicit 11x11 window sums at every valid position."""
    x = np.arange(11) - 5.0
    win = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5**2))
    win /= win.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def local_mean(img):
        h, w = img.shape[0] - 10, img.shape[1] - 10
        out = np.zeros([h, w])
        for dy in range(11):
            for dx in range(11):
                out += win[dy, dx] * img[dy : dy + h, dx : dx + w]
        return out

    weights = np.array(PUBLISHED_WEIGHTS[:scales]) / np.sum(PUBLISHED_WEIGHTS[:scales])
    value = 1.0
    for j in range(scales):
        ma, mb = local_mean(a), local_mean(b)
        va = local_mean(a * a) - ma * ma
        vb = local_mean(b * b) - mb * mb
        cov = local_mean(a * b) - ma * mb
        cs = ((2 * cov + c2) / (va + vb + c2)).mean()
        ssim = (
            (2 * ma * mb + c1) / (ma * ma + mb * mb + c1) * (2 * cov + c2) / (va + vb + c2)
        ).mean()
        value *= max(ssim if j == scales - 1 else cs, 0.0) ** weights[j]
        h, w = a.shape[0] // 2, a.shape[1] // 2
        a = a[: 2 * h, : 2 * w].reshape(h, 2, w, 2).mean(axis=(1, 3))
        b = b[: 2 * h, : 2 * w].reshape(h, 2, w, 2).mean(axis=(1, 3))
    return value


def _pair(size, seed, noise=25.0):
    rng = np.random.default_rng(seed)
    from scipy.ndimage import gaussian_filter

    a = gaussian_filter(rng.uniform(0, 255, (size, size)), 2) * 3 - 250
    a = np.clip(a, 0, 255)
    return a, np.clip(a + rng.normal(0, noise, a.shape), 0, 255)


@pytest.mark.parametrize(("size", "scales"), [(16, 1), (32, 2), (64, 3), (96, 4), (181, 5)])
def test_equals_an_independent_implementation(size, scales):
    a, b = _pair(size, size)
    assert num_scales(size, size) == scales
    got = ms_ssim(a, b)
    assert got == pytest.approx(_reference(a, b, scales), rel=1e-12, abs=1e-12)
    assert 0.2 < got < 0.999
    assert ms_ssim(b, a) == pytest.approx(got, rel=1e-12)


def test_identical_images_give_one_and_batches_match_pairs():
    a, b = _pair(64, 1)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    batch = ms_ssim(np.stack([a, a, b]), np.stack([b, a, a]))
    assert batch.shape == (3,)
    np.testing.assert_allclose(batch, [ms_ssim(a, b), 1.0, ms_ssim(b, a)], rtol=1e-12)


def test_single_scale_is_scikit_image_ssim():
    from skimage import metrics as skimage  # test extra: scikit-image

    for size in (16, 48):
        a, b = _pair(size, 7)
        ref = skimage.structural_similarity(
            a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
        )
        assert ms_ssim(a, b, max_scales=1) == pytest.approx(ref, rel=1e-12)


def test_scales_and_hostile_input():
    assert [num_scales(s, s) for s in (11, 21, 22, 44, 88, 175, 176, 1024)] == [
        1,
        1,
        2,
        3,
        4,
        4,
        5,
        5,
    ]
    with pytest.raises(ValueError, match="at least 11"):
        ms_ssim(np.zeros([10, 10]), np.zeros([10, 10]))
    bad = np.zeros([16, 16])
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ms_ssim(bad, np.zeros([16, 16]))
    with pytest.raises(ValueError, match="one shape"):
        ms_ssim(np.zeros([16, 16]), np.zeros([16, 17]))
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (32, 32))
    assert 0.0 <= ms_ssim(a, 255 - a) < 0.05  # anti-correlated structure: cs < 0 counts as 0
