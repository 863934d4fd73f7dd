"""The loss variants against hand-computed numbers and a plain-Python loop oracle."""

from __future__ import annotations

import math
import random

import pytest
import torch

from openrft.rl.losses import (
    BatchSizes,
    clipped_surrogate,
    k3_kl,
    masked_mean,
    masked_sum,
    policy_loss,
)

# Two sequences, T = 3; the second has one padding token.
# ratios: seq0 [1.5, 0.7, 1.0] with A = +1; seq1 [1.3, 0.5, pad] with A = -2; eps 0.2.
# Per-token loss -min(rA, clip(r, 0.8, 1.2) A):
#   seq0: 1.5 -> -min(1.5, 1.2) = -1.2 (clipped) ; 0.7 -> -min(0.7, 0.8) = -0.7 ; 1.0 -> -1.0
#   seq1: 1.3 -> -min(-2.6, -2.4) = 2.6 (unclipped: pessimistic) ; 0.5 -> -min(-1.0, -1.6) = 1.6
#         (clipped)
RATIOS = [[1.5, 0.7, 1.0], [1.3, 0.5, 1.0]]
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
ADV = torch.tensor([1.0, -2.0], dtype=torch.float64)
LOGP = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -1.5, -9.0]], dtype=torch.float64)
OLD = LOGP - torch.log(torch.tensor(RATIOS, dtype=torch.float64))
SIZES = BatchSizes(num_sequences=2, num_tokens=5, max_completion_length=4)


def test_masked_helpers():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert masked_sum(values, mask).item() == 3.0
    assert masked_mean(values, mask).item() == 1.5
    assert masked_mean(values, mask, dim=1).tolist() == [1.5, 0.0]  # empty row -> 0, not NaN


def test_clipped_surrogate_by_hand():
    per_token, clipped = clipped_surrogate(LOGP, OLD, ADV, 0.2, 0.2)
    assert per_token[0].tolist() == pytest.approx([-1.2, -0.7, -1.0])
    assert per_token[1, :2].tolist() == pytest.approx([2.6, 1.6])
    assert clipped[0].tolist() == [True, False, False]
    assert clipped[1, :2].tolist() == [False, True]


def test_asymmetric_clip_uses_eps_high_above_one():
    # ratio 1.5, A = +1: with eps_high 0.28 the cap is 1.28, not 1.2.
    per_token, _ = clipped_surrogate(LOGP, OLD, ADV, 0.2, 0.28)
    assert per_token[0, 0].item() == pytest.approx(-1.28)
    # ratio 0.5 with A < 0 still clips at 1 - eps_low = 0.8 -> 1.6
    assert per_token[1, 1].item() == pytest.approx(1.6)


@pytest.mark.parametrize(
    ("loss_type", "expected"),
    [
        # grpo: seq means -2.9/3 and 4.2/2, averaged
        ("grpo", (-2.9 / 3 + 4.2 / 2) / 2),
        # dr_grpo: token sum 1.3 over 2 sequences * max length 4
        ("dr_grpo", 1.3 / 8),
        # dapo: token sum 1.3 over 5 active tokens
        ("dapo", 1.3 / 5),
    ],
)
def test_loss_variants_by_hand(loss_type, expected):
    out = policy_loss(LOGP, OLD, None, ADV, MASK, SIZES, loss_type, 0.2, 0.2)
    assert out.loss.item() == pytest.approx(expected)
    assert out.clipped_tokens / out.active_tokens == pytest.approx(2 / 5)
    assert out.kl_sum == 0.0


def test_padding_values_do_not_matter():
    garbage = LOGP.clone()
    garbage[1, 2] = 50.0  # the padded position
    for loss_type in ("grpo", "dr_grpo", "dapo"):
        a = policy_loss(LOGP, OLD, None, ADV, MASK, SIZES, loss_type).loss
        b = policy_loss(garbage, OLD, None, ADV, MASK, SIZES, loss_type).loss
        assert a.item() == pytest.approx(b.item())


def test_k3_kl_by_hand_and_zero_when_equal():
    assert k3_kl(torch.tensor([-1.0]), torch.tensor([-2.0])).item() == pytest.approx(math.exp(-1))
    logp = torch.randn(3, 4)
    assert torch.equal(k3_kl(logp, logp.clone()), torch.zeros(3, 4))


