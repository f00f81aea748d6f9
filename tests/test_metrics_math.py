"""Cross-checks of the metric maths against independent float64 references (metrics.md)."""

import numpy as np
import pytest
import scipy.linalg
import torch

from mrisynth.metrics import kid as kid_module
from mrisynth.metrics.feature_stats import FeatureStats
from mrisynth.metrics.fid import FrechetDistance, frechet_distance
from mrisynth.metrics.kid import KernelDistance, kernel_inception_distance, mmd2_unbiased
from mrisynth.metrics.precision_recall import (
    PrecisionRecall,
    knn_radii,
    precision_recall_density_coverage,
)


def _scipy_fid(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(np.square(mu1 - mu2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fid_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    d, n = 64, 2048
    a = rng.normal(size=[n, d]) @ rng.normal(size=[d, d]) * 0.3
    b = rng.normal(size=[n, d]) * 1.3 + 0.2
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False, bias=True), np.cov(b, rowvar=False, bias=True)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(_scipy_fid(mu1, s1, mu2, s2), rel=1e-6)


def test_fid_is_zero_for_identical_stats_and_symmetric():
    rng = np.random.default_rng(1)
    x = rng.normal(size=[500, 16])
    mu, s = x.mean(0), np.cov(x, rowvar=False, bias=True)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-8
    y = rng.normal(size=[500, 16]) * 2
    mu2, s2 = y.mean(0), np.cov(y, rowvar=False, bias=True)
    assert frechet_distance(mu, s, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu, s))


def test_streaming_stats_equal_stacked_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=[300, 12]).astype(np.float32) * 5 + 3
    stats = FeatureStats()
    for chunk in np.array_split(x, [7, 100, 101, 250]):
        stats.update(chunk)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(stats.mean(), x64.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats.cov(), np.cov(x64, rowvar=False, bias=True), atol=1e-12)
    assert stats.num_items == 300
    halves = [FeatureStats(keep_features=True), FeatureStats(keep_features=True)]
    halves[0].update(x[:120])
    halves[1].update(x[120:])
    halves[0].merge(halves[1])  # e.g. two processes' states
    np.testing.assert_allclose(halves[0].cov(), stats.cov(), atol=1e-12)
    np.testing.assert_array_equal(halves[0].features(), x)


def test_stats_save_load_roundtrip(tmp_path):
    x = np.random.default_rng(3).normal(size=[40, 5]).astype(np.float32)
    stats = FeatureStats(keep_features=True)
    stats.update(x)
    stats.save(tmp_path / "s.npz")
    back = FeatureStats.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.features(), x)
    np.testing.assert_array_equal(back.cov(), stats.cov())


def test_fid_same_gaussian_goes_to_zero_and_shifted_mean_gives_norm():
    rng = np.random.default_rng(4)
    d = 8
    shift = np.full([d], 0.5)  # |m|^2 = 2
    fids = []
    for n in (200, 20000):
        fd = FrechetDistance()
        fd.update(rng.normal(size=[n, d]), real=True)
        fd.update(rng.normal(size=[n, d]), real=False)
        fids.append(fd.compute())
    assert fids[1] < fids[0] / 10 and fids[1] < 0.01
    fd = FrechetDistance()
    fd.update(rng.normal(size=[50000, d]), real=True)
    fd.update(rng.normal(size=[50000, d]) + shift, real=False)
    assert fd.compute() == pytest.approx(2.0, abs=0.05)


def _direct_mmd(x, y):
    d = x.shape[1]
    m = x.shape[0]
    total_xx = total_yy = total_xy = 0.0
    for i in range(m):
        for j in range(m):
            kxy = (x[i] @ y[j] / d + 1) ** 3
            total_xy += kxy
            if i != j:
                total_xx += (x[i] @ x[j] / d + 1) ** 3
                total_yy += (y[i] @ y[j] / d + 1) ** 3
    return (total_xx + total_yy) / (m * (m - 1)) - 2 * total_xy / m**2


