"""The tiny task the Ray tests train on, as a config for either backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Reward 1 when the completion contains an "e": frequent enough in the tiny model's
# random text that groups differ and a high learning rate moves the weights every step.
CONTAINS_E = {"type": "string_check", "name": "contains_e", "input": "{{ sample.output_text }}",
              "reference": "e", "operation": "like"}

def ray_task_config(model: Path, train_file: Path, output_dir: Path, backend: str,
                    address: str | None = None, **expert: Any) -> dict[str, Any]:
    """3 steps of 2 prompts x 4 completions x 6 tokens, a checkpoint after each step."""
    return {
        "model": str(model), "training_file": str(train_file), "grader": CONTAINS_E,
        "seed": 0, "output_dir": str(output_dir),
        "hyperparameters": {"batch_size": 2, "n_epochs": 1},
        "expert": {"group_size": 4, "max_tokens": 6, "max_steps": 3, "save_every": 1,
                   "keep_checkpoints": 5, "base_learning_rate": 1e-2, "keep_samples": 8,
                   "backend": backend, "ray": {"address": address}, **expert},
    }
