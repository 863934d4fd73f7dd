"""Group-relative advantages (GRPO): each completion scored against its siblings.

Pure tensor functions, no model and no I/O. Rewards arrive prompt-major: the
`group_size` completions of prompt 0, then those of prompt 1, ... (the RolloutEngine order).
"""

from __future__ import annotations

from typing import Literal

import torch

RewardScaling = Literal["group", "batch", "none"]


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


def _nonzero(std: torch.Tensor) -> torch.Tensor:
    # A constant group is centred to exact zeros; dividing them by 1 keeps them 0 (not NaN).
    return std.masked_fill(std == 0, 1.0)


def zero_variance_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:  # (B,)
    """True for each group whose completions all got the same reward: no learning signal."""
    grouped = rewards.view(-1, group_size)  # (B, G)
    return (grouped == grouped[:, :1]).all(dim=1)
