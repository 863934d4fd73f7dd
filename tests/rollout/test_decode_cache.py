"""The fast decode paths (pre-allocated KV cache, one-query eager attention on CPU) must give
the same tokens and log-probs as the plain path: a growing cache and the model's SDPA."""

from __future__ import annotations

import pytest
import torch

from openrft.rollout import decode
from openrft.rollout.engine import GenerationParams
from openrft.rollout.hf import HFRolloutEngine

PROMPTS = [
    [{"role": "user", "content": "What is 2 + 2?"}],
    [{"role": "user", "content": "Name a rare disease with seizures and a rash, please."}],
]


def _run(engine: HFRolloutEngine, params: GenerationParams) -> tuple[list, torch.Tensor]:
    samples = engine.generate(PROMPTS, 3, params)
    ids = [s.completion_ids for s in samples]
    logprobs = torch.tensor([s.completion_logprobs for s in samples])  # forced equal lengths
    return ids, logprobs


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_static_cache_and_eager_step_match_growing_cache_and_sdpa(
    tiny_model, monkeypatch, temperature
) -> None:
    model, tokenizer = tiny_model
    engine = HFRolloutEngine(model, tokenizer)
    params = GenerationParams(max_tokens=24, min_tokens=24, temperature=temperature, seed=11)
    fast_ids, fast_logprobs = _run(engine, params)

    monkeypatch.setattr(decode, "_preallocated_cache", lambda model, length: None)
    monkeypatch.setattr(decode, "_one_query_attention", lambda model: _no_switch())
    plain_ids, plain_logprobs = _run(engine, params)

    assert fast_ids == plain_ids
    torch.testing.assert_close(fast_logprobs, plain_logprobs, atol=1e-4, rtol=0)


def test_attention_implementation_is_restored_after_decoding(tiny_model) -> None:
    model, tokenizer = tiny_model
    before = model.config._attn_implementation
    assert before == "sdpa"  # the switch to eager and back really happens
    HFRolloutEngine(model, tokenizer).generate(PROMPTS, 1, GenerationParams(max_tokens=4))
    assert model.config._attn_implementation == before


class _no_switch:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
