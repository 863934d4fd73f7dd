"""Episodes in the loss: tool-output tokens carry no gradient; discarded rollouts no signal."""

from __future__ import annotations

import math

import pytest
import torch

from openrft.rl.advantages import group_advantages, kept_group_advantages
from openrft.rl.logprobs import completion_logprobs, pack_samples
from openrft.rl.losses import BatchSizes, policy_loss
from openrft.rollout.engine import Sample

MASK = [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]  # model, model, tool x3, model, model


def episode_batch(tokenizer):
    prompt = tokenizer("<|user|>two plus two<|eos|><|assistant|>",
                       add_special_tokens=False)["input_ids"]
    completion = tokenizer("four<|eos|><|user|>calc<|eos|><|assistant|>4<|eos|>",
                           add_special_tokens=False)["input_ids"]
    completion = completion[:7]
    episode = Sample(0, "4", prompt_ids=prompt, completion_ids=completion,
                     completion_mask=list(MASK))
    plain = Sample(0, "x", prompt_ids=prompt[:3], completion_ids=completion[:4])
    return pack_samples([episode, plain], pad_token_id=tokenizer.pad_token_id)


def test_pack_samples_uses_the_episode_mask(tiny_model):
    _, tokenizer = tiny_model
    batch = episode_batch(tokenizer)
    assert batch.completion_mask.tolist() == [MASK, [1.0] * 4 + [0.0] * 3]


def test_tool_tokens_get_exactly_zero_gradient_and_the_loss_is_the_hand_value(tiny_model):
    model, tokenizer = tiny_model
    batch = episode_batch(tokenizer).rows(slice(0, 1))
    logp, _ = completion_logprobs(model, batch)  # (1, 7)
    logp.retain_grad()
    # Old log-probs: 0.1 lower on the model's tokens (ratio e^0.1, inside the clip range)
    # and wildly different on tool tokens, which would dominate if they were not masked.
    shift = torch.tensor([[0.1, 0.1, -5.0, 3.0, -5.0, 0.1, 0.1]])
    old = logp.detach() - shift
    advantage = 0.7
    mask = batch.completion_mask
    sizes = BatchSizes(1, int(mask.sum()), 7)
    out = policy_loss(logp, old, None, torch.tensor([advantage]), mask, sizes, "dapo",
                      0.2, 0.28)
    out.loss.backward()
    # DAPO: -(1/4) * sum over the 4 model tokens of A * ratio, ratio = e^0.1 on each.
    assert out.loss.item() == pytest.approx(-advantage * math.exp(0.1), rel=1e-6)
    grad = logp.grad[0]
    assert grad[2:5].tolist() == [0.0, 0.0, 0.0]  # tool output: exactly no gradient
    expected = -advantage * math.exp(0.1) / 4  # d/dlogp of -A * exp(logp - old) / 4
    for position in (0, 1, 5, 6):
        assert grad[position].item() == pytest.approx(expected, rel=1e-5)
    assert out.active_tokens == 4 and out.clipped_tokens == 0


def test_grpo_aggregation_averages_over_model_tokens_only(tiny_model):
    model, tokenizer = tiny_model
    batch = episode_batch(tokenizer).rows(slice(0, 1))
    with torch.no_grad():
        logp, _ = completion_logprobs(model, batch)
    out = policy_loss(logp, logp, None, torch.tensor([2.0]), batch.completion_mask,
                      BatchSizes(1, 4, 7), "grpo")
    assert out.loss.item() == pytest.approx(-2.0)  # ratio 1: mean over 4 tokens of -A


def test_kept_advantages_leave_discarded_rollouts_out():
    rewards = torch.tensor([1.0, 0.0, 5.0, 0.5, 0.2, 0.4, 0.6, 0.8])
    kept = torch.tensor([True, True, False, True, True, True, True, True])
    advantages = kept_group_advantages(rewards, kept, 4)
    # group 1 without the 5.0: mean 0.5, unbiased std sqrt((0.25 + 0.25 + 0) / 2) = 0.5
    first = [0.5 / (0.5 + 1e-4), -0.5 / (0.5 + 1e-4), 0.0, 0.0]
    assert advantages[:4].tolist() == pytest.approx(first, abs=1e-6)
    assert advantages[4:].tolist() == pytest.approx(group_advantages(rewards, 4)[4:].tolist())
    every = torch.ones(8, dtype=torch.bool)
    for scale in ("group", "batch", "none"):
        assert torch.allclose(kept_group_advantages(rewards, every, 4, scale),
                              group_advantages(rewards, 4, scale))


def test_a_group_with_one_kept_rollout_has_no_signal():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    kept = torch.tensor([True, False, False, False])
    assert kept_group_advantages(rewards, kept, 4).tolist() == [0.0] * 4
    assert kept_group_advantages(rewards, kept, 4, "batch").tolist() == [0.0] * 4
