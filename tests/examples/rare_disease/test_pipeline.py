"""Checkpoint selection on the validation split (early stopping), with scores stubbed."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from openrft.examples.rare_disease import pipeline

# step -> greedy validation reward the stubbed evaluation reports
REWARDS = {5: 0.30, 10: 0.42, 15: 0.42, 20: 0.35}


@pytest.fixture()
def checkpoints(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "run" / "checkpoints"
    for step in REWARDS:
        path = root / f"step-{step}"
        path.mkdir(parents=True)
        (path / "model.safetensors").write_text(f"weights of step {step}")
        (path / "trainer_state.json").write_text("{}")
        (path / "trainer_state.safetensors").write_text("optimizer")

    def fake_evaluate(model: Path, rows_file: Path, progress: bool = True):
        reward = REWARDS[int(Path(model).name.split("-")[1])]
        return {"top@1": reward, "top@5": reward, "top@max": reward}, SimpleNamespace(
            mean_reward=reward
        )

    monkeypatch.setattr(pipeline, "evaluate_model", fake_evaluate)
    return root


def test_best_validation_reward_wins_and_a_tie_keeps_the_earlier_step(
    checkpoints: Path,
) -> None:
    out = checkpoints.parent / "sel"
    chosen = pipeline.select_checkpoint(checkpoints, Path("valid.jsonl"), out)
    assert (chosen / "model.safetensors").read_text() == "weights of step 10"
    assert not list(chosen.glob("trainer_state.*"))  # model files only, no optimizer state
    record = json.loads((checkpoints.parent / "selection.json").read_text())
    assert record["selected_step"] == 10
    assert [c["step"] for c in record["checkpoints"]] == [5, 10, 15, 20]


def test_no_checkpoint_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no checkpoints"):
        pipeline.select_checkpoint(tmp_path, Path("valid.jsonl"), tmp_path / "sel")
