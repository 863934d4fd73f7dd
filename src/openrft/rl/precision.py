"""Mixed precision for the policy: the dtype its weights are kept in, and the dtype its
forward passes compute in.

`expert.precision` bf16/fp16 means autocast, not low-precision weights: the policy's
forward passes (rollout and loss) run under `torch.autocast`, so matmuls take the fast
low-precision path, while full fine-tuning keeps fp32 master weights and AdamW state (a
1e-6 update vanishes against a bf16 weight). Frozen weights (LoRA's base model, the KL
reference) never update, so they are stored in the low dtype: half the memory and no
per-forward cast. This is the recipe of transformers' Trainer / TRL with `bf16=True`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PrecisionPlan:
    """What `precision` resolves to on one device."""

    policy_weights: torch.dtype  # load dtype of the policy (LoRA: of its frozen base)
    reference_weights: torch.dtype  # load dtype of the frozen KL reference model
    autocast: torch.dtype | None  # compute dtype of forward passes; None: no autocast


def plan_precision(low: torch.dtype, finetune: str) -> PrecisionPlan:
    """`low` is the resolved `precision` dtype (float32, bfloat16 or float16)."""
    if low == torch.float32:
        return PrecisionPlan(torch.float32, torch.float32, None)
    # LoRA: the loaded model is the frozen base; peft keeps the adapters it adds in fp32.
    policy = torch.float32 if finetune == "full" else low
    return PrecisionPlan(policy, low, low)


def autocast_forwards(
    dtype: torch.dtype | None, device: torch.device
) -> AbstractContextManager[object]:
    """torch.autocast(device, dtype) around forward passes; a no-op for fp32 (None)."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)
