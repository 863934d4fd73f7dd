"""Pick a rollout engine: vLLM on a GPU machine that has it, else the HF engine."""

from __future__ import annotations

import importlib.util
from typing import Any

from openrft.errors import InvalidInput
from openrft.rollout.engine import CausalLM, RolloutEngine

ENGINE_KINDS = ("auto", "hf", "vllm")


def vllm_available() -> bool:
    """True when vLLM can be imported (checked without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def resolve_engine_kind(kind: str = "auto") -> str:
    """"auto" -> "vllm" when a CUDA GPU and vLLM are both present, else "hf"."""
    if kind not in ENGINE_KINDS:
        raise InvalidInput("engine", f"expected one of {', '.join(ENGINE_KINDS)}, got {kind!r}")
    if kind != "auto":
        return kind
    import torch

    return "vllm" if torch.cuda.is_available() and vllm_available() else "hf"


def make_engine(model: CausalLM, tokenizer: Any, kind: str = "auto", **options: Any
                ) -> RolloutEngine:
    """An engine for `model` (a transformers/peft model object) and its tokenizer.

    `options` go to the engine's constructor (HF: max_batch_rows; vLLM: see VLLMRolloutEngine).
    """
    resolved = resolve_engine_kind(kind)
    if resolved == "vllm":
        if not vllm_available():
            raise InvalidInput(
                "engine", "vllm is not installed (pip install 'openrft[gpu]' on a CUDA machine)"
            )
        from openrft.rollout.vllm import VLLMRolloutEngine

        return VLLMRolloutEngine.from_model(model, tokenizer, **options)
    from openrft.rollout.hf import HFRolloutEngine

    return HFRolloutEngine(model, tokenizer, **options)
