"""Preflight: will RFT learn anything on this task? Check before paying for a run.

GRPO learns only from groups whose samples score differently: a group where every
completion fails (or every one passes) has zero advantage everywhere and teaches nothing.
OpenAI's guidance says the same ("if a model has a 0% success rate you cannot bootstrap;
if it is at the max, RFT is useless"). `preflight` samples the base model on training rows
with the run's own group size and sampling settings, grades the groups and reports the
reward distribution, the share of groups that carry signal, grader/parse errors, lengths
and truncation, with a verdict and concrete advice.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from openrft.errors import InvalidInput
from openrft.eval.evaluate import (
    EvalReport,
    engine_for,
    generate_and_grade,
    load_rows,
    score_bounds,
    summarize,
)
from openrft.eval.metrics import (
    DEFAULT_PASS_THRESHOLD,
    GroupStats,
    RewardSummary,
    group_stats,
    passes,
    reward_histogram,
    summarize_rewards,
)
from openrft.graders.base import BaseGrader
from openrft.rollout.engine import CausalLM, GenerationParams, RolloutEngine

Verdict = Literal["ok", "too_hard", "too_easy", "low_signal"]

TOO_HARD_SHARE = 0.8  # groups where every sample scores 0
TOO_EASY_SHARE = 0.8  # groups where every sample passes
LOW_SIGNAL_SHARE = 0.5  # groups with identical rewards, for any other reason
ERROR_WARN_RATE = 0.05  # grader or parse errors
TRUNCATION_WARN_RATE = 0.2


@dataclass
class PreflightReport:
    """What sampling the base model with the run's settings showed."""

    verdict: Verdict
    n_rows: int
    group_size: int
    rewards: RewardSummary  # over all samples; quantiles at 10/25/50/75/90 %
    histogram_counts: list[int]
    histogram_edges: list[float]
    groups: GroupStats  # shares of zero-variance, all-pass and all-fail groups
    pass_rate: float  # share of samples scoring >= pass_threshold
    grader_error_rate: float
    grader_error_codes: dict[str, int]
    parse_error_rate: float
    mean_completion_tokens: float
    truncation_rate: float
    warnings: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # model, temperature, max_tokens
    elapsed_s: float = 0.0  # sampling + grading (model loading excluded)
    # From a training config: sampling + grading time of one step (batch_size rows x
    # group_size samples) and of the whole run, extrapolated from this preflight.
    estimated_sampling_s_per_step: float | None = None
    estimated_sampling_s_total: float | None = None
    evaluation: EvalReport | None = None  # every sample with its score

    def to_dict(self, include_samples: bool = False) -> dict[str, Any]:
        data = asdict(replace(self, evaluation=None))
        data.pop("evaluation")
        data["rewards"]["quantiles"] = {str(q): v for q, v in self.rewards.quantiles.items()}
        if include_samples and self.evaluation is not None:
            data["rows"] = self.evaluation.to_dict()["rows"]
        return data


def preflight(
    model: CausalLM | str,
    rows: Any,
    grader: dict[str, Any] | BaseGrader,
    *,
    group_size: int = 8,
    params: GenerationParams | None = None,
    engine: RolloutEngine | None = None,
    max_rows: int | None = 32,
    seed: int = 0,
    batch_size: int = 4,
    pass_threshold: float | None = None,
    progress: bool = True,
) -> PreflightReport:
    """Sample `group_size` completions for (a seeded subset of `max_rows`) rows and judge
    whether their rewards vary enough for GRPO to learn from them. A sample "fails" at or
    below the grader's floor and "passes" at its pass threshold (`score_bounds`)."""
    if group_size < 2:
        raise InvalidInput("group_size", f"must be >= 2 (GRPO compares samples), got {group_size}")
    floor, default_threshold = score_bounds(grader)  # validates a grader dict up front
    pass_threshold = default_threshold if pass_threshold is None else pass_threshold
    dataset = load_rows(rows, grader if isinstance(grader, dict) else None)
    indices = list(range(len(dataset)))
    if max_rows is not None and len(indices) > max_rows:
        indices = sorted(random.Random(seed).sample(indices, max_rows))
    subset = replace(
        dataset,
        rows=[dataset.rows[i] for i in indices],
        line_numbers=[dataset.line_numbers[i] for i in indices],
    )
    params = params or GenerationParams(temperature=1.0, seed=seed)
    engine = engine or engine_for(model)
    start = time.perf_counter()  # sampling and grading only, not model loading
    results = generate_and_grade(
        engine, subset, grader, group_size, params, batch_size=batch_size, progress=progress
    )
    evaluation = summarize(results, group_size, pass_threshold, time.perf_counter() - start)
    settings = {
        "model": str(model) if isinstance(model, str | Path) else type(model).__name__,
        "temperature": params.temperature,
        "max_tokens": params.max_tokens,
        "pass_threshold": pass_threshold,
        "fail_floor": floor,
    }
    return analyse(evaluation, pass_threshold, settings, fail_floor=floor)


def analyse(
    evaluation: EvalReport,
    pass_threshold: float = DEFAULT_PASS_THRESHOLD,
    settings: dict[str, Any] | None = None,
    fail_floor: float = 0.0,
) -> PreflightReport:
    """The verdict, warnings and advice for graded groups (pure: no model involved)."""
    scores = [row.scores for row in evaluation.rows]
    flat = [s for group in scores for s in group]
    counts, edges = reward_histogram(flat, bins=10)  # spans [min(0, low), max(1, high)]
    n = max(len(flat), 1)
    report = PreflightReport(
        verdict="ok",
        n_rows=evaluation.n_rows,
        group_size=evaluation.samples_per_row,
        rewards=summarize_rewards(scores),
        histogram_counts=counts,
        histogram_edges=edges,
        groups=group_stats(scores, pass_threshold, fail_floor),
        pass_rate=sum(passes(s, pass_threshold) for s in flat) / n,
        grader_error_rate=evaluation.grader_errors / n,
        grader_error_codes=evaluation.grader_error_codes,
        parse_error_rate=evaluation.parse_errors / n,
        mean_completion_tokens=evaluation.mean_completion_tokens,
        truncation_rate=evaluation.truncation_rate,
        settings=settings or {},
        elapsed_s=evaluation.elapsed_s,
        evaluation=evaluation,
    )
    _judge(report)
    return report


