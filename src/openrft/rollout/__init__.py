"""Rollouts: the only place that generates text (HF engine, vLLM engine)."""

from openrft.rollout.engine import GenerationParams, Messages, RolloutEngine, Sample

__all__ = ["GenerationParams", "Messages", "RolloutEngine", "Sample"]