def test_kid_subsets_match_direct_formula_and_seed_is_deterministic():
    rng = np.random.default_rng(5)
    gen = rng.normal(size=[30, 6])
    real = rng.normal(size=[25, 6]) + 0.3
    a = kernel_inception_distance(gen, real, num_subsets=4, max_subset_size=10, seed=7)
    b = kernel_inception_distance(gen, real, num_subsets=4, max_subset_size=10, seed=7)
    np.testing.assert_array_equal(a.subsets, b.subsets)
    assert a.subset_size == 10
    # Reproduce the draws: per subset, generated indices first, then real ones.
    draw = np.random.default_rng(7)
    for value in a.subsets:
        gi = draw.choice(30, 10, replace=False)
        ri = draw.choice(25, 10, replace=False)
        assert value == pytest.approx(_direct_mmd(gen[gi], real[ri]), abs=1e-12)
    assert a.mean == pytest.approx(a.subsets.mean()) and a.std == pytest.approx(a.subsets.std())
    c = kernel_inception_distance(gen, real, num_subsets=4, max_subset_size=10, seed=8)
    assert not np.array_equal(a.subsets, c.subsets)


@pytest.mark.parametrize("method", ["union", "subsets", "auto"])
def test_kid_batched_sums_equal_direct_float64_formula(method, monkeypatch):
    """The Gram-over-union path changes only the summation order: 1e-9 relative at most."""
    monkeypatch.setattr(kid_module, "_ROW_BLOCK", 7)  # several row blocks, a short last one
    rng = np.random.default_rng(13)
    gen = rng.normal(size=[90, 16]).astype(np.float32) * 3
    real = (rng.normal(size=[70, 16]) * 3 + 0.4).astype(np.float32)
    res = kernel_inception_distance(
        gen, real, num_subsets=6, max_subset_size=40, seed=2, method=method
    )
    draw = np.random.default_rng(2)
    want = []
    for _ in range(6):
        gi, ri = draw.choice(90, 40, replace=False), draw.choice(70, 40, replace=False)
        want.append(_direct_mmd(gen[gi].astype(np.float64), real[ri].astype(np.float64)))
    np.testing.assert_allclose(res.subsets, want, rtol=1e-9, atol=0)
    assert res.mean == pytest.approx(np.mean(want), rel=1e-9)


def test_kid_rejects_bad_shapes_and_method():
    x = np.zeros([10, 4])
    with pytest.raises(ValueError):
        kernel_inception_distance(x, np.zeros([10, 5]))
    with pytest.raises(ValueError):
        kernel_inception_distance(x[0], x)
    with pytest.raises(ValueError):
        kernel_inception_distance(x, x, method="fast")
    with pytest.raises(ValueError):
        kernel_inception_distance(x, x, num_subsets=0)
    bad = x.copy()
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        kernel_inception_distance(bad, x)


def test_kid_subset_size_is_capped_by_smallest_set():
    rng = np.random.default_rng(6)
    res = kernel_inception_distance(rng.normal(size=[12, 4]), rng.normal(size=[9, 4]), 3)
    assert res.subset_size == 9
    same = rng.normal(size=[40, 4])
    assert mmd2_unbiased(same, same) < 0  # unbiased estimate: identical samples go negative


def _brute_pr(real, gen, k):
    drr = np.linalg.norm(real[:, None] - real[None], axis=2)
    dgg = np.linalg.norm(gen[:, None] - gen[None], axis=2)
    drg = np.linalg.norm(real[:, None] - gen[None], axis=2)  # [N, M]
    rr = np.sort(drr, axis=1)[:, k]
    rg = np.sort(dgg, axis=1)[:, k]
    precision = (drg <= rr[:, None]).any(axis=0).mean()
    recall = (drg <= rg[None, :]).any(axis=1).mean()
    density = (drg < rr[:, None]).sum() / (k * gen.shape[0])
    coverage = (drg.min(axis=1) < rr).mean()
    return precision, recall, density, coverage


@pytest.mark.parametrize("batch", [1000, 7])
def test_pr_matches_brute_force_fp32(batch):
    rng = np.random.default_rng(9)
    real = rng.normal(size=[60, 5]).astype(np.float32)
    gen = (rng.normal(size=[45, 5]) * 1.4 + 0.5).astype(np.float32)
    res = precision_recall_density_coverage(
        real, gen, k=3, fp16=False, row_batch=batch, col_batch=batch
    )
    want = _brute_pr(real.astype(np.float64), gen.astype(np.float64), 3)
    got = (res.precision, res.recall, res.density, res.coverage)
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert 0 < res.precision < 1 and 0 < res.recall < 1


