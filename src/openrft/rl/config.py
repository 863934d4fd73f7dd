"""`RFTConfig`: one training config, shaped like OpenAI's fine-tuning job body.

A YAML file for `openrft train` holds the same keys as OpenAI's `POST /fine_tuning/jobs`
for a reinforcement job (`model`, `training_file`, `validation_file`, `seed`, `suffix`,
and `grader` / `response_format` / `hyperparameters`, either at the top level or under
`method.reinforcement` exactly as OpenAI nests them), plus an `expert:` mapping for the
knobs OpenAI keeps internal (group size, KL, clipping, LoRA, ...). Every field is
documented here once; "auto" values are resolved in one place, `resolve()`, which the
trainer, the docs (docs/training.md) and the run directory's config.yaml all share.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from openrft.errors import InvalidInput
from openrft.rollout.tools import ToolServer
from openrft.strict_model import StrictModel

Auto = Literal["auto"]
LossType = Literal["grpo", "dr_grpo", "dapo"]
RewardScaling = Literal["group", "batch", "none"]
ReasoningEffort = Literal["default", "low", "medium", "high"]
MonitorAction = Literal["warn", "pause", "fail"]
FindingKind = Literal[
    "no_signal", "truncation", "length_drift", "entropy_collapse", "kl_blowup", "overfitting",
    "reward_near_max", "grader_errors", "grader_dominance",
]

PREFLIGHT_ROWS = 32  # training rows a preflight samples (each group_size times)
PREFLIGHT_AUTO_FACTOR = 10  # auto preflight when the run samples >= 10x preflight's prompts


class Hyperparameters(StrictModel):
    """OpenAI's reinforcement hyperparameters: same names, ranges and "auto" defaults."""

    n_epochs: Annotated[int, Field(ge=1, le=50)] | Auto = "auto"
    """Passes over the training file. auto: fewest epochs giving >= 20 steps, at most 10."""
    batch_size: Annotated[int, Field(ge=1, le=256)] | Auto = "auto"
    """Prompts per optimizer step (each sampled group_size times). auto: min(8, rows)."""
    learning_rate_multiplier: Annotated[float, Field(gt=0)] | Auto = "auto"
    """Scales expert.base_learning_rate. auto: 1.0."""
    compute_multiplier: Annotated[float, Field(gt=0.00001, le=10)] | Auto = "auto"
    """Exploration compute: sets group_size = clamp(round(8 * cm), 2, 64). auto: 1.0."""
    reasoning_effort: ReasoningEffort = "default"
    """Reasoning-token budget per completion (rollout.reasoning_budget); default: no cap."""
    eval_interval: Annotated[int, Field(ge=1)] | Auto = "auto"
    """Optimizer steps between validation runs. auto: ceil(total_steps / 10)."""
    eval_samples: Annotated[int, Field(ge=1)] | Auto = "auto"
    """Validation rows sampled (once each) per validation run. auto: min(32, rows)."""


