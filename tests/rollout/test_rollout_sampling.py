"""Token choice rules on hand-made logits."""

from __future__ import annotations

import math

import torch

from openrft.rollout.sampling import choose_tokens, sample_from_probs, top_p_filter


def _logits(probs: list[list[float]]) -> torch.Tensor:
    return torch.tensor(probs).log()


def test_top_p_keeps_smallest_set_reaching_p() -> None:
    logits = _logits([[0.1, 0.5, 0.3, 0.1], [0.25, 0.25, 0.25, 0.25]])
    kept = top_p_filter(logits, 0.7).isfinite()
    # row 0: 0.5 + 0.3 = 0.8 >= 0.7 -> tokens 1, 2; row 1: three quarters reach 0.7
    assert kept[0].tolist() == [False, True, True, False]
    assert kept[1].sum() == 3
    assert top_p_filter(logits, 0.4).isfinite()[0].tolist() == [False, True, False, False]
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_temperature_zero_is_argmax() -> None:
    logits = _logits([[0.1, 0.5, 0.4], [0.6, 0.2, 0.2]])
    assert choose_tokens(logits, 0.0, 1.0).tolist() == [1, 0]


def test_sampling_frequencies_follow_tempered_softmax() -> None:
    probs = [0.5, 0.3, 0.2]
    logits = _logits([probs] * 20000)
    generator = torch.Generator().manual_seed(0)
    draws = choose_tokens(logits, 2.0, 1.0, generator)
    # temperature 2: p_i ∝ sqrt(p_i)
    roots = [math.sqrt(p) for p in probs]
    expected = [r / sum(roots) for r in roots]
    observed = torch.bincount(draws, minlength=3).float() / len(draws)
    assert torch.allclose(observed, torch.tensor(expected), atol=0.015)
    nucleus = choose_tokens(logits, 1.0, 0.6, generator)
    assert set(nucleus.tolist()) == {0, 1}  # 0.5 + 0.3 reach 0.6; token 2 never drawn


def test_zero_probability_tokens_are_never_drawn() -> None:
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5, 0.0]] * 5000)
    draws = sample_from_probs(probs, torch.Generator().manual_seed(1))
    assert set(draws.tolist()) == {1, 3}
    assert abs((draws == 1).float().mean().item() - 0.5) < 0.03
    one_hot = torch.tensor([[0.0, 0.0, 1.0]] * 100)
    assert sample_from_probs(one_hot, None).tolist() == [2] * 100
