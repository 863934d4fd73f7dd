"""Next-token choice from logits: greedy, temperature and nucleus (top-p) sampling.

Pure tensor functions (no model, no Python loop over rows) so the decode loop stays tight
and the rules can be checked on hand-made logits.
"""

from __future__ import annotations

import torch


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set to -inf every token outside the smallest set whose probability reaches `top_p`.

    logits: (R, V). The most likely token is always kept.
    """
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (R, V)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above
    drop_sorted = mass_before >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def choose_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token per row: argmax when temperature == 0, else a sample from
    softmax(logits / temperature) restricted to the top-p nucleus. logits (R, V) -> (R,)."""
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    scaled = top_p_filter(logits / temperature if temperature != 1.0 else logits, top_p)
    return sample_from_probs(scaled.softmax(dim=-1), generator)


def sample_from_probs(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row of `probs` (R, V) -> (R,), by the exponential race: argmax p_i / E_i
    with E_i ~ Exp(1) picks i with probability p_i (the Gumbel-max trick without logs).
    Cheaper than torch.multinomial on CPU, and the same method vLLM uses."""
    race = torch.empty_like(probs).exponential_(generator=generator)
    return (probs / race).argmax(dim=-1)