class MonitorSettings(StrictModel):
    """Thresholds of the training-health monitor (rl/monitor.py, docs/training_health.md).
    Findings are alerts: they never change the reward."""

    enabled: bool = True
    """Watch every step's metrics and report findings as warn/error events."""
    patience: int = Field(default=3, ge=1)
    """Consecutive steps a per-step condition must hold before its finding fires (no
    signal, truncation, grader errors, dominance); also the window that length, entropy
    and reward trends average over."""
    no_signal_share: float = Field(default=0.9, gt=0, le=1)
    """Share of groups whose samples all got the same reward (zero advantage)."""
    on_no_signal: MonitorAction = "warn"
    """What a no-signal finding does: warn (event only), pause (checkpoint and pause the
    run, as `POST .../pause` does) or fail (stop the run as failed)."""
    actions: dict[FindingKind, MonitorAction] = Field(default_factory=dict)
    """The same choice for any finding, by kind (e.g. {truncation: pause}); a kind not
    listed warns (no_signal: on_no_signal)."""
    truncation_share: float = Field(default=0.3, gt=0, le=1)
    """Share of samples that hit max_tokens (counted when the cut costs reward: see
    truncation_penalty)."""
    truncation_penalty: float = Field(default=0.1, ge=0)
    """How much less (as a share of the reward range) cut samples must score than finished
    ones, pooled over patience steps, and never less than chance allows; cut samples
    scoring about the minimum, or cut inside reasoning, always count."""
    length_drift_ratio: float = Field(default=2.5, gt=1)
    """Mean completion length this many times longer (or shorter) than at the start."""
    entropy_collapse_fraction: float = Field(default=0.2, gt=0, lt=1)
    """Entropy below this fraction of its start while the reward has stopped improving."""
    plateau_delta: float = Field(default=0.05, ge=0)
    """Largest rise of the mean train reward between two patience windows that still
    counts as a plateau (a fall counts too)."""
    kl_max: float = Field(default=1.0, gt=0)
    """Mean per-token KL to the reference (only measured when beta > 0)."""
    clip_fraction_max: float = Field(default=0.3, gt=0, le=1)
    """Share of tokens whose importance ratio left the clip range (num_iterations > 1)."""
    overfit_points: int = Field(default=3, ge=2)
    """Validation runs the overfitting trend is fitted over."""
    overfit_delta: float = Field(default=0.1, gt=0)
    """Train reward rise and validation reward fall (fitted, over those runs) that count;
    never less than the sampling noise of the means compared (rl/monitor.noise_band)."""
    near_max_fraction: float = Field(default=0.95, gt=0, le=1)
    """Train reward at this fraction of the grader's range counts as "at the maximum"."""
    valid_gap: float = Field(default=0.25, gt=0)
    """How far validation must lag a near-maximal train reward to be suspicious (never
    less than the sampling noise of eval_samples rewards)."""
    reward_max: float | None = None
    """Top of the reward scale. None: the top of a score_model's range, else 1.0."""
    error_share: float = Field(default=0.1, gt=0, le=1)
    """Share of samples with a grader error, or of structured outputs that did not parse."""
    dominance_share: float = Field(default=0.8, gt=0, le=1)
    """Share of the within-group reward variation one `multi` sub-grader explains."""


class RaySettings(StrictModel):
    """Where and how a `backend: ray` run spreads its rollouts and grading (docs/scaling.md)."""

    address: str | None = None
    """Ray cluster to join ("HOST:6379" or "auto"). None: the RAY_ADDRESS environment
    variable, else a Ray instance started for this run on this machine."""
    rollout_workers: int = Field(default=1, ge=1)
    """Rollout actors, each holding a copy of the policy; a batch's prompts are split
    between them. 1 samples exactly what the local backend samples."""
    cpus_per_rollout_worker: float = Field(default=1.0, gt=0)
    """CPUs each rollout actor reserves (also its torch thread count)."""
    gpus_per_rollout_worker: float = Field(default=0.0, ge=0)
    """GPUs each rollout actor reserves (> 0: the actor moves its copy to CUDA)."""
    grading_tasks: int = Field(default=2, ge=1)
    """Ray tasks one batch's grading is split into (sandboxes and model-grader calls
    spread over the cluster's nodes)."""
    cpus_per_grading_task: float = Field(default=0.5, gt=0)
    """CPUs each grading task reserves."""
    max_rollout_retries: int = Field(default=2, ge=0)
    """Times a rollout shard whose actor died is retried on a replacement actor."""
    placement_timeout_s: float = Field(default=300.0, gt=0)
    """How long to wait for the cluster to have room for every rollout worker."""


