"""HFRolloutEngine against independent oracles: plain forward passes, model.generate, decoding."""

from __future__ import annotations

import pytest
import torch

from openrft.errors import InvalidInput
from openrft.rollout.engine import GenerationParams, RolloutEngine
from openrft.rollout.hf import HFRolloutEngine

PROMPTS = [
    [{"role": "user", "content": "What is 2 + 2?"}],
    [
        {"role": "system", "content": "You are a careful clinical assistant. Think step by step."},
        {"role": "user", "content": "Patient with fever, rash and seizure onset as a child."},
    ],
    [{"role": "user", "content": "Hi"}],
]


@pytest.fixture
def engine(tiny_model) -> HFRolloutEngine:
    model, tokenizer = tiny_model
    return HFRolloutEngine(model, tokenizer)


def _with_logit_bias(model, token_id: int, bias: float) -> None:
    """Replace the LM head by one with a bias on `token_id` (same weights otherwise)."""
    head = model.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[token_id] = bias
    model.lm_head = biased


def _reference_logprobs(model, prompt_ids: list[int], completion_ids: list[int]) -> torch.Tensor:
    """Log-probs of the completion from one unpadded, cache-free forward pass."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt_ids) - 1 : -1]  # (T, V) predicting each token
    return torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(completion_ids)[:, None])[
        :, 0
    ]


def test_engine_satisfies_protocol(engine) -> None:
    assert isinstance(engine, RolloutEngine)


def test_shapes_order_and_prompt_ids(engine) -> None:
    samples = engine.generate(PROMPTS, 3, GenerationParams(max_tokens=12, seed=0))
    assert len(samples) == 9
    assert [s.prompt_index for s in samples] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for s in samples:
        assert s.prompt_ids == engine.render_prompt(PROMPTS[s.prompt_index], "p")
        assert 1 <= len(s.completion_ids) == len(s.completion_logprobs) <= 12
        assert all(lp <= 0 for lp in s.completion_logprobs)
        assert engine.tokenizer.pad_token_id not in s.completion_ids
        ends_with_eos = s.completion_ids[-1] == engine.tokenizer.eos_token_id
        assert s.finish_reason == ("stop" if ends_with_eos else "length")
        if s.finish_reason == "length":
            assert len(s.completion_ids) == 12


def test_left_padded_batch_logprobs_match_unpadded_single_prompts(engine) -> None:
    samples = engine.generate(PROMPTS, 2, GenerationParams(max_tokens=16, seed=3, min_tokens=16))
    lengths = {len(s.prompt_ids) for s in samples}
    assert len(lengths) == 3  # the batch really needed left padding
    for s in samples:
        expected = _reference_logprobs(engine.model, s.prompt_ids, s.completion_ids)
        torch.testing.assert_close(torch.tensor(s.completion_logprobs), expected, atol=1e-4, rtol=0)


def test_greedy_equals_model_generate(engine) -> None:
    tokenizer = engine.tokenizer
    rows = [engine.render_prompt(p, "p") for p in PROMPTS]
    batch = tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = engine.model.generate(
            **batch,
            do_sample=False,
            max_new_tokens=20,
            min_new_tokens=20,
            pad_token_id=tokenizer.pad_token_id,
        )
    expected = out[:, batch["input_ids"].shape[1] :].tolist()
    params = GenerationParams(max_tokens=20, min_tokens=20, temperature=0.0)
    samples = engine.generate(PROMPTS, 1, params)
    assert [s.completion_ids for s in samples] == expected


def test_seed_reproduces_and_changes_samples(engine) -> None:
    def ids(seed):
        params = GenerationParams(max_tokens=10, seed=seed)
        return [s.completion_ids for s in engine.generate(PROMPTS, 2, params)]

    assert ids(7) == ids(7)
    assert ids(7) != ids(8)


def test_chunked_batches_match_one_batch(tiny_model) -> None:
    model, tokenizer = tiny_model
    params = GenerationParams(max_tokens=8, temperature=0.0, min_tokens=8)
    whole = HFRolloutEngine(model, tokenizer).generate(PROMPTS, 2, params)
    chunked = HFRolloutEngine(model, tokenizer, max_batch_rows=4).generate(PROMPTS, 2, params)
    assert [s.completion_ids for s in whole] == [s.completion_ids for s in chunked]
    assert [s.prompt_index for s in chunked] == [0, 0, 1, 1, 2, 2]


def test_eos_ends_a_completion_and_is_kept(tiny_model) -> None:
    model, tokenizer = tiny_model
    _with_logit_bias(model, tokenizer.eos_token_id, 100.0)
    engine = HFRolloutEngine(model, tokenizer)
    samples = engine.generate(PROMPTS, 2, GenerationParams(max_tokens=10, seed=0))
    for s in samples:
        assert s.completion_ids == [tokenizer.eos_token_id]
        assert s.finish_reason == "stop" and s.output_text == "" and s.raw_text == ""
        assert s.completion_logprobs[0] == pytest.approx(0.0, abs=1e-6)


def test_min_tokens_suppresses_eos_until_reached(tiny_model) -> None:
    model, tokenizer = tiny_model
    _with_logit_bias(model, tokenizer.eos_token_id, 100.0)
    engine = HFRolloutEngine(model, tokenizer)
    params = GenerationParams(max_tokens=10, min_tokens=4, temperature=0.0)
    for s in engine.generate(PROMPTS, 1, params):
        assert len(s.completion_ids) == 5  # 4 forced non-eos tokens, then the (biased) eos
        assert tokenizer.eos_token_id not in s.completion_ids[:4]
        assert s.completion_ids[4] == tokenizer.eos_token_id and s.finish_reason == "stop"
        # the recorded log-prob is the model's, not the eos-masked sampling distribution
        assert s.completion_logprobs[0] < -50


def test_stop_string_ends_generation_and_is_cut_from_text(engine) -> None:
    greedy = GenerationParams(max_tokens=24, min_tokens=24, temperature=0.0)
    reference = engine.generate(PROMPTS[:1], 1, greedy)[0]
    decode = engine.completions.text
    # a stop string made of the text of tokens 5..6, chosen where it does not occur earlier
    ids = reference.completion_ids
    for k in range(5, 20):
        stop = decode(ids[: k + 2])[len(decode(ids[:k])) :]
        if stop.strip() and stop not in decode(ids[: k + 1]) and "\ufffd" not in stop:
            break
    else:
        pytest.skip("no clean stop string in this greedy completion")
    expected_len = next(j for j in range(1, 25) if stop in decode(ids[:j]))
    params = GenerationParams(max_tokens=24, temperature=0.0, stop=[stop])
    sample = engine.generate(PROMPTS[:1], 1, params)[0]
    assert sample.completion_ids == ids[:expected_len]
    assert sample.finish_reason == "stop"
    full = decode(ids[:expected_len])
    assert sample.raw_text == full[: full.index(stop)]


def test_reasoning_budget_forces_think_end_when_prompt_opens_thinking(tiny_model) -> None:
    model, tokenizer = tiny_model
    tokenizer.chat_template += "<think>"
    engine = HFRolloutEngine(model, tokenizer)
    think_end = tokenizer.convert_tokens_to_ids("</think>")
    free = engine.generate(PROMPTS, 1, GenerationParams(max_tokens=12, temperature=0.0))
    budget = 3
    params = GenerationParams(max_tokens=12, temperature=0.0, reasoning_budget=budget)
    for unbudgeted, s in zip(free, engine.generate(PROMPTS, 1, params), strict=True):
        natural = unbudgeted.completion_ids[:budget]
        assert think_end not in natural and tokenizer.eos_token_id not in natural
        assert s.completion_ids[:budget] == natural
        assert s.completion_ids[budget] == think_end
        assert s.reasoning == engine.completions.text(natural).strip()
        assert s.output_text == engine.completions.text(s.completion_ids[budget + 1 :]).strip()
        assert s.raw_text.startswith(engine.completions.text(natural) + "</think>")


def test_reasoning_budget_counts_from_a_generated_think_start(tiny_model) -> None:
    model, tokenizer = tiny_model
    think_start, think_end = tokenizer.convert_tokens_to_ids(["<think>", "</think>"])
    _with_logit_bias(model, think_start, 100.0)  # greedy always picks <think> (unless forced)
    engine = HFRolloutEngine(model, tokenizer)
    params = GenerationParams(max_tokens=6, temperature=0.0, reasoning_budget=2)
    s = engine.generate(PROMPTS[:1], 1, params)[0]
    assert s.completion_ids[:4] == [think_start, think_start, think_start, think_end]
    no_budget = GenerationParams(max_tokens=6, temperature=0.0)
    s = engine.generate(PROMPTS[:1], 1, no_budget)[0]
    assert s.completion_ids == [think_start] * 6
    assert s.reasoning_unclosed and s.output_text == "" and s.finish_reason == "length"


def test_stream_chat_concatenates_to_generated_answer(engine) -> None:
    params = GenerationParams(max_tokens=16, seed=5)
    expected = engine.generate(PROMPTS[1:2], 1, params)[0]
    assert "".join(engine.stream_chat(PROMPTS[1], params)) == expected.output_text
    raw = "".join(engine.stream_chat(PROMPTS[1], params, include_reasoning=True))
    assert raw == expected.raw_text


def test_stream_chat_holds_back_stop_strings(engine) -> None:
    greedy = GenerationParams(max_tokens=16, temperature=0.0)
    text = engine.generate(PROMPTS[:1], 1, greedy)[0].output_text
    stop = text[6:8]
    expected = text[: text.index(stop)].strip()
    params = GenerationParams(max_tokens=16, temperature=0.0, stop=[stop])
    deltas = list(engine.stream_chat(PROMPTS[0], params))
    assert "".join(deltas) == expected
    assert all(stop not in "".join(deltas[: i + 1]) for i in range(len(deltas)))


def test_response_format_sets_json_or_parse_error(engine) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": schema}}
    params = GenerationParams(max_tokens=8, seed=0, response_format=fmt)
    for s in engine.generate(PROMPTS, 2, params):
        assert (s.output_json is None) != (s.parse_error is None)


@pytest.mark.parametrize(
    ("field", "params", "n"),
    [
        ("n", GenerationParams(), 0),
        ("max_tokens", GenerationParams(max_tokens=0), 1),
        ("min_tokens", GenerationParams(max_tokens=4, min_tokens=5), 1),
        ("temperature", GenerationParams(temperature=-1), 1),
        ("top_p", GenerationParams(top_p=0), 1),
        ("stop", GenerationParams(stop=[""]), 1),
        ("response_format.type", GenerationParams(response_format={"type": "xml"}), 1),
    ],
)
def test_invalid_params_are_invalid_input(engine, field, params, n) -> None:
    with pytest.raises(InvalidInput) as info:
        engine.generate(PROMPTS, n, params)
    assert info.value.location == field


def test_malformed_messages_name_the_prompt(engine) -> None:
    with pytest.raises(InvalidInput, match=r"prompts\[1\]"):
        engine.generate([PROMPTS[0], [{"content": "no role"}]], 1, GenerationParams())
    with pytest.raises(InvalidInput, match=r"prompts\[0\]: chat template failed"):
        engine.generate([[{"role": "tool", "content": "x"}]], 1, GenerationParams())


def test_lora_wrapped_model_generates_with_adapter_applied(tiny_model_dir) -> None:
    from openrft.models.load import LoraSettings, load_model

    loaded = load_model(tiny_model_dir, lora=LoraSettings(rank=4, alpha=8))
    with torch.no_grad():  # a non-zero adapter, so its effect is visible in the log-probs
        for name, param in loaded.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5, generator=torch.Generator().manual_seed(2))
    model = loaded.model.eval()
    engine = HFRolloutEngine(model, loaded.tokenizer)
    params = GenerationParams(max_tokens=12, min_tokens=12, seed=0)
    for s in engine.generate(PROMPTS, 2, params):
        expected = _reference_logprobs(model, s.prompt_ids, s.completion_ids)
        torch.testing.assert_close(
            torch.tensor(s.completion_logprobs), expected, atol=1e-4, rtol=0
        )
        with model.disable_adapter():
            base = _reference_logprobs(model, s.prompt_ids, s.completion_ids)
        assert not torch.allclose(base, expected, atol=1e-3)
