"""The data-parallel update: every rank runs the plain update (rl/update.py) on its shard
of a step's batch, and the gradients are summed over the ranks before each optimizer step.

Why this equals the one-process update: the loss aggregations take the WHOLE batch's
normalisers (`BatchSizes`: sequences, active tokens, Dr. GRPO's constant), so a shard's
loss is its exact share of the batch's loss, as a micro-batch's is under gradient
accumulation; summing the shards' gradients gives the batch's gradient up to float
summation order. Every rank then clips the same gradient and takes the same AdamW step,
so the copies stay identical. The pass totals (loss, clipped tokens, KL, entropy) are
summed too, so every rank reports the batch's metrics.

Ray-free: the trainer actors (distributed/trainers.py) and the tests drive it. Groups are
built explicitly (gloo, by weight_sync.py's `process_group`), not through
`init_process_group`, so nothing global is left in a process and several ranks can live in
one process (the tests' threads).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from openrft.distributed.shards import shard_bounds
from openrft.rl.config import ResolvedConfig
from openrft.rl.logprobs import TokenBatch
from openrft.rl.step import Policy
from openrft.rl.update import PassTotals, UpdateStats, batch_sizes, update_policy
from openrft.rl.weights import Weights


def shard_rows(total: int, rank: int, world: int) -> slice:
    """The rows of a `total`-row batch that `rank` updates on (contiguous, sizes differ by
    at most one; empty for a rank beyond the rows)."""
    bounds = shard_bounds(total, world)
    if rank >= len(bounds):
        return slice(total, total)
    start, end = bounds[rank]
    return slice(start, end)


class SumOverRanks:
    """`ReducePass` of rl/update.py: sums the trainable gradients and the pass totals over
    the group's ranks, in place."""

    def __init__(self, group: dist.ProcessGroupGloo) -> None:
        self.group = group

    def __call__(self, policy: Policy, totals: PassTotals) -> None:
        params = [p for p in policy.model.parameters() if p.requires_grad]
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])  # one all-reduce for every tensor
        dist.all_reduce(flat, group=self.group)
        offset = 0
        for param, grad in zip(params, grads, strict=True):
            param.grad = flat[offset:offset + grad.numel()].view_as(grad).clone()
            offset += grad.numel()
        sums = torch.tensor([totals.loss, totals.clipped, totals.kl, totals.entropy],
                            dtype=torch.float64)
        dist.all_reduce(sums, group=self.group)
        totals.loss, totals.clipped, totals.kl, totals.entropy = sums.tolist()


def sharded_update(
    policy: Policy, cfg: ResolvedConfig, batch: TokenBatch, advantages: torch.Tensor,
    rank: int, world: int, group: dist.ProcessGroupGloo, behaviour: Weights | None = None,
) -> UpdateStats:
    """This rank's part of the update of the whole `batch` (every rank gets all of it and
    takes its rows, so the padding and the normalisers are the whole batch's)."""
    rows = shard_rows(len(batch), rank, world)
    return update_policy(policy, cfg, batch.rows(rows), advantages[rows],
                         behaviour=behaviour, sizes=batch_sizes(batch, cfg),
                         reduce=SumOverRanks(group))
