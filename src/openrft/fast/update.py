"""The fast update: the plain GRPO update (rl/update.py) with its forward replayed from the
rollout's tape where it can be (`replay`), log-probs through the fused backward
(`fused_logprobs`) otherwise, and rows that cannot move the weights left out.

Row skipping: with beta 0 the loss of a row is its advantage times a ratio term, so a
row with advantage exactly 0 (its whole group scored alike) has loss and gradient exactly
0. Its forward and backward are skipped; it still counts in every normaliser and in the
reported entropy, and a batch with no such row still steps the optimizer with zero
gradients, so the update is the same (tests/fast/test_update.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from openrft.fast.forward_tape import ForwardTape
from openrft.fast.fused_logprobs import fused_completion_logprobs
from openrft.fast.replay import keep_tape_rows, recorded_entropy, tape_logprobs
from openrft.rl.config import ResolvedConfig
from openrft.rl.logprobs import TokenBatch
from openrft.rl.losses import BatchSizes
from openrft.rl.step import Policy
from openrft.rl.update import (
    PassTotals,
    UpdateStats,
    accumulate_gradients,
    forward_precision,
    frozen_logprobs,
    optimizer_step,
    summarize_passes,
)
from openrft.rl.weights import Weights
from openrft.rollout.engine import CausalLM


class TapeOrModelForward:
    """The update's log-probs: replayed from the rollout's tapes when they hold exactly
    the batch asked for (then the tapes are used up), else the model's forward with the
    fused log-prob backward."""

    def __init__(self, tapes: list[ForwardTape] | None) -> None:
        self.tapes = tapes
        self.replayed = False

    def __call__(self, model: CausalLM, batch: TokenBatch, temperature: float, with_entropy: bool
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.tapes is not None:
            replayed = tape_logprobs(model, self.tapes, batch, temperature, with_entropy)
            if replayed is not None:
                self.tapes, self.replayed = None, True
                return replayed
        return fused_completion_logprobs(model, batch, temperature, with_entropy)


def fast_update(
    policy: Policy, cfg: ResolvedConfig, batch: TokenBatch, advantages: torch.Tensor,
    tapes: list[ForwardTape] | None, behaviour: Weights | None = None,
) -> UpdateStats:
    """`rl.update.update_policy` on the rows that have a gradient (`trained_rows`), the
    others' entropy read from the tapes (or a no-grad forward). `behaviour`: the weights
    that sampled the batch when older than the policy's (async mode)."""
    model = policy.model
    n = len(batch)
    sizes = BatchSizes(n, int(batch.completion_mask.sum()), cfg.max_tokens)  # all rows
    trained = trained_rows(advantages, cfg)
    idle = _other_rows(trained, n)
    model.train()  # the entropy of idle rows is read in the mode the loss forward runs in
    idle_entropy = _entropy_sum(policy, cfg, batch, idle, tapes) if len(idle) else 0.0
    if tapes is not None and len(idle):
        tapes = keep_tape_rows(tapes, trained)
    batch, advantages = batch.rows(trained), advantages[trained]
    forward = TapeOrModelForward(tapes)
    old_logp, ref_logp = None, None
    if len(trained):
        old_logp, ref_logp = frozen_logprobs(policy, cfg, batch, fused_completion_logprobs,
                                             behaviour)
    model.train()
    passes: list[PassTotals] = []
    micro = len(batch) if tapes is not None else None  # a replay is one pass, not split
    for iteration in range(cfg.num_iterations):
        totals = accumulate_gradients(policy, cfg, batch, advantages, old_logp, ref_logp,
                                      sizes, iteration == 0, forward, micro)
        if not len(trained):  # what a backward of an all-zero loss leaves: zero gradients
            for parameter in model.parameters():
                if parameter.requires_grad:
                    parameter.grad = torch.zeros_like(parameter)
        totals.grad_norm = optimizer_step(policy, cfg)
        passes.append(totals)
    passes[0].entropy += idle_entropy
    model.eval()
    stats = summarize_passes(passes, sizes, cfg.num_iterations)
    stats.replayed = forward.replayed
    return stats


def trained_rows(advantages: torch.Tensor, cfg: ResolvedConfig) -> torch.Tensor:
    """Indices of the rows whose loss has a gradient: with beta 0 (no KL term) and
    `skip_zero_advantage`, the rows whose advantage is not exactly 0; else all."""
    n = advantages.shape[0]
    if cfg.beta > 0 or not cfg.skip_zero_advantage:
        return torch.arange(n)
    return torch.nonzero(advantages != 0).flatten()


def _other_rows(rows: torch.Tensor, n: int) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    keep[rows] = False
    return torch.nonzero(keep).flatten()


def _entropy_sum(policy: Policy, cfg: ResolvedConfig, batch: TokenBatch, rows: torch.Tensor,
                 tapes: Sequence[ForwardTape] | None) -> float:
    """Policy entropy summed over the completion tokens of batch `rows`, without a graph:
    from the rollout's recorded logits when there are tapes, else a forward pass."""
    mask = batch.completion_mask
    if tapes is not None:
        return recorded_entropy(tapes, rows, mask, cfg.temperature)
    idle = batch.rows(rows)
    with torch.no_grad(), forward_precision(policy):
        _, entropy = fused_completion_logprobs(policy.model, idle, cfg.temperature, True)
    assert entropy is not None
    return float((entropy.float().cpu() * idle.completion_mask).sum())
