"""VLLMRolloutEngine's glue against the HF engine, with vLLM's API faked on CPU
(see fake_vllm.py; the real thing is checked by the GPU self-test)."""

from __future__ import annotations

import json
from pathlib import Path

import fake_vllm
import pytest
import torch

from openrft.models.load import LoraSettings, load_model
from openrft.rollout import factory
from openrft.rollout.engine import GenerationParams
from openrft.rollout.hf import HFRolloutEngine

PROMPTS = [
    [{"role": "user", "content": "What is 2 + 2?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a symptom."}],
]


@pytest.fixture(autouse=True)
def _fake_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_vllm.install(monkeypatch)


def _assert_same_samples(got, expected) -> None:
    assert [s.prompt_index for s in got] == [s.prompt_index for s in expected]
    for a, b in zip(got, expected, strict=True):
        assert a.completion_ids == b.completion_ids and a.prompt_ids == b.prompt_ids
        assert (a.raw_text, a.output_text, a.reasoning) == (b.raw_text, b.output_text, b.reasoning)
        assert a.finish_reason == b.finish_reason
        torch.testing.assert_close(
            torch.tensor(a.completion_logprobs),
            torch.tensor(b.completion_logprobs),
            atol=1e-4,
            rtol=0,
        )


def test_greedy_samples_match_hf_engine(tiny_model_dir: Path) -> None:
    from openrft.rollout.vllm import VLLMRolloutEngine

    loaded = load_model(tiny_model_dir)
    engine = VLLMRolloutEngine.from_path(tiny_model_dir, loaded.tokenizer)
    params = GenerationParams(max_tokens=10, temperature=0.0, stop=["e"])
    got = engine.generate(PROMPTS, 2, params)
    _assert_same_samples(
        got, HFRolloutEngine(loaded.model, loaded.tokenizer).generate(PROMPTS, 2, params)
    )
    llm = fake_vllm.LLMS[-1]
    ((prompts, sampling, _),) = llm.requests
    assert prompts == [got[0].prompt_ids, got[2].prompt_ids]
    sp = sampling[0]
    assert (sp.n, sp.logprobs, sp.max_tokens, sp.stop, sp.temperature) == (2, 0, 10, ["e"], 0.0)


def test_response_format_becomes_guided_json(tiny_model_dir: Path) -> None:
    from openrft.rollout.vllm import VLLMRolloutEngine

    loaded = load_model(tiny_model_dir)
    engine = VLLMRolloutEngine.from_path(tiny_model_dir, loaded.tokenizer)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    samples = engine.generate(PROMPTS, 1, GenerationParams(max_tokens=4, response_format=fmt))
    assert all((s.output_json is None) != (s.parse_error is None) for s in samples)
    engine.generate(
        PROMPTS, 1, GenerationParams(max_tokens=4, response_format={"type": "json_object"})
    )
    first, second = (call[1][0] for call in fake_vllm.LLMS[-1].requests)
    assert first.structured_outputs.spec == {"json": schema}
    assert second.structured_outputs.spec == {"json_object": True}


@pytest.mark.parametrize("opened_in_prompt", [True, False])
def test_two_phase_reasoning_budget_matches_in_loop_forcing(tiny_model_dir, opened_in_prompt):
    from openrft.rollout.vllm import VLLMRolloutEngine

    loaded = load_model(tiny_model_dir)
    tokenizer, model = loaded.tokenizer, loaded.model
    if opened_in_prompt:
        tokenizer.chat_template += "<think>"
    else:  # the model opens <think> itself as its first token
        think_start = tokenizer.convert_tokens_to_ids("<think>")
        head = model.lm_head
        biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
        with torch.no_grad():
            biased.weight.copy_(head.weight)
            biased.bias.zero_()
            biased.bias[think_start] = 100.0
        model.lm_head = biased
    # The biased model reopens <think> forever; the HF loop would then force every later
    # block closed at once (the budget is a total), the two-phase vLLM path only the first:
    # stop right after the first forced </think> and one more token.
    max_tokens = 12 if opened_in_prompt else 6
    params = GenerationParams(max_tokens=max_tokens, temperature=0.0, reasoning_budget=3)
    expected = HFRolloutEngine(model, tokenizer).generate(PROMPTS, 2, params)
    think_end = tokenizer.convert_tokens_to_ids("</think>")
    assert all(think_end in s.completion_ids for s in expected)
    engine = VLLMRolloutEngine.from_path(tiny_model_dir, tokenizer)
    if not opened_in_prompt:
        fake_vllm.LLMS[-1].hf = model
    _assert_same_samples(engine.generate(PROMPTS, 2, params), expected)


def test_full_weight_sync_makes_vllm_sample_the_trained_model(tiny_model_dir: Path) -> None:
    from openrft.rollout.vllm import VLLMRolloutEngine

    loaded = load_model(tiny_model_dir, trainable=True)
    engine = VLLMRolloutEngine.from_model(loaded.model, loaded.tokenizer)
    assert fake_vllm.LLMS[-1].model == str(tiny_model_dir)
    assert fake_vllm.LLMS[-1].options["gpu_memory_utilization"] == 0.3
    with torch.no_grad():
        loaded.model.lm_head.weight.mul_(3.0)
    params = GenerationParams(max_tokens=8, temperature=0.0)
    before = engine.generate(PROMPTS, 1, params)
    engine.sync_weights(loaded.model)
    after = engine.generate(PROMPTS, 1, params)
    expected = HFRolloutEngine(loaded.model.eval(), loaded.tokenizer).generate(PROMPTS, 1, params)
    _assert_same_samples(after, expected)
    assert [s.completion_logprobs for s in before] != [s.completion_logprobs for s in after]


def test_lora_sync_saves_a_new_adapter_each_time(tiny_model_dir: Path) -> None:
    from openrft.rollout.vllm import VLLMRolloutEngine

    loaded = load_model(tiny_model_dir, lora=LoraSettings(rank=4, alpha=8))
    engine = VLLMRolloutEngine.from_model(loaded.model, loaded.tokenizer)
    llm = fake_vllm.LLMS[-1]
    assert llm.model == str(tiny_model_dir)
    assert llm.options["enable_lora"] is True and llm.options["max_lora_rank"] == 8
    engine.generate(PROMPTS, 1, GenerationParams(max_tokens=2))
    first = llm.requests[-1][2]
    config = json.loads((Path(first.lora_path) / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["base_model_name_or_path"] == str(tiny_model_dir)
    engine.sync_weights(loaded.model)
    engine.generate(PROMPTS, 1, GenerationParams(max_tokens=2))
    second = llm.requests[-1][2]
    assert second.lora_int_id == first.lora_int_id + 1 and llm.removed_loras == [1]
    assert not Path(first.lora_path).exists() and Path(second.lora_path).is_dir()


def test_make_engine_builds_vllm_engine_when_available(tiny_model_dir, monkeypatch) -> None:
    from openrft.rollout.vllm import VLLMRolloutEngine

    monkeypatch.setattr(factory, "vllm_available", lambda: True)
    loaded = load_model(tiny_model_dir)
    engine = factory.make_engine(loaded.model, loaded.tokenizer, kind="vllm")
    assert isinstance(engine, VLLMRolloutEngine)
