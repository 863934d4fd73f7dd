"""Rollouts: the only place that generates text (HF engine, vLLM engine).

Importing this package never imports torch-heavy engines or vllm; `make_engine` loads them.
"""

from openrft.rollout.engine import GenerationParams, Messages, RolloutEngine, Sample
from openrft.rollout.factory import make_engine, resolve_engine_kind
from openrft.rollout.reasoning import reasoning_budget, split_reasoning

__all__ = [
    "GenerationParams",
    "Messages",
    "RolloutEngine",
    "Sample",
    "make_engine",
    "reasoning_budget",
    "resolve_engine_kind",
    "split_reasoning",
]
