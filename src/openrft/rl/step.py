"""One GRPO step, top to bottom: sample -> grade -> advantages -> log-probs -> loss ->
backward -> optimizer step -> metrics.

Each phase is a small function; `run_step` only strings them together and times them.
The update (`update_policy`, rl/update.py) is the plain reference: the policy's own
forward under autograd. Every speed trick lives in openrft.fast and plugs in through
`TrainingPath`, which `PlainPath` implements too (`expert.fast_path` chooses). The
trainer (trainer.py) owns the loop, evaluation cadence, checkpoints and reporting.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch

from openrft.graders.base import GradeResult, RewardFn
from openrft.rl.advantages import group_advantages, kept_group_advantages, zero_variance_groups
from openrft.rl.config import ResolvedConfig
from openrft.rl.health_metrics import step_health_metrics
from openrft.rl.logprobs import (
    TokenBatch,
    pack_samples,
)
from openrft.rl.step_records import sample_records, tool_warnings
from openrft.rl.update import UpdateStats, forward_precision, update_policy
from openrft.rl.weights import Weights
from openrft.rollout.decode import DecodeForward, TransformersForward
from openrft.rollout.engine import CausalLM, GenerationParams, Messages, RolloutEngine, Sample
from openrft.rollout.episodes import EpisodeRunner, episode_metrics
from openrft.rollout.grading import grade_samples


@dataclass
class Policy:
    """The model being trained and everything its update needs."""

    model: CausalLM  # transformers model or peft model (LoRA)
    reference: CausalLM | None  # frozen model for KL in full fine-tuning; None: LoRA or beta == 0
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    pad_token_id: int
    autocast_dtype: torch.dtype | None = None  # bf16/fp16: forwards under torch.autocast
    path: TrainingPath = field(default_factory=lambda: PlainPath())  # expert.fast_path


@dataclass
class StepContext:
    """What every step shares: config, policy, rollout engine, reward function."""

    cfg: ResolvedConfig
    policy: Policy
    engine: RolloutEngine
    reward_fn: RewardFn
    params: GenerationParams  # sampling settings; the seed is set per call
    episodes: EpisodeRunner | None = None  # tools / multi-turn: rollouts are episodes


@dataclass
class StepOutput:
    metrics: dict[str, Any]  # one metrics.jsonl row (without validation)
    samples: list[dict[str, Any]]  # records for samples.jsonl
    warnings: list[str] = field(default_factory=list)  # job events: discarded rollouts, ...


TRAIN_SAMPLING, VALID_SAMPLING = 0, 1  # purposes of derived sampling seeds


def derived_seed(seed: int, *parts: int) -> int:
    """A sampling seed per (run seed, step, purpose, ...): a resumed run samples the same
    tokens as an uninterrupted one without saving any generator state."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])


# -- phase 1: sample -------------------------------------------------------------------


def sample_completions(
    engine: RolloutEngine, prompts: list[Messages], n: int, params: GenerationParams
) -> list[Sample]:
    """len(prompts) * n completions, prompt-major. The only place that generates text."""
    return engine.generate(prompts, n, params)


def sample_episodes(
    ctx: StepContext, prompts: list[Messages], items: Sequence[dict[str, Any]], n: int,
    params: GenerationParams,
) -> list[Sample]:
    """Episodes when the job has tools (rollout/episodes.py), else plain completions."""
    if ctx.episodes is None:
        return sample_completions(ctx.engine, prompts, n, params)
    return ctx.episodes.generate(prompts, [item.get("tools") for item in items], n, params)


# -- phase 2: grade: openrft.rollout.grading.grade_samples, shared with evaluation --------


# -- phase 4: log-probs, loss, backward, optimizer step: rl/update.py ------------------


# -- the path: plain, or openrft.fast ---------------------------------------------------