def test_kl_term_adds_beta_times_kl():
    ref = LOGP - 1.0  # log_ratio = -1 on every token: k3 = e^-1
    out = policy_loss(LOGP, OLD, ref, ADV, MASK, SIZES, "dapo", 0.2, 0.2, beta=0.5)
    assert out.loss.item() == pytest.approx(1.3 / 5 + 0.5 * math.exp(-1))
    assert out.kl_sum / out.active_tokens == pytest.approx(math.exp(-1))


def test_gradient_sign_follows_advantage_on_policy():
    logp = LOGP.clone().requires_grad_(True)
    out = policy_loss(logp, LOGP.clone(), None, ADV, MASK, SIZES, "dapo")
    out.loss.backward()
    # ratio 1: d loss / d logp = -A / num_tokens on active tokens, 0 on padding
    assert logp.grad[0].tolist() == pytest.approx([-1 / 5] * 3)
    assert logp.grad[1].tolist() == pytest.approx([2 / 5, 2 / 5, 0.0])


def test_clipped_tokens_get_no_gradient():
    logp = LOGP.clone().requires_grad_(True)
    policy_loss(logp, OLD, None, ADV, MASK, SIZES, "dapo").loss.backward()
    assert logp.grad[0, 0].item() == 0.0  # ratio 1.5 > 1.2 with A > 0
    assert logp.grad[1, 1].item() == 0.0  # ratio 0.5 < 0.8 with A < 0
    assert logp.grad[0, 1].item() < 0  # unclipped, A > 0


def _oracle(logp, old, ref, adv, mask, loss_type, el, eh, beta, max_len):
    """Plain-Python loop implementation of the three losses (the definition, token by token)."""
    n_tokens = sum(sum(row) for row in mask)
    seq_terms, total = [], 0.0
    for i in range(len(logp)):
        row_sum, row_count = 0.0, 0
        for t in range(len(logp[i])):
            if not mask[i][t]:
                continue
            ratio = math.exp(logp[i][t] - old[i][t])
            term = -min(ratio * adv[i], min(max(ratio, 1 - el), 1 + eh) * adv[i])
            if ref is not None:
                d = ref[i][t] - logp[i][t]
                term += beta * (math.exp(d) - d - 1)
            row_sum += term
            row_count += 1
        seq_terms.append(row_sum / max(row_count, 1))
        total += row_sum
    if loss_type == "grpo":
        return sum(seq_terms) / len(logp)
    if loss_type == "dr_grpo":
        return total / (len(logp) * max_len)
    return total / n_tokens


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_matches_loop_oracle(loss_type, seed):
    rng = random.Random(seed)
    n, t = 4, 6
    logp = [[rng.uniform(-3, 0) for _ in range(t)] for _ in range(n)]
    old = [[x + rng.uniform(-0.4, 0.4) for x in row] for row in logp]
    ref = [[x + rng.uniform(-0.3, 0.3) for x in row] for row in logp]
    adv = [rng.uniform(-2, 2) for _ in range(n)]
    lengths = [rng.randint(1, t) for _ in range(n)]
    mask = [[1.0 if j < length else 0.0 for j in range(t)] for length in lengths]
    sizes = BatchSizes(n, int(sum(lengths)), 8)
    out = policy_loss(
        *(torch.tensor(x, dtype=torch.float64) for x in (logp, old, ref, adv, mask)),
        sizes, loss_type, 0.2, 0.28, beta=0.1,
    )
    expected = _oracle(logp, old, ref, adv, mask, loss_type, 0.2, 0.28, 0.1, 8)
    assert out.loss.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_micro_batches_add_up_to_the_full_batch_loss(loss_type):
    full = policy_loss(LOGP, OLD, None, ADV, MASK, SIZES, loss_type).loss
    parts = [
        policy_loss(LOGP[i : i + 1], OLD[i : i + 1], None, ADV[i : i + 1], MASK[i : i + 1],
                    SIZES, loss_type).loss
        for i in range(2)
    ]
    assert (parts[0] + parts[1]).item() == pytest.approx(full.item())
