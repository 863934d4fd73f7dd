"""The policy update on one sampled batch (phase 4 of a GRPO step, rl/step.py): log-probs,
loss, backward and the optimizer step, micro-batched for memory.

This is the plain reference: the policy's own forward under autograd. openrft.fast's
update (fast/update.py) reuses its pieces with faster forwards, and data-parallel ranks
(distributed/data_parallel.py) call `update_policy` on their shard of a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from openrft.rl.config import ResolvedConfig
from openrft.rl.logprobs import LogProbs, TokenBatch, completion_logprobs, reference_logprobs
from openrft.rl.losses import BatchSizes, policy_loss
from openrft.rl.precision import autocast_forwards
from openrft.rl.weights import Weights, swapped_weights

if TYPE_CHECKING:  # step.py's Policy defaults to the PlainPath that calls update_policy
    from openrft.rl.step import Policy


@dataclass
class UpdateStats:
    kl: float  # mean per-token k3 KL to the reference (0 when beta == 0)
    entropy: float  # mean per-token policy entropy (first iteration, i.e. on-policy)
    clip_fraction: float  # fraction of tokens where the clip was the active branch
    loss: float  # mean of the optimized loss over iterations
    grad_norm: float  # pre-clipping global gradient norm (last iteration)
    replayed: bool = False  # the forward pass came from the rollout's tape (openrft.fast)


@dataclass
class PassTotals:
    """Sums over one pass of forward/backward through the batch (one iteration)."""

    loss: float = 0.0  # the optimized loss (micro-batch losses add up to the batch's)
    clipped: float = 0.0  # completion tokens where the clip was active
    kl: float = 0.0  # k3 KL summed over completion tokens
    entropy: float = 0.0  # policy entropy summed over completion tokens
    grad_norm: float = 0.0  # pre-clipping global gradient norm of the step that followed


# (policy, this rank's pass totals): sums the gradients and totals over data-parallel
# ranks in place (distributed/data_parallel.py)
ReducePass = Callable[["Policy", "PassTotals"], None]


def batch_sizes(batch: TokenBatch, cfg: ResolvedConfig) -> BatchSizes:
    """The loss normalisers of a whole optimizer batch."""
    return BatchSizes(len(batch), int(batch.completion_mask.sum()), cfg.max_tokens)


def update_policy(
    policy: Policy, cfg: ResolvedConfig, batch: TokenBatch, advantages: torch.Tensor,
    logprobs: LogProbs = completion_logprobs, behaviour: Weights | None = None,
    sizes: BatchSizes | None = None, reduce: ReducePass | None = None,
) -> UpdateStats:
    """num_iterations optimizer steps on one sampled batch, micro-batched for memory.

    num_iterations == 1 is on-policy: the old log-probs are the current ones detached
    (ratio exactly 1), so no extra forward pass is spent on them. `logprobs` is the
    policy's forward under autograd (openrft.fast passes a faster one). `behaviour`: the
    weights that sampled the batch when they are older than the policy's (async mode).
    Data-parallel ranks pass their shard as `batch`, the whole batch's `sizes`, and a
    `reduce` that sums gradients and totals over the ranks before each optimizer step.
    """
    model = policy.model
    sizes = sizes or batch_sizes(batch, cfg)
    old_logp, ref_logp = frozen_logprobs(policy, cfg, batch, logprobs, behaviour)
    model.train()
    passes = []
    for iteration in range(cfg.num_iterations):
        totals = accumulate_gradients(policy, cfg, batch, advantages, old_logp, ref_logp,
                                      sizes, iteration == 0, logprobs)
        if reduce is not None:
            reduce(policy, totals)
        totals.grad_norm = optimizer_step(policy, cfg)
        passes.append(totals)
    model.eval()
    return summarize_passes(passes, sizes, cfg.num_iterations)


def frozen_logprobs(
    policy: Policy, cfg: ResolvedConfig, batch: TokenBatch, logprobs: LogProbs,
    behaviour: Weights | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # (N, C) old, (N, C) reference
    """The log-probs the loss holds fixed, in eval mode (no dropout): the reference
    model's (beta > 0) and the sampling policy's: under the `behaviour` weights that
    sampled the batch when they are older than the policy's (async mode), else the
    current ones (num_iterations > 1; on-policy with one iteration: None, the current
    ones detached). The training forward recomputes them rather than taking the engine's
    recorded log-probs: those are of the untempered logits, in the decode's numerics."""
    policy.model.eval()
    ref_logp, old_logp = None, None
    with forward_precision(policy):
        if cfg.beta > 0:
            ref_logp = reference_logprobs(policy.model, policy.reference, batch,
                                          cfg.temperature, logprobs)
        if behaviour is not None:
            with torch.no_grad(), swapped_weights(policy.model, behaviour):
                old_logp = logprobs(policy.model, batch, cfg.temperature, False)[0]
        elif cfg.num_iterations > 1:
            with torch.no_grad():
                old_logp = logprobs(policy.model, batch, cfg.temperature, False)[0]
    return old_logp, ref_logp


def accumulate_gradients(
    policy: Policy,
    cfg: ResolvedConfig,
    batch: TokenBatch,
    advantages: torch.Tensor,  # (N,)
    old_logp: torch.Tensor | None,  # (N, C) or None (on-policy)
    ref_logp: torch.Tensor | None,  # (N, C) or None (beta == 0)
    sizes: BatchSizes,
    with_entropy: bool,
    logprobs: LogProbs,
    micro: int | None = None,
) -> PassTotals:
    """Forward/backward over micro-batches of `micro` rows (default `micro_batch_rows`);
    the losses sum to the batch's."""
    model = policy.model
    n = len(batch)
    device = next(model.parameters()).device
    micro = micro or micro_batch_rows(batch, cfg, device)
    totals = PassTotals()
    for start in range(0, n, micro):
        rows = slice(start, start + micro)
        mb = batch.rows(rows)
        mask = mb.completion_mask.to(device)  # (n, C)
        with forward_precision(policy):
            logp, entropy = logprobs(model, mb, cfg.temperature, with_entropy)  # (n, C)
        out = policy_loss(
            logp,
            logp.detach() if old_logp is None else old_logp[rows],
            None if ref_logp is None else ref_logp[rows],
            advantages[rows].to(device),
            mask,
            sizes,
            cfg.loss_type,
            cfg.epsilon,
            cfg.epsilon_high,
            cfg.beta,
        )
        out.loss.backward()
        totals.loss += float(out.loss.detach())
        totals.clipped += out.clipped_tokens
        totals.kl += out.kl_sum
        if entropy is not None:
            totals.entropy += float((entropy * mask).sum())
    return totals


CPU_MICRO_BATCH_TOKENS = 1024  # micro_batch_tokens "auto" on the CPU (docs/agentic.md)


def micro_batch_rows(batch: TokenBatch, cfg: ResolvedConfig, device: torch.device) -> int:
    """Rows per forward/backward: the batch in grad_accum_steps parts, smaller still where
    a part would run more than micro_batch_tokens tokens (its activations are held for
    the backward, and an episode's rows are long)."""
    rows = max(1, -(-len(batch) // cfg.grad_accum_steps))  # ceil
    budget = cfg.micro_batch_tokens
    if budget == "auto":
        budget = CPU_MICRO_BATCH_TOKENS if device.type == "cpu" else None
    if budget is not None:
        rows = min(rows, max(1, budget // batch.input_ids.shape[1]))
    return rows


def optimizer_step(policy: Policy, cfg: ResolvedConfig) -> float:
    """Clip the gradients, step AdamW and the LR schedule, clear the gradients; returns
    the pre-clipping global gradient norm."""
    trainable = [p for p in policy.model.parameters() if p.requires_grad]
    grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm))
    policy.optimizer.step()
    policy.scheduler.step()
    policy.optimizer.zero_grad(set_to_none=True)
    return grad_norm


def summarize_passes(passes: list[PassTotals], sizes: BatchSizes, iterations: int
                     ) -> UpdateStats:
    """Per-token means over the batch's completion tokens: entropy of the first
    (on-policy) pass, KL and clip fraction averaged over the passes."""
    tokens = max(sizes.num_tokens, 1)
    kl, clip = 0.0, 0.0
    for totals in passes:
        clip += totals.clipped / tokens / iterations
        kl += totals.kl / tokens / iterations
    return UpdateStats(kl, passes[0].entropy / tokens, clip,
                       sum(t.loss for t in passes) / len(passes), passes[-1].grad_norm)


def forward_precision(policy: Policy) -> Any:
    """Autocast around the policy's forward passes (rollout and loss) when the run is bf16 or
    fp16; backward and the optimizer step stay outside, on the fp32 master weights."""
    device = next(policy.model.parameters()).device
    return autocast_forwards(policy.autocast_dtype, device)
