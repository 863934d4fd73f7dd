"""The paired bootstrap against hand-computed distributions and the normal interval."""

from __future__ import annotations

import math

import numpy as np
import pytest

from openrft.eval.stats import paired_bootstrap


def test_two_cases_by_hand() -> None:
    """Differences (1, 0): a resample's mean is 0, 0.5 or 1 with probability 1/4, 1/2,
    1/4, so the 2.5th and 97.5th percentiles are 0 and 1."""
    result = paired_bootstrap([1, 0], [0, 0], n_resamples=4000)
    assert (result.mean, result.low, result.high, result.n) == (0.5, 0.0, 1.0, 2)


def test_pairs_stay_together() -> None:
    """a - b is 1 on every case although a and b vary: the interval is exactly {1}; an
    unpaired bootstrap would give a wide interval here."""
    a = [1, 2, 3, 4, 5, 6]
    result = paired_bootstrap(a, [x - 1 for x in a])
    assert (result.mean, result.low, result.high) == (1.0, 1.0, 1.0)


def test_large_sample_matches_the_normal_interval() -> None:
    rng = np.random.default_rng(1)
    a = (rng.random(2000) < 0.6).astype(float)
    b = np.where(rng.random(2000) < 0.8, a, 1 - a)  # correlated with a
    d = a - b
    half = 1.96 * d.std(ddof=1) / math.sqrt(d.size)
    result = paired_bootstrap(a, b, seed=5)
    assert result.mean == pytest.approx(d.mean())
    assert result.low == pytest.approx(d.mean() - half, abs=0.004)
    assert result.high == pytest.approx(d.mean() + half, abs=0.004)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap([1, 0, 1], [1, 0])


def test_four_items_match_the_binomial_percentiles() -> None:
    # diff = [1, 1, 1, 0]: a resample's mean is k/4 with k ~ Binomial(4, 0.75);
    # P(k <= 0) = 0.004 < 0.025 < P(k <= 1) = 0.051 and P(k <= 3) = 0.68 < 0.975, so the
    # percentile interval is [1/4, 4/4].
    ci = paired_bootstrap([1, 1, 1, 0], [0, 0, 0, 0]).as_dict()
    assert ci == {"mean": 0.75, "low": 0.25, "high": 1.0, "n": 4}
    assert paired_bootstrap([1, 0, 1], [1, 0, 1]).as_dict() == {
        "mean": 0.0, "low": 0.0, "high": 0.0, "n": 3}
    assert paired_bootstrap([0, 0], [1, 1]).as_dict() == {
        "mean": -1.0, "low": -1.0, "high": -1.0, "n": 2}
