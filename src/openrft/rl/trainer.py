"""`train(config, reporter)`: reinforcement fine-tuning end to end.

Validate everything (config, grader, both data files) before any model loads; build the
policy, rollout engine and reward function; run `total_steps` GRPO steps (step.py) with
periodic validation and atomic checkpoints; finish with a full validation pass and the
final model. The CLI and the service both call this function; the run directory
(run_dir.py) is always written, and `reporter` (a rich progress bar, the job store)
receives the same hooks and can pause or cancel between steps.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from openrft.checkpoint import (
    CHECKPOINTS,
    checkpoint_to_resume,
    prune_checkpoints,
    read_state,
    save_checkpoint,
    save_model_dir,
)
from openrft.data.dataset import Dataset, load_dataset
from openrft.errors import InvalidInput, TrainingHealthError
from openrft.graders.base import make_reward_fn
from openrft.rl.backend import open_backend
from openrft.rl.config import ResolvedConfig, RFTConfig, load_config, resolve
from openrft.rl.monitor import TrainingMonitor, run_facts
from openrft.rl.monitor_settings import MonitorAction
from openrft.rl.pipeline import AsyncRollouts, open_async_rollouts
from openrft.rl.policy_setup import build_policy, make_generation_params
from openrft.rl.precision import autocast_forwards
from openrft.rl.preflight_gate import run_preflight_gate
from openrft.rl.reporter import MultiReporter, Reporter
from openrft.rl.run_dir import CONFIG, METRICS, RunDirReporter, read_jsonl_rows
from openrft.rl.step import (
    Policy,
    StepContext,
    StepOutput,
    learn_from_rollout,
    mean_validation_reward,
    run_step,
)
from openrft.rl.weights import trainable_weights
from openrft.rollout.episodes import make_episode_runner

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced."""

    output_dir: str
    final_model_dir: str | None  # None when the run was paused or cancelled
    steps: int  # optimizer steps completed
    full_valid_mean_reward: float | None  # None without a validation file or when stopped
    metrics_path: str
    stopped: Literal["paused", "cancelled"] | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)  # rl/monitor.py Findings


@dataclass
class _Data:
    train: Dataset
    valid: Dataset | None


def train(
    config: RFTConfig | str | Path,
    reporter: Reporter | None = None,
    resume: bool = False,
) -> TrainResult:
    """Run (or, with `resume`, continue) reinforcement fine-tuning; see docs/training.md."""
    config = config if isinstance(config, RFTConfig) else load_config(config)
    data = _load_data(config)
    cfg = resolve(config, len(data.train), len(data.valid) if data.valid else 0)
    cfg = cfg.model_copy(update={"model": _local_or_hub(cfg.model)})
    output_dir = Path(cfg.output_dir)
    checkpoint = _checkpoint_to_resume(output_dir, resume)
    run_dir = RunDirReporter(output_dir)
    changed: list[str] = []
    if checkpoint is not None:
        state = read_state(checkpoint)
        cfg = cfg.model_copy(update={"seed": state["seed"]})  # an auto seed survives resume
        changed = _changed_since_start(output_dir, cfg)
    run_dir.truncate_after(0 if checkpoint is None else state["step"])
    reporters = MultiReporter([run_dir, *([reporter] if reporter is not None else [])])

    policy, tokenizer, start_step = build_policy(cfg, checkpoint)
    backend = open_backend(cfg, policy, tokenizer)  # local, or Ray (docs/scaling.md)
    ctx = StepContext(
        cfg=cfg,
        policy=policy,
        engine=backend.engine,
        reward_fn=backend.reward_fn,
        params=make_generation_params(cfg),
    )
    has_tools = _rows_have_tools(data)
    ctx.episodes = make_episode_runner(ctx.engine, tokenizer, cfg.tools, cfg.max_episode_steps,
                                       has_tools)
    try:
        if cfg.preflight and start_step == 0:
            _preflight(ctx, data.train, reporters)
        reporters.on_start(cfg.total_steps, cfg.to_dict())
        if start_step:
            reporters.on_event("info", f"Resumed from {checkpoint} at step {start_step}",
                               {"resumed_step": start_step, "checkpoint": str(checkpoint)})
        if changed:
            reporters.on_event("warn",
                               f"Config changed since the run started: {', '.join(changed)}")
        loop = _TrainingLoop(ctx, data, reporters, tokenizer, output_dir, backend.notices)
        if cfg.max_staleness > 0:  # the async mode (rl/pipeline.py)
            loop.pipeline = open_async_rollouts(
                ctx, tokenizer, loop.batch, start_step,
                None if ctx.episodes is None else lambda engine: make_episode_runner(
                    engine, tokenizer, cfg.tools, cfg.max_episode_steps, has_tools))
        try:
            return loop.run(start_step)
        finally:
            loop.close_pipeline()
    finally:
        backend.close()
        if ctx.episodes is not None:
            ctx.episodes.close()


