"""A toy RFT task on the session's tiny model: rows, grader and a config builder, as
fixtures for the tests of rl/ and fast/ (their conftest.py files import them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

# Reward 1 when the completion contains "an". The tiny random model writes it in ~10% of
# 6-token completions, so the task starts low and is learnable by RL (tokens such as
# "an", "and", "answer" only need to become likely).
CONTAINS_AN = {
    "type": "string_check",
    "name": "contains_an",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.target }}",
    "operation": "like",
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tiny model's matmuls are too small to gain from threads, and on a shared busy
    machine two threads made a step 10-20x slower (contention); restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def toy_files(tmp_path: Path) -> tuple[Path, Path]:
    rows = [
        {"messages": [{"role": "user", "content": f"question {i}"}], "target": "an"}
        for i in range(16)
    ]
    train = tmp_path / "train.jsonl"
    valid = tmp_path / "valid.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    valid.write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    return train, valid


@pytest.fixture
def make_config(tmp_path: Path, tiny_model_dir: Path, toy_files):
    """Config dict for a tiny, fast run; keyword sections are merged into the defaults."""

    def build(
        hyperparameters: dict[str, Any] | None = None,
        expert: dict[str, Any] | None = None,
        **top: Any,
    ) -> dict[str, Any]:
        train, valid = toy_files
        return {
            "model": str(tiny_model_dir),
            "training_file": str(train),
            "validation_file": str(valid),
            "grader": CONTAINS_AN,
            "seed": 0,
            "output_dir": str(tmp_path / "run"),
            "hyperparameters": {"batch_size": 2, "n_epochs": 1, "eval_interval": 2,
                                **(hyperparameters or {})},
            "expert": {"group_size": 4, "max_tokens": 4, "max_steps": 2, "keep_samples": 4,
                       **(expert or {})},
            **top,
        }

    return build
