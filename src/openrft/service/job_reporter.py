"""`StoreReporter`: the trainer's Reporter, writing events, metrics and checkpoints to the store.

Each hook is one short transaction, so a client polling the API sees a step's metrics
event and a checkpoint row as soon as the trainer reports them, and nothing is lost if
the worker dies right after. `should_stop` reads the job's requested stop (cancel /
pause), pauses when the worker itself is shutting down, and stops a worker that lost
its claim to another worker. A training-health finding whose action is "pause"
(expert.monitor.on_no_signal: pause) records a pause request on the job, exactly as
`POST .../pause` does, so the worker marks the job paused once the trainer has stopped.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from openrft.rl.config import OPENAI_HYPERPARAMETERS
from openrft.rl.reporter import StopRequest
from openrft.service.store import jobs as job_queries
from openrft.service.store.db import Database

_LEVELS = {"info": "info", "warn": "warn", "warning": "warn", "error": "error"}
# Trainer metric names for the train / full-validation mean reward, in order of preference.
_TRAIN_KEYS = ("train_reward_mean", "train_mean_reward", "reward_mean")
_VALID_KEYS = ("valid_reward_mean", "full_valid_mean_reward", "valid_mean_reward")


def fine_tuned_model_name(model: str, project_name: str, suffix: str | None, job_id: str) -> str:
    """OpenAI-style `ft:<base>:<project>:<suffix>:<job>` for a job's output model."""
    if model.startswith("ft:"):
        base = model.split(":")[1]
    else:
        base = model.rstrip("/").rsplit("/", 1)[-1]
    parts = [base, project_name, suffix or "", job_id.removeprefix("ftjob-")]
    return "ft:" + ":".join(part.replace(":", "-") for part in parts)


def _trained_tokens(rows: list[dict[str, Any]]) -> int | None:
    """Tokens trained on so far: the sum of each stored step's `trained_tokens`."""
    counts = [row["trained_tokens"] for row in rows if isinstance(row.get("trained_tokens"), int)]
    return sum(counts) if counts else None


def _first(metrics: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        value = metrics.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
    return None


def _json_safe(value: Any) -> Any:
    """Plain JSON values (NaN/inf -> null, unknown objects -> str) so every row stores."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        return _json_safe(value.item())
    return str(value)


def metrics_event(metrics: dict[str, Any], total_steps: int | None) -> tuple[str, dict[str, Any]]:
    """OpenAI's RFT metrics event: message "Step 3/20, train mean reward=..." and its data."""
    step = int(metrics.get("step", 0))
    total = int(metrics.get("total_steps") or total_steps or 0)
    train = _first(metrics, _TRAIN_KEYS)
    valid = _first(metrics, _VALID_KEYS)
    data = _json_safe(metrics)
    data.update(step=step, total_steps=total, train_mean_reward=train)
    data["scores"] = {**(data.get("scores") or {}), "train_reward_mean": train,
                      "valid_reward_mean": valid}
    message = f"Step {step}/{total}"
    if train is not None:
        message += f", train mean reward={train:.2f}"
    if valid is not None:
        message += f", valid mean reward={valid:.2f}"
    return message, data


class StoreReporter:
    """Reporter bound to one job and the worker that owns it."""

    def __init__(self, db: Database, job_id: str, worker_id: str, model_name: str,
                 shutdown: threading.Event | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.shutdown = shutdown or threading.Event()  # the worker is stopping
        self.job_id = job_id
        self.worker_id = worker_id
        self.model_name = model_name  # the job's future `ft:` name
        self.total_steps: int | None = None
        self.lost_claim = threading.Event()
        self.stop_seen: StopRequest = None  # the stop request the trainer was given, if any
        self._last_metrics: dict[str, Any] | None = None
        self.clock = clock  # Unix seconds, for estimated_finish
        self._started: tuple[float, int | None] = (clock(), None)  # (time, first step)

    def _event(self, message: str, level: str = "info", type: str = "message",
               data: dict[str, Any] | None = None) -> None:
        with self.db.session() as session:
            job_queries.add_event(session, self.job_id, message, level, type, data)

    def on_start(self, total_steps: int, config: dict[str, Any]) -> None:
        self.total_steps = total_steps
        self._started = (self.clock(), None)
        with self.db.session() as session:
            job = job_queries.get_job_by_id(session, self.job_id)
            if job is not None:
                job.total_steps = total_steps
                named = {"n_epochs": config.get("epochs"), **config}  # SFT says "epochs"
                resolved = {k: named[k] for k in OPENAI_HYPERPARAMETERS
                            if named.get(k) is not None}
                job.resolved_hyperparameters = _json_safe(resolved) or None
            job_queries.add_event(session, self.job_id,
                                  f"Fine-tuning started: {total_steps} steps")

    def on_step(self, metrics: dict[str, Any]) -> None:
        self._last_metrics = metrics
        message, data = metrics_event(metrics, self.total_steps)
        with self.db.session() as session:
            job_queries.add_event(session, self.job_id, message, "info", "metrics", data)
            job = job_queries.get_job_by_id(session, self.job_id)
            if job is not None:
                job.trained_tokens = _trained_tokens(job_queries.metric_rows(session, job.id))
                job.estimated_finish = self._estimated_finish(data["step"])

    def _estimated_finish(self, step: int) -> int | None:
        """Now plus the remaining steps at this session's mean step time (Unix seconds)."""
        started_at, first_step = self._started
        if first_step is None:
            first_step = step
            self._started = (started_at, step)
        now = self.clock()
        per_step = (now - started_at) / (step - first_step + 1)
        return round(now + per_step * max((self.total_steps or step) - step, 0))

    def on_event(self, level: str, message: str, data: dict[str, Any] | None = None) -> None:
        if data is not None and data is self._last_metrics:
            return  # the trainer's per-step text: already stored as this step's metrics event
        self._event(message, _LEVELS.get(level, "info"), data=_json_safe(data) if data else None)
        if ((data or {}).get("finding") or {}).get("action") == "pause":
            with self.db.session() as session:
                job = job_queries.get_job_by_id(session, self.job_id)
                if job is not None and job.requested_stop is None:
                    job.requested_stop = "pause"

    def on_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        with self.db.session() as session:
            job_queries.add_samples(session, self.job_id, step, _json_safe(samples))

    def on_checkpoint(self, step: int, path: str, metrics: dict[str, Any]) -> None:
        with self.db.session() as session:
            job_queries.add_checkpoint(
                session, self.job_id, step, f"{self.model_name}:ckpt-step-{step}", path,
                {"step": step, **_json_safe(metrics)},
            )
            job_queries.drop_pruned_checkpoints(session, self.job_id)
            job_queries.add_event(session, self.job_id, f"Checkpoint created at step {step}")

    def on_end(self, result: dict[str, Any]) -> None:
        """The worker records the outcome; here only the checkpoints the trainer's final
        pruning removed are forgotten (it keeps the best few, see openrft/checkpoint.py)."""
        with self.db.session() as session:
            job_queries.drop_pruned_checkpoints(session, self.job_id)

    def should_stop(self) -> StopRequest:
        if self.lost_claim.is_set():
            return "cancel"
        with self.db.session() as session:
            requested = job_queries.requested_stop(session, self.job_id)
        if requested not in ("cancel", "pause") and self.shutdown.is_set():
            requested = "pause"  # checkpoint now; the worker puts the job back in the queue
        if requested in ("cancel", "pause"):
            self.stop_seen = requested  # type: ignore[assignment]
            return self.stop_seen
        return None
