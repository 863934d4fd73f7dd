"""Group-relative advantages (GRPO): each completion scored against its siblings.

Pure tensor functions, no model and no I/O. Rewards arrive prompt-major: the
`group_size` completions of prompt 0, then those of prompt 1, ... (the RolloutEngine order).
"""

from __future__ import annotations

import torch

from openrft.rl.knobs import RewardScaling


def group_advantages(
    rewards: torch.Tensor,  # (B*G,)
    group_size: int,
    scale: RewardScaling = "group",
    eps: float = 1e-4,
) -> torch.Tensor:  # (B*G,)
    """A_i = (r_i - mean(group)) / (std + eps).

    scale="group": std of the completion's own group (GRPO); "batch": std over the whole
    batch (more robust when groups are tiny); "none": no division (Dr. GRPO, which argues
    the std term biases towards easy and hard prompts). std is the unbiased estimate, as in
    TRL and tiny-grpo. A group whose rewards are all equal gets advantage exactly 0.
    """
    grouped = rewards.view(-1, group_size)  # (B, G)
    centred = grouped - grouped.mean(dim=1, keepdim=True)  # (B, G)
    if scale == "group":
        centred = centred / (_nonzero(grouped.std(dim=1, keepdim=True)) + eps)  # (B, G)
    elif scale == "batch":
        centred = centred / (_nonzero(rewards.std()) + eps)
    return centred.reshape(-1)


def kept_group_advantages(
    rewards: torch.Tensor,  # (B*G,)
    kept: torch.Tensor,  # (B*G,) bool: False for a discarded rollout
    group_size: int,
    scale: RewardScaling = "group",
    eps: float = 1e-4,
) -> torch.Tensor:  # (B*G,)
    """`group_advantages` over the kept completions only: a discarded rollout (a tool that
    failed for good) is left out of its group's mean and std and gets advantage 0."""
    grouped = rewards.view(-1, group_size)  # (B, G)
    weight = kept.view(-1, group_size).to(rewards.dtype)  # (B, G)
    count = weight.sum(dim=1, keepdim=True)  # (B, 1)
    mean = (grouped * weight).sum(dim=1, keepdim=True) / count.clamp(min=1)
    centred = (grouped - mean) * weight  # (B, G)
    if scale == "group":
        std = ((centred**2).sum(dim=1, keepdim=True) / (count - 1).clamp(min=1)).sqrt()
        centred = centred / (_nonzero(std) + eps)
    elif scale == "batch":
        spread = rewards[kept].std() if int(kept.sum()) > 1 else rewards.new_zeros(())
        centred = centred / (_nonzero(spread) + eps)
    return centred.reshape(-1)


def _nonzero(std: torch.Tensor) -> torch.Tensor:
    # A constant group is centred to exact zeros; dividing them by 1 keeps them 0 (not NaN).
    return std.masked_fill(std == 0, 1.0)


def zero_variance_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:  # (B,)
    """True for each group whose completions all got the same reward: no learning signal."""
    grouped = rewards.view(-1, group_size)  # (B, G)
    return (grouped == grouped[:, :1]).all(dim=1)