class ExpertSettings(StrictModel):
    """Knobs OpenAI does not expose. Defaults follow current TRL GRPO practice."""

    group_size: Annotated[int, Field(ge=2, le=256)] | None = None
    """Completions sampled per prompt (GRPO's G). None: from compute_multiplier."""
    beta: float = Field(default=0.0, ge=0)
    """KL(policy || reference) coefficient. 0.0 (TRL >= 0.19, DAPO, Dr. GRPO): no reference
    forward pass, so a step is cheaper; LoRA's low rank already limits drift. Set 0.04
    (the original GRPO value) to anchor the policy to the base model."""
    epsilon: float = Field(default=0.2, gt=0, lt=1)
    """Lower clip range of the importance ratio: ratio >= 1 - epsilon."""
    epsilon_high: float | None = Field(default=None, gt=0)
    """Upper clip range: ratio <= 1 + epsilon_high. None: 0.28 for dapo (DAPO's clip-higher),
    epsilon otherwise."""
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
    base_learning_rate: Annotated[float, Field(gt=0)] | Auto = "auto"
    """AdamW learning rate before learning_rate_multiplier. auto: 2e-5 for lora, 1e-6 full."""
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
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
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
    save_every: Annotated[int, Field(ge=1)] | Auto = "auto"
    """Optimizer steps between checkpoints. auto: eval_interval."""
    keep_checkpoints: int = Field(default=3, ge=1)
    """How many checkpoints to keep: those with the highest valid_reward_mean (OpenAI keeps
    3), or the newest without a validation file. While training the newest is kept too."""
    keep_samples: int = Field(default=8, ge=0)
    """Sampled completions per step written to samples.jsonl."""
    max_steps: int | None = Field(default=None, ge=1)
    """Stop after this many optimizer steps even if epochs remain."""
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    """Training-health thresholds and actions (docs/training_health.md)."""
    preflight: bool | Auto = "auto"
    """Sample and grade the base model before step 1 (rl/preflight.py) and report the
    verdict as events. auto: on when the run samples at least 10x the prompts the
    preflight does (its 32 rows, or all rows if fewer), so it costs at most ~10% of the
    run's sampling and no training."""
    preflight_override: bool = False
    """Train even when the preflight finds no signal (too hard / too easy); the default
    fails fast with the preflight's advice."""
    backend: Literal["local", "ray"] = "local"
    """Where rollouts and grading run: in this process, or on a Ray cluster (`ray`
    settings below; `pip install 'openrft[ray]'`). The update always runs here."""
    ray: RaySettings = Field(default_factory=RaySettings)
    """Ray cluster settings, used when backend is ray."""
    max_staleness: int = Field(default=0, ge=0)
    """Async mode (> 0): the rollouts of step t+1 are sampled while step t updates, by a
    policy at most this many updates older than the one being updated; the clipped
    ratio is taken against that sampling policy (rl/pipeline.py, docs/scaling.md).
    0: synchronous, every batch sampled by the policy it updates."""


class RFTConfig(StrictModel):
    """A reinforcement fine-tuning job: OpenAI's job-creation body plus `expert:` knobs."""

    model: str
    """Base model: a catalog name (pulled on first use, see `openrft models list`), a local
    directory (HF format) or a hub id already in the local cache."""
    training_file: str
    """JSONL of prompts (messages ending with a user turn) plus reference fields."""
    validation_file: str | None = None
    """Optional JSONL in the same format: periodic and final validation reward."""
    grader: dict[str, Any]
    """An OpenAI grader object (string_check, text_similarity, python, score_model, multi)."""
    response_format: dict[str, Any] | None = None
    """OpenAI `{type: json_schema, json_schema: {...}}`: outputs parsed into output_json."""
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    seed: int | None = None
    """Seeds data order, sampling and initialisation. None: drawn once, saved in the run."""
    output_dir: str | None = None
    """Run directory. None: runs/<suffix or 'rft'>."""
    suffix: str | None = Field(default=None, max_length=64)
    """A name for the fine-tuned model (OpenAI's suffix)."""
    metadata: dict[str, str] | None = None
    """Free key/value labels, kept with the run (OpenAI's metadata)."""
    expert: ExpertSettings = Field(default_factory=ExpertSettings)
    tools: list[ToolServer] | None = None
    """Azure's agentic preview: tool servers `[{name, server_url, headers}]` the rollouts
    call; episodes alternate model turns and tool results (docs/agentic.md)."""
    max_episode_steps: int | None = Field(default=None, ge=1, le=50)
    """Model turns per episode when `tools` are set. None: 10 (Azure's example)."""

    @model_validator(mode="before")
    @classmethod
    def _lift_openai_method(cls, data: Any) -> Any:
        """Accept OpenAI's `method: {type: reinforcement, reinforcement: {...}}` nesting."""
        if not isinstance(data, dict) or "method" not in data:
            return data
        data = dict(data)
        method = data.pop("method")
        if not isinstance(method, dict) or method.get("type", "reinforcement") != "reinforcement":
            raise ValueError("method.type must be 'reinforcement'")
        for key, value in (method.get("reinforcement") or {}).items():
            if key in data:
                raise ValueError(f"{key} is given both at the top level and in method")
            data[key] = value
        return data

    @field_validator("grader")
    @classmethod
    def _valid_grader(cls, grader: dict[str, Any]) -> dict[str, Any]:
        from openrft.graders.base import parse_grader

        parse_grader(grader)  # raises InvalidInput("grader.<path>", why)
        return grader

    @field_validator("response_format")
    @classmethod
    def _valid_response_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        from openrft.rollout.structured import check_response_format

        if value is not None:
            check_response_format(value)  # raises InvalidInput("response_format.<path>", why)
        return value


def _pydantic_path(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if not str(p).startswith(("function-", "literal[", "constrained"))]
    return ".".join(p for p in parts if p not in ("int", "float", "str"))


