"""The training-health monitor: reads each step's metrics and reports what is going wrong.

GRPO fails quietly: a run whose groups all score alike, whose answers are cut off at
max_tokens, or whose policy games the grader still prints a reward every step. The
monitor watches the metrics.jsonl rows (plus the per-step numbers rl/health_metrics.py
adds), runs every check of rl/health_checks.py on them and emits typed `Finding`s once
each, with the action `expert.monitor` chose for them. It only alerts: nothing here
feeds back into the reward. Every threshold is an `expert.monitor` setting
(rl/monitor_settings.py); docs/training_health.md explains each finding.
"""

from __future__ import annotations

from openrft.rl.config import ResolvedConfig
from openrft.rl.health_checks import CHECKS, Finding, Metrics, RunFacts
from openrft.rl.monitor_settings import MonitorAction, MonitorSettings


def run_facts(cfg: ResolvedConfig) -> RunFacts:
    """What the checks need from the resolved config: sizes, and the reward scale's ends."""
    from openrft.eval.evaluate import score_bounds

    floor, _ = score_bounds(cfg.grader)
    top = cfg.monitor.reward_max
    if top is None:
        top = float((cfg.grader.get("range") or (0.0, 1.0))[1])
    return RunFacts(cfg.group_size, cfg.max_tokens, floor, top, cfg.beta, cfg.num_iterations,
                    cfg.eval_samples)


class TrainingMonitor:
    """Feeds each step's metrics through every check; each kind of finding fires once, at
    the step its condition has held long enough (a resumed run replays earlier steps)."""

    def __init__(self, settings: MonitorSettings, facts: RunFacts) -> None:
        self.settings, self.facts = settings, facts
        self.history: list[Metrics] = []
        self.findings: list[Finding] = []

    def observe(self, metrics: Metrics) -> list[Finding]:
        """The findings that fire at this step (already-reported kinds stay quiet)."""
        self.history.append(metrics)
        if not self.settings.enabled:
            return []
        seen = {finding.kind for finding in self.findings}
        new = []
        for check in CHECKS:
            finding = check(self.history, self.settings, self.facts)
            if finding is not None and finding.kind not in seen:
                new.append(self._with_action(finding, int(metrics["step"])))
        self.findings += new
        return new

    def replay(self, rows: list[Metrics]) -> None:
        """Rebuild the state of a resumed run from its earlier metrics rows, silently."""
        for row in rows:
            self.observe(row)

    def _with_action(self, finding: Finding, step: int) -> Finding:
        default = self.settings.on_no_signal if finding.kind == "no_signal" else "warn"
        action: MonitorAction = self.settings.actions.get(finding.kind, default)
        setting = ("expert.monitor.on_no_signal" if finding.kind == "no_signal"
                   and finding.kind not in self.settings.actions
                   else f"expert.monitor.actions.{finding.kind}")
        message, severity = finding.message, finding.severity
        if action == "pause":
            message += (f" The run paused itself ({setting}: pause): change the cause, then "
                        "resume it.")
        elif action == "fail":
            message += f" The run stopped as failed ({setting}: fail)."
            severity = "error"
        return Finding(finding.kind, severity, message, finding.numbers, finding.step, step,
                       action)
