"""A job's `integrations` (OpenAI: Weights & Biases): reporters that mirror its metrics.

A job body with `integrations: [{type: "wandb", wandb: {project, entity?, name?, tags?}}]`
is always accepted, stored and echoed. When the worker runs the job, the integration
runs only if the `wandb` package is installed and configured on that worker
(`WANDB_API_KEY`, or `WANDB_MODE=offline`); otherwise the job gets a warning event and
trains as usual. A failing wandb call never fails the job: it is logged and the
integration stops.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

from openrft.rl.reporter import NullReporter, Reporter
from openrft.service.store.models import Job

log = logging.getLogger(__name__)


def integration_reporters(job: Job, reporter: Reporter) -> list[Reporter]:
    """One reporter per runnable integration; a warning event (via `reporter`) for others."""
    reporters: list[Reporter] = []
    for integration in job.integrations or []:
        settings = integration.get("wandb") or {}
        problem = _wandb_problem()
        if problem is None:
            reporters.append(WandbReporter(job, settings))
        else:
            reporter.on_event("warn", f"Integration wandb (project {settings.get('project')!r}) "
                                      f"not run: {problem}. Metrics are in the job's events "
                                      "and the dashboard.")
    return reporters


def _wandb_problem() -> str | None:
    """Why wandb cannot run on this worker, or None when it can."""
    try:
        importlib.import_module("wandb")
    except ImportError:
        return "the wandb package is not installed on the worker"
    if not os.environ.get("WANDB_API_KEY") and os.environ.get("WANDB_MODE") != "offline":
        return "WANDB_API_KEY is not set on the worker (nor WANDB_MODE=offline)"
    return None


class WandbReporter(NullReporter):
    """Logs each step's numeric metrics to a wandb run named after the job.

    The run id is the job id with `resume="allow"`, so a resumed job continues its run.
    Tags follow OpenAI's defaults: `openrft/finetune`, `openrft/<base model>`,
    `openrft/<job id>`, plus the job's own.
    """

    def __init__(self, job: Job, settings: dict[str, Any]) -> None:
        self.job_id = job.id
        base = job.model.rstrip("/").rsplit("/", 1)[-1]
        self.init_args = {
            "project": settings["project"],
            "entity": settings.get("entity"),
            "name": settings.get("name") or job.id,
            "tags": ["openrft/finetune", f"openrft/{base}", f"openrft/{job.id}",
                     *(settings.get("tags") or [])],
            "id": job.id,
            "resume": "allow",
        }
        self.run: Any = None

    def _call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception:  # noqa: BLE001 - an integration never fails the job
            log.exception("job %s: wandb %s failed; the integration stops", self.job_id, action)
            self.run = None
            return None

    def on_start(self, total_steps: int, config: dict[str, Any]) -> None:
        wandb = importlib.import_module("wandb")
        self.run = self._call("init", wandb.init, config=config, **self.init_args)

    def on_step(self, metrics: dict[str, Any]) -> None:
        if self.run is None:
            return
        numbers = {k: v for k, v in metrics.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
        self._call("log", self.run.log, numbers, step=int(metrics.get("step", 0)))

    def on_end(self, result: dict[str, Any]) -> None:
        if self.run is not None:
            self._call("finish", self.run.finish)
            self.run = None