def config_from_dict(data: dict[str, Any], source: str = "config") -> RFTConfig:
    """Validate a config mapping; InvalidInput names `source: field.path`."""
    try:
        return RFTConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        if isinstance(error.get("ctx", {}).get("error"), InvalidInput):
            inner = error["ctx"]["error"]
            raise InvalidInput(f"{source}: {inner.location}", inner.message) from None
        raise InvalidInput(f"{source}: {_pydantic_path(tuple(error['loc']))}", message) from None


def load_config(path: str | Path) -> RFTConfig:
    """Read a YAML config. Relative data/model paths are looked up next to the file first."""
    path = Path(path)
    from openrft.data.jsonl import read_text_file

    try:
        data = yaml.safe_load(read_text_file(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InvalidInput(where, f"invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise InvalidInput(str(path), "expected a mapping of config fields")
    config = config_from_dict(data, str(path))
    return _relative_to(config, path.parent)


def _relative_to(config: RFTConfig, base: Path) -> RFTConfig:
    updates: dict[str, str] = {}
    for name in ("model", "training_file", "validation_file"):
        value = getattr(config, name)
        if value and not Path(value).is_absolute() and (base / value).exists():
            updates[name] = str(base / value)
    return config.model_copy(update=updates)


def auto_group_size(compute_multiplier: float) -> int:
    """OpenAI's only exploration knob mapped to GRPO's group size: 8 completions at cm=1."""
    return min(64, max(2, round(8 * compute_multiplier)))


def auto_n_epochs(steps_per_epoch: int) -> int:
    """Fewest epochs that give at least 20 optimizer steps, between 1 and 10."""
    return min(10, max(1, math.ceil(20 / steps_per_epoch)))


@dataclass(frozen=True)
class ResolvedConfig:
    """Every value the trainer uses, with "auto" and None replaced by concrete numbers."""

    model: str
    training_file: str
    validation_file: str | None
    grader: dict[str, Any]
    response_format: dict[str, Any] | None
    seed: int
    output_dir: str
    suffix: str | None
    n_train_rows: int
    n_valid_rows: int
    n_epochs: int
    batch_size: int  # prompts per step
    group_size: int  # completions per prompt
    steps_per_epoch: int
    total_steps: int
    learning_rate: float
    learning_rate_multiplier: float
    compute_multiplier: float
    reasoning_effort: ReasoningEffort
    eval_interval: int
    eval_samples: int  # validation rows per periodic validation (0: no validation file)
    save_every: int
    beta: float
    epsilon: float
    epsilon_high: float
    loss_type: LossType
    num_iterations: int
    finetune: Literal["lora", "full"]
    lora_rank: int
    lora_alpha: int
    lora_dropout: float
    weight_decay: float
    max_tokens: int
    temperature: float
    top_p: float
    grad_accum_steps: int
    lr_schedule: Literal["constant", "linear", "cosine"]
    warmup_ratio: float
    max_grad_norm: float
    fast_path: Literal["auto", "off"]
    reuse_rollout_forward: bool
    skip_zero_advantage: bool
    engine: Literal["auto", "hf", "vllm"]
    precision: Literal["auto", "fp32", "bf16", "fp16"]
    scale_rewards: RewardScaling
    keep_checkpoints: int
    keep_samples: int
    monitor: dict[str, Any]  # MonitorSettings as a mapping
    preflight: bool
    preflight_override: bool
    backend: Literal["local", "ray"] = "local"
    ray: dict[str, Any] = field(default_factory=dict)  # RaySettings fields
    tools: list[dict[str, Any]] | None = None  # tool servers (agentic); None: single-turn
    max_episode_steps: int = 1  # model turns per episode (10 by default with tools)
    max_staleness: int = 0  # async mode's bound (rl/pipeline.py); 0: synchronous

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# OpenAI's seven RFT hyperparameters: ResolvedConfig holds each under the same name.
OPENAI_HYPERPARAMETERS = ("batch_size", "learning_rate_multiplier", "n_epochs",
                          "reasoning_effort", "compute_multiplier", "eval_interval",
                          "eval_samples")


def _auto(value: Any, default: Any) -> Any:
    return default if value == "auto" or value is None else value


def resolve(config: RFTConfig, n_train_rows: int, n_valid_rows: int = 0) -> ResolvedConfig:
    """Replace every "auto"/None by its value: the ONE place these mappings live.

    learning_rate = base_learning_rate (auto: 2e-5 lora, 1e-6 full) * multiplier (auto 1)
    group_size    = expert.group_size or clamp(round(8 * compute_multiplier), 2, 64)
    batch_size    = min(batch_size (auto: 8), n_train_rows)
    n_epochs      = auto: fewest epochs with >= 20 steps, at most 10
    total_steps   = ceil(n_train_rows / batch_size) * n_epochs, capped by max_steps
    eval_interval = auto: ceil(total_steps / 10); eval_samples = auto: min(32, valid rows)
    save_every    = auto: eval_interval; epsilon_high = None: 0.28 (dapo) or epsilon
    preflight     = auto: total_steps * batch_size >= 10 * min(32, n_train_rows)
    seed          = None: drawn at random (the run records it)
    """
    hp, ex = config.hyperparameters, config.expert
    batch_size = min(_auto(hp.batch_size, 8), n_train_rows)
    steps_per_epoch = math.ceil(n_train_rows / batch_size)
    n_epochs = _auto(hp.n_epochs, auto_n_epochs(steps_per_epoch))
    total_steps = steps_per_epoch * n_epochs
    if ex.max_steps is not None:
        total_steps = min(total_steps, ex.max_steps)
    eval_interval = _auto(hp.eval_interval, math.ceil(total_steps / 10))
    base_lr = _auto(ex.base_learning_rate, 2e-5 if ex.finetune == "lora" else 1e-6)
    default_high = 0.28 if ex.loss_type == "dapo" else ex.epsilon
    return ResolvedConfig(
        model=config.model,
        training_file=config.training_file,
        validation_file=config.validation_file,
        grader=config.grader,
        response_format=config.response_format,
        seed=config.seed if config.seed is not None else random.SystemRandom().randrange(2**31),
        output_dir=config.output_dir or f"runs/{config.suffix or 'rft'}",
        suffix=config.suffix,
        n_train_rows=n_train_rows,
        n_valid_rows=n_valid_rows,
        n_epochs=n_epochs,
        batch_size=batch_size,
        group_size=ex.group_size or auto_group_size(_auto(hp.compute_multiplier, 1.0)),
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        learning_rate=base_lr * _auto(hp.learning_rate_multiplier, 1.0),
        learning_rate_multiplier=_auto(hp.learning_rate_multiplier, 1.0),
        compute_multiplier=_auto(hp.compute_multiplier, 1.0),
        reasoning_effort=hp.reasoning_effort,
        eval_interval=eval_interval,
        eval_samples=min(_auto(hp.eval_samples, 32), n_valid_rows),
        save_every=_auto(ex.save_every, eval_interval),
        beta=ex.beta,
        epsilon=ex.epsilon,
        epsilon_high=ex.epsilon_high if ex.epsilon_high is not None else default_high,
        loss_type=ex.loss_type,
        num_iterations=ex.num_iterations,
        finetune=ex.finetune,
        lora_rank=ex.lora_rank,
        lora_alpha=ex.lora_alpha,
        lora_dropout=ex.lora_dropout,
        weight_decay=ex.weight_decay,
        max_tokens=ex.max_tokens,
        temperature=ex.temperature,
        top_p=ex.top_p,
        grad_accum_steps=ex.grad_accum_steps,
        lr_schedule=ex.lr_schedule,
        warmup_ratio=ex.warmup_ratio,
        max_grad_norm=ex.max_grad_norm,
        fast_path=ex.fast_path,
        reuse_rollout_forward=ex.reuse_rollout_forward,
        skip_zero_advantage=ex.skip_zero_advantage,
        engine=ex.engine,
        precision=ex.precision,
        scale_rewards=ex.scale_rewards,
        keep_checkpoints=ex.keep_checkpoints,
        keep_samples=ex.keep_samples,
        tools=[t.model_dump(exclude_none=True) for t in config.tools] if config.tools else None,
        max_episode_steps=(config.max_episode_steps or 10) if config.tools else 1,
        monitor=ex.monitor.model_dump(),
        preflight=_auto_preflight(ex.preflight, total_steps * batch_size, n_train_rows),
        preflight_override=ex.preflight_override,
        backend=ex.backend,
        ray=ex.ray.model_dump(),
        max_staleness=ex.max_staleness,
    )


def _auto_preflight(preflight: bool | str, sampled_prompts: int, n_train_rows: int) -> bool:
    """auto: preflight when it costs at most 1/PREFLIGHT_AUTO_FACTOR of the run's sampling."""
    if isinstance(preflight, bool):
        return preflight
    return sampled_prompts >= PREFLIGHT_AUTO_FACTOR * min(PREFLIGHT_ROWS, n_train_rows)