class TrainingPath(Protocol):
    """How a step runs its forward passes: the rollout's decode, its sampling, and the
    update. `PlainPath` (below) is the reference: the model's own modules under autograd.
    openrft.fast's `FastPath` implements the same three methods with every speed trick
    (hand-written decode, replayed forward, fused backward, row skipping); the config's
    `expert.fast_path` chooses (rl/policy_setup.py)."""

    def decode_forward(self, model: CausalLM) -> DecodeForward:
        """The forward the HF engine decodes one batch of rows with."""
        ...

    def sample(self, engine: RolloutEngine, prompts: list[Messages], n: int,
               params: GenerationParams) -> list[Sample]:
        """The step's rollouts: len(prompts) * n samples, prompt-major."""
        ...

    def update(self, policy: Policy, cfg: ResolvedConfig, batch: TokenBatch,
               advantages: torch.Tensor, behaviour: Weights | None = None) -> UpdateStats:
        """The optimizer steps on the sampled batch (sampled by `behaviour`, when given:
        older weights than the policy's)."""
        ...


class PlainPath:
    """The reference path (`expert.fast_path: off`): what every fast piece is tested
    against."""

    def decode_forward(self, model: CausalLM) -> DecodeForward:
        return TransformersForward(model)

    def sample(self, engine: RolloutEngine, prompts: list[Messages], n: int,
               params: GenerationParams) -> list[Sample]:
        return sample_completions(engine, prompts, n, params)

    def update(self, policy: Policy, cfg: ResolvedConfig, batch: TokenBatch,
               advantages: torch.Tensor, behaviour: Weights | None = None) -> UpdateStats:
        return update_policy(policy, cfg, batch, advantages, behaviour=behaviour)


# -- the step --------------------------------------------------------------------------


@dataclass
class Rollout:
    """One step's sampled and graded batch, and which policy version sampled it."""

    samples: list[Sample]
    grades: list[GradeResult]
    version: int  # optimizer steps applied to the weights that sampled the batch
    sampling_seconds: float
    grading_seconds: float


def run_step(
    ctx: StepContext, step: int, items: list[dict[str, Any]], prompts: list[Messages]
) -> StepOutput:
    """One synchronous GRPO step on a batch of dataset rows (`items`) and their prompts:
    sampled by the policy it then updates (version step - 1)."""
    started = time.perf_counter()
    ctx.policy.model.eval()
    rollout = collect_rollout(ctx, step, items, prompts, step - 1)
    return learn_from_rollout(ctx, step, prompts, rollout, started)


def collect_rollout(
    ctx: StepContext, step: int, items: list[dict[str, Any]], prompts: list[Messages],
    version: int,
) -> Rollout:
    """Sample and grade step `step`'s batch with `ctx.engine`, whose weights are `version`
    (the async mode calls this from its sampling thread, rl/pipeline.py)."""
    cfg, started = ctx.cfg, time.perf_counter()
    params = replace(ctx.params, seed=derived_seed(cfg.seed, step, TRAIN_SAMPLING))
    with forward_precision(ctx.policy):
        if ctx.episodes is not None:
            samples = sample_episodes(ctx, prompts, items, cfg.group_size, params)
        else:
            samples = ctx.policy.path.sample(ctx.engine, prompts, cfg.group_size, params)
    sampled = time.perf_counter()
    grades = grade_samples(ctx.reward_fn, samples, items)
    return Rollout(samples, grades, version, sampled - started, time.perf_counter() - sampled)


