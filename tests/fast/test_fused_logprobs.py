"""The fused log-prob backward against plain autograd (rl.logprobs.selected_logprobs)."""

from __future__ import annotations

import pytest
import torch

from openrft.fast.fused_logprobs import (
    SelectedLogProbs,
    fused_completion_logprobs,
    probs_into,
)
from openrft.rl.logprobs import TokenBatch, completion_logprobs


def test_fused_and_plain_completion_logprobs_agree_in_value_and_gradient(tiny_model):
    """The whole update forward on the tiny model: log-probs, entropy and every weight's
    gradient through the fused head equal the plain autograd ones."""
    model, _ = tiny_model
    generator = torch.Generator().manual_seed(4)
    ids = torch.randint(3, 200, (3, 9), generator=generator)
    attention = torch.ones_like(ids)
    attention[1, :2] = 0
    completion = torch.ones(3, 4)
    completion[2, 3] = 0
    batch = TokenBatch(ids, attention, completion)
    weights = torch.randn(3, 4, generator=generator)
    results = []
    for forward in (completion_logprobs, fused_completion_logprobs):
        model.zero_grad(set_to_none=True)
        logp, entropy = forward(model, batch, 0.7, True)
        (logp * weights * completion).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((logp.detach(), entropy, grads))
    (plain_logp, plain_entropy, plain_grads), (logp, entropy, grads) = results
    torch.testing.assert_close(logp, plain_logp, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(entropy, plain_entropy, rtol=1e-5, atol=1e-5)
    assert grads.keys() == plain_grads.keys() and grads
    for name, grad in plain_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4,
                                   atol=1e-6 * float(grad.abs().max()), msg=name)


def test_fused_selected_logprobs_match_autograd_log_softmax_in_value_and_gradient():
    """The hand-written backward against autograd's log_softmax + gather (float64)."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 11, dtype=torch.float64, generator=generator) * 3
    targets = torch.randint(0, 11, (3, 4), generator=generator)
    weights = torch.randn(3, 4, dtype=torch.float64, generator=generator)

    fused_input = logits.clone().requires_grad_()
    logp, entropy = SelectedLogProbs.apply(fused_input, targets, True)
    (logp * weights).sum().backward()

    plain_input = logits.clone().requires_grad_()
    expected = torch.log_softmax(plain_input, -1).gather(-1, targets[..., None])[..., 0]
    (expected * weights).sum().backward()

    torch.testing.assert_close(logp, expected)
    probs = torch.softmax(logits, -1)
    torch.testing.assert_close(entropy, -(probs * probs.log()).sum(-1))
    torch.testing.assert_close(fused_input.grad, plain_input.grad)
    # finite differences of the weighted log-prob sum, one logit at a time
    for n, c, v in [(0, 0, 3), (1, 2, 7), (2, 3, 0)]:
        step = torch.zeros_like(logits)
        step[n, c, v] = 1e-6
        objective = [(SelectedLogProbs.apply(logits + sign * step, targets, False)[0] * weights
                      ).sum() for sign in (1, -1)]
        numeric = (objective[0] - objective[1]) / 2e-6
        assert float(numeric) == pytest.approx(float(fused_input.grad[n, c, v]), abs=1e-6)


def test_fused_logprob_backward_refuses_a_second_pass() -> None:
    """Its buffer becomes the gradient, so a retained graph cannot be reused."""
    logits = torch.randn(2, 3, 5, requires_grad=True)
    logp = SelectedLogProbs.apply(logits, torch.zeros(2, 3, dtype=torch.long), False)[0]
    logp.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backpropagates once"):
        logp.sum().backward()


@pytest.mark.parametrize("in_place", [False, True])
def test_probs_into_blocks_match_whole_tensor_softmax(in_place: bool) -> None:
    """Several cache-sized blocks (one row each here, the last one too), a strided view as
    input (a tape's logits cut to fewer columns than it has room for), and out=input."""
    generator = torch.Generator().manual_seed(1)
    room = torch.randn(3, 320, 1700, generator=generator) * 4
    logits = room[:, :300]  # 300 * 1700 elements per row: one row per block
    targets = torch.randint(0, 1700, (3, 300), generator=generator)
    exact = logits.double()
    expected_logp = torch.log_softmax(exact, -1).gather(-1, targets[..., None])[..., 0]
    expected_probs = torch.softmax(exact, -1)
    expected_entropy = -(expected_probs * torch.log_softmax(exact, -1)).sum(-1)

    out = logits if in_place else torch.empty_like(logits)
    logp, entropy = probs_into(out, logits, targets, with_entropy=True)

    torch.testing.assert_close(logp.double(), expected_logp, rtol=0, atol=1e-5)
    torch.testing.assert_close(entropy.double(), expected_entropy, rtol=0, atol=1e-4)
    torch.testing.assert_close(out.double(), expected_probs, rtol=1e-5, atol=1e-7)
    assert probs_into(torch.empty_like(room), room.clone(), targets.repeat(1, 2)[:, :320],
                      with_entropy=False)[1].numel() == 0
