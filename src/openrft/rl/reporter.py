"""How the training loop tells the world what happens: the `Reporter` protocol.

The trainer calls these hooks; the CLI's reporter writes the run directory and drives a
rich progress bar, the service's reporter writes to the job store. `should_stop` is how a
service cancels or pauses a running job between steps.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

StopRequest = Literal["cancel", "pause"] | None


@runtime_checkable
class Reporter(Protocol):
    def on_start(self, total_steps: int, config: dict[str, Any]) -> None:
        """Training begins (or resumes); `total_steps` is the planned number of steps."""

    def on_step(self, metrics: dict[str, Any]) -> None:
        """One optimizer step finished; `metrics` is the row written to metrics.jsonl."""

    def on_event(self, level: str, message: str, data: dict[str, Any] | None = None) -> None:
        """A human-readable event (level: info, warn, error)."""

    def on_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        """Sampled completions with their scores (prompt, reasoning, output, score)."""

    def on_checkpoint(self, step: int, path: str, metrics: dict[str, Any]) -> None:
        """A checkpoint was written to `path` (a directory loadable by load_model)."""

    def on_end(self, result: dict[str, Any]) -> None:
        """Training finished; `result` holds final_model_dir, full_valid_mean_reward, ..."""

    def should_stop(self) -> StopRequest:
        """Checked between steps: "cancel" stops now, "pause" checkpoints then stops."""


class NullReporter:
    """Does nothing; never asks to stop."""

    def on_start(self, total_steps: int, config: dict[str, Any]) -> None:
        pass

    def on_step(self, metrics: dict[str, Any]) -> None:
        pass

    def on_event(self, level: str, message: str, data: dict[str, Any] | None = None) -> None:
        pass

    def on_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        pass

    def on_checkpoint(self, step: int, path: str, metrics: dict[str, Any]) -> None:
        pass

    def on_end(self, result: dict[str, Any]) -> None:
        pass

    def should_stop(self) -> StopRequest:
        return None


class MultiReporter:
    """Fans every hook out to several reporters; the first stop request wins."""

    def __init__(self, reporters: list[Reporter]) -> None:
        self.reporters = reporters

    def on_start(self, total_steps: int, config: dict[str, Any]) -> None:
        for reporter in self.reporters:
            reporter.on_start(total_steps, config)

    def on_step(self, metrics: dict[str, Any]) -> None:
        for reporter in self.reporters:
            reporter.on_step(metrics)

    def on_event(self, level: str, message: str, data: dict[str, Any] | None = None) -> None:
        for reporter in self.reporters:
            reporter.on_event(level, message, data)

    def on_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        for reporter in self.reporters:
            reporter.on_samples(step, samples)

    def on_checkpoint(self, step: int, path: str, metrics: dict[str, Any]) -> None:
        for reporter in self.reporters:
            reporter.on_checkpoint(step, path, metrics)

    def on_end(self, result: dict[str, Any]) -> None:
        for reporter in self.reporters:
            reporter.on_end(result)

    def should_stop(self) -> StopRequest:
        for reporter in self.reporters:
            request = reporter.should_stop()
            if request is not None:
                return request
        return None
