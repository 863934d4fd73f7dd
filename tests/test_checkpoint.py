"""Checkpoints of both trainers: atomic directories, optimizer/scheduler/RNG round trips,
pruning, finding the one to resume from, and the shared LR schedule."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from transformers import get_scheduler

from openrft.checkpoint import (
    checkpoint_score,
    checkpoint_to_resume,
    export_model,
    latest_checkpoint,
    prune_checkpoints,
    read_state,
    restore_checkpoint,
    save_checkpoint,
)
from openrft.errors import InvalidInput
from openrft.lr_schedule import lr_scheduler


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
    state = restore_checkpoint(path, fresh, fresh_opt, fresh_sched)
    assert state["step"] == 3 and state["seed"] == 11
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected_draws
    restore_checkpoint(path, fresh, fresh_opt, fresh_sched)  # rewind the RNGs again
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
    fresh = _Saveable()
    state = restore_checkpoint(tmp_path / "step-4", fresh, *_optimizer(fresh))
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


class _FailingTokenizer:
    """Dies while the checkpoint is being written, as a killed process would."""

    def save_pretrained(self, path) -> None:
        (path / "tokenizer.json").write_text("{")  # half a file
        raise OSError("disk full")


def test_a_write_that_dies_midway_leaves_the_previous_checkpoint_the_latest(tmp_path):
    model = _Saveable()
    optimizer, scheduler = _optimizer(model)
    save_checkpoint(tmp_path, 2, model, model, optimizer, scheduler, {"epoch": 1})
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 3, model, _FailingTokenizer(), optimizer, scheduler, {})
    with pytest.raises(OSError, match="disk full"):  # rewriting step 2 itself
        save_checkpoint(tmp_path, 2, model, _FailingTokenizer(), optimizer, scheduler,
                        {"epoch": 9})
    assert latest_checkpoint(tmp_path) == tmp_path / "step-2"
    assert read_state(tmp_path / "step-2")["epoch"] == 1
    assert checkpoint_to_resume(tmp_path.parent, resume=False) is None  # not a run dir
    # a SIGKILLed writer leaves its temporary folder: never read, removed by the next write
    (tmp_path / ".tmp-step-5").mkdir()
    assert latest_checkpoint(tmp_path) == tmp_path / "step-2"
    save_checkpoint(tmp_path, 4, model, model, optimizer, scheduler, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-2", "step-4"]


def test_checkpoint_to_resume_finds_the_latest_or_refuses_to_mix_runs(tmp_path):
    model = _Saveable()
    optimizer, scheduler = _optimizer(model)
    assert checkpoint_to_resume(tmp_path, resume=True) is None  # nothing yet: start fresh
    assert checkpoint_to_resume(tmp_path, resume=False) is None
    with pytest.raises(InvalidInput, match="already holds a run"):
        checkpoint_to_resume(tmp_path, resume=False, started=True)
    for step in (3, 12):
        save_checkpoint(tmp_path / "checkpoints", step, model, model, optimizer, scheduler, {})
    assert checkpoint_to_resume(tmp_path, resume=True) == tmp_path / "checkpoints" / "step-12"
    with pytest.raises(InvalidInput, match="already holds a run"):
        checkpoint_to_resume(tmp_path, resume=False)


def test_restore_refuses_a_directory_that_is_no_checkpoint(tmp_path):
    model = _Saveable()
    model.save_pretrained(tmp_path / "model")  # a model directory, no trainer state
    with pytest.raises(InvalidInput, match="not a checkpoint"):
        restore_checkpoint(tmp_path / "model", model, *_optimizer(model))


def test_export_model_copies_the_model_without_the_trainer_state(tmp_path):
    model = _Saveable()
    path = save_checkpoint(tmp_path, 1, model, model, *_optimizer(model), {})
    out = tmp_path / "selected"
    (out / "stale").mkdir(parents=True)
    assert export_model(path, out) == out
    assert [p.name for p in out.iterdir()] == ["weights.pt"]


@pytest.mark.parametrize(("schedule", "expected"), [
    # peak 1.0, 10 updates, warmup round(0.2 * 10) = 2: lr 0, 0.5, then the decay over the
    # remaining 8 (linear: 1 - k/8; cosine: (1 + cos(pi k / 8)) / 2), sampled at k = 0, 4, 8
    ("constant", [0.0, 0.5, 1.0, 1.0, 1.0]),
    ("linear", [0.0, 0.5, 1.0, 0.5, 0.0]),
    ("cosine", [0.0, 0.5, 1.0, 0.5, 0.0]),
])
def test_lr_schedule_warms_up_then_decays(schedule, expected):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = lr_scheduler(optimizer, schedule, warmup_ratio=0.2, total_updates=10)
    lrs = []
    for _ in range(11):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert [lrs[i] for i in (0, 1, 2, 6, 10)] == pytest.approx(expected, abs=1e-9)
    if schedule == "cosine":  # a point where cosine and linear differ: k = 2
        assert lrs[4] == pytest.approx((1 + math.cos(math.pi * 2 / 8)) / 2)
