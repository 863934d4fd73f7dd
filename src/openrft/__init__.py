"""OpenRFT: open, self-hostable reinforcement fine-tuning of language models.

The public API is loaded lazily so that `import openrft` stays cheap (no torch) for
tools that only grade.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "train": "openrft.rl.trainer:train",
    "RFTConfig": "openrft.rl.config:RFTConfig",
    "evaluate": "openrft.eval.evaluate:evaluate",
    "grade": "openrft.graders.base:run",
    "grade_batch": "openrft.graders.base:grade_batch",
    "validate_grader": "openrft.graders.base:validate",
    "load_model": "openrft.models.load:load_model",
    "ensure_model": "openrft.models.catalog:ensure_model",
    "load_dataset": "openrft.data.dataset:load_dataset",
    "train_supervised": "openrft.sft.trainer:train_supervised",
    "preflight": "openrft.rl.preflight:preflight",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'openrft' has no attribute {name!r}")
    module_name, attr = _LAZY[name].split(":")
    return getattr(importlib.import_module(module_name), attr)
