"""The update's forward replayed from the rollout's tape against the ordinary forward.

The oracle is `completion_logprobs`, the plain update's forward through the transformers
modules under autograd: for every architecture the lean decode covers, with left
padding, rows that end early and a sampling temperature, the replayed log-probs,
entropies and every trainable weight's gradient must match it to float32 rounding.
"""

from __future__ import annotations

import pytest
import torch

from llama_family import ARCHITECTURES, left_padded_batch
from openrft.fast.forward_tape import BufferPool, TapeExpired
from openrft.fast.llama_decode import fast_decode_for
from openrft.fast.replay import keep_tape_rows, replay_supported, tape_logprobs
from openrft.rl.config import config_from_dict, resolve
from openrft.rl.logprobs import TokenBatch, completion_logprobs
from openrft.rollout.decode import BatchDecoder, DecodeSettings

TEMPERATURE = 0.7


def _rollout(model, rows: slice = slice(None), max_tokens: int = 6, seed: int = 11,
             pool: BufferPool | None = None, repeats: int = 1):
    """Decode the shared batch (rows `rows`, each repeated `repeats` times as GRPO does)
    with recording; eos is common enough that some rows end early. Returns (tape, prompt
    ids, prompt mask, tokens, lengths)."""
    ids, mask = left_padded_batch()
    ids, mask = ids[rows].repeat_interleave(repeats, 0), mask[rows].repeat_interleave(repeats, 0)
    settings = DecodeSettings(max_tokens=max_tokens, pad_id=0, eos_ids=list(range(2, 97, 6)),
                              generator=torch.Generator().manual_seed(seed))
    forward = fast_decode_for(model, record=True, pool=pool)
    decoder = BatchDecoder(model, ids, mask, settings, forward)
    for _ in decoder:
        pass
    return forward.tape.truncated(), ids, mask, decoder.output.tokens, decoder.output.lengths


def _token_batch(ids, mask, tokens, lengths) -> TokenBatch:
    """The trainer's layout: [left-padded prompt | completion | right padding]."""
    columns = int(lengths.max())
    completion_mask = (torch.arange(columns)[None] < lengths[:, None]).float()
    return TokenBatch(torch.cat([ids, tokens[:, :columns]], 1),
                      torch.cat([mask, completion_mask.long()], 1), completion_mask)


