"""The GRPO family of policy losses, as small pure functions (tiny-grpo style).

Every tensor is per completion token: (N, T) with N sequences and T the padded
completion length; `mask` is 1 on real completion tokens, 0 on padding. A loss variant
is one aggregation function in `AGGREGATIONS`; the clipped surrogate and the k3 KL are
shared. Aggregations take the *whole batch's* sizes (`BatchSizes`) so that micro-batches
add up to exactly the full-batch loss under gradient accumulation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of `values` where mask is 1 (over `dim`, or everything)."""
    masked = values * mask
    return masked.sum() if dim is None else masked.sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `values` where mask is 1; an all-padding row counts as 0, not NaN."""
    count = mask.sum() if dim is None else mask.sum(dim=dim)
    return masked_sum(values, mask, dim) / count.clamp(min=1)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:  # (N, T)
    """Per-token KL(policy || ref) estimate k3 = exp(ref - logp) - (ref - logp) - 1.

    Unbiased, always >= 0, exactly 0 where the two log-probs agree (Schulman,
    "Approximating KL divergence", joschu.net/blog/kl-approx.html).
    """
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


def clipped_surrogate(
    logp: torch.Tensor,  # (N, T) current policy
    old_logp: torch.Tensor,  # (N, T) policy that sampled the batch
    advantages: torch.Tensor,  # (N,)
    eps_low: float,
    eps_high: float,
) -> tuple[torch.Tensor, torch.Tensor]:  # (N, T) loss per token, (N, T) bool clipped
    """PPO's clipped objective, negated to a loss: -min(r A, clip(r, 1-el, 1+eh) A).

    Returns the per-token loss and where the clip was the active branch (no gradient).
    """
    ratio = torch.exp(logp - old_logp)  # (N, T)
    adv = advantages.unsqueeze(1)  # (N, 1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv
    return -torch.min(unclipped, clipped), clipped < unclipped


@dataclass(frozen=True)
class BatchSizes:
    """Normalisers of the whole optimizer batch (not the micro-batch)."""

    num_sequences: int  # N over the full batch
    num_tokens: int  # active completion tokens over the full batch
    max_completion_length: int  # the configured max_tokens (Dr. GRPO's constant)


def grpo_aggregate(per_token: torch.Tensor, mask: torch.Tensor, sizes: BatchSizes) -> torch.Tensor:
    """Original GRPO: mean over each sequence's tokens, then mean over sequences."""
    return masked_mean(per_token, mask, dim=1).sum() / sizes.num_sequences


def dr_grpo_aggregate(
    per_token: torch.Tensor, mask: torch.Tensor, sizes: BatchSizes
) -> torch.Tensor:
    """Dr. GRPO: token sum over a constant, so long answers are not down-weighted."""
    return masked_sum(per_token, mask) / (sizes.num_sequences * sizes.max_completion_length)


def dapo_aggregate(per_token: torch.Tensor, mask: torch.Tensor, sizes: BatchSizes) -> torch.Tensor:
    """DAPO: mean over every active token of the batch (each token weighs the same)."""
    return masked_sum(per_token, mask) / max(sizes.num_tokens, 1)


Aggregation = Callable[[torch.Tensor, torch.Tensor, BatchSizes], torch.Tensor]
AGGREGATIONS: dict[str, Aggregation] = {
    "grpo": grpo_aggregate,
    "dr_grpo": dr_grpo_aggregate,
    "dapo": dapo_aggregate,
}


@dataclass
class LossOutput:
    """The scalar loss of a (micro-)batch plus token sums for batch-level statistics."""

    loss: torch.Tensor  # () differentiable
    active_tokens: float
    clipped_tokens: float
    kl_sum: float  # sum of per-token k3 KL over active tokens (0 when beta == 0)


def policy_loss(
    logp: torch.Tensor,  # (N, T)
    old_logp: torch.Tensor,  # (N, T)
    ref_logp: torch.Tensor | None,  # (N, T) or None when beta == 0
    advantages: torch.Tensor,  # (N,)
    mask: torch.Tensor,  # (N, T)
    sizes: BatchSizes,
    loss_type: str = "dapo",
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    beta: float = 0.0,
) -> LossOutput:
    """Clipped surrogate (+ beta * k3 KL) aggregated by `loss_type`."""
    per_token, clipped = clipped_surrogate(logp, old_logp, advantages, eps_low, eps_high)
    kl_sum = 0.0
    if ref_logp is not None:
        kl = k3_kl(logp, ref_logp)  # (N, T)
        per_token = per_token + beta * kl
        kl_sum = float(masked_sum(kl.detach(), mask))
    loss = AGGREGATIONS[loss_type](per_token, mask, sizes)
    return LossOutput(
        loss=loss,
        active_tokens=float(mask.sum()),
        clipped_tokens=float(masked_sum(clipped.float(), mask)),
        kl_sum=kl_sum,
    )