def _preflight(ctx: StepContext, rows: Dataset, reporters: MultiReporter) -> None:
    """expert.preflight: sample the base policy before step 1 (rl/preflight_gate.py), graded
    here whatever the backend (the preflight is small)."""
    policy = ctx.policy
    precision = autocast_forwards(policy.autocast_dtype, next(policy.model.parameters()).device)
    _, grader = make_reward_fn(ctx.cfg.grader)
    try:
        run_preflight_gate(ctx.cfg, ctx.engine, rows, grader, reporters, precision)
    finally:
        grader.close()


class _TrainingLoop:
    """The loop over steps with its cadence: validate, checkpoint, honour stop requests."""

    def __init__(
        self,
        ctx: StepContext,
        data: _Data,
        reporters: MultiReporter,
        tokenizer: Any,
        output_dir: Path,
        notices: Callable[[], list[str]] = list,
    ) -> None:
        self.ctx, self.cfg, self.data = ctx, ctx.cfg, data
        self.notices = notices  # the backend's (a rollout actor replaced, ...): warn events
        self.reporters, self.tokenizer, self.output_dir = reporters, tokenizer, output_dir
        self.checkpoints = output_dir / CHECKPOINTS
        self.last_saved = -1
        self.monitor = TrainingMonitor(ctx.cfg.monitor, run_facts(ctx.cfg))
        self.pipeline: AsyncRollouts | None = None  # the async mode's rollouts

    def batch(self, step: int) -> tuple[list[dict[str, Any]], list[Any]]:
        """(dataset rows, prompts) of `step`'s batch."""
        _, indices = batch_indices(self.cfg, step)
        return ([self.data.train.rows[i] for i in indices],
                [self.data.train.prompt(i) for i in indices])

    def step(self, step: int) -> StepOutput:
        """One step: synchronous, or on the async mode's rollout sampled ahead (the
        update's ratio then taken against the weights that sampled it)."""
        items, prompts = self.batch(step)
        if self.pipeline is None:
            return run_step(self.ctx, step, items, prompts)
        started = time.perf_counter()
        rollout, behaviour = self.pipeline.get(step)
        output = learn_from_rollout(self.ctx, step, prompts, rollout, started, behaviour,
                                    sync=False)
        self.pipeline.publish(step, trainable_weights(self.ctx.policy.model))
        return output

    def close_pipeline(self, sync: bool = False) -> None:
        """Stop sampling ahead. `sync`: the engine takes the trained weights (the async
        mode's sampler may have left older ones on shared rollout actors)."""
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None
            if sync:
                self.ctx.engine.sync_weights(self.ctx.policy.model)

    def run(self, start_step: int) -> TrainResult:
        cfg, step = self.cfg, start_step
        self.last_saved = start_step if start_step else -1
        if start_step and (self.output_dir / METRICS).exists():
            self.monitor.replay(read_jsonl_rows(self.output_dir / METRICS))
        for step in range(start_step + 1, cfg.total_steps + 1):
            request = self.reporters.should_stop()
            if request is not None:
                return self._stop(request, step - 1)
            epoch, _ = batch_indices(cfg, step)
            output = self.step(step)
            metrics = {"step": step, "epoch": epoch + 1, **output.metrics}
            metrics.update(self._periodic_validation(step))
            self.reporters.on_step(metrics)
            self.reporters.on_samples(step, output.samples)
            for warning in [*output.warnings, *self.notices()]:
                self.reporters.on_event("warn", warning)
            message = _step_message(metrics, cfg.total_steps)
            logger.info(message)
            self.reporters.on_event("info", message, metrics)
            action = self._watch(metrics)
            if step % cfg.save_every == 0 or step == cfg.total_steps:
                self._checkpoint(step, metrics)
            if action == "pause":
                return self._stop("pause", step)
            if action == "fail":
                self._fail(step)
        return self._finish(max(step, start_step))

    def _periodic_validation(self, step: int) -> dict[str, float]:
        if self.data.valid is None or step % self.cfg.eval_interval != 0:
            return {}
        rows = list(range(self.cfg.eval_samples))  # a fixed subset: comparable across steps
        with contextlib.ExitStack() as stack:
            if self.pipeline is not None:  # the engine samples the current weights here
                stack.enter_context(self.pipeline.paused())
                self.ctx.engine.sync_weights(self.ctx.policy.model)
            reward, parse_errors = mean_validation_reward(
                self.ctx,
                [self.data.valid.rows[i] for i in rows],
                [self.data.valid.prompt(i) for i in rows],
                step,
            )
        return {"valid_reward_mean": reward, "valid_parse_error_mean": parse_errors}

    def _checkpoint(self, step: int, metrics: dict[str, Any]) -> None:
        policy: Policy = self.ctx.policy
        path = save_checkpoint(
            self.checkpoints,
            step,
            policy.model,
            self.tokenizer,
            policy.optimizer,
            policy.scheduler,
            {"seed": self.cfg.seed, "epoch": metrics.get("epoch", 0), "data_position": step,
             "valid_reward_mean": metrics.get("valid_reward_mean")},
        )
        prune_checkpoints(self.checkpoints, self.cfg.keep_checkpoints)
        self.last_saved = step
        self.reporters.on_checkpoint(step, str(path), metrics)

    def _watch(self, metrics: dict[str, Any]) -> MonitorAction | None:
        """Report the monitor's new findings as events; the strongest action they ask for."""
        actions: list[MonitorAction] = []
        for finding in self.monitor.observe(metrics):
            self.reporters.on_event(finding.severity, finding.message,
                                    {"finding": finding.to_dict()})
            actions.append(finding.action)
        return "fail" if "fail" in actions else "pause" if "pause" in actions else None

    def _fail(self, step: int) -> None:
        failing = [f for f in self.monitor.findings if f.action == "fail"]
        result = self._result(step, None, None, None)
        self.reporters.on_end({**asdict(result), "status": "failed"})
        raise TrainingHealthError(failing[-1].message)

    def _stop(self, request: str, step: int) -> TrainResult:
        stopped: Literal["paused", "cancelled"] = "paused" if request == "pause" else "cancelled"
        if stopped == "paused" and self.last_saved != step:
            self._checkpoint(step, {"step": step})
        self.reporters.on_event("info", f"Training {stopped} after step {step}")
        result = self._result(step, None, None, stopped)
        self.reporters.on_end({**asdict(result), "status": stopped})
        return result

    def _finish(self, step: int) -> TrainResult:
        full_valid = None
        self.close_pipeline(sync=True)
        if self.data.valid is not None:
            valid = self.data.valid
            full_valid, _ = mean_validation_reward(
                self.ctx,
                valid.rows,
                [valid.prompt(i) for i in range(len(valid))],
                self.cfg.total_steps + 1,
            )
            self.reporters.on_event("info", f"Full validation mean reward={full_valid:.4f}")
        for notice in self.notices():  # since the last step (the final sync, validation)
            self.reporters.on_event("warn", notice)
        final_dir = self.output_dir / "final"
        save_model_dir(final_dir, self.ctx.policy.model, self.tokenizer)
        # the newest was kept for resuming; a finished run keeps only the best
        prune_checkpoints(self.checkpoints, self.cfg.keep_checkpoints, keep_newest=False)
        result = self._result(step, str(final_dir), full_valid, None)
        self.reporters.on_end({**asdict(result), "status": "succeeded", "seed": self.cfg.seed})
        return result

    def _result(
        self, step: int, final_dir: str | None, full_valid: float | None, stopped: Any
    ) -> TrainResult:
        return TrainResult(
            output_dir=str(self.output_dir),
            final_model_dir=final_dir,
            steps=step,
            full_valid_mean_reward=full_valid,
            metrics_path=str(self.output_dir / METRICS),
            stopped=stopped,
            findings=[finding.to_dict() for finding in self.monitor.findings],
        )


