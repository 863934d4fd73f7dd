"""group_advantages / zero_variance_groups against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from openrft.rl.advantages import group_advantages, zero_variance_groups

# Two prompts, G = 4: group 0 rewards 1,0,0,1 (mean 0.5); group 1 all 0.5 (no signal).
REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5], dtype=torch.float64)


def test_group_scaling_by_hand():
    # group 0: deviations +-0.5, unbiased std = sqrt(4 * 0.25 / 3) = sqrt(1/3) = 0.57735
    # -> +-0.5 / 0.57735 = +-0.866025; group 1: all deviations 0 -> 0.
    adv = group_advantages(REWARDS, group_size=4, scale="group", eps=0.0)
    a = 0.5 / math.sqrt(1 / 3)
    expected = [a, -a, -a, a, 0.0, 0.0, 0.0, 0.0]
    assert adv.tolist() == pytest.approx(expected, abs=1e-9)


def test_batch_scaling_by_hand():
    # batch mean 0.5; four deviations of 0.5, four of 0 -> unbiased var = 1.0 / 7.
    adv = group_advantages(REWARDS, group_size=4, scale="batch", eps=0.0)
    a = 0.5 / math.sqrt(1 / 7)
    assert adv.tolist() == pytest.approx([a, -a, -a, a, 0, 0, 0, 0], abs=1e-9)


def test_no_scaling_only_centres():
    adv = group_advantages(REWARDS, group_size=4, scale="none")
    assert adv.tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0])


def test_zero_variance_group_gets_exactly_zero_even_with_eps():
    rewards = torch.tensor([0.3, 0.3, 0.3, 1.0, 0.0, 0.0])
    adv = group_advantages(rewards, group_size=3, scale="group", eps=1e-4)
    assert adv[:3].tolist() == [0.0, 0.0, 0.0]
    # Group 1 (1, 0, 0): mean 1/3; unbiased std = sqrt(((2/3)^2 + 2 (1/3)^2) / 2) = 0.57735
    assert adv[3].item() == pytest.approx((2 / 3) / (math.sqrt(1 / 3) + 1e-4), rel=1e-6)
    assert zero_variance_groups(rewards, 3).tolist() == [True, False]


def test_zero_variance_detection_per_group():
    assert zero_variance_groups(REWARDS, 4).tolist() == [False, True]
    assert zero_variance_groups(torch.zeros(6), 2).tolist() == [True, True, True]


def test_advantages_sum_to_zero_within_each_group():
    rewards = torch.rand(12, generator=torch.Generator().manual_seed(0))
    adv = group_advantages(rewards, group_size=3)
    assert adv.view(4, 3).sum(dim=1).abs().max().item() < 1e-5
