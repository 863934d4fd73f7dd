"""Per-token log-probs of sampled completions under the policy or the reference model.

Sequences are packed as `[left padding | prompt | completion | right padding]`, so every
completion starts at the same column P and the LM head only has to run on the C
positions that predict completion tokens (`logits_to_keep`): for a 400-token prompt and
64-token answer that skips ~85% of the (vocab-sized) output projection. Entropy is
computed from the same softmax, block by block (it is only reported, never optimised),
so it costs one dot product per block and no graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from openrft.rollout.engine import Sample


@dataclass
class TokenBatch:
    """Prompt + completion token ids of N sampled sequences, ready for one forward pass."""

    input_ids: torch.Tensor  # (N, P + C) long
    attention_mask: torch.Tensor  # (N, P + C) long
    completion_mask: torch.Tensor  # (N, C) float: 1 on generated tokens

    @property
    def completion_length(self) -> int:
        return self.completion_mask.shape[1]

    def rows(self, index: slice | torch.Tensor) -> TokenBatch:
        """The rows `index` (a slice or indices); the column layout stays the same."""
        return TokenBatch(
            self.input_ids[index], self.attention_mask[index], self.completion_mask[index]
        )


def pack_samples(samples: Sequence[Sample], pad_token_id: int) -> TokenBatch:
    """Left-pad prompts to P and right-pad completions to C (C >= 1 so shapes stay valid).
    The completion mask is 1 on generated tokens, or the sample's own `completion_mask`."""
    prompt_len = max(len(s.prompt_ids) for s in samples)
    completion_len = max(1, max(len(s.completion_ids) for s in samples))
    n = len(samples)
    input_ids = torch.full((n, prompt_len + completion_len), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    completion_mask = torch.zeros((n, completion_len), dtype=torch.float32)
    for row, sample in enumerate(samples):
        p, c = len(sample.prompt_ids), len(sample.completion_ids)
        input_ids[row, prompt_len - p : prompt_len] = torch.tensor(sample.prompt_ids)
        input_ids[row, prompt_len : prompt_len + c] = torch.tensor(sample.completion_ids)
        attention_mask[row, prompt_len - p : prompt_len + c] = 1
        if sample.completion_mask is None:
            completion_mask[row, :c] = 1.0
        else:  # an episode: 0 on the tokens its tools (and template) added
            completion_mask[row, :c] = torch.tensor(sample.completion_mask)
    return TokenBatch(input_ids, attention_mask, completion_mask)


def completion_logprobs(
    model: Any,
    batch: TokenBatch,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:  # (N, C), (N, C) or None
    """log p(completion token | prefix) at each completion position, optionally entropy.

    Logits are divided by the sampling temperature, so the log-probs are those of the
    distribution the rollout engine actually sampled from.
    """
    c = batch.completion_length
    length = batch.input_ids.shape[1]
    # Positions count real tokens only, as in generation with a left-padded prompt.
    position_ids = (batch.attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # (N, P + C)
    device = _device_of(model)
    output = model(
        input_ids=batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        position_ids=position_ids.to(device),
        # only the C positions that predict completion tokens reach the LM head
        logits_to_keep=torch.arange(length - c - 1, length - 1, device=device),
        use_cache=False,
    )
    logits = output.logits.float()  # (N, C, V): position i predicts token P + i
    if temperature != 1.0:
        logits = logits / temperature
    targets = batch.input_ids[:, -c:].to(device)  # (N, C)
    logp, entropy = SelectedLogProbs.apply(logits, targets, with_entropy)  # (N, C) each
    return logp, entropy if with_entropy else None


class SelectedLogProbs(torch.autograd.Function):
    """log_softmax(logits)[targets] for (N, C, V) logits and (N, C) targets and, when
    asked, the entropy, with a hand-fused backward: d logp / d logits = onehot - softmax.

    Why by hand: at small model sizes every pass over the (N, C, V) logits costs about as
    much as a transformer layer, and autograd's gather + logsumexp chain makes several.
    Here one logits-shaped buffer holds the log-softmax, then the softmax (both made by
    `probs_into`, a cache-sized block at a time), then (in place) the gradient. So it
    backpropagates once (no retain_graph).
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor,
                with_entropy: bool) -> Any:
        probs = torch.empty_like(logits)
        logp, entropy = probs_into(probs, logits, targets, with_entropy)
        ctx.save_for_backward(probs, targets)
        ctx.spent = False
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx: Any, grad_logp: torch.Tensor, _grad_entropy: Any) -> Any:
        spend_once(ctx)
        probs, targets = ctx.saved_tensors
        return probs_to_grad(probs, targets, grad_logp), None, None


def probs_into(
    out: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor]:  # (N, C) log p(targets), (N, C) entropy or empty
    """Write softmax(logits) into `out` (N, C, V), which may be `logits` itself; return the
    targets' log-probs and, when asked, the entropy -sum p log p.

    A few rows at a time (~2 MB), so that a block's log-softmax, gather, exp and entropy
    all read it from cache: one pass over memory where whole-tensor ops make five (26 vs
    42 ms on 64 x 64 x 4096, 2 threads).
    """
    rows, columns, vocab = logits.shape
    logp = logits.new_empty((rows, columns))
    entropy = logits.new_empty((rows, columns) if with_entropy else (0,))
    step = max(1, (1 << 19) // max(1, columns * vocab))
    scratch = logits.new_empty((min(step, rows), columns, vocab)) if with_entropy else None
    for start in range(0, rows, step):
        block = slice(start, start + step)
        log_probs = torch.log_softmax(logits[block], dim=-1, out=out[block])
        logp[block] = log_probs.gather(-1, targets[block].unsqueeze(-1)).squeeze(-1)
        if scratch is None:
            log_probs.exp_()
            continue
        probs = torch.exp(log_probs, out=scratch[: log_probs.shape[0]])
        entropy[block] = torch.linalg.vecdot(probs, log_probs).neg_()
        log_probs.copy_(probs)
    return logp, entropy


def spend_once(ctx: Any) -> None:
    """Refuse a second backward through a function whose saved probs became the gradient."""
    if ctx.spent:
        raise RuntimeError(f"{type(ctx).__name__.removesuffix('Backward')} backpropagates "
                           "once: its buffer became the gradient (retain_graph is not "
                           "supported)")
    ctx.spent = True


def probs_to_grad(probs: torch.Tensor, targets: torch.Tensor,
                  grad_logp: torch.Tensor) -> torch.Tensor:
    """The backward of log p(targets) with respect to the logits, written over `probs`:
    p * -g + onehot * g."""
    probs.mul_(-grad_logp.unsqueeze(-1))
    probs.scatter_add_(-1, targets.unsqueeze(-1), grad_logp.unsqueeze(-1))
    return probs


@torch.no_grad()
def reference_logprobs(
    policy: Any, reference: Any | None, batch: TokenBatch, temperature: float
) -> torch.Tensor:  # (N, C)
    """Log-probs under the KL reference: the frozen `reference` model, or, when it is None,
    the LoRA policy with its adapters switched off (the base model, no second copy)."""
    if reference is not None:
        return completion_logprobs(reference, batch, temperature)[0]
    with policy.disable_adapter():  # peft: the forward pass runs the base weights only
        return completion_logprobs(policy, batch, temperature)[0]


def _device_of(model: Any) -> torch.device:
    return next(model.parameters()).device
