"""The async mode (expert.max_staleness): which policy version sampled each batch, and a
clipped ratio taken against that version, checked against independent computations."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from openrft.rl.config import config_from_dict, resolve
from openrft.rl.trainer import train

TIMING = {"step_seconds", "tokens_per_second", "sampling_seconds", "grading_seconds",
          "training_seconds", "grader_latency_s"}


def rows(run: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (run / name).read_text().splitlines()]


def without_timing(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TIMING}


def step_texts(run: Path, step: int) -> list[str]:
    return sorted(r["output_text"] for r in rows(run, "samples.jsonl") if r["step"] == step)


def three_steps(make_config, out: Path, **expert) -> dict:
    """3 steps of 2 prompts x 4 completions x 6 tokens at a high learning rate (the
    weights move enough each step to change what is sampled), a checkpoint each step."""
    return make_config(
        hyperparameters={"batch_size": 2, "eval_interval": 2},
        expert={"max_tokens": 6, "max_steps": 3, "keep_samples": 8, "save_every": 1,
                "keep_checkpoints": 5, "base_learning_rate": 1e-2,
                "reuse_rollout_forward": False, **expert},
        output_dir=str(out),
    )


def regenerate(config: dict, checkpoint: Path | None, step: int) -> list[str]:
    """Step `step`'s completions as the policy of `checkpoint` (None: the initial policy)
    samples them, rebuilt here from the model, the seed and the checkpoint's adapter."""
    from peft import load_peft_weights, set_peft_model_state_dict
    from transformers import set_seed

    from openrft.models.load import LoraSettings, load_model
    from openrft.rl.policy_setup import make_generation_params
    from openrft.rl.step import TRAIN_SAMPLING, derived_seed
    from openrft.rollout.hf import HFRolloutEngine

    cfg = resolve(config_from_dict(config), 16)
    set_seed(cfg.seed)  # the initial adapter: as the trainer draws it
    lora = LoraSettings(rank=cfg.lora_rank, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
    model = load_model(cfg.model, dtype="float32", trainable=True, lora=lora)
    if checkpoint is not None:
        set_peft_model_state_dict(model.model, load_peft_weights(str(checkpoint)))
    from openrft.data.dataset import load_dataset
    from openrft.rl.trainer import batch_indices

    data = load_dataset(cfg.training_file, cfg.grader)
    prompts = [data.prompt(i) for i in batch_indices(cfg, step)[1]]
    params = replace(make_generation_params(cfg), seed=derived_seed(cfg.seed, step,
                                                                    TRAIN_SAMPLING))
    engine = HFRolloutEngine(model.model.eval(), model.tokenizer)
    return sorted(s.output_text for s in engine.generate(prompts, cfg.group_size, params))


def test_with_max_staleness_1_step_t_plus_1_is_sampled_by_the_policy_step_t_starts_from(
        make_config, tmp_path):
    sync_run, async_run = tmp_path / "sync", tmp_path / "async"
    train(config_from_dict(three_steps(make_config, sync_run)))
    async_config = three_steps(make_config, async_run, max_staleness=1)
    result = train(config_from_dict(async_config))
    assert result.steps == 3 and result.final_model_dir is not None

    synced, lagged = rows(sync_run, "metrics.jsonl"), rows(async_run, "metrics.jsonl")
    assert [(r["policy_version"], r["staleness"]) for r in synced] == [(0, 0), (1, 0), (2, 0)]
    assert [(r["policy_version"], r["staleness"]) for r in lagged] == [(0, 0), (0, 1), (1, 1)]
    # step 1 has nothing to lag behind: the same batch, the same update
    assert without_timing(lagged[0]) == without_timing(synced[0])
    # the versions, rebuilt independently: the initial policy samples step 2, the
    # weights after one update (the sync run's first checkpoint) step 3
    version_1 = sync_run / "checkpoints" / "step-1"
    assert step_texts(async_run, 2) == regenerate(async_config, None, 2)
    assert step_texts(async_run, 3) == regenerate(async_config, version_1, 3)
    # ... and not the policy the step updates (the check could fail: weights moved)
    assert step_texts(sync_run, 2) == regenerate(async_config, version_1, 2)
    assert step_texts(async_run, 2) != step_texts(sync_run, 2)
    # periodic validation (step 2) and the final one ran on the trained weights
    assert "valid_reward_mean" in lagged[1]


def test_max_staleness_bounds_the_lag(make_config, tmp_path):
    result = train(config_from_dict(make_config(
        hyperparameters={"batch_size": 2, "eval_interval": 100},
        expert={"max_tokens": 4, "max_steps": 5, "max_staleness": 2},
        output_dir=str(tmp_path / "run"))))
    metrics = rows(Path(result.output_dir), "metrics.jsonl")
    assert [r["policy_version"] for r in metrics] == [0, 0, 0, 1, 2]
    assert [r["staleness"] for r in metrics] == [0, 1, 2, 2, 2]


def test_the_clipped_ratio_is_taken_against_the_weights_that_sampled(make_config):
    """A batch sampled by weights W0 and updated at W1: the loss equals the clipped
    surrogate computed by hand from the engine's own sampling log-probs (W0) and an
    independent forward under W1."""
    from openrft.models.load import LoraSettings, load_model
    from openrft.rl.logprobs import completion_logprobs, pack_samples
    from openrft.rl.step import Policy
    from openrft.rl.update import update_policy
    from openrft.rl.weights import trainable_weights
    from openrft.rollout.engine import GenerationParams
    from openrft.rollout.hf import HFRolloutEngine

    cfg = resolve(config_from_dict(make_config(expert={"max_tokens": 5})), 16)
    torch.manual_seed(0)
    loaded = load_model(cfg.model, dtype="float32", trainable=True,
                        lora=LoraSettings(rank=2, alpha=4, dropout=0.0))
    model = loaded.model.eval()
    engine = HFRolloutEngine(model, loaded.tokenizer)
    samples = engine.generate([[{"role": "user", "content": "question 1"}]], 2,
                              GenerationParams(max_tokens=5, min_tokens=5, seed=3))
    w0 = trainable_weights(model)
    with torch.no_grad():  # W1: the adapters moved far enough that some ratios clip
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(7)) * 0.5)
    w1 = trainable_weights(model)
    batch = pack_samples(samples, loaded.tokenizer.pad_token_id)
    with torch.no_grad():
        new_logp = completion_logprobs(model, batch)[0]  # (2, 5) under W1

    # by hand: DAPO's token mean of -min(r A, clip(r, 0.8, 1.28) A), r = exp(new - old)
    advantages = [1.0, -1.0]
    terms, clipped = [], 0
    for row, sample in enumerate(samples):
        for column, old in enumerate(sample.completion_logprobs):
            ratio = math.exp(float(new_logp[row, column]) - old)
            a = advantages[row]
            bounded = min(max(ratio, 1 - 0.2), 1 + 0.28)
            terms.append(-min(ratio * a, bounded * a))
            clipped += bounded * a < ratio * a
    expected = sum(terms) / len(terms)
    assert 0 < clipped < len(terms), "the case must clip some tokens and not others"

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    policy = Policy(model, None, optimizer, scheduler, loaded.tokenizer.pad_token_id)
    stats = update_policy(policy, cfg, batch, torch.tensor(advantages), behaviour=w0)
    assert stats.loss == pytest.approx(expected, abs=1e-5)
    assert stats.clip_fraction == pytest.approx(clipped / len(terms))
    on_policy = update_policy(policy, cfg, batch, torch.tensor(advantages))
    assert on_policy.loss != pytest.approx(expected, abs=1e-3)  # ratio 1: another loss
    for name, tensor in trainable_weights(model).items():  # W1 is back after the swap
        assert torch.equal(tensor, w1[name]), name


def test_the_async_machinery_at_zero_lag_is_the_synchronous_run(make_config, tmp_path,
                                                                monkeypatch):
    """The sampling thread, its copy of the policy, the versions it loads and the update
    on a handed-over rollout, with the lag forced to 0: bit for bit the synchronous run."""
    from openrft.rl.pipeline import AsyncRollouts

    sync_run, zero_lag = tmp_path / "sync", tmp_path / "zero_lag"
    train(config_from_dict(three_steps(make_config, sync_run)))
    monkeypatch.setattr(AsyncRollouts, "version_of", lambda self, step: step - 1)
    train(config_from_dict(three_steps(make_config, zero_lag, max_staleness=1)))
    assert [without_timing(r) for r in rows(zero_lag, "metrics.jsonl")] == \
           [without_timing(r) for r in rows(sync_run, "metrics.jsonl")]
    assert rows(zero_lag, "samples.jsonl") == rows(sync_run, "samples.jsonl")
    from safetensors.torch import load_file

    ours = load_file(zero_lag / "final" / "adapter_model.safetensors")
    for name, tensor in load_file(sync_run / "final" / "adapter_model.safetensors").items():
        assert torch.equal(ours[name], tensor), name
