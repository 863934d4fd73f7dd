"""One GRPO step, top to bottom: sample -> grade -> advantages -> loss/update -> metrics.

Each phase is a small function; `run_step` only strings them together and times them.
The trainer (trainer.py) owns the loop, evaluation cadence, checkpoints and reporting.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from openrft.graders.base import GradeResult, RewardFn
from openrft.rl.advantages import group_advantages, kept_group_advantages, zero_variance_groups
from openrft.rl.config import ResolvedConfig
from openrft.rl.health_metrics import step_health_metrics
from openrft.rl.logprobs import TokenBatch, completion_logprobs, pack_samples, reference_logprobs
from openrft.rl.losses import BatchSizes, policy_loss
from openrft.rl.precision import autocast_forwards
from openrft.rl.replay import (
    keep_tape_rows,
    recorded_entropy,
    replay_supported,
    tape_logprobs,
)
from openrft.rollout.engine import GenerationParams, Messages, RolloutEngine, Sample
from openrft.rollout.episodes import EpisodeRunner, episode_metrics
from openrft.rollout.forward_tape import ForwardTape
from openrft.rollout.grading import grade_samples
from openrft.rollout.hf import HFRolloutEngine


@dataclass
class Policy:
    """The model being trained and everything its update needs."""

    model: Any  # transformers model or peft model (LoRA)
    reference: Any | None  # frozen model for KL in full fine-tuning; None: LoRA or beta == 0
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    pad_token_id: int
    autocast_dtype: torch.dtype | None = None  # bf16/fp16: forwards under torch.autocast


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


# -- phase 4: loss and optimizer step --------------------------------------------------


@dataclass
class UpdateStats:
    kl: float  # mean per-token k3 KL to the reference (0 when beta == 0)
    entropy: float  # mean per-token policy entropy (first iteration, i.e. on-policy)
    clip_fraction: float  # fraction of tokens where the clip was the active branch
    loss: float  # mean of the optimized loss over iterations
    grad_norm: float  # pre-clipping global gradient norm (last iteration)
    replayed: bool = False  # the forward pass came from the rollout's tape


def update_policy(
    policy: Policy, cfg: ResolvedConfig, batch: TokenBatch, advantages: torch.Tensor,
    tapes: list[ForwardTape] | None = None,
) -> UpdateStats:
    """num_iterations optimizer steps on one sampled batch, micro-batched for memory.

    num_iterations == 1 is on-policy: the old log-probs are the current ones detached
    (ratio exactly 1), so no extra forward pass is spent on them. `tapes` (the rollout's
    recorded forward, see rl/replay.py) replace the policy's forward pass when given.
    Rows that cannot move the weights (`trained_rows`) get no forward/backward pass; they
    still count in every normaliser and in the reported entropy.
    """
    model = policy.model
    n = batch.input_ids.shape[0]
    sizes = BatchSizes(n, int(batch.completion_mask.sum()), cfg.max_tokens)
    trained = trained_rows(advantages, cfg)
    idle = _other_rows(trained, n)
    model.train()  # the entropy of idle rows is read in the mode the loss forward runs in
    idle_entropy = _entropy_sum(policy, cfg, batch, idle, tapes) if len(idle) else 0.0
    if tapes is not None and len(idle):
        tapes = keep_tape_rows(tapes, trained)
    batch, advantages = batch.rows(trained), advantages[trained]
    model.eval()  # old/reference log-probs without dropout
    ref_logp, old_logp = None, None
    with _forward_precision(policy):
        if cfg.beta > 0:
            ref_logp = reference_logprobs(model, policy.reference, batch, cfg.temperature)
        if cfg.num_iterations > 1 and len(trained):
            with torch.no_grad():
                old_logp = completion_logprobs(model, batch, cfg.temperature)[0]  # (N, C)
    model.train()
    losses, kl, entropy, clip, grad_norm = [], 0.0, 0.0, 0.0, 0.0
    tokens = max(sizes.num_tokens, 1)
    for iteration in range(cfg.num_iterations):
        totals = _accumulate_gradients(
            policy, cfg, batch, advantages, old_logp, ref_logp, sizes, iteration == 0, tapes
        )
        if not len(trained):  # what a backward of an all-zero loss leaves: zero gradients
            for parameter in _trainable(model):
                parameter.grad = torch.zeros_like(parameter)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(_trainable(model), cfg.max_grad_norm))
        policy.optimizer.step()
        policy.scheduler.step()
        policy.optimizer.zero_grad(set_to_none=True)
        losses.append(totals["loss"])
        clip += totals["clipped"] / tokens / cfg.num_iterations
        kl += totals["kl"] / tokens / cfg.num_iterations
        if iteration == 0:
            entropy = (totals["entropy"] + idle_entropy) / tokens
    model.eval()
    return UpdateStats(kl, entropy, clip, sum(losses) / len(losses), grad_norm,
                       bool(totals["replayed"]))


def trained_rows(advantages: torch.Tensor, cfg: ResolvedConfig) -> torch.Tensor:
    """Indices of the rows whose loss has a gradient. With beta 0 the loss of a row is
    its advantage times a ratio term, so a row with advantage exactly 0 (its whole group
    scored alike) has loss and gradient exactly 0: its backward is skipped."""
    n = advantages.shape[0]
    if cfg.beta > 0 or not cfg.skip_zero_advantage:
        return torch.arange(n)
    return torch.nonzero(advantages != 0).flatten()


def _other_rows(rows: torch.Tensor, n: int) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    keep[rows] = False
    return torch.nonzero(keep).flatten()


def _entropy_sum(policy: Policy, cfg: ResolvedConfig, batch: TokenBatch, rows: torch.Tensor,
                 tapes: list[ForwardTape] | None) -> float:
    """Policy entropy summed over the completion tokens of batch `rows`, without a graph:
    from the rollout's recorded logits when there are tapes, else a forward pass."""
    mask = batch.completion_mask
    if tapes is not None:
        return recorded_entropy(tapes, rows, mask, cfg.temperature)
    idle = batch.rows(rows)
    with torch.no_grad(), _forward_precision(policy):
        _, entropy = completion_logprobs(policy.model, idle, cfg.temperature, True)
    assert entropy is not None
    return float((entropy.float().cpu() * idle.completion_mask).sum())