def batch_indices(cfg: ResolvedConfig, step: int) -> tuple[int, list[int]]:
    """(epoch, row indices) of 1-based `step`: a seeded shuffle per epoch, so the data
    position of a resumed run is a pure function of the step."""
    epoch, index = divmod(step - 1, cfg.steps_per_epoch)
    order = np.random.default_rng([cfg.seed, epoch]).permutation(cfg.n_train_rows)
    return epoch, order[index * cfg.batch_size : (index + 1) * cfg.batch_size].tolist()


def _step_message(metrics: dict[str, Any], total_steps: int) -> str:
    """OpenAI's per-step event text."""
    message = (
        f"Step {metrics['step']}/{total_steps}, "
        f"train mean reward={metrics['train_reward_mean']:.2f}"
    )
    if "valid_reward_mean" in metrics:
        message += f", valid mean reward={metrics['valid_reward_mean']:.2f}"
    return message


def _load_data(config: RFTConfig) -> _Data:
    """Validate both files completely (and the grader's item fields) before any model loads."""
    train_set = load_dataset(config.training_file, config.grader)
    valid_set = None
    if config.validation_file:
        valid_set = load_dataset(config.validation_file, config.grader)
    return _Data(train_set, valid_set)


def _rows_have_tools(data: _Data) -> bool:
    """Whether any row carries OpenAI's per-row `tools` (function schemas)."""
    sets = [data.train] + ([data.valid] if data.valid is not None else [])
    return any(row.get("tools") for dataset in sets for row in dataset.rows)


def _local_or_hub(model: str) -> str:
    """An existing local path made absolute (adapters record it as their base model)."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


# Settings a checkpoint's weights and optimizer state depend on.
_FIXED_BY_CHECKPOINT = ("model", "finetune", "lora_rank", "lora_alpha", "precision")


def _changed_since_start(output_dir: Path, cfg: ResolvedConfig) -> list[str]:
    """Resolved settings that differ from the run's config.yaml; InvalidInput if the
    checkpoint cannot be loaded under the new ones."""
    path = output_dir / CONFIG
    saved = yaml.safe_load(path.read_text()) if path.exists() else {}
    current = cfg.to_dict()
    for key in _FIXED_BY_CHECKPOINT:
        if key in saved and saved[key] != current[key]:
            raise InvalidInput(
                f"{path}: {key}",
                f"the run was started with {saved[key]!r}; cannot resume it with "
                f"{current[key]!r}",
            )
    return sorted(k for k in saved if k in current and saved[k] != current[k])


def _checkpoint_to_resume(output_dir: Path, resume: bool) -> Path | None:
    metrics = output_dir / METRICS
    started = metrics.exists() and bool(read_jsonl_rows(metrics))
    return checkpoint_to_resume(output_dir, resume, started)
