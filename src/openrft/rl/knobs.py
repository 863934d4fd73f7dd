"""The training knobs of an RFT config: OpenAI's `hyperparameters:` and the `expert:`
knobs OpenAI keeps internal, each defined and documented once, here (the thresholds of
`expert.monitor` and `expert.ray` live beside their concern: rl/monitor_settings.py,
distributed/settings.py). The Given* classes hold the knobs the trainer uses as given,
which rl/config.py's ResolvedConfig inherits; the subclasses add the knobs whose "auto"
or None `resolve()` turns into a value.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from openrft.distributed.settings import RaySettings
from openrft.lr_schedule import Schedule
from openrft.rl.monitor_settings import MonitorSettings
from openrft.rollout.reasoning import ReasoningEffort
from openrft.strict_model import StrictModel

Auto = Literal["auto"]
LossType = Literal["grpo", "dr_grpo", "dapo"]
RewardScaling = Literal["group", "batch", "none"]


class GivenHyperparameters(StrictModel):
    """The OpenAI hyperparameter the trainer uses as given (ResolvedConfig inherits it)."""

    reasoning_effort: ReasoningEffort = "default"
    """Reasoning-token budget per completion (rollout.reasoning_budget); default: no cap."""


class Hyperparameters(GivenHyperparameters):
    """OpenAI's reinforcement hyperparameters: same names, ranges and "auto" defaults (those
    with an "auto" resolved by `resolve()`, reasoning_effort in GivenHyperparameters)."""

    n_epochs: Annotated[int, Field(ge=1, le=50)] | Auto = "auto"
    """Passes over the training file. auto: fewest epochs giving >= 20 steps, at most 10."""
    batch_size: Annotated[int, Field(ge=1, le=256)] | Auto = "auto"
    """Prompts per optimizer step (each sampled group_size times). auto: min(8, rows)."""
    learning_rate_multiplier: Annotated[float, Field(gt=0)] | Auto = "auto"
    """Scales expert.base_learning_rate. auto: 1.0."""
    compute_multiplier: Annotated[float, Field(gt=0.00001, le=10)] | Auto = "auto"
    """Exploration compute: sets group_size = clamp(round(8 * cm), 2, 64). auto: 1.0."""
    eval_interval: Annotated[int, Field(ge=1)] | Auto = "auto"
    """Optimizer steps between validation runs. auto: ceil(total_steps / 10)."""
    eval_samples: Annotated[int, Field(ge=1)] | Auto = "auto"
    """Validation rows sampled (once each) per validation run. auto: min(32, rows)."""


class GivenExpertSettings(StrictModel):
    """Knobs OpenAI does not expose that the trainer uses as given: each is defined here
    once and ResolvedConfig inherits it. Defaults follow current TRL GRPO practice."""

    beta: float = Field(default=0.0, ge=0)
    """KL(policy || reference) coefficient. 0.0 (TRL >= 0.19, DAPO, Dr. GRPO): no reference
    forward pass, so a step is cheaper; LoRA's low rank already limits drift. Set 0.04
    (the original GRPO value) to anchor the policy to the base model."""
    epsilon: float = Field(default=0.2, gt=0, lt=1)
    """Lower clip range of the importance ratio: ratio >= 1 - epsilon."""
    loss_type: LossType = "dapo"
    """Loss aggregation: grpo (mean per sequence, then over sequences), dr_grpo (token sum
    / (sequences * max_tokens)), dapo (token sum / active tokens in the whole batch)."""
    num_iterations: int = Field(default=1, ge=1)
    """Policy-update epochs over each sampled batch (PPO's mu). 1 is on-policy: the ratio is
    exactly 1 and no extra forward pass is needed for the old log-probs."""
    finetune: Literal["lora", "full"] = "lora"
    """Train LoRA adapters (small checkpoints, KL reference for free) or every weight."""
    lora_rank: int = Field(default=16, ge=1)
    """LoRA rank r."""
    lora_alpha: int = Field(default=32, ge=1)
    """LoRA scaling alpha (effective scale alpha / r)."""
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    """Dropout on the LoRA path during the loss forward pass."""
    weight_decay: float = Field(default=0.0, ge=0)
    """AdamW decoupled weight decay."""
    max_tokens: int = Field(default=256, ge=1)
    """Completion length cap in tokens (reasoning included)."""
    temperature: float = Field(default=1.0, gt=0, le=2)
    """Sampling temperature of rollouts (validation uses it too)."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    """Nucleus sampling mass of rollouts."""
    grad_accum_steps: int = Field(default=1, ge=1)
    """Micro-batches per optimizer step: the batch_size * group_size sequences are split in
    this many forward/backward passes to bound memory; the loss is identical."""
    micro_batch_tokens: Annotated[int, Field(ge=1)] | Auto | None = "auto"
    """The most tokens (rows x padded prompt + completion length) one forward/backward of
    the update runs on: a batch is split into more micro-batches than grad_accum_steps
    asks where its parts would be bigger, so activation memory stays bounded (multi-turn
    episodes make long rows). The gradient is the same up to float summation order. A
    forward replayed from the rollout (fast_path) is not split: its activations are held
    already. auto: 1024 when the policy is on the CPU (measured: docs/agentic.md), no
    limit on a GPU; None: no limit."""
    lr_schedule: Schedule = "constant"
    """Learning-rate decay after warmup (linear/cosine decay to 0 at the last step)."""
    warmup_ratio: float = Field(default=0.0, ge=0, le=1)
    """Fraction of total steps with linear warmup from 0."""
    max_grad_norm: float = Field(default=1.0, gt=0)
    """Gradient clipping: global L2 norm cap."""
    fast_path: Literal["auto", "off"] = "auto"
    """Speed tricks (openrft/fast/): hand-written Llama-family decode with prepacked
    weights and in-place KV caches, the update's forward replayed from the rollout,
    fused log-prob backward, zero-advantage row skipping. auto: each where the model and
    settings qualify (same results up to float32 rounding); off: the plain reference path
    (the model's own modules under autograd), slower. The two knobs below apply to auto."""
    reuse_rollout_forward: bool = True
    """On-policy updates (num_iterations 1, grad_accum_steps 1, fp32, no dropout) take
    their forward pass from the HF rollout's recorded matmul outputs instead of running
    the model again (fast/replay.py): the same gradients, one forward pass fewer, the
    recorded outputs held in memory from sampling to the update. False: always rerun."""
    skip_zero_advantage: bool = True
    """With beta 0, a completion whose advantage is exactly 0 (every completion of its
    prompt scored the same) has no gradient: its forward/backward is skipped. It still
    counts in the loss normalisers and the reported entropy, so the update is the same.
    False: run every row."""
    engine: Literal["auto", "hf", "vllm"] = "auto"
    """Rollout engine. auto: vllm when available on a GPU, else hf."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Compute precision. fp32: everything in float32. bf16/fp16: mixed precision, the
    policy's forward passes (rollout and loss) run under torch.autocast in that dtype;
    full fine-tuning keeps fp32 master weights and AdamW state, LoRA stores the frozen base
    (and a KL reference) in that dtype with fp32 adapters (rl/precision.py). fp16 has no
    loss scaling: prefer bf16. auto: fp32 on CPU, bf16 on GPUs that support it (else fp16)."""
    scale_rewards: RewardScaling = "group"
    """Advantage scaling: divide by the group's std, the batch's std, or not at all."""
    keep_checkpoints: int = Field(default=3, ge=1)
    """How many checkpoints to keep: those with the highest valid_reward_mean (OpenAI keeps
    3), or the newest without a validation file. While training the newest is kept too."""
    keep_samples: int = Field(default=8, ge=0)
    """Sampled completions per step written to samples.jsonl."""
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    """Training-health thresholds and actions (docs/training_health.md)."""
    preflight_override: bool = False
    """Train even when the preflight finds no signal (too hard / too easy); the default
    fails fast with the preflight's advice."""
    backend: Literal["local", "ray"] = "local"
    """Where rollouts and grading run: in this process, or on a Ray cluster (`ray`
    settings below; `pip install 'openrft[ray]'`). The update runs in this process,
    or on `ray.trainers` data-parallel trainer actors when that is > 1."""
    ray: RaySettings = Field(default_factory=RaySettings)
    """Ray cluster settings, used when backend is ray."""
    max_staleness: int = Field(default=0, ge=0)
    """Async mode (> 0): the rollouts of step t+1 are sampled while step t updates, by a
    policy at most this many updates older than the one being updated; the clipped
    ratio is taken against that sampling policy (rl/pipeline.py, docs/scaling.md).
    0: synchronous, every batch sampled by the policy it updates."""


class ExpertSettings(GivenExpertSettings):
    """Every `expert:` knob: GivenExpertSettings' plus these, whose "auto" or None
    `resolve()` replaces by a value (ResolvedConfig declares their resolved form)."""

    group_size: Annotated[int, Field(ge=2, le=256)] | None = None
    """Completions sampled per prompt (GRPO's G). None: from compute_multiplier."""
    epsilon_high: float | None = Field(default=None, gt=0)
    """Upper clip range: ratio <= 1 + epsilon_high. None: 0.28 for dapo (DAPO's clip-higher),
    epsilon otherwise."""
    base_learning_rate: Annotated[float, Field(gt=0)] | Auto = "auto"
    """AdamW learning rate before learning_rate_multiplier. auto: 2e-5 for lora, 1e-6 full."""
    save_every: Annotated[int, Field(ge=1)] | Auto = "auto"
    """Optimizer steps between checkpoints. auto: eval_interval."""
    max_steps: int | None = Field(default=None, ge=1)
    """Stop after this many optimizer steps even if epochs remain."""
    preflight: bool | Auto = "auto"
    """Sample and grade the base model before step 1 (rl/preflight.py) and report the
    verdict as events. auto: on when the run samples at least 10x the prompts the
    preflight does (its 32 rows, or all rows if fewer), so it costs at most ~10% of the
    run's sampling and no training."""