def learn_from_rollout(
    ctx: StepContext, step: int, prompts: list[Messages], rollout: Rollout, started: float,
    behaviour: Weights | None = None, sync: bool = True,
) -> StepOutput:
    """Advantages, the update and the step's metrics. `behaviour`: the weights that
    sampled the rollout, when older than the policy's (async mode); `sync`: send the new
    weights to the engine (the async mode's sampling thread loads them itself).
    `started`: when the step began, for its wall time."""
    cfg, samples, grades = ctx.cfg, rollout.samples, rollout.grades
    graded = time.perf_counter()
    rewards = torch.tensor([g.score for g in grades], dtype=torch.float32)  # (B*G,)
    advantages = group_advantages(rewards, cfg.group_size, cfg.scale_rewards)  # (B*G,)
    kept = torch.tensor([s.discard_reason is None for s in samples])  # (B*G,)
    if not kept.all():  # discarded rollouts: out of their group's statistics, no loss
        advantages = kept_group_advantages(rewards, kept, cfg.group_size, cfg.scale_rewards)

    batch = pack_samples(samples, ctx.policy.pad_token_id)
    batch.completion_mask[~kept] = 0.0
    learning_rate = ctx.policy.scheduler.get_last_lr()[0]
    stats = ctx.policy.path.update(ctx.policy, cfg, batch, advantages, behaviour)
    if sync:
        ctx.engine.sync_weights(ctx.policy.model)
    finished = time.perf_counter()

    completion_tokens = [  # the model's own tokens (an episode's tool turns left out)
        len(s.completion_ids) if s.completion_mask is None else int(sum(s.completion_mask))
        for s in samples
    ]
    metrics = {
        "step": step,
        "train_reward_mean": rewards.mean().item(),
        "train_reward_std": rewards.std().item() if len(rewards) > 1 else 0.0,
        "kl": stats.kl,
        "entropy": stats.entropy,
        "clip_fraction": stats.clip_fraction,
        "loss": stats.loss,
        "grad_norm": stats.grad_norm,
        "forward_replayed": stats.replayed,
        "learning_rate": learning_rate,
        # the sampling policy: its version (optimizer steps applied) and how many steps
        # it lags the policy this step updated (0 unless expert.max_staleness > 0)
        "policy_version": rollout.version,
        "staleness": step - 1 - rollout.version,
        "completion_tokens_mean": sum(completion_tokens) / len(completion_tokens),
        # prompt + completion tokens of every sequence the update ran over (OpenAI's
        # trained_tokens sums this over steps)
        "trained_tokens": sum(len(s.prompt_ids) for s in samples) + sum(completion_tokens),
        "truncated_fraction": sum(s.finish_reason == "length" for s in samples) / len(samples),
        "zero_variance_groups": int(zero_variance_groups(rewards, cfg.group_size).sum()),
        "grader_errors": sum(1 for g in grades if g.errors),
        "grader_latency_s": sum(g.latency_s for g in grades) / len(grades),
        "sample_parse_errors": sum(1 for s in samples if s.parse_error is not None),
        "sampling_seconds": rollout.sampling_seconds,
        "grading_seconds": rollout.grading_seconds,
        "training_seconds": finished - graded,
        "step_seconds": finished - started,
        "tokens_per_second": sum(completion_tokens) / max(finished - started, 1e-9),
        **episode_metrics(samples),
        **step_health_metrics(cfg, samples, grades, rewards.tolist()),  # rl/health_metrics.py
    }
    records = sample_records(step, samples, grades, advantages, prompts, cfg.group_size,
                             cfg.keep_samples)
    return StepOutput(metrics, records, tool_warnings(step, samples))


def mean_validation_reward(
    ctx: StepContext,
    items: list[dict[str, Any]],
    prompts: list[Messages],
    step: int,
    chunk: int = 32,
) -> tuple[float, float]:
    """(mean reward, parse-error fraction) of one completion per validation row."""
    ctx.policy.model.eval()
    scores, parse_errors = [], 0
    for start in range(0, len(items), chunk):
        params = replace(ctx.params, seed=derived_seed(ctx.cfg.seed, step, VALID_SAMPLING, start))
        with forward_precision(ctx.policy):
            samples = sample_episodes(ctx, prompts[start : start + chunk],
                                      items[start : start + chunk], 1, params)
        grades = grade_samples(ctx.reward_fn, samples, items[start : start + chunk])
        scores += [g.score for g in grades]
        parse_errors += sum(1 for s in samples if s.parse_error is not None)
    return sum(scores) / len(scores), parse_errors / len(scores)
