"""The one call from a job to the engine: `run_training(job, settings, reporter)`.

Reinforcement jobs go to `openrft.rl.trainer.train`, supervised ones to
`openrft.sft.train_supervised`; both write checkpoints under the job's run directory
and report through the same StoreReporter. `resume=True` when a checkpoint exists, so a
re-claimed or resumed job continues from its last checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrft.rl.reporter import Reporter
from openrft.service.job_spec import build_rft_config, job_data_dir
from openrft.service.settings import ServiceSettings
from openrft.service.store.models import Job


@dataclass
class TrainingOutcome:
    final_model_dir: str | None  # None when stopped before the end
    stopped: bool
    trained_tokens: int | None = None


def has_checkpoint(output_dir: str) -> bool:
    checkpoints = Path(output_dir) / "checkpoints"
    return checkpoints.is_dir() and any(checkpoints.glob("step-*"))


def run_training(job: Job, settings: ServiceSettings, reporter: Reporter) -> TrainingOutcome:
    resume = has_checkpoint(job.output_dir)
    if job.method["type"] == "reinforcement":
        from openrft.rl.trainer import train

        config = build_rft_config(job, job_data_dir(settings, job.id))
        result = train(config, reporter=reporter, resume=resume)
    else:
        result = _train_supervised(job, settings, reporter, resume)
    stopped = bool(getattr(result, "stopped", False))
    final = getattr(result, "final_model_dir", None)
    return TrainingOutcome(
        final_model_dir=None if stopped or final is None else str(final),
        stopped=stopped,
        trained_tokens=getattr(result, "trained_tokens", None),
    )


def _train_supervised(job: Job, settings: ServiceSettings, reporter: Reporter,
                      resume: bool) -> Any:
    from openrft.data.jsonl import read_jsonl
    from openrft.sft import train_supervised

    data_dir = job_data_dir(settings, job.id)
    hyper = (job.method.get("supervised") or {}).get("hyperparameters") or {}
    validation = data_dir / "validation.jsonl"
    return train_supervised(
        job.model_path,
        read_jsonl(data_dir / "train.jsonl"),
        job.output_dir,
        validation_rows=read_jsonl(validation) if validation.exists() else None,
        hyperparameters=hyper,
        expert=job.expert or {},
        seed=job.seed,
        reporter=reporter,
        resume=resume,
    )