def _gradients(model, logp, batch, weights) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    (logp * weights * batch.completion_mask).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same_update(model, tapes, batch) -> None:
    weights = torch.randn(batch.completion_mask.shape, generator=torch.Generator().manual_seed(1))
    expected_logp, expected_entropy = completion_logprobs(model, batch, TEMPERATURE, True)
    expected = _gradients(model, expected_logp, batch, weights)
    replayed = tape_logprobs(model, tapes, batch, TEMPERATURE, True)
    assert replayed is not None
    logp, entropy = replayed
    got = _gradients(model, logp, batch, weights)
    mask = batch.completion_mask.bool()
    torch.testing.assert_close(logp[mask], expected_logp[mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(entropy[mask], expected_entropy[mask], rtol=1e-5, atol=1e-5)
    assert got.keys() == expected.keys() and expected
    for name, grad in expected.items():
        # float32 rounding: the replay recomputes norms and sums in another order
        scale = float(grad.abs().max())
        torch.testing.assert_close(got[name], grad, rtol=1e-4, atol=1e-5 * scale,
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("repeats", [1, 3])
def test_replayed_gradients_equal_the_ordinary_forward(name: str, repeats: int) -> None:
    """Distinct prompts, and each prompt repeated (run once in the replay)."""
    model = ARCHITECTURES[name]()
    tape, ids, mask, tokens, lengths = _rollout(model, repeats=repeats)
    assert lengths.min() < lengths.max()  # some rows ended early
    _assert_same_update(model.train(), [tape], _token_batch(ids, mask, tokens, lengths))


def test_a_single_sampled_token_replays_from_the_prompt_alone() -> None:
    model = ARCHITECTURES["qwen2_qkv_bias"]()
    tape, ids, mask, tokens, lengths = _rollout(model, max_tokens=1, repeats=2)
    assert tape.length == ids.shape[1]  # nothing was fed back
    _assert_same_update(model.train(), [tape], _token_batch(ids, mask, tokens, lengths))


def test_lora_adapters_get_the_ordinary_gradients_and_the_base_none() -> None:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(ARCHITECTURES["qwen2_qkv_bias"](), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj", "down_proj", "lm_head"]))
    with torch.no_grad():  # B starts at zero: make the adapters matter
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.2)
    model.eval()
    tape, ids, mask, tokens, lengths = _rollout(model)
    batch = _token_batch(ids, mask, tokens, lengths)
    _assert_same_update(model.train(), [tape], batch)


def test_a_pooled_tape_is_right_after_its_buffers_were_reused() -> None:
    """The second rollout writes into the first one's buffers (fewer tokens this time, so
    stale values lie past its end) and must still replay to the ordinary gradients."""
    model = ARCHITECTURES["llama"]()
    pool = BufferPool()
    first = _rollout(model, max_tokens=8, pool=pool)
    second = _rollout(model, max_tokens=5, seed=12, pool=pool)
    assert second[0].logits.untyped_storage().data_ptr() == (
        first[0].logits.untyped_storage().data_ptr())  # the same memory, reused
    _assert_same_update(model.train(), [second[0]], _token_batch(*second[1:]))


def test_chunked_rollouts_replay_in_row_order() -> None:
    model = ARCHITECTURES["llama"]()
    first = _rollout(model, slice(0, 2))
    second = _rollout(model, slice(2, 4))
    # one batch of both chunks, in the trainer's layout (prompts padded to the same width)
    ids, mask = left_padded_batch()
    tokens = torch.zeros(4, 6, dtype=torch.long)
    tokens[:2], tokens[2:] = first[3], second[3]
    lengths = torch.cat([first[4], second[4]])
    batch = _token_batch(ids, mask, tokens, lengths)
    _assert_same_update(model.train(), [first[0], second[0]], batch)


def test_tapes_of_other_completions_are_refused() -> None:
    model = ARCHITECTURES["llama"]()
    tape, ids, mask, tokens, lengths = _rollout(model)
    other = tokens.clone()
    other[0, 0] = (other[0, 0] + 1) % 97
    assert tape_logprobs(model, [tape], _token_batch(ids, mask, other, lengths), 1.0,
                         False) is None
    short = _rollout(model, slice(0, 2))[0]  # fewer rows than the batch
    assert tape_logprobs(model, [short], _token_batch(ids, mask, tokens, lengths), 1.0,
                         False) is None


def test_replay_only_for_plain_on_policy_updates() -> None:
    from peft import LoraConfig, get_peft_model

    model = ARCHITECTURES["llama"]()
    assert replay_supported(model, 1, 1, None)
    assert not replay_supported(model, 2, 1, None)  # weights change between iterations
    assert not replay_supported(model, 1, 2, None)  # micro-batches
    assert not replay_supported(model, 1, 1, torch.bfloat16)  # autocast
    dropout = get_peft_model(ARCHITECTURES["llama"](), LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["q_proj"]))
    assert not replay_supported(dropout, 1, 1, None)
    plain = get_peft_model(ARCHITECTURES["llama"](), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj"]))
    assert replay_supported(plain, 1, 1, None)


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_a_step_with_the_replayed_forward_equals_one_without(make_config, finetune) -> None:
    """Same seed, same samples: loss, gradient norm and entropy agree, whether the update
    ran its own forward or replayed the rollout's."""
    from openrft.graders.base import make_reward_fn
    from openrft.rl.policy_setup import build_policy, make_generation_params, make_rollout_engine
    from openrft.rl.step import StepContext, run_step

    metrics = {}
    for reuse in (True, False):
        config = config_from_dict(make_config(expert={
            "finetune": finetune, "reuse_rollout_forward": reuse, "max_tokens": 6}))
        cfg = resolve(config, n_train_rows=16, n_valid_rows=4)
        policy, tokenizer, _ = build_policy(cfg, None)
        reward_fn, _ = make_reward_fn(cfg.grader)
        ctx = StepContext(cfg, policy, make_rollout_engine(cfg, policy, tokenizer),
                          reward_fn, make_generation_params(cfg))
        items = [{"messages": [{"role": "user", "content": f"q{i}"}], "target": "an"}
                 for i in range(cfg.batch_size)]
        metrics[reuse] = run_step(ctx, 1, items, [i["messages"] for i in items]).metrics
    assert metrics[True]["forward_replayed"] and not metrics[False]["forward_replayed"]
    for key in ("loss", "grad_norm", "entropy", "train_reward_mean"):
        assert metrics[True][key] == pytest.approx(metrics[False][key], rel=1e-4, abs=1e-7), key
    assert metrics[True]["grad_norm"] > 0


def test_an_engine_records_each_chunk_in_its_own_buffers(tiny_model) -> None:
    """Chunked recorded rollouts (max_batch_rows) replay to the ordinary forward: no chunk
    overwrote another's tape, and the tapes follow the samples' row order."""
    from openrft.fast import FastPath
    from openrft.rl.logprobs import pack_samples
    from openrft.rollout.engine import GenerationParams
    from openrft.rollout.hf import HFRolloutEngine

    model, tokenizer = tiny_model
    path = FastPath(record=True)
    engine = HFRolloutEngine(model, tokenizer, max_batch_rows=3,
                             decode_forward=path.decode_forward)
    prompts = [[{"role": "user", "content": text}] for text in ("hi", "a longer question")]
    params = GenerationParams(max_tokens=5, seed=3)
    path.sample(engine, prompts, 4, params)  # fill the pools once: reuse is tested
    samples = path.sample(engine, prompts, 4, params)
    tapes = path._tapes
    assert tapes is not None and len(tapes) == 3  # 8 rows in chunks of 3
    batch = pack_samples(samples, tokenizer.pad_token_id)
    _assert_same_update(model.train(), tapes, batch)


def test_rotary_matches_transformers_rotary_in_value_and_gradient() -> None:
    """Against transformers' apply_rotary_pos_emb under autograd (float64), with cos and
    sin whose halves differ, so the backward must be the exact transpose."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    from openrft.fast.replay import Rotary

    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64, generator=generator)
    cos, sin = torch.randn(2, 2, 5, 8, dtype=torch.float64, generator=generator)
    upstream = torch.randn(2, 3, 5, 8, dtype=torch.float64, generator=generator)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = Rotary.apply(ours, cos, sin)
    expected = apply_rotary_pos_emb(theirs, theirs, cos, sin)[0]
    (out * upstream).sum().backward()
    (expected * upstream).sum().backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(ours.grad, theirs.grad)


def test_a_rollout_with_a_group_shared_prompt_cache_replays(monkeypatch) -> None:
    """The tape does not depend on how the decode caches the prompt."""
    from openrft.fast import llama_decode

    monkeypatch.setattr(llama_decode, "SHARED_PROMPT_MIN_TOKENS", 0)
    model = ARCHITECTURES["llama_gqa_tied"]()
    tape, ids, mask, tokens, lengths = _rollout(model, repeats=3)
    _assert_same_update(model.train(), [tape], _token_batch(ids, mask, tokens, lengths))


def test_a_tape_is_replayed_once() -> None:
    """The replay turns the tape's buffers into the gradient: a second replay (or cutting
    a used tape) raises instead of reading them."""
    model = ARCHITECTURES["llama"]()
    tape, ids, mask, tokens, lengths = _rollout(model)
    batch = _token_batch(ids, mask, tokens, lengths)
    assert tape_logprobs(model.train(), [tape], batch, 1.0, False) is not None
    with pytest.raises(TapeExpired, match="already used"):
        tape_logprobs(model, [tape], batch, 1.0, False)
    with pytest.raises(TapeExpired, match="already used"):
        keep_tape_rows([tape], torch.tensor([0, 1]))


def test_a_tape_dies_when_a_later_rollout_reuses_its_buffers() -> None:
    model = ARCHITECTURES["llama"]()
    pool = BufferPool()
    first = _rollout(model, pool=pool)
    _rollout(model, seed=12, pool=pool)  # writes into the first tape's buffers
    with pytest.raises(TapeExpired, match="reused"):
        tape_logprobs(model.train(), [first[0]], _token_batch(*first[1:]), 1.0, False)
