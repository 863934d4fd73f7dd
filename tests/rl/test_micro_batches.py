"""Token-bounded micro-batches (`expert.micro_batch_tokens`): how many rows a pass takes,
and that the accumulated gradient is the one pass's gradient up to float summation order
(episode rows with masked tool tokens, rows of different lengths, both loss types)."""

from __future__ import annotations

import pytest
import torch

from openrft.rl.config import config_from_dict, resolve
from openrft.rl.logprobs import completion_logprobs, pack_samples
from openrft.rl.losses import BatchSizes
from openrft.rl.step import Policy
from openrft.rl.update import accumulate_gradients, micro_batch_rows
from openrft.rollout.engine import Sample

GRADER = {"type": "string_check", "name": "g", "input": "{{ sample.output_text }}",
          "reference": "x", "operation": "eq"}


def config(**expert):
    return resolve(config_from_dict({"model": "m", "training_file": "t", "grader": GRADER,
                                     "seed": 0, "expert": expert}), n_train_rows=8)


def episode_samples(tokenizer, rows: int) -> list[Sample]:
    """Episodes of different lengths: model turn, tool turn (mask 0), model turn."""
    samples = []
    for row in range(rows):
        prompt = tokenizer(f"<|user|>add {row} and {row * 7}<|eos|><|assistant|>",
                           add_special_tokens=False)["input_ids"]
        first = tokenizer("the sum is" + " large" * row, add_special_tokens=False)["input_ids"]
        tool = tokenizer("<|eos|><|user|>calc says 12<|eos|><|assistant|>",
                         add_special_tokens=False)["input_ids"]
        last = tokenizer("twelve" + " yes" * (rows - row), add_special_tokens=False)["input_ids"]
        samples.append(Sample(row, "", prompt_ids=prompt, completion_ids=first + tool + last,
                              completion_mask=[1.0] * len(first) + [0.0] * len(tool)
                              + [1.0] * len(last)))
    return samples


def test_rows_per_micro_batch_follow_grad_accum_steps_and_the_token_budget(tiny_model):
    _, tokenizer = tiny_model
    batch = pack_samples(episode_samples(tokenizer, 6), tokenizer.pad_token_id)
    width = batch.input_ids.shape[1]
    cpu, gpu = torch.device("cpu"), torch.device("cuda")

    def rows(device=cpu, **expert):
        return micro_batch_rows(batch, config(**expert), device)

    assert rows(micro_batch_tokens=None) == 6
    assert rows(micro_batch_tokens=None, grad_accum_steps=4) == 2
    assert rows(micro_batch_tokens=2 * width + 1) == 2
    assert rows(micro_batch_tokens=1) == 1  # at least one row
    assert rows(micro_batch_tokens=10**6, grad_accum_steps=3) == 2
    # auto: 1024 tokens on the CPU, no limit on a GPU
    assert config().micro_batch_tokens == "auto"
    assert rows() == min(6, 1024 // width) and rows(gpu) == 6


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_token_bounded_micro_batches_accumulate_the_unsplit_gradient(tiny_model, loss_type):
    model, tokenizer = tiny_model
    batch = pack_samples(episode_samples(tokenizer, 6), tokenizer.pad_token_id)
    advantages = torch.tensor([1.0, -0.5, 0.25, -1.0, 0.75, -0.5])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    policy = Policy(model, None, optimizer, torch.optim.lr_scheduler.ConstantLR(optimizer),
                    tokenizer.pad_token_id)
    sizes = BatchSizes(len(batch), int(batch.completion_mask.sum()), 64)
    # the old log-probs differ from the current ones, so ratios and clipping are live
    with torch.no_grad():
        old = completion_logprobs(model, batch)[0] + 0.1 * torch.randn(
            batch.completion_mask.shape, generator=torch.Generator().manual_seed(0))
    model.train()
    results, passes = {}, {}
    for budget in (None, 2 * batch.input_ids.shape[1]):  # one pass; three passes of 2 rows
        cfg = config(micro_batch_tokens=budget, loss_type=loss_type)
        rows: list[int] = []
        hook = model.get_input_embeddings().register_forward_hook(
            lambda module, args, output, rows=rows: rows.append(args[0].shape[0]))
        totals = accumulate_gradients(policy, cfg, batch, advantages, old, None, sizes, True,
                                      completion_logprobs)
        hook.remove()
        passes[budget] = rows
        grads = [p.grad.clone() for p in model.parameters()]
        optimizer.zero_grad(set_to_none=True)
        results[budget] = (totals, grads)
    assert list(passes.values()) == [[6], [2, 2, 2]]
    (whole, whole_grads), (split, split_grads) = results.values()
    assert split.loss == pytest.approx(whole.loss, rel=1e-5)
    assert split.entropy == pytest.approx(whole.entropy, rel=1e-5)
    assert split.clipped == whole.clipped > 0
    assert any(g.abs().sum() > 0 for g in whole_grads)
    for a, b in zip(whole_grads, split_grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7)
