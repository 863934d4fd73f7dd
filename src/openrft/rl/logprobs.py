"""Per-token log-probs of sampled completions under the policy or the reference model.

Sequences are packed as `[left padding | prompt | completion | right padding]`, so every
completion starts at the same column P and the LM head only has to run on the C
positions that predict completion tokens (`logits_to_keep`): for a 400-token prompt and
64-token answer that skips ~85% of the (vocab-sized) output projection. Entropy is
computed from the same softmax (it is only reported, never optimised), without a graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from openrft.rollout.engine import CausalLM, Sample

# (logits (N, C, V), targets (N, C), with_entropy) -> (log-probs (N, C), entropy or None)
SelectLogProbs = Callable[[torch.Tensor, torch.Tensor, bool],
                          tuple[torch.Tensor, torch.Tensor | None]]
# (model, batch, temperature, with_entropy) -> (log-probs (N, C), entropy (N, C) or None)
LogProbs = Callable[[Any, "TokenBatch", float, bool], tuple[torch.Tensor, torch.Tensor | None]]


@dataclass
class TokenBatch:
    """Prompt + completion token ids of N sampled sequences, ready for one forward pass."""

    input_ids: torch.Tensor  # (N, P + C) long
    attention_mask: torch.Tensor  # (N, P + C) long
    completion_mask: torch.Tensor  # (N, C) float: 1 on generated tokens

    def __len__(self) -> int:
        return self.input_ids.shape[0]

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
    model: CausalLM,
    batch: TokenBatch,
    temperature: float = 1.0,
    with_entropy: bool = False,
    select: SelectLogProbs | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:  # (N, C), (N, C) or None
    """log p(completion token | prefix) at each completion position, optionally entropy.

    Logits are divided by the sampling temperature, so the log-probs are those of the
    distribution the rollout engine actually sampled from. `select` turns the logits into
    log-probs (None: `selected_logprobs`, plain autograd; openrft.fast passes a fused one).
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
    return (select or selected_logprobs)(logits, targets, with_entropy)  # (N, C) each


def selected_logprobs(logits: torch.Tensor, targets: torch.Tensor, with_entropy: bool
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:  # (N, C), (N, C) or None
    """log_softmax(logits)[targets] for (N, C, V) logits and (N, C) targets under autograd,
    and the entropy -sum p log p (reported only: no graph)."""
    log_probs = torch.log_softmax(logits, dim=-1)  # (N, C, V)
    logp = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (N, C)
    if not with_entropy:
        return logp, None
    with torch.no_grad():
        entropy = -(log_probs.exp() * log_probs).sum(dim=-1)  # (N, C)
    return logp, entropy


@torch.no_grad()
def reference_logprobs(
    policy: CausalLM, reference: CausalLM | None, batch: TokenBatch, temperature: float,
    logprobs: LogProbs = completion_logprobs,
) -> torch.Tensor:  # (N, C)
    """Log-probs under the KL reference: the frozen `reference` model, or, when it is None,
    the LoRA policy with its adapters switched off (the base model, no second copy)."""
    if reference is not None:
        return logprobs(reference, batch, temperature, False)[0]
    peft_model: Any = policy  # a PeftModel: its forward runs the base weights only here
    with peft_model.disable_adapter():
        return logprobs(policy, batch, temperature, False)[0]


def _device_of(model: CausalLM) -> torch.device:
    return next(model.parameters()).device