def _judge(report: PreflightReport) -> None:
    """Set the verdict and fill warnings/advice, most severe problem first."""
    groups, g = report.groups, report.group_size
    if groups.all_fail >= TOO_HARD_SHARE:
        report.verdict = "too_hard"
        report.warnings.append(
            f"{groups.all_fail:.0%} of groups scored the minimum on every sample: "
            "no learning signal."
        )
        report.advice += _too_hard_advice(report.pass_rate, g)
    elif groups.all_pass >= TOO_EASY_SHARE:
        report.verdict = "too_easy"
        report.warnings.append(
            f"{groups.all_pass:.0%} of groups passed on every sample: the model already "
            "solves the task, RFT has little to improve."
        )
        report.advice += [
            "Use harder rows (drop those every sample solves) or a stricter grader "
            "(exact answers, partial credit for quality rather than pass/fail).",
            "Evaluate on held-out rows first: if the base model is already at the maximum, "
            "fine-tuning cannot raise it.",
        ]
    elif groups.zero_variance >= LOW_SIGNAL_SHARE:
        report.verdict = "low_signal"
        report.warnings.append(
            f"{groups.zero_variance:.0%} of groups gave identical rewards to all {g} samples."
        )
        report.advice += [
            "Raise hyperparameters.compute_multiplier (bigger groups) or expert.temperature "
            "so samples differ, and prefer a smooth reward over a pass/fail one.",
        ]
    _health_warnings(report)


def _too_hard_advice(pass_rate: float, group_size: int) -> list[str]:
    advice = []
    if pass_rate > 0:
        # smallest G with P(at least one pass in G samples) >= 1/2, assuming rate pass_rate
        needed = math.ceil(math.log(0.5) / math.log(1 - pass_rate)) if pass_rate < 1 else 2
        advice.append(
            f"The pass rate is {pass_rate:.1%}: about {needed} samples per group give half "
            f"the groups a success (now {group_size}); raise hyperparameters."
            f"compute_multiplier to about {needed / 8:.2g} (group size = 8 x multiplier)."
        )
    else:
        advice.append(
            "No sample passed: larger groups alone are unlikely to help. Raise "
            "compute_multiplier and expert.temperature only once some samples succeed."
        )
    advice += [
        "Give partial credit (text_similarity, a python grader scoring closeness, or "
        "score_model) so near misses rank above nonsense.",
        "Fine-tune on demonstrations first (openrft.sft.train_supervised), then run RFT "
        "from that model.",
        "Check the prompt tells the model the exact answer format the grader expects.",
    ]
    return advice


def _health_warnings(report: PreflightReport) -> None:
    if report.grader_error_rate > ERROR_WARN_RATE:
        codes = ", ".join(f"{c}: {n}" for c, n in sorted(report.grader_error_codes.items()))
        report.warnings.append(
            f"The grader failed on {report.grader_error_rate:.0%} of samples ({codes}); "
            "failed samples score 0 and teach the model nothing useful."
        )
        report.advice.append("Fix the grader with `openrft grade` on a few rows before training.")
    if report.parse_error_rate > ERROR_WARN_RATE:
        report.warnings.append(
            f"{report.parse_error_rate:.0%} of samples did not parse as the response_format."
        )
        report.advice.append("Describe the JSON format in the prompt or SFT on valid examples.")
    if report.truncation_rate > TRUNCATION_WARN_RATE:
        report.warnings.append(
            f"{report.truncation_rate:.0%} of samples hit max_tokens "
            f"(mean {report.mean_completion_tokens:.0f} tokens)."
        )
        report.advice.append("Raise expert.max_tokens or lower reasoning_effort.")


def preflight_config(
    config: Any,
    *,
    max_rows: int | None = 32,
    engine: RolloutEngine | None = None,
    progress: bool = True,
) -> PreflightReport:
    """Preflight with a training config's model, rows, grader, group size and sampling."""
    from openrft.data.dataset import load_dataset
    from openrft.rl.config import RFTConfig, load_config, resolve
    from openrft.rl.policy_setup import make_generation_params

    config = config if isinstance(config, RFTConfig) else load_config(config)
    dataset = load_dataset(config.training_file, config.grader)
    cfg = resolve(config, len(dataset))
    seed = config.seed if config.seed is not None else 0
    params = replace(make_generation_params(cfg), seed=seed)
    if engine is None:
        from openrft.models.load import load_model
        from openrft.rollout import make_engine

        loaded = load_model(cfg.model, trainable=False)
        engine = make_engine(loaded.model, loaded.tokenizer, kind=cfg.engine)
    report = preflight(
        cfg.model, dataset, config.grader, group_size=cfg.group_size, params=params,
        engine=engine, max_rows=max_rows, seed=seed, progress=progress,
    )
    report.settings.update(
        model=cfg.model, training_file=cfg.training_file, batch_size=cfg.batch_size,
        total_steps=cfg.total_steps,
    )
    per_row = report.elapsed_s / max(report.n_rows, 1)
    report.estimated_sampling_s_per_step = per_row * cfg.batch_size
    report.estimated_sampling_s_total = per_row * cfg.batch_size * cfg.total_steps
    return report