def test_pr_geometric_cases_and_fp16_mode():
    rng = np.random.default_rng(10)
    x = rng.normal(size=[50, 8]).astype(np.float32)
    same = precision_recall_density_coverage(x, x.copy(), k=3, fp16=True, row_batch=16)
    assert same.precision == 1.0 and same.recall == 1.0 and same.coverage == 1.0
    far = precision_recall_density_coverage(x, x + 1000, k=3, fp16=False)
    assert (far.precision, far.recall, far.density, far.coverage) == (0, 0, 0, 0)


@pytest.mark.parametrize("fp16", [True, False])
def test_density_coverage_of_identical_sets_are_one_in_both_modes(fp16):
    """Naeem's density/coverage of a set against itself are exactly 1; from float16 distances
    they came out ~0.92 (ties at the k-th radius), so they always use float32."""
    x = np.random.default_rng(14).normal(size=[300, 64]).astype(np.float32) * 20
    res = precision_recall_density_coverage(x, x.copy(), k=3, fp16=fp16, row_batch=128)
    assert res.density == 1.0 and res.coverage == 1.0
    assert res.precision == 1.0 and res.recall == 1.0


def test_density_coverage_do_not_depend_on_the_pr_precision_mode():
    rng = np.random.default_rng(15)
    real = rng.normal(size=[120, 32]).astype(np.float32) * 10
    gen = (rng.normal(size=[100, 32]) * 12 + 1).astype(np.float32)
    half = precision_recall_density_coverage(real, gen, k=3, fp16=True, row_batch=50)
    full = precision_recall_density_coverage(real, gen, k=3, fp16=False, row_batch=50)
    assert (half.density, half.coverage) == (full.density, full.coverage)
    want = _brute_pr(real.astype(np.float64), gen.astype(np.float64), 3)
    np.testing.assert_allclose([half.density, half.coverage], want[2:], atol=1e-12)


def test_pr_rejects_non_finite_and_mismatched_features():
    x = np.ones([10, 4], np.float32)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        precision_recall_density_coverage(x, bad)
    with pytest.raises(ValueError):
        precision_recall_density_coverage(x, np.ones([10, 5], np.float32))


def test_knn_radii_blocked_equals_full_sort():
    x = torch.randn(37, 4)
    full = torch.sort(torch.cdist(x, x), dim=1).values[:, 3]
    torch.testing.assert_close(knn_radii(x, 3, row_batch=5, col_batch=6), full)


def test_accumulator_forms_equal_the_functions():
    rng = np.random.default_rng(11)
    real = rng.normal(size=[40, 6]).astype(np.float32)
    gen = rng.normal(size=[35, 6]).astype(np.float32) + 0.2
    kd, pr = KernelDistance(num_subsets=5, max_subset_size=20, seed=3), PrecisionRecall(fp16=False)
    for acc in (kd, pr):
        for chunk in np.array_split(real, 3):
            acc.update(chunk, real=True)
        for chunk in np.array_split(gen, 2):
            acc.update(chunk, real=False)
    want = kernel_inception_distance(gen, real, num_subsets=5, max_subset_size=20, seed=3)
    np.testing.assert_array_equal(kd.compute().subsets, want.subsets)
    assert pr.compute() == precision_recall_density_coverage(real, gen, fp16=False)


def _eigh_trace_sqrt(s1, s2):
    w, v = np.linalg.eigh(s2)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    return np.sqrt(np.clip(np.linalg.eigvalsh(root @ s1 @ root), 0, None)).sum()


@pytest.mark.parametrize("sizes", [(30, 2048), (2048, 30), (30, 40)])
def test_fid_trace_term_agrees_with_eigh_form_for_singular_covariances(sizes):
    """Fewer images than features (a small training set) makes a covariance singular."""
    from mrisynth.metrics.fid import trace_sqrt_product

    rng = np.random.default_rng(12)
    a, b = (rng.normal(size=[n, 64]) * rng.uniform(0.5, 2, 64) for n in sizes)
    s1, s2 = np.cov(a, rowvar=False, bias=True), np.cov(b, rowvar=False, bias=True)
    want = _eigh_trace_sqrt(s1, s2)
    assert trace_sqrt_product(s1, s2) == pytest.approx(want, rel=1e-7)
    assert trace_sqrt_product(s2, s1) == pytest.approx(want, rel=1e-7)
