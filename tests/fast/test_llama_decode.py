"""The lean Llama-family decode forward against transformers' own modules (the oracle).

Each architecture is a tiny random model built from its transformers config class; the
same left-padded batch is decoded with `llama_decode` and with the model's own forward
(`TransformersForward`), with the same sampling seed, and must give the same tokens and
log-probs. Unsupported shapes must fall back rather than decode differently.
"""

from __future__ import annotations

import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
)
from transformers.cache_utils import DynamicLayer

from llama_family import ARCHITECTURES, build_model, left_padded_batch
from openrft.fast import decode_forward
from openrft.fast.kv_cache import (
    SharedPromptCache,
    _attention_with_lse,
    grouped_repeats,
    plain_attention_with_lse,
)
from openrft.fast.llama_decode import LlamaDecodeForward, fast_decode_for
from openrft.fast.transformers_cache import PreallocatedLayer, PreallocatingForward
from openrft.rollout.decode import BatchDecoder, DecodeSettings, TransformersForward


def _decode(model, fast: bool, max_tokens: int = 9, repeats: int = 1):
    """Decode the shared batch with the fast path's forward, or the plain one."""
    ids, mask = left_padded_batch()
    ids, mask = ids.repeat_interleave(repeats, 0), mask.repeat_interleave(repeats, 0)
    settings = DecodeSettings(max_tokens=max_tokens, pad_id=0, eos_ids=[2],
                              min_tokens=max_tokens,
                              generator=torch.Generator().manual_seed(5))
    forward = decode_forward(model) if fast else TransformersForward(model)
    decoder = BatchDecoder(model, ids, mask, settings, forward)
    for _ in decoder:
        pass
    return decoder


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_fast_decode_matches_the_transformers_forward(name: str) -> None:
    model = ARCHITECTURES[name]()
    fast, reference = _decode(model, True), _decode(model, False)
    assert isinstance(fast.forward, LlamaDecodeForward)
    assert type(reference.forward) is TransformersForward
    assert torch.equal(fast.output.tokens, reference.output.tokens)
    torch.testing.assert_close(fast.output.logprobs, reference.output.logprobs,
                               atol=1e-5, rtol=0)


def test_repeated_prompts_are_prefilled_once_and_decode_as_if_distinct(monkeypatch) -> None:
    """GRPO's layout (each prompt repeated): the prefill runs the 4 distinct prompts, and
    the 12 rows sample exactly what the transformers forward samples for all 12."""
    prefill_rows = []
    run = LlamaDecodeForward._run

    def counting_run(self, ids, *args, **kwargs):
        if args[2]:  # capacity > 0: the prefill
            prefill_rows.append(ids.shape[0])
        return run(self, ids, *args, **kwargs)

    monkeypatch.setattr(LlamaDecodeForward, "_run", counting_run)
    model = ARCHITECTURES["llama_gqa_tied"]()
    fast, reference = _decode(model, True, repeats=3), _decode(model, False, repeats=3)
    assert prefill_rows == [4]
    assert torch.equal(fast.output.tokens, reference.output.tokens)
    torch.testing.assert_close(fast.output.logprobs, reference.output.logprobs,
                               atol=1e-5, rtol=0)
    assert not torch.equal(fast.output.tokens[0], fast.output.tokens[1])  # rows sample apart


def test_fast_decode_logprobs_equal_a_cache_free_forward_of_each_row() -> None:
    """Independent of any cache: one plain forward over each row's real tokens."""
    model = ARCHITECTURES["qwen2_qkv_bias"]()
    ids, mask = left_padded_batch()
    out = _decode(model, True).output
    for row in range(ids.shape[0]):
        prompt = ids[row][mask[row].bool()]
        full = torch.cat([prompt, out.tokens[row]])[None]
        with torch.no_grad():
            logits = model(full).logits[0, len(prompt) - 1 : -1]
        expected = torch.log_softmax(logits, -1).gather(-1, out.tokens[row][:, None])[:, 0]
        torch.testing.assert_close(out.logprobs[row], expected, atol=1e-5, rtol=0)


