"""completion_logprobs against a full forward pass read position by position."""

from __future__ import annotations

import pytest
import torch

from openrft.rl.logprobs import completion_logprobs, pack_samples, reference_logprobs
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


def test_plain_selected_logprobs_and_entropy_by_hand():
    """log_softmax by hand on two tokens: logits (0, ln 3) give p = (1/4, 3/4)."""
    from openrft.rl.logprobs import selected_logprobs

    logits = torch.tensor([[[0.0, float(torch.log(torch.tensor(3.0)))]]], requires_grad=True)
    logp, entropy = selected_logprobs(logits, torch.tensor([[1]]), True)
    assert float(logp.detach()) == pytest.approx(float(torch.log(torch.tensor(0.75))))
    assert float(entropy) == pytest.approx(-(0.25 * -1.3862944 + 0.75 * -0.2876821), abs=1e-6)
    logp.sum().backward()  # d log p1 / d logits = onehot - p
    torch.testing.assert_close(logits.grad, torch.tensor([[[-0.25, 0.25]]]))
    assert not entropy.requires_grad

