"""pass@k, top@k and reward summaries against hand-computed values and brute-force oracles."""

from __future__ import annotations

import itertools
import math
import statistics
from fractions import Fraction

import pytest

from openrft.eval.metrics import (
    default_pass_ks,
    group_stats,
    mean_pass_at_k,
    pass_at_k,
    reward_histogram,
    summarize_rewards,
    top_at_k,
)


def brute_force_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """Oracle: the share of all k-subsets of n samples (c passing) that hold a passing one."""
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    hits = sum(any(outcomes[i] for i in subset) for subset in subsets)
    return Fraction(hits, len(subsets))


# (n, c, k, expected) computed by hand from 1 - C(n-c, k) / C(n, k)
HAND_CASES = [
    (1, 1, 1, 1.0),
    (1, 0, 1, 0.0),
    (2, 1, 1, 0.5),  # 1 - C(1,1)/C(2,1) = 1 - 1/2
    (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    (5, 1, 3, 0.6),  # 1 - C(4,3)/C(5,3) = 1 - 4/10
    (10, 3, 1, 0.3),  # pass@1 is the pass rate
    (6, 2, 3, 0.8),  # 1 - C(4,3)/C(6,3) = 1 - 4/20
    (4, 3, 2, 1.0),  # n - c = 1 < k: every pair holds a pass
]


@pytest.mark.parametrize(("n", "c", "k", "expected"), HAND_CASES)
def test_pass_at_k_matches_hand_values(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_subset_enumeration() -> None:
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                oracle = brute_force_pass_at_k(n, c, k)
                assert pass_at_k(n, c, k) == pytest.approx(float(oracle), abs=1e-12), (n, c, k)


def test_pass_at_k_stays_stable_for_large_n() -> None:
    # C(200, 100) overflows floats; compare with exact integer binomials.
    n, c, k = 200, 7, 100
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_pass_at_k_rejects_impossible_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_mean_pass_at_k_averages_rows_and_uses_threshold() -> None:
    rows = [[1.0, 0.0], [0.0, 0.0], [0.5, 1.0]]
    # threshold 1.0: c = 1, 0, 1 -> pass@1 = (0.5 + 0 + 0.5)/3, pass@2 = (1 + 0 + 1)/3
    assert mean_pass_at_k(rows, [1, 2]) == pytest.approx({1: 1 / 3, 2: 2 / 3})
    # threshold 0.5: row 3 passes twice -> pass@1 = (0.5 + 0 + 1)/3
    assert mean_pass_at_k(rows, [1], pass_threshold=0.5) == pytest.approx({1: 0.5})
    # k larger than the samples available is left out rather than invented
    assert mean_pass_at_k(rows, [1, 5]).keys() == {1}


def test_pass_counts_float_noise_at_full_marks() -> None:
    assert mean_pass_at_k([[1.0 - 1e-12]], [1]) == {1: 1.0}
    assert mean_pass_at_k([[0.999]], [1]) == {1: 0.0}


def test_default_pass_ks() -> None:
    assert default_pass_ks(1) == [1]
    assert default_pass_ks(4) == [1, 2, 4]
    assert default_pass_ks(8) == [1, 2, 5, 8]
    assert default_pass_ks(10) == [1, 2, 5, 10]


def test_top_at_k_single_sample_by_hand() -> None:
    ranks = [[1], [3], [None], [7], [0], [2]]
    # rank<=1: 1 of 6; rank<=5: {1,3,2} = 3 of 6; any rank: {1,3,7,2} = 4 of 6
    assert top_at_k(ranks, ks=(1, 5)) == pytest.approx({1: 1 / 6, 5: 3 / 6, "max": 4 / 6})


def test_top_at_k_averages_samples_within_a_row() -> None:
    ranks = [[1, 4, None, 1], [6, None]]
    # row 1: top@1 2/4, top@5 3/4, any 3/4; row 2: 0, 0, 1/2
    expected = {1: (0.5 + 0) / 2, 5: (0.75 + 0) / 2, "max": (0.75 + 0.5) / 2}
    assert top_at_k(ranks, ks=(1, 5)) == pytest.approx(expected)


def test_top_at_k_ignores_non_numeric_ranks() -> None:
    assert top_at_k([["1"], [True], [-2], [2.0]], ks=(2,)) == {2: 0.25, "max": 0.25}


def test_summarize_rewards_against_statistics_module() -> None:
    rows = [[1.0, 0.0, 1.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]
    flat = [s for r in rows for s in r]
    summary = summarize_rewards(rows, quantiles=(0.5,))
    assert summary.mean == pytest.approx(statistics.fmean(flat))
    assert summary.std == pytest.approx(statistics.stdev(flat))
    row_means = [statistics.fmean(r) for r in rows]
    assert summary.stderr == pytest.approx(statistics.stdev(row_means) / math.sqrt(3))
    assert summary.quantiles[0.5] == pytest.approx(statistics.median(flat))
    assert (summary.min, summary.max, summary.n_samples) == (0.0, 1.0, 9)


def test_summarize_rewards_single_value() -> None:
    summary = summarize_rewards([[0.25]])
    assert (summary.mean, summary.std, summary.stderr) == (0.25, 0.0, 0.0)


def test_group_stats_by_hand() -> None:
    groups = [[1.0, 1.0], [0.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
    stats = group_stats(groups)
    assert stats.n_groups == 4
    assert stats.zero_variance == 0.75  # groups 1, 2 and 4
    assert stats.all_pass == 0.25
    assert stats.all_fail == 0.25


def test_reward_histogram_counts_every_score() -> None:
    counts, edges = reward_histogram([0.0, 0.05, 0.5, 1.0, 1.0], bins=4)
    assert edges == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert counts == [2, 0, 1, 2]  # numpy puts the right edge in the last bin
