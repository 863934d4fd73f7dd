"""The data-parallel update (distributed/data_parallel.py) without Ray: two gloo ranks in
threads of this process, each updating a copy of the policy on its half of a batch, must
end where one process updating on the whole batch ends (rl/update.py `update_policy`, the
oracle), and identical to each other."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
import torch.distributed as dist

from openrft.distributed.data_parallel import shard_rows, sharded_update
from openrft.distributed.weight_sync import process_group
from openrft.rl.config import config_from_dict, resolve
from openrft.rl.logprobs import TokenBatch, pack_samples
from openrft.rl.policy_setup import build_policy, make_generation_params, make_rollout_engine
from openrft.rl.step import Policy
from openrft.rl.update import UpdateStats, update_policy
from openrft.rl.weights import Weights
from openrft.rollout.engine import GenerationParams
from rl_task import one_torch_thread  # autouse: one thread per rank, as in tests/rl

__all__ = ["one_torch_thread"]

PROMPTS = [[{"role": "user", "content": text}] for text in ("hi", "what is 2+2?", "go")]
GROUP = 4


def policy_and_batch(make_config, **expert) -> tuple[Policy, object, TokenBatch]:
    """A fresh plain-path policy and one sampled batch of 12 rows whose completions have
    uneven lengths (so a shard's token count is not half the batch's)."""
    config = config_from_dict(make_config(expert={
        "group_size": GROUP, "max_tokens": 6, "fast_path": "off", "weight_decay": 0.1,
        "base_learning_rate": 1e-3, **expert}))
    cfg = resolve(config, n_train_rows=16, n_valid_rows=4)
    policy, tokenizer, _ = build_policy(cfg, None)
    engine = make_rollout_engine(cfg, policy, tokenizer)
    params = GenerationParams(**{**vars(make_generation_params(cfg)), "seed": 3})
    batch = pack_samples(engine.generate(PROMPTS, GROUP, params), policy.pad_token_id)
    for row in range(len(batch)):  # lengths 6, 5, 4, 3, 6, 5, ...: rank 0 gets more tokens
        batch.completion_mask[row, 6 - row % 4:] = 0.0
    return policy, cfg, batch


def run_ranks(policy: Policy, cfg, batch: TokenBatch, advantages: torch.Tensor,
              world: int, behaviour: Weights | None) -> list[tuple[Policy, UpdateStats]]:
    """`world` copies of `policy`, each updated by its rank in its own thread."""
    store = dist.HashStore()
    copies = [copy.deepcopy(policy) for _ in range(world)]
    results: list = [None] * world

    def rank(index: int) -> None:
        group = process_group("gloo", dist.PrefixStore("test", store), index, world, 60)
        results[index] = sharded_update(copies[index], cfg, batch, advantages, index, world,
                                        group, behaviour)

    threads = [threading.Thread(target=rank, args=(i,)) for i in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(result is not None for result in results), "a rank failed"
    return list(zip(copies, results, strict=True))


def weights(policy: Policy) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in policy.model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(("loss_type", "world", "expert", "stale"), [
    ("dapo", 2, {}, False), ("grpo", 2, {}, False), ("dr_grpo", 3, {}, False),
    ("dapo", 2, {"num_iterations": 2, "grad_accum_steps": 2}, False),
    ("dapo", 2, {}, True),
])
def test_ranks_on_shards_update_as_one_process_on_the_batch(make_config, loss_type, world,
                                                           expert, stale):
    """The update equals the whole-batch update up to float summation order: the loss's
    normalisers are the batch's, not the shard's. atol 1e-6 is 0.1% of one AdamW step
    (each weight moves by about lr = 1e-3); per-shard normalisers miss by more than 1e-4
    (the control below). The ranks apply the same summed gradient, so they stay equal.
    `stale`: the batch was sampled by older weights (async mode), so the ratio is not 1
    and the clip acts."""
    policy, cfg, batch = policy_and_batch(make_config, loss_type=loss_type, **expert)
    advantages = torch.linspace(-1.5, 1.5, len(batch))
    behaviour = None
    if stale:
        torch.manual_seed(1)
        behaviour = {n: w + 0.2 * torch.randn_like(w) for n, w in weights(policy).items()}
    ranks = run_ranks(policy, cfg, batch, advantages, world, behaviour)
    alone = copy.deepcopy(policy)
    expected = update_policy(alone, cfg, batch, advantages, behaviour=behaviour)
    assert (expected.clip_fraction > 0) == stale

    reference = weights(alone)
    for rank_policy, stats in ranks:
        for key in ("loss", "entropy", "clip_fraction", "grad_norm", "kl"):
            assert getattr(stats, key) == pytest.approx(getattr(expected, key), rel=1e-5,
                                                        abs=1e-7), key
        for name, tensor in weights(rank_policy).items():
            torch.testing.assert_close(tensor, reference[name], rtol=0, atol=1e-6, msg=name)
            assert torch.equal(tensor, weights(ranks[0][0])[name]), "the ranks diverged"
    moved = max(float((weights(policy)[n] - t).abs().max()) for n, t in reference.items())
    assert moved > 1e-4  # the update did move the weights, by about lr


def test_per_shard_normalisers_would_not_match(make_config):
    """The control: the same shards each normalised by their own token count give another
    gradient, so the test above can tell the two apart."""
    policy, cfg, batch = policy_and_batch(make_config)
    advantages = torch.linspace(-1.5, 1.5, len(batch))
    summed = None
    for index in range(2):
        rows = shard_rows(len(batch), index, 2)
        shard = copy.deepcopy(policy)
        update_policy(shard, cfg, batch.rows(rows), advantages[rows])
        step = {n: weights(shard)[n] - w for n, w in weights(policy).items()}
        summed = step if summed is None else {n: summed[n] + step[n] for n in step}
    alone = copy.deepcopy(policy)
    update_policy(alone, cfg, batch, advantages)
    whole = {n: weights(alone)[n] - w for n, w in weights(policy).items()}
    assert max(float((summed[n] - whole[n]).abs().max()) for n in whole) > 1e-4


def test_shard_rows_cover_the_batch_once():
    assert [shard_rows(12, r, 3) for r in range(3)] == [slice(0, 4), slice(4, 8), slice(8, 12)]
    assert [shard_rows(5, r, 2) for r in range(2)] == [slice(0, 3), slice(3, 5)]
    assert shard_rows(1, 1, 2) == slice(1, 1)  # a rank beyond the rows gets none
