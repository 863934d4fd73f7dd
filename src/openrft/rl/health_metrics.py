"""Per-step numbers the training-health monitor (rl/monitor.py) needs beyond the loss
statistics: how groups failed or passed, what truncated samples score, grader error codes
and, for `multi` graders, each sub-grader's mean score and share of the learning signal.
`run_step` adds them to its metrics.jsonl row; everything here is a pure function.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openrft.graders.base import GradeResult
from openrft.rl.config import ResolvedConfig
from openrft.rollout.engine import Sample

Metrics = dict[str, Any]


def step_health_metrics(
    cfg: ResolvedConfig, samples: Sequence[Sample], grades: Sequence[GradeResult],
    rewards: Sequence[float],
) -> Metrics:
    """`health_metrics` of one training step's samples and grades (run_step adds them)."""
    from openrft.eval.evaluate import score_bounds

    floor, pass_threshold = score_bounds(cfg.grader)
    return health_metrics(
        rewards, cfg.group_size, floor, pass_threshold,
        [s.finish_reason == "length" for s in samples],
        [s.finish_reason == "length" and s.reasoning_unclosed for s in samples],
        [[e.code for e in g.errors] for g in grades],
        [g.sub_scores for g in grades],
    )


def health_metrics(
    rewards: Sequence[float],
    group_size: int,
    reward_floor: float,
    pass_threshold: float,
    truncated: Sequence[bool],
    truncated_in_reasoning: Sequence[bool],
    error_codes: Sequence[Sequence[str]],
    sub_scores: Sequence[dict[str, float]],
) -> Metrics:
    """Group outcomes, what truncated samples score, error codes and per-sub-grader numbers
    of one step (samples prompt-major, `group_size` per prompt)."""
    groups = [list(rewards[i : i + group_size]) for i in range(0, len(rewards), group_size)]
    flat = [group for group in groups if max(group) == min(group)]
    codes: dict[str, int] = {}
    for sample_codes in error_codes:
        for code in sample_codes:
            codes[code] = codes.get(code, 0) + 1
    metrics: Metrics = {
        "groups": len(groups),
        "samples": len(rewards),
        "all_fail_groups": sum(1 for g in flat if g[0] <= reward_floor),
        "all_pass_groups": sum(1 for g in flat if g[0] >= pass_threshold),
        "truncated_in_reasoning_fraction": sum(truncated_in_reasoning) / max(len(rewards), 1),
        "truncated_reward_mean": _mean_of([r for r, t in zip(rewards, truncated, strict=True)
                                           if t]),
        "finished_reward_mean": _mean_of([r for r, t in zip(rewards, truncated, strict=True)
                                          if not t]),
        "grader_error_codes": codes,
    }
    if sub_scores and sub_scores[0]:
        keys = list(sub_scores[0])
        metrics["sub_reward_mean"] = {
            k: sum(s.get(k, 0.0) for s in sub_scores) / len(sub_scores) for k in keys
        }
        metrics["sub_reward_signal_share"] = signal_shares(rewards, sub_scores, group_size)
    return metrics


def _mean_of(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def signal_shares(
    rewards: Sequence[float], sub_scores: Sequence[dict[str, float]], group_size: int
) -> dict[str, float]:
    """Which sub-grader the within-group reward differences follow (what GRPO learns from).

    Per sub-grader: the squared correlation between its scores and the reward after
    subtracting each group's mean from both, normalised to sum to 1 over sub-graders.
    Empty when no group's rewards differ."""
    def centred(values: Sequence[float]) -> list[float]:
        out = []
        for i in range(0, len(values), group_size):
            group = values[i : i + group_size]
            mean = sum(group) / len(group)
            out += [v - mean for v in group]
        return out

    r = centred(rewards)
    r_var = sum(v * v for v in r)
    if r_var <= 1e-12:
        return {}
    fits = {}
    for key in sub_scores[0]:
        s = centred([scores.get(key, 0.0) for scores in sub_scores])
        s_var = sum(v * v for v in s)
        cov = sum(a * b for a, b in zip(s, r, strict=True))
        fits[key] = cov * cov / (s_var * r_var) if s_var > 1e-12 else 0.0
    total = sum(fits.values())
    return {k: v / total for k, v in fits.items()} if total > 0 else {}
