"""Evaluation metrics as pure functions: pass@k, top@k, reward summaries, group statistics.

No model, no I/O: everything here takes plain scores (one list of floats per row or group)
so the evaluation, the preflight check and the trainer's validation share one definition.

Conventions (also in docs/evaluation.md):
- A sample *passes* when `score >= pass_threshold - PASS_TOLERANCE`. The default threshold is
  1.0, i.e. the full score of a 0..1 grader (string_check, a python grader returning 1.0 for
  a correct answer); graders with partial credit pick their own threshold.
- pass@k is Chen et al. (2021)'s unbiased estimator, averaged over rows.
- top@k reads the 1-based rank of the true answer a grader reports in `metadata["rank"]`;
  `None`, 0 or a missing key means the answer is absent. With several samples per row the
  per-sample indicators are averaged within a row, then over rows.
- Standard errors are over rows (samples of one row are not independent).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

PASS_TOLERANCE = 1e-9  # float slack so a grader returning 0.9999999999 for "full marks" passes
DEFAULT_PASS_THRESHOLD = 1.0
DEFAULT_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def passes(score: float, pass_threshold: float = DEFAULT_PASS_THRESHOLD) -> bool:
    """Whether one sample counts as correct for pass@k."""
    return score >= pass_threshold - PASS_TOLERANCE


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021).

    Computed as 1 - prod_{i=n-c+1..n} (1 - k/i), which never forms the huge binomials.
    `n` samples were drawn, `c` of them passed; requires 0 <= c <= n and 1 <= k <= n.
    """
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:  # every k-subset contains a passing sample
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(
    scores_per_row: Sequence[Sequence[float]],
    ks: Sequence[int],
    pass_threshold: float = DEFAULT_PASS_THRESHOLD,
) -> dict[int, float]:
    """pass@k averaged over rows, for each k not larger than the smallest row's sample count."""
    rows = [list(r) for r in scores_per_row if len(r) > 0]
    if not rows:
        return {}
    n_min = min(len(r) for r in rows)
    result: dict[int, float] = {}
    for k in sorted(set(ks)):
        if 1 <= k <= n_min:
            estimates = [
                pass_at_k(len(r), sum(passes(s, pass_threshold) for s in r), k) for r in rows
            ]
            result[k] = float(np.mean(estimates))
    return result


def default_pass_ks(samples_per_row: int) -> list[int]:
    """The k values worth reporting for K samples per row: 1, 2, 5, 10, 20, 50, 100 and K."""
    standard = {k for k in (1, 2, 5, 10, 20, 50, 100) if k <= samples_per_row}
    return sorted(standard | {samples_per_row})


def rank_hit(rank: object, k: int | None) -> bool:
    """Whether a reported rank puts the true answer within the top k (k=None: anywhere)."""
    if isinstance(rank, bool) or not isinstance(rank, int | float) or rank < 1:
        return False
    return k is None or rank <= k


def top_at_k(
    ranks_per_row: Sequence[Sequence[object]], ks: Sequence[int] = (1, 5)
) -> dict[int | str, float]:
    """top@k for each k and top@max ("max": the answer appears at any rank).

    `ranks_per_row[i]` holds the rank each sample of row i reported. Within a row the hits
    are averaged (so a row with 2 of 4 samples ranking the answer first adds 0.5 to top@1),
    then the rows are averaged.
    """
    rows = [list(r) for r in ranks_per_row if len(r) > 0]
    if not rows:
        return {}
    result: dict[int | str, float] = {}
    for k in [*sorted(set(ks)), None]:
        per_row = [np.mean([rank_hit(rank, k) for rank in r]) for r in rows]
        result["max" if k is None else k] = float(np.mean(per_row))
    return result


@dataclass
class RewardSummary:
    """Mean reward with its spread: std over all samples, standard error over rows."""

    mean: float
    std: float  # sample standard deviation (ddof=1) over every sample
    stderr: float  # standard error of the mean, from the per-row means (rows are independent)
    min: float
    max: float
    n_samples: int
    quantiles: dict[float, float] = field(default_factory=dict)


def summarize_rewards(
    scores_per_row: Sequence[Sequence[float]], quantiles: Sequence[float] = DEFAULT_QUANTILES
) -> RewardSummary:
    """Mean, spread and quantiles of the rewards; rows weigh by their number of samples."""
    flat = np.array([s for r in scores_per_row for s in r], dtype=float)
    if flat.size == 0:
        return RewardSummary(math.nan, math.nan, math.nan, math.nan, math.nan, 0)
    row_means = np.array([np.mean(r) for r in scores_per_row if len(r) > 0], dtype=float)
    std = float(np.std(flat, ddof=1)) if flat.size > 1 else 0.0
    stderr = (
        float(np.std(row_means, ddof=1) / math.sqrt(row_means.size)) if row_means.size > 1 else 0.0
    )
    return RewardSummary(
        mean=float(flat.mean()),
        std=std,
        stderr=stderr,
        min=float(flat.min()),
        max=float(flat.max()),
        n_samples=int(flat.size),
        quantiles={q: float(np.quantile(flat, q)) for q in quantiles},
    )


@dataclass
class GroupStats:
    """How much learning signal GRPO groups carry: only groups with varied rewards teach."""

    n_groups: int
    zero_variance: float  # share of groups whose rewards are all equal (no advantage signal)
    all_pass: float  # share of groups where every sample passes (task too easy for them)
    all_fail: float  # share of groups where every sample scores <= fail_threshold


def group_stats(
    scores_per_group: Sequence[Sequence[float]],
    pass_threshold: float = DEFAULT_PASS_THRESHOLD,
    fail_threshold: float = 0.0,
) -> GroupStats:
    """Shares of zero-variance, all-passing and all-failing groups."""
    groups = [list(g) for g in scores_per_group if len(g) > 0]
    if not groups:
        return GroupStats(0, math.nan, math.nan, math.nan)
    n = len(groups)
    flat_spread = [max(g) - min(g) <= PASS_TOLERANCE for g in groups]
    all_pass = [all(passes(s, pass_threshold) for s in g) for g in groups]
    all_fail = [all(s <= fail_threshold + PASS_TOLERANCE for s in g) for g in groups]
    return GroupStats(
        n_groups=n,
        zero_variance=sum(flat_spread) / n,
        all_pass=sum(all_pass) / n,
        all_fail=sum(all_fail) / n,
    )


def reward_histogram(
    scores: Sequence[float], bins: int = 10, value_range: tuple[float, float] | None = None
) -> tuple[list[int], list[float]]:
    """Counts per bin and the bin edges (len(edges) == bins + 1), as numpy.histogram."""
    values = np.asarray(list(scores), dtype=float)
    if value_range is None:
        low = min(0.0, float(values.min())) if values.size else 0.0
        high = max(1.0, float(values.max())) if values.size else 1.0
        value_range = (low, high)
    counts, edges = np.histogram(values, bins=bins, range=value_range)
    return [int(c) for c in counts], [float(e) for e in edges]