def test_lora_deltas_are_merged_into_the_fast_weights() -> None:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(ARCHITECTURES["llama"](), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "gate_proj", "down_proj"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5, generator=torch.Generator().manual_seed(2))
    model.eval()
    fast, reference = _decode(model, True), _decode(model, False)
    assert isinstance(fast.forward, LlamaDecodeForward)
    assert torch.equal(fast.output.tokens, reference.output.tokens)
    torch.testing.assert_close(fast.output.logprobs, reference.output.logprobs,
                               atol=1e-5, rtol=0)
    with model.disable_adapter():  # adapters off: the fast path follows, base weights only
        plain = _decode(model, True)
    assert not torch.allclose(plain.output.logprobs, fast.output.logprobs, atol=1e-3)


@pytest.mark.parametrize("repeats", [1, 2])
def test_bf16_autocast_fast_decode_stays_close_to_the_transformers_forward(
        repeats: int, monkeypatch) -> None:
    """Under autocast the snapshot holds bf16 matmul weights (cast once, as autocast would
    cast them at every call); prefill and a decode step agree with transformers', with
    the row cache and (repeated prompts) the group-shared prompt cache."""
    from openrft.fast import llama_decode

    monkeypatch.setattr(llama_decode, "SHARED_PROMPT_MIN_TOKENS", 0)
    model = ARCHITECTURES["llama_gqa_tied"]()
    ids, mask = (t.repeat_interleave(repeats, 0) for t in left_padded_batch())
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast_forward, reference_forward = fast_decode_for(model), TransformersForward(model)
        assert fast_forward.blocks[0].qkv.weight.dtype == torch.bfloat16
        for logits in ([fast_forward.prefill(ids, mask, positions, 4),
                        reference_forward.prefill(ids, mask, positions, 4)],
                       [fast_forward.step(ids[:, -1], positions[:, -1] + 1),
                        reference_forward.step(ids[:, -1], positions[:, -1] + 1)]):
            assert logits[0].dtype == logits[1].dtype
            torch.testing.assert_close(logits[0].float(), logits[1].float(), atol=2e-2, rtol=0)
        shared = isinstance(fast_forward.caches[0], SharedPromptCache)
        assert shared == (repeats > 1)
    assert fast_decode_for(model).blocks[0].qkv.weight.dtype == torch.float32  # autocast off


def test_the_lean_forward_is_for_cpu_models_only() -> None:
    """It was written and measured for the CPU; on a GPU a LoRA checkpoint under bf16 mixed
    dtypes in it (seen on an H100), so any other device gets the model's own forward."""
    model = build_model(LlamaConfig, LlamaForCausalLM)
    assert fast_decode_for(model) is not None
    assert fast_decode_for(model.to("meta")) is None


@pytest.mark.parametrize("build", [
    lambda: build_model(MistralConfig, MistralForCausalLM, sliding_window=16,
                        num_key_value_heads=2),
    lambda: build_model(LlamaConfig, LlamaForCausalLM, mlp_bias=True),
    lambda: GPT2LMHeadModel(GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=4)).eval(),
], ids=["sliding_window", "mlp_bias", "gpt2"])
def test_unsupported_models_fall_back_to_their_own_forward(build) -> None:
    """The fast path decodes them with their own modules, the KV cache preallocated:
    the same tokens and log-probs as the plain forward."""
    model = build()
    assert fast_decode_for(model) is None
    decoder, plain = _decode(model, True, max_tokens=5), _decode(model, False, max_tokens=5)
    assert isinstance(decoder.forward, PreallocatingForward)
    assert decoder.output.lengths.tolist() == [5, 5, 5, 5]
    assert torch.equal(decoder.output.tokens, plain.output.tokens)
    torch.testing.assert_close(decoder.output.logprobs, plain.output.logprobs,
                               atol=1e-6, rtol=0)


