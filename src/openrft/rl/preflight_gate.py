"""Preflight before step 1 of a run (`expert.preflight`): report the verdict, stop early
when the task gives no learning signal.

The run's own rollout engine samples the base policy (LoRA adapters start at zero, so the
policy *is* the base model before step 1) with the run's group size and sampling
settings; `preflight.analyse` judges the groups. A "too_hard" or "too_easy" verdict means
almost every group scores alike, so GRPO would learn nothing: the run fails fast with the
preflight's advice unless `expert.preflight_override` is set.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from openrft.data.dataset import Dataset
from openrft.errors import TrainingHealthError
from openrft.graders.base import BaseGrader
from openrft.rl.config import PREFLIGHT_ROWS, ResolvedConfig
from openrft.rl.policy_setup import make_generation_params
from openrft.rl.preflight import PreflightReport, preflight
from openrft.rl.reporter import Reporter
from openrft.rollout.engine import RolloutEngine

NO_SIGNAL_VERDICTS = ("too_hard", "too_easy")


def run_preflight_gate(
    cfg: ResolvedConfig,
    engine: RolloutEngine,
    train_rows: Dataset,
    grader: BaseGrader,
    reporter: Reporter,
    forward_precision: Any,
) -> PreflightReport:
    """Preflight the run; events carry the verdict; TrainingHealthError on no signal."""
    params = replace(make_generation_params(cfg), seed=cfg.seed)
    with forward_precision:
        report = preflight(
            cfg.model, train_rows, grader, group_size=cfg.group_size, params=params,
            engine=engine, max_rows=PREFLIGHT_ROWS, seed=cfg.seed, progress=False,
        )
    summary = preflight_summary(report)
    blocked = report.verdict in NO_SIGNAL_VERDICTS
    level = "error" if blocked and not cfg.preflight_override else (
        "warn" if report.verdict != "ok" else "info")
    reporter.on_event(level, summary, {"preflight": report.to_dict()})
    for warning in report.warnings:
        reporter.on_event("warn", f"Preflight: {warning}")
    if blocked and not cfg.preflight_override:
        raise TrainingHealthError(
            f"{summary} Training would learn nothing. "
            + " ".join(report.advice)
            + " To train anyway, set expert.preflight_override: true."
        )
    if blocked:
        reporter.on_event("warn", "Preflight found no signal; training anyway "
                                  "(expert.preflight_override: true)")
    return report


def preflight_summary(report: PreflightReport) -> str:
    """One line: the verdict and the group shares behind it."""
    groups = report.groups
    return (
        f"Preflight verdict: {report.verdict} ({report.n_rows} rows x {report.group_size} "
        f"samples: pass rate {report.pass_rate:.0%}, {1 - groups.zero_variance:.0%} of groups "
        f"with differing rewards, {groups.all_fail:.0%} all-fail, {groups.all_pass:.0%} "
        f"all-pass, {report.truncation_rate:.0%} truncated)."
    )
