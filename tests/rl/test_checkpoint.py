"""Checkpoints: atomic directories, optimizer/scheduler/RNG round trips, pruning."""

from __future__ import annotations

import random

import numpy as np
import torch
from transformers import get_scheduler

from openrft.rl.checkpoint import (
    checkpoint_score,
    latest_checkpoint,
    load_trainer_state,
    prune_checkpoints,
    save_checkpoint,
)


class _Saveable(torch.nn.Module):
    """A model/tokenizer stand-in with save_pretrained, like transformers objects."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)

    def save_pretrained(self, path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path / "weights.pt")


def _optimizer(model):
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=2, num_training_steps=10)
    return optimizer, scheduler


def _train_a_bit(model, optimizer, scheduler, steps: int) -> None:
    for _ in range(steps):
        model.linear(torch.randn(4, 3)).pow(2).sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def test_round_trip_continues_exactly(tmp_path):
    torch.manual_seed(0)
    model = _Saveable()
    optimizer, scheduler = _optimizer(model)
    _train_a_bit(model, optimizer, scheduler, 3)
    random.seed(5)
    np.random.seed(5)
    path = save_checkpoint(tmp_path, 3, model, model, optimizer, scheduler, {"seed": 11})
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    # The uninterrupted continuation:
    expected_draws = (random.random(), np.random.rand(), torch.rand(1).item())
    _train_a_bit(model, optimizer, scheduler, 2)
    expected_weight = model.linear.weight.detach().clone()
    expected_lr = scheduler.get_last_lr()

    fresh = _Saveable()
    fresh.load_state_dict(weights)
    fresh_opt, fresh_sched = _optimizer(fresh)
    state = load_trainer_state(path, fresh_opt, fresh_sched)
    assert state["step"] == 3 and state["seed"] == 11
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected_draws
    load_trainer_state(path, fresh_opt, fresh_sched)  # rewind the RNGs again
    random.random(), np.random.rand(), torch.rand(1)
    _train_a_bit(fresh, fresh_opt, fresh_sched, 2)
    assert torch.equal(fresh.linear.weight, expected_weight)
    assert fresh_sched.get_last_lr() == expected_lr


def test_latest_ignores_temporary_dirs_and_prune_keeps_newest(tmp_path):
    model = _Saveable()
    optimizer, scheduler = _optimizer(model)
    for step in (1, 2, 10):
        save_checkpoint(tmp_path, step, model, model, optimizer, scheduler, {})
    (tmp_path / ".tmp-step-11").mkdir()  # a checkpoint whose writer was killed
    assert latest_checkpoint(tmp_path) == tmp_path / "step-10"  # numeric, not lexical order
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "step-10", "step-2"]
    assert latest_checkpoint(tmp_path / "missing") is None


def test_rewriting_a_checkpoint_replaces_it_whole(tmp_path):
    model = _Saveable()
    optimizer, scheduler = _optimizer(model)
    save_checkpoint(tmp_path, 4, model, model, optimizer, scheduler, {"epoch": 1})
    save_checkpoint(tmp_path, 4, model, model, optimizer, scheduler, {"epoch": 2})
    state = load_trainer_state(tmp_path / "step-4", *_optimizer(_Saveable()))
    assert state["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["step-4"]  # no tmp/old leftovers


def test_prune_keeps_the_best_validation_rewards_and_the_newest_while_training(tmp_path):
    model = _Saveable()
    optimizer, scheduler = _optimizer(model)
    rewards = {1: 0.2, 2: None, 3: 0.9, 4: 0.5, 5: 0.1, 6: 0.5, 7: None}
    for step, reward in rewards.items():
        save_checkpoint(tmp_path, step, model, model, optimizer, scheduler,
                        {"valid_reward_mean": reward})
    assert checkpoint_score(tmp_path / "step-3") == 0.9
    assert checkpoint_score(tmp_path / "step-2") is None

    def kept() -> list[str]:
        return sorted((p.name for p in tmp_path.iterdir()), key=lambda n: int(n[5:]))

    # best three: 0.9 (step 3), then the 0.5 tie goes to the newer step 6, then step 4;
    # step 7 (unscored) stays as the newest, for resuming
    prune_checkpoints(tmp_path, keep=3)
    assert kept() == ["step-3", "step-4", "step-6", "step-7"]
    prune_checkpoints(tmp_path, keep=3, keep_newest=False)  # the run finished
    assert kept() == ["step-3", "step-4", "step-6"]
