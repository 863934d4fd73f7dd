"""Building what a run trains with: the policy (model, KL reference, optimizer, LR
schedule), the rollout engine and the sampling parameters, fresh or from a checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import set_seed

from openrft.checkpoint import restore_checkpoint, weights_source
from openrft.lr_schedule import lr_scheduler
from openrft.rl.config import ResolvedConfig
from openrft.rl.precision import plan_precision
from openrft.rl.step import PlainPath, Policy, TrainingPath
from openrft.rollout.engine import CausalLM, GenerationParams, RolloutEngine

logger = logging.getLogger(__name__)

_DTYPES = {"auto": "auto", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def build_policy(cfg: ResolvedConfig, checkpoint: Path | None) -> tuple[Policy, Any, int]:
    """(policy, tokenizer, completed steps). Seeds every RNG first, so a fresh run's LoRA
    initialisation is reproducible; a checkpoint then overwrites weights, optimizer,
    schedule and RNG states."""
    from openrft.models.load import LoraSettings, load_model, resolve_device, resolve_dtype

    set_seed(cfg.seed)  # python, numpy, torch
    lora = None
    if cfg.finetune == "lora":
        lora = LoraSettings(rank=cfg.lora_rank, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
    source = weights_source(cfg.model, checkpoint, new_adapter=lora is not None)
    low = resolve_dtype(_DTYPES[cfg.precision], resolve_device("auto"))
    plan = plan_precision(low, cfg.finetune)
    loaded = load_model(source, dtype=plan.policy_weights, trainable=True, lora=lora)
    model = loaded.model
    reference = None
    if cfg.finetune == "full" and cfg.beta > 0:
        # The KL anchor is the *base* model: a second full copy in memory (LoRA avoids this
        # by switching its adapters off instead).
        reference = load_model(cfg.model, dtype=plan.reference_weights, trainable=False).model
    trainable = [p for p in model.parameters() if p.requires_grad]
    logger.info("policy %s (%s): %d trainable parameters", cfg.model, cfg.finetune,
                sum(p.numel() for p in trainable))
    optimizer, scheduler = make_optimizer(cfg, model)
    policy = Policy(
        model, reference, optimizer, scheduler, loaded.tokenizer.pad_token_id, plan.autocast,
        make_training_path(cfg, model, plan.autocast),
    )
    start_step = 0
    if checkpoint is not None:
        start_step = int(restore_checkpoint(checkpoint, model, optimizer, scheduler)["step"])
    model.eval()
    return policy, loaded.tokenizer, start_step


def make_optimizer(cfg: ResolvedConfig, model: CausalLM
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW over the trainable parameters and its LR schedule (the data-parallel trainer
    ranks build theirs here too, then load the driver's states)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                  fused=_fused_adamw_supported(trainable))
    updates = cfg.total_steps * cfg.num_iterations
    return optimizer, lr_scheduler(optimizer, cfg.lr_schedule, cfg.warmup_ratio, updates)


def make_generation_params(cfg: ResolvedConfig) -> GenerationParams:
    """Sampling settings of rollouts and validation (the seed is set per call)."""
    from openrft.rollout.reasoning import reasoning_budget

    return GenerationParams(
        max_tokens=cfg.max_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        reasoning_budget=reasoning_budget(cfg.reasoning_effort, cfg.max_tokens),
        response_format=cfg.response_format,
    )


def make_training_path(cfg: ResolvedConfig, model: CausalLM, autocast: torch.dtype | None
                       ) -> TrainingPath:
    """`expert.fast_path`: auto takes openrft.fast's path (each trick where the model and
    settings qualify), off the plain reference path."""
    if cfg.fast_path == "off":
        return PlainPath()
    from openrft.fast import FastPath

    return FastPath.for_run(cfg, model, autocast)


def make_rollout_engine(cfg: ResolvedConfig, policy: Policy, tokenizer: Any) -> RolloutEngine:
    """The engine that samples from the policy being trained: HF shares the model object
    and decodes with the policy's training path; vLLM gets the new weights through
    `sync_weights` after every update (and runs its own kernels: fast_path aside)."""
    from openrft.rollout.factory import make_engine, resolve_engine_kind

    options = {}
    if resolve_engine_kind(cfg.engine) == "hf":
        options["decode_forward"] = policy.path.decode_forward
    return make_engine(policy.model, tokenizer, cfg.engine, **options)


def _fused_adamw_supported(params: list[torch.nn.Parameter]) -> bool:
    """torch's fused AdamW (one kernel over all tensors, not a loop over them: BENCHMARKS.md,
    "Fast-path micro-measurements") takes floating-point tensors on CPU or CUDA."""
    return bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )
