"""Log-probs of the selected tokens with a hand-fused backward: the fast path's
replacement for `rl.logprobs.selected_logprobs` (the plain autograd oracle)."""

from __future__ import annotations

from typing import Any

import torch

from openrft.rl.logprobs import TokenBatch, completion_logprobs
from openrft.rollout.engine import CausalLM


def fused_completion_logprobs(
    model: CausalLM, batch: TokenBatch, temperature: float = 1.0, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:  # (N, C), (N, C) or None
    """`completion_logprobs` with `SelectedLogProbs` turning the logits into log-probs."""
    return completion_logprobs(model, batch, temperature, with_entropy, fused_selected_logprobs)


def fused_selected_logprobs(logits: torch.Tensor, targets: torch.Tensor, with_entropy: bool
                            ) -> tuple[torch.Tensor, torch.Tensor | None]:
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
    all read it from cache: one pass over memory where whole-tensor ops make five
    (timing: BENCHMARKS.md, "Fast-path micro-measurements").
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