def _accumulate_gradients(
    policy: Policy,
    cfg: ResolvedConfig,
    batch: TokenBatch,
    advantages: torch.Tensor,  # (N,)
    old_logp: torch.Tensor | None,  # (N, C) or None (on-policy)
    ref_logp: torch.Tensor | None,  # (N, C) or None (beta == 0)
    sizes: BatchSizes,
    with_entropy: bool,
    tapes: list[ForwardTape] | None = None,
) -> dict[str, float]:
    """Forward/backward over grad_accum_steps micro-batches; the losses sum to the batch's.
    With `tapes` (whole batch only) the forward is replayed from the rollout's."""
    model = policy.model
    n = batch.input_ids.shape[0]
    micro = max(1, -(-n // cfg.grad_accum_steps))  # ceil
    totals = {"loss": 0.0, "clipped": 0.0, "kl": 0.0, "entropy": 0.0, "replayed": 0.0}
    device = next(model.parameters()).device
    for start in range(0, n, micro):
        rows = slice(start, start + micro)
        mb = batch.rows(rows)
        mask = mb.completion_mask.to(device)  # (n, C)
        replayed = None  # tape_logprobs refuses a micro-batch (rows differ from the tapes')
        if tapes is not None:
            replayed = tape_logprobs(model, tapes, mb, cfg.temperature, with_entropy)
        if replayed is not None:
            logp, entropy = replayed
            totals["replayed"] = 1.0
        else:
            with _forward_precision(policy):
                logp, entropy = completion_logprobs(model, mb, cfg.temperature, with_entropy)
        out = policy_loss(
            logp,
            logp.detach() if old_logp is None else old_logp[rows],
            None if ref_logp is None else ref_logp[rows],
            advantages[rows].to(device),
            mask,
            sizes,
            cfg.loss_type,
            cfg.epsilon,
            cfg.epsilon_high,
            cfg.beta,
        )
        out.loss.backward()
        totals["loss"] += float(out.loss.detach())
        totals["clipped"] += out.clipped_tokens
        totals["kl"] += out.kl_sum
        if entropy is not None:
            totals["entropy"] += float((entropy * mask).sum())
    return totals


def _replay_possible(ctx: StepContext) -> bool:
    """Whether to record the rollout's forward for the update (see rl/replay.py)."""
    cfg, policy = ctx.cfg, ctx.policy
    return (cfg.reuse_rollout_forward
            and replay_supported(policy.model, cfg.num_iterations, cfg.grad_accum_steps,
                                 policy.autocast_dtype))


def _trainable(model: Any) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _forward_precision(policy: Policy) -> Any:
    """Autocast around the policy's forward passes (rollout and loss) when the run is bf16 or
    fp16; backward and the optimizer step stay outside, on the fp32 master weights."""
    device = next(policy.model.parameters()).device
    return autocast_forwards(policy.autocast_dtype, device)


# -- the step --------------------------------------------------------------------------


def run_step(
    ctx: StepContext, step: int, items: list[dict[str, Any]], prompts: list[Messages]
) -> StepOutput:
    """One GRPO step on a batch of dataset rows (`items`) and their prompts."""
    cfg, started = ctx.cfg, time.perf_counter()
    params = replace(ctx.params, seed=derived_seed(cfg.seed, step, TRAIN_SAMPLING))

    ctx.policy.model.eval()
    tapes = None
    with _forward_precision(ctx.policy):
        if ctx.episodes is not None:  # the plain path: no recorded forward for episodes
            samples = sample_episodes(ctx, prompts, items, cfg.group_size, params)
        elif isinstance(ctx.engine, HFRolloutEngine) and _replay_possible(ctx):
            samples, tapes = ctx.engine.generate_recorded(prompts, cfg.group_size, params)
        else:
            samples = sample_completions(ctx.engine, prompts, cfg.group_size, params)
    sampled = time.perf_counter()

    grades = grade_samples(ctx.reward_fn, samples, items)
    rewards = torch.tensor([g.score for g in grades], dtype=torch.float32)  # (B*G,)
    graded = time.perf_counter()

    advantages = group_advantages(rewards, cfg.group_size, cfg.scale_rewards)  # (B*G,)
    kept = torch.tensor([s.discard_reason is None for s in samples])  # (B*G,)
    if not kept.all():  # discarded rollouts: out of their group's statistics, no loss
        advantages = kept_group_advantages(rewards, kept, cfg.group_size, cfg.scale_rewards)

    batch = pack_samples(samples, ctx.policy.pad_token_id)
    batch.completion_mask[~kept] = 0.0
    learning_rate = ctx.policy.scheduler.get_last_lr()[0]
    stats = update_policy(ctx.policy, cfg, batch, advantages, tapes)
    del tapes  # the recorded forward is only valid for these weights
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
        "completion_tokens_mean": sum(completion_tokens) / len(completion_tokens),
        # prompt + completion tokens of every sequence the update ran over (OpenAI's
        # trained_tokens sums this over steps)
        "trained_tokens": sum(len(s.prompt_ids) for s in samples) + sum(completion_tokens),
        "truncated_fraction": sum(s.finish_reason == "length" for s in samples) / len(samples),
        "zero_variance_groups": int(zero_variance_groups(rewards, cfg.group_size).sum()),
        "grader_errors": sum(1 for g in grades if g.errors),
        "grader_latency_s": sum(g.latency_s for g in grades) / len(grades),
        "sample_parse_errors": sum(1 for s in samples if s.parse_error is not None),
        "sampling_seconds": sampled - started,
        "grading_seconds": graded - sampled,
        "training_seconds": finished - graded,
        "step_seconds": finished - started,
        "tokens_per_second": sum(completion_tokens) / max(finished - started, 1e-9),
        **episode_metrics(samples),
        **step_health_metrics(cfg, samples, grades, rewards.tolist()),  # rl/health_metrics.py
    }
    records = _sample_records(step, samples, grades, advantages, prompts, cfg)
    return StepOutput(metrics, records, _tool_warnings(step, samples))


def _tool_warnings(step: int, samples: list[Sample]) -> list[str]:
    """One line per distinct tool failure of the step (discarded rollouts, tool errors)."""
    discarded = Counter(s.discard_reason for s in samples if s.discard_reason)
    errors = Counter(f"{r['name']}: {r['error']}" for s in samples for r in s.tool_records
                     if r["error"] and not s.discard_reason)
    return ([f"Step {step}: {n} rollout(s) discarded: {why}" for why, n in discarded.items()]
            + [f"Step {step}: {n} tool call(s) failed ({why})" for why, n in errors.items()])


def _sample_records(
    step: int,
    samples: list[Sample],
    grades: list[GradeResult],
    advantages: torch.Tensor,
    prompts: list[Messages],
    cfg: ResolvedConfig,
) -> list[dict[str, Any]]:
    """keep_samples completions, taken round-robin over prompts so several prompts show."""
    g = cfg.group_size
    order = [p * g + j for j in range(g) for p in range(len(samples) // g)]
    return [
        {
            "step": step,
            "prompt": prompts[samples[i].prompt_index],
            "reasoning": samples[i].reasoning,
            "output_text": samples[i].output_text,
            "score": grades[i].score,
            "advantage": advantages[i].item(),
            "errors": [f"{e.code}: {e.message}" for e in grades[i].errors],
            "parse_error": samples[i].parse_error,
            "finish_reason": samples[i].finish_reason,
            **_episode_record(samples[i]),
        }
        for i in order[: cfg.keep_samples]
    ]


def _episode_record(sample: Sample) -> dict[str, Any]:
    """The whole episode for sample viewers: turns, tool calls and outputs, trace id."""
    if sample.episode is None:
        return {}
    return {"episode": sample.episode, "output_tools": sample.output_tools,
            "trace_id": sample.trace_id, "discard_reason": sample.discard_reason}


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
        with _forward_precision(ctx.policy):
            samples = sample_episodes(ctx, prompts[start : start + chunk],
                                      items[start : start + chunk], 1, params)
        grades = grade_samples(ctx.reward_fn, samples, items[start : start + chunk])
        scores += [g.score for g in grades]
        parse_errors += sum(1 for s in samples if s.parse_error is not None)
    return sum(scores) / len(scores), parse_errors / len(scores)