def test_preallocated_layer_grows_past_capacity_and_matches_concatenation() -> None:
    generator = torch.Generator().manual_seed(0)
    chunks = [torch.randn(2, 3, n, 4, generator=generator) for n in (5, 1, 1, 6)]
    grown = PreallocatedLayer(chunks[0], chunks[0] * 2, capacity=6)
    plain = DynamicLayer()
    plain.update(chunks[0], chunks[0] * 2)
    for chunk in chunks[1:]:
        keys, values = grown.update(chunk, chunk * 2)
        expected_keys, expected_values = plain.update(chunk, chunk * 2)
        assert torch.equal(keys, expected_keys) and torch.equal(values, expected_values)
    assert grown.get_seq_length() == 13


def test_prepacked_linears_compute_the_linear_layer() -> None:
    """On this CPU the decode's matmuls run on weights prepacked for oneDNN (x86 torch
    builds have it); with or without, a Linear is F.linear up to summation order."""
    from openrft.fast.llama_decode import Linear
    from openrft.fast.probes import onednn_linear as _onednn_linear

    generator = torch.Generator().manual_seed(3)
    weight, bias = torch.randn(48, 32, generator=generator), torch.randn(48, generator=generator)
    x = torch.randn(5, 1, 32, generator=generator)
    linear = Linear(weight, bias)
    linear.pack(rows=5)
    assert (linear.packed is not None) == _onednn_linear()
    if torch.backends.mkldnn.is_available():  # the probe must not fail where oneDNN exists
        assert linear.packed is not None
    torch.testing.assert_close(linear(x), torch.nn.functional.linear(x, weight, bias),
                               rtol=1e-5, atol=1e-5)
    assert linear(x[:2]).shape == (2, 1, 48)  # any row count, not only the packed one
    decoder = _decode(ARCHITECTURES["llama"](), True)
    assert all((lin.packed is not None) == _onednn_linear()
               for block in decoder.forward.blocks for lin in block.linears())


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_a_group_shared_prompt_cache_decodes_as_the_transformers_forward(
        name: str, monkeypatch) -> None:
    """With the prompt cached once per group (forced here for short prompts), the split
    attention merged by log-sum-exp samples exactly what transformers samples: left
    padding, grouped-query heads and Qwen3's q/k norms included."""
    from openrft.fast import llama_decode

    monkeypatch.setattr(llama_decode, "SHARED_PROMPT_MIN_TOKENS", 0)
    model = ARCHITECTURES[name]()
    fast, reference = _decode(model, True, repeats=3), _decode(model, False, repeats=3)
    assert all(isinstance(cache, SharedPromptCache)
               for cache in fast.forward.caches)
    assert torch.equal(fast.output.tokens, reference.output.tokens)
    torch.testing.assert_close(fast.output.logprobs, reference.output.logprobs,
                               atol=1e-5, rtol=0)


def test_rows_share_a_prompt_cache_only_in_whole_groups() -> None:
    assert grouped_repeats(torch.tensor([2, 2, 0, 0, 1, 1]), 6) == 2  # any prompt order
    assert grouped_repeats(torch.tensor([0, 1, 0, 1]), 4) == 1  # interleaved
    assert grouped_repeats(torch.tensor([0, 0, 0, 1, 1, 2]), 6) == 1  # unequal groups
    assert grouped_repeats(torch.tensor([0, 0, 1, 1, 0, 0]), 6) == 1  # a prompt twice
    assert grouped_repeats(None, 4) == 1


def test_attention_with_log_sum_exp_from_plain_ops_matches_the_cpu_kernel() -> None:
    """The non-CPU path of the shared-prompt attention against the CPU flash kernel and
    against softmax attention written out (padding bias included)."""
    generator = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(3, 2, n, 8, generator=generator) for n in (5, 7, 7))
    bias = torch.zeros(3, 1, 1, 7)
    bias[1, ..., :3] = float("-inf")
    scores = q @ k.transpose(-1, -2) * 0.3 + bias
    expected = (torch.softmax(scores, -1) @ v, torch.logsumexp(scores, -1))
    for got in (_attention_with_lse(q, k, v, bias, 0.3),
                plain_attention_with_lse(q, k, v, bias, 0.3)):
        torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got[1], expected[1], rtol=1e-5, atol=1e-5)
