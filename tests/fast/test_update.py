"""The fast update skips the rows that cannot move the weights, without changing the update.

The oracle is the same update with `skip_zero_advantage` off, which runs every row, and
the plain update (rl/update.py `update_policy`): the weights after the optimizer step and
the reported loss, entropy and clip fraction must agree, whether the forward is the
ordinary one or replayed from the rollout's tape.
"""

from __future__ import annotations

import pytest
import torch

from openrft.fast import FastPath
from openrft.fast.update import trained_rows
from openrft.rl.config import config_from_dict, resolve
from openrft.rl.logprobs import pack_samples
from openrft.rl.policy_setup import build_policy, make_generation_params, make_rollout_engine
from openrft.rl.update import UpdateStats, update_policy
from openrft.rollout.engine import GenerationParams

PROMPTS = [[{"role": "user", "content": text}] for text in ("hi", "what is 2+2?", "go")]
GROUP = 4


def _updated_weights(make_config, skip: bool | None, replay: bool,
                     advantages: list[torch.Tensor], **expert
                     ) -> tuple[dict[str, torch.Tensor], list[UpdateStats]]:
    """Weights after one update per entry of `advantages`, each on a fresh rollout: the
    fast update (`skip`: skip_zero_advantage) or, with `skip` None, the plain one."""
    config = config_from_dict(make_config(expert={
        "skip_zero_advantage": bool(skip), "max_tokens": 5, "group_size": GROUP,
        "weight_decay": 0.1, "temperature": 0.8, **expert}))
    cfg = resolve(config, n_train_rows=16, n_valid_rows=4)
    policy, tokenizer, _ = build_policy(cfg, None)
    path = FastPath(record=replay)
    policy.path = path
    engine = make_rollout_engine(cfg, policy, tokenizer)
    params = make_generation_params(cfg)
    stats = []
    for step, advantage in enumerate(advantages):
        rollout = GenerationParams(**{**vars(params), "seed": step})
        policy.model.eval()
        samples = path.sample(engine, PROMPTS, GROUP, rollout)
        assert (path._tapes is not None) == replay
        batch = pack_samples(samples, policy.pad_token_id)
        if skip is None:
            stats.append(update_policy(policy, cfg, batch, advantage))
        else:
            stats.append(path.update(policy, cfg, batch, advantage))
        engine.sync_weights(policy.model)
    return {n: p.detach().clone() for n, p in policy.model.named_parameters()}, stats


def _advantages(zero_groups: list[int]) -> torch.Tensor:
    values = torch.linspace(-1.5, 1.5, GROUP * len(PROMPTS))
    for group in zero_groups:
        values[group * GROUP: (group + 1) * GROUP] = 0.0
    return values


@pytest.mark.parametrize(("replay", "expert"), [
    (False, {}), (True, {}), (False, {"grad_accum_steps": 2, "num_iterations": 2})])
def test_skipping_zero_advantage_rows_leaves_the_update_unchanged(make_config, replay, expert):
    """Two groups of three carry no signal: only the other group's rows are trained, and
    the weights, loss, entropy (all rows) and clip fraction are those of the full update,
    also over micro-batches and several iterations on the batch."""
    runs = {skip: _updated_weights(make_config, skip, replay, [_advantages([0, 2])], **expert)
            for skip in (True, False, None)}
    (skipped, [fast]), (full, [slow]) = runs[True], runs[False]
    plain_weights, [plain] = runs[None]
    assert fast.replayed == slow.replayed == replay and not plain.replayed
    assert slow.entropy > 0
    for key in ("loss", "entropy", "clip_fraction", "grad_norm"):
        assert getattr(fast, key) == pytest.approx(getattr(slow, key), rel=1e-4, abs=1e-7), key
        assert getattr(plain, key) == pytest.approx(getattr(slow, key), rel=1e-4, abs=1e-7), key
    for name, weight in full.items():
        torch.testing.assert_close(skipped[name], weight, rtol=1e-5, atol=1e-7, msg=name)
        torch.testing.assert_close(plain_weights[name], weight, rtol=1e-5, atol=1e-7, msg=name)


def test_a_batch_without_signal_still_steps_the_optimizer(make_config):
    """All advantages 0 after a step with signal: AdamW's momentum and weight decay still
    move the weights, exactly as they do after a backward of an all-zero loss."""
    steps = [_advantages([]), _advantages([0, 1, 2])]
    (skipped, fast), (full, slow) = (_updated_weights(make_config, skip, True, steps)
                                     for skip in (True, False))
    assert fast[1].loss == slow[1].loss == 0.0
    assert fast[1].entropy == pytest.approx(slow[1].entropy, rel=1e-5)
    assert fast[1].grad_norm == slow[1].grad_norm == 0.0
    for name, weight in full.items():
        torch.testing.assert_close(skipped[name], weight, rtol=1e-5, atol=1e-7, msg=name)


def test_rows_with_a_kl_term_are_always_trained(make_config):
    """With beta > 0 a zero-advantage row still has the KL gradient."""
    advantages = _advantages([0, 1])
    for beta, expected in ((0.0, list(range(8, 12))), (0.04, list(range(12)))):
        cfg = resolve(config_from_dict(make_config(expert={"beta": beta})), 16, 4)
        assert trained_rows(advantages, cfg).tolist() == expected
