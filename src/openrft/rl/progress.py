"""A reporter for people: a rich progress bar with the live reward, KL and step time, and
each training-health finding printed when it fires. Used by `openrft train` and by the
flagship demo, which both show a run's progress in a terminal."""

from __future__ import annotations

from typing import Any

from rich.progress import Progress

from openrft.rl.reporter import NullReporter


class ProgressReporter(NullReporter):
    """Drives a rich progress bar: step count, train/valid reward, KL, step time, findings."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("training", total=None, status="starting")
        self.valid = "-"
        self.status = ""
        self.findings: list[str] = []  # kinds of the training-health findings so far

    def on_start(self, total_steps: int, config: dict[str, Any]) -> None:
        # Shown only once training starts: input errors before that stay one clean line.
        self.progress.start()
        self.progress.update(self.task, total=total_steps, status="sampling")

    def on_step(self, metrics: dict[str, Any]) -> None:
        if metrics.get("valid_reward_mean") is not None:
            self.valid = f"{metrics['valid_reward_mean']:.3f}"
        self.status = (
            f"reward {metrics['train_reward_mean']:.3f} ± {metrics['train_reward_std']:.3f}  "
            f"valid {self.valid}  KL {metrics['kl']:.4f}  {metrics['step_seconds']:.1f}s/step"
        )
        self.progress.update(self.task, completed=metrics["step"], status=self._status())

    def _status(self) -> str:
        if not self.findings:
            return self.status
        return f"{self.status}  [yellow]health: {', '.join(self.findings)}[/]"

    def on_event(self, level: str, message: str, data: dict[str, Any] | None = None) -> None:
        if data and "resumed_step" in data:
            step = data["resumed_step"]
            self.progress.update(self.task, completed=step, status=f"resumed after step {step}")
        finding = (data or {}).get("finding")
        colour = "red" if level == "error" else "yellow"
        if finding:
            self.findings.append(finding["kind"])
            self.progress.update(self.task, status=self._status())
            self.progress.console.print(
                f"[{colour}]{level}: {finding['kind']} (since step {finding['step']}):[/] "
                f"{message}", highlight=False)
        elif level != "info":
            self.progress.console.print(f"[{colour}]{level}:[/] {message}", highlight=False)
