"""The faithfulness classifier (scikit-learn logistic regression) against accuracies known in
closed form: Gaussian classes of unit variance, where logistic regression is the right model
and the Bayes-optimal accuracy is a normal CDF."""

import numpy as np
import pytest
from scipy.stats import norm

from mrisynth.metrics.label_probe import LinearProbe, balanced_accuracy, per_class_accuracy


def gaussian_line(means, counts, rng):
    """1-D features: class k ~ N(means[k], 1), counts[k] of them; plus one pure-noise column."""
    y = np.concatenate([np.full(n, k) for k, n in enumerate(counts)])
    x = rng.normal(np.asarray(means, float)[y], 1.0)
    return np.stack([x, rng.normal(0, 1, len(y))], 1), y


def balanced(probe, x, y):
    return balanced_accuracy(per_class_accuracy(probe.predict(x), y))


def test_separable_classes_are_all_right():
    rng = np.random.default_rng(0)
    x, y = gaussian_line([-10, 10], [300, 300], rng)  # 20 sigma apart: no overlap
    xt, yt = gaussian_line([-10, 10], [2000, 2000], rng)
    assert balanced(LinearProbe(2).fit(x, y), xt, yt) == 1.0


def test_overlapping_classes_reach_the_bayes_accuracy_balanced_despite_a_9_to_1_mix():
    """N(-1, 1) vs N(1, 1): the best possible recall of each class is Phi(1) = 0.841. Trained on
    a 9:1 mix, class weighting keeps the threshold in the middle, so the rare class keeps its
    0.841 (an unweighted fit would move the threshold by ln(9)/2 and score Phi(-0.10) = 0.46)."""
    rng = np.random.default_rng(1)
    x, y = gaussian_line([-1, 1], [9000, 1000], rng)
    xt, yt = gaussian_line([-1, 1], [20000, 20000], rng)
    recall = per_class_accuracy(LinearProbe(2).fit(x, y).predict(xt), yt)
    assert recall[0] == pytest.approx(norm.cdf(1), abs=0.015)
    assert recall[1] == pytest.approx(norm.cdf(1), abs=0.015)


def test_three_classes_on_a_line_reach_the_bayes_accuracy():
    """Means -2, 0, 2: outer classes Phi(1), the middle one 2 Phi(1) - 1 (mean 0.788)."""
    rng = np.random.default_rng(2)
    x, y = gaussian_line([-2, 0, 2], [3000, 3000, 3000], rng)
    xt, yt = gaussian_line([-2, 0, 2], [20000, 20000, 20000], rng)
    recall = per_class_accuracy(LinearProbe(3).fit(x, y).predict(xt), yt)
    phi = norm.cdf(1)
    assert [recall[k] for k in range(3)] == pytest.approx([phi, 2 * phi - 1, phi], abs=0.015)


def test_no_information_scores_at_chance_and_classes_absent_from_training_are_never_predicted():
    rng = np.random.default_rng(3)
    x, y = gaussian_line([0, 0, 0], [2000, 2000, 2000], rng)  # one distribution for all
    xt, yt = gaussian_line([0, 0, 0], [5000, 5000, 5000], rng)
    assert balanced(LinearProbe(5).fit(x, y), xt, yt) == pytest.approx(1 / 3, abs=0.03)
    assert set(LinearProbe(5).fit(x, y).predict(xt)) <= {0, 1, 2}


def test_deterministic_and_refusals():
    rng = np.random.default_rng(4)
    x, y = gaussian_line([-1, 1], [200, 200], rng)
    a, b = LinearProbe(2).fit(x, y), LinearProbe(2).fit(x[::-1].copy(), y[::-1].copy())
    assert np.allclose(a.model[-1].coef_, b.model[-1].coef_, atol=1e-6)  # order-free optimum
    assert np.array_equal(a.model[-1].coef_, LinearProbe(2).fit(x, y).model[-1].coef_)
    with pytest.raises(ValueError, match="two classes"):
        LinearProbe(2).fit(x, np.zeros(len(y), int))
    with pytest.raises(ValueError, match=r"0\.\.1"):
        LinearProbe(2).fit(x, y + 1)
    with pytest.raises(RuntimeError, match="fit"):
        LinearProbe(2).predict(x)
    assert LinearProbe(2).fit(x, y).predict(x[:0]).shape == (0,)
