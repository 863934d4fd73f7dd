"""The learning-rate schedule of every trainer (RL and SFT): linear warmup, then constant,
linear or cosine decay to 0, built by transformers. One place for the names, so a resumed
run rebuilds exactly the schedule whose state its checkpoint holds."""

from __future__ import annotations

from typing import Literal

import torch

Schedule = Literal["constant", "linear", "cosine"]
SCHEDULES: tuple[Schedule, ...] = ("constant", "linear", "cosine")

# Our names -> transformers.get_scheduler names (warmup is built into each).
_HF_NAMES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


def lr_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule, warmup_ratio: float, total_updates: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Warmup over `round(warmup_ratio * total_updates)` optimizer updates, then `schedule`."""
    from transformers import get_scheduler

    return get_scheduler(
        _HF_NAMES[schedule],
        optimizer,
        num_warmup_steps=round(warmup_ratio * total_updates),
        num_training_steps=total_updates,
    )
