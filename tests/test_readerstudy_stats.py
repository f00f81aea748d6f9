"""The reader study's statistics against published worked examples and independent formulas."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mrisynth.readerstudy import stats
from mrisynth.readerstudy.analysis import agreement, reader_row, to_csv

# Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3 (Wilson score).
NEWCOMBE = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
]

# Wikipedia, "Fleiss' kappa", worked example: 10 items, 14 raters, 5 categories -> 0.210.
FLEISS_WIKIPEDIA = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]  # fmt: skip

# Hanley & McNeil (1982), Radiology 143:29-36, Table 1: 5-point ratings of 109 CT images.
HM_NORMAL = [1] * 33 + [2] * 6 + [3] * 6 + [4] * 11 + [5] * 2
HM_ABNORMAL = [1] * 3 + [2] * 2 + [3] * 2 + [4] * 11 + [5] * 33


@pytest.mark.parametrize(("count", "total", "low", "high"), NEWCOMBE)
def test_wilson_matches_newcombe(count, total, low, high):
    p = stats.wilson(count, total)
    assert p.value == count / total
    assert p.low == pytest.approx(low, abs=5e-5)
    assert p.high == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize(("count", "total"), [(3, 7), (0, 1), (50, 50), (12, 40)])
def test_wilson_matches_closed_form(count, total):
    z = 1.959963984540054
    phat = count / total
    centre = (phat + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * math.sqrt(phat * (1 - phat) / total + z * z / (4 * total**2))
    p = stats.wilson(count, total)
    assert (p.low, p.high) == pytest.approx((centre - half, centre + half), abs=1e-9)


def test_undefined_proportion_is_none_not_nan():
    assert stats.wilson(0, 0) == stats.Proportion(0, 0, None, None, None)
    assert stats.binomial_p(0, 0) is None
    assert stats.auc_from_scores([], [1, 2]) is None
    assert stats.rank_test_p([3], []) is None
    assert stats.rank_test_p([3, 3], [3]) == 1.0


@pytest.mark.parametrize(("k", "n"), [(7, 10), (20, 40), (31, 40), (0, 5), (5, 5)])
def test_binomial_against_exact_sum(k, n):
    """Two-sided test at p = 0.5 (symmetric): twice the smaller tail, capped at 1."""
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    assert stats.binomial_p(k, n) == pytest.approx(min(1.0, 2 * tail), rel=1e-12)
    assert stats.binomial_p(7, 10) == pytest.approx(0.34375)


def test_auc_matches_hanley_mcneil():
    assert stats.auc_from_scores(HM_ABNORMAL, HM_NORMAL) == pytest.approx(0.893, abs=5e-4)


def _pairwise_auc(high, low):
    pairs = list(itertools.product(high, low))
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_mann_whitney_u_over_n1n2(seed):
    rng = np.random.default_rng(seed)
    real = list(rng.integers(1, 6, rng.integers(1, 30)))
    synth = list(rng.integers(1, 6, rng.integers(1, 30)))
    assert stats.auc_from_scores(real, synth) == pytest.approx(_pairwise_auc(real, synth))


def test_fleiss_kappa_wikipedia_example():
    assert stats.fleiss_kappa(np.array(FLEISS_WIKIPEDIA)) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_by_hand_two_categories():
    """P_bar and P_e from Fleiss (1971)'s definitions, written out."""
    table = np.array([[3, 0], [2, 1], [0, 3], [1, 2], [3, 0]])
    n = 3
    p_i = ((table**2).sum(1) - n) / (n * (n - 1))
    p_j = table.sum(0) / table.sum()
    expected = (p_i.mean() - (p_j**2).sum()) / (1 - (p_j**2).sum())
    assert stats.fleiss_kappa(table) == pytest.approx(expected)


def test_fleiss_kappa_refuses_degenerate_tables():
    assert stats.fleiss_kappa(np.zeros((0, 2))) is None
    assert stats.fleiss_kappa(np.array([[1, 0], [0, 1]])) is None  # one rater
    assert stats.fleiss_kappa(np.array([[2, 0], [1, 2]])) is None  # unequal raters
    assert stats.fleiss_kappa(np.array([[3, 0], [3, 0]])) is None  # all one category


def _answers(reader, truths, labels, realism=None):
    realism = realism or [None] * len(truths)
    return [
        {"reader": reader, "image": i, "truth": t, "label": lab, "realism": s, "seconds": 1.0}
        for i, (t, lab, s) in enumerate(zip(truths, labels, realism, strict=True))
    ]


def test_reader_row_counts_synthetic_as_positive():
    truths = ["synthetic"] * 4 + ["real"] * 6
    labels = ["synthetic", "synthetic", "synthetic", "real", "real", "real", "real", "real",
              "synthetic", "synthetic"]  # fmt: skip
    row = reader_row("r", _answers("r", truths, labels), of=10)
    assert row["confusion"] == {"tp": 3, "fn": 1, "tn": 4, "fp": 2}
    assert row["sensitivity"]["value"] == 0.75
    assert row["specificity"]["value"] == pytest.approx(4 / 6)
    assert row["accuracy"]["value"] == 0.7
    # 6 real of 10: chance is 0.6 (always 'real'), tested one-sided: P(X >= 7), X ~ B(10, 0.6)
    assert row["chance"] == 0.6
    tail = sum(math.comb(10, k) * 0.6**k * 0.4 ** (10 - k) for k in range(7, 11))
    assert row["binomial_p"] == pytest.approx(tail, rel=1e-9)
    assert row["auc_realism"] is None  # no realism scores given


def test_agreement_uses_images_every_active_reader_answered():
    a = _answers("a", ["real"] * 3, ["real", "real", "synthetic"])
    b = _answers("b", ["real"] * 2, ["real", "synthetic"])  # image 2 unanswered by b
    out = agreement(a + b, ["a", "b", "c"])
    assert (out["images"], out["readers"], out["of_readers"]) == (2, 2, 3)
    assert out["fleiss_kappa"] == pytest.approx(stats.fleiss_kappa(np.array([[2, 0], [1, 1]])))


def test_csv_defuses_spreadsheet_formulas():
    text = to_csv([{"comment": '=HYPERLINK("x")'}, {"comment": "+1"}, {"comment": "fine"}])
    assert text.splitlines()[1:] == ['"\'=HYPERLINK(""x"")"', "'+1", "fine"]
