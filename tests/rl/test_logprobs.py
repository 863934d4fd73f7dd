"""completion_logprobs against a full forward pass read position by position."""

from __future__ import annotations

import pytest
import torch

from openrft.rl.logprobs import (
    SelectedLogProbs,
    completion_logprobs,
    pack_samples,
    probs_into,
    reference_logprobs,
)
from openrft.rollout.engine import Sample


def _samples() -> list[Sample]:
    return [
        Sample(prompt_index=0, output_text="", prompt_ids=[1, 5, 9, 12], completion_ids=[30, 31]),
        Sample(prompt_index=1, output_text="", prompt_ids=[1, 7], completion_ids=[40, 41, 42]),
        Sample(prompt_index=1, output_text="", prompt_ids=[1, 7], completion_ids=[]),
    ]


def test_packing_layout():
    batch = pack_samples(_samples(), pad_token_id=0)
    assert batch.input_ids.tolist() == [
        [1, 5, 9, 12, 30, 31, 0],
        [0, 0, 1, 7, 40, 41, 42],
        [0, 0, 1, 7, 0, 0, 0],
    ]
    assert batch.completion_mask.tolist() == [[1, 1, 0], [1, 1, 1], [0, 0, 0]]
    assert batch.attention_mask[1].tolist() == [0, 0, 1, 1, 1, 1, 1]


def _oracle(model, prompt: list[int], completion: list[int], t: int, temp: float):
    """(log p(completion[t]), entropy -sum p log p) from an unpadded full forward pass."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0] / temp  # (L, V)
    position = len(prompt) + t - 1  # logits at position i predict token i + 1
    log_probs = torch.log_softmax(logits[position].double(), dim=-1)
    entropy = -sum(p * lp for p, lp in zip(log_probs.exp().tolist(), log_probs.tolist(),
                                           strict=True))
    return log_probs[completion[t]].item(), entropy


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_matches_unpadded_full_forward(tiny_model, temperature):
    model, _ = tiny_model
    samples = _samples()
    batch = pack_samples(samples, pad_token_id=0)
    with torch.no_grad():
        logp, entropy = completion_logprobs(model, batch, temperature, with_entropy=True)
    assert logp.shape == (3, 3) and entropy is not None
    for row, sample in enumerate(samples):
        for t in range(len(sample.completion_ids)):
            expected, expected_entropy = _oracle(
                model, sample.prompt_ids, sample.completion_ids, t, temperature
            )
            assert logp[row, t].item() == pytest.approx(expected, abs=1e-4)
            assert entropy[row, t].item() == pytest.approx(expected_entropy, abs=1e-4)


def test_gradients_flow_to_the_model(tiny_model):
    model, _ = tiny_model
    batch = pack_samples(_samples(), pad_token_id=0)
    logp, _ = completion_logprobs(model, batch)
    (logp * batch.completion_mask).sum().backward()
    assert model.lm_head.weight.grad is not None
    assert model.lm_head.weight.grad.abs().sum() > 0


def test_reference_is_base_model_under_lora(tiny_model):
    from peft import LoraConfig, get_peft_model

    model, _ = tiny_model
    batch = pack_samples(_samples(), pad_token_id=0)
    with torch.no_grad():
        base_logp, _ = completion_logprobs(model, batch)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:  # make the adapter change the output
            torch.nn.init.normal_(param, std=0.5)
    with torch.no_grad():
        adapted, _ = completion_logprobs(peft_model, batch)
    ref = reference_logprobs(peft_model, None, batch, 1.0)
    mask = batch.completion_mask.bool()
    assert torch.allclose(ref[mask], base_logp[mask], atol=1e-5)
    assert not torch.allclose(adapted[mask], base_logp[mask], atol=1e-3)


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
