"""The one call from a job to the engine: `run_training(job, settings, reporter)`.

Reinforcement jobs go to `openrft.rl.trainer.train`, supervised ones to
`openrft.sft.train_supervised`; both write checkpoints under the job's run directory
and report through the same StoreReporter. Both always run with `resume=True`, so a
re-claimed or resumed job continues from its last checkpoint (or starts fresh).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openrft.rl.reporter import MultiReporter, Reporter
from openrft.service.integrations import integration_reporters
from openrft.service.job_reporter import StoreReporter
from openrft.service.job_spec import build_rft_config, job_data_dir
from openrft.service.model_access import trained_model_name
from openrft.service.settings import ServiceSettings
from openrft.service.store.models import Job


@dataclass
class TrainingOutcome:
    final_model_dir: str | None  # None when stopped before the end
    stopped: bool


def run_training(job: Job, settings: ServiceSettings, reporter: StoreReporter) -> TrainingOutcome:
    prepare_base_model(job, reporter)
    # the store first: its stop request wins; integrations (wandb) only mirror the metrics
    reporters = MultiReporter([reporter, *integration_reporters(job, reporter)])
    if job.method["type"] == "reinforcement":
        from openrft.rl.trainer import train

        config = build_rft_config(job, job_data_dir(settings, job.id))
        # resume=True continues from the latest checkpoint, or starts fresh when none exists.
        result = train(config, reporter=reporters, resume=True)
        stopped = result.stopped is not None
        final = result.final_model_dir
    else:
        final = str(_train_supervised(job, settings, reporters))
        stopped = reporter.stop_seen is not None
    return TrainingOutcome(final_model_dir=None if stopped else final, stopped=stopped)


def prepare_base_model(job: Job, reporter: StoreReporter) -> None:
    """Record which model trains (an alias names another) and pull a catalog model that
    is not in the models directory yet, with an event before and after (once, cached)."""
    from openrft.models import catalog

    base = trained_model_name(job)
    requested = f" (requested as {job.model})" if base != job.model else ""
    reporter.on_event("info", f"Base model: {base}{requested}",
                      {"base_model": base, "requested_model": job.model})
    if job.model_path in catalog.CATALOG and catalog.pulled_path(job.model_path) is None:
        reporter.on_event("info", f"Pulling base model {base} from the model catalog "
                                  "(first use; later jobs reuse it)")
        catalog.ensure_model(job.model_path)
        reporter.on_event("info", f"Pulled base model {base}")


def _train_supervised(job: Job, settings: ServiceSettings, reporter: Reporter) -> Any:
    """A supervised job; like RFT, a re-claimed or resumed one continues from its last
    checkpoint."""
    from openrft.data.jsonl import read_jsonl
    from openrft.models.load import LoraSettings
    from openrft.sft import train_supervised

    hyper = (job.method.get("supervised") or {}).get("hyperparameters") or {}
    expert = job.expert or {}
    lora = None if expert.get("finetune") == "full" else LoraSettings(
        rank=int(expert.get("lora_rank", 16)), alpha=int(expert.get("lora_alpha", 32)))
    base_lr = 2e-4 if lora else 2e-5
    multiplier = hyper.get("learning_rate_multiplier", "auto")
    return train_supervised(
        job.model_path,
        read_jsonl(job_data_dir(settings, job.id) / "train.jsonl"),
        job.output_dir,
        epochs=_auto(hyper.get("n_epochs"), 1),
        batch_size=_auto(hyper.get("batch_size"), 8),
        learning_rate=base_lr * _auto(multiplier, 1.0),
        lora=lora,
        max_length=int(expert.get("max_length", 512)),
        seed=job.seed,
        reporter=reporter,
        progress=False,
        resume=True,
    )


def _auto(value: Any, default: Any) -> Any:
    return default if value in (None, "auto") else value
