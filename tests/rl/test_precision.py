"""expert.precision: bf16 is mixed precision (autocast forwards, fp32 master weights for
full fine-tuning), and a bf16 GRPO step runs end to end with a finite loss."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from openrft.graders.base import make_reward_fn
from openrft.rl.config import config_from_dict, resolve
from openrft.rl.policy_setup import build_policy, make_generation_params, make_rollout_engine
from openrft.rl.precision import plan_precision
from openrft.rl.step import StepContext, run_step


def test_precision_plans() -> None:
    fp32 = plan_precision(torch.float32, "full")
    assert (fp32.policy_weights, fp32.reference_weights, fp32.autocast) == (
        torch.float32, torch.float32, None)
    full = plan_precision(torch.bfloat16, "full")
    assert full.policy_weights == torch.float32  # master weights
    assert full.reference_weights == torch.bfloat16 and full.autocast == torch.bfloat16
    lora = plan_precision(torch.bfloat16, "lora")
    assert lora.policy_weights == torch.bfloat16 and lora.autocast == torch.bfloat16


def _context(make_config, expert: dict[str, Any]) -> tuple[StepContext, list[dict[str, Any]]]:
    config = config_from_dict(make_config(expert={"precision": "bf16", **expert}))
    cfg = resolve(config, n_train_rows=16, n_valid_rows=4)
    policy, tokenizer, _ = build_policy(cfg, None)
    reward_fn, _ = make_reward_fn(cfg.grader)
    engine = make_rollout_engine(cfg, policy, tokenizer)
    ctx = StepContext(cfg, policy, engine, reward_fn, make_generation_params(cfg))
    items = [{"messages": [{"role": "user", "content": f"q{i}"}], "target": "an"}
             for i in range(cfg.batch_size)]
    return ctx, items


def _linear_output_dtypes(model: Any) -> tuple[set[torch.dtype], Any]:
    """Record the output dtype of every nn.Linear call (the matmuls autocast changes)."""
    seen: set[torch.dtype] = set()
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
             for m in model.modules() if type(m) is torch.nn.Linear]
    return seen, hooks


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_bf16_step_runs_with_finite_loss_and_fp32_trained_weights(make_config, finetune) -> None:
    ctx, items = _context(make_config, {"finetune": finetune, "beta": 0.04})
    model = ctx.policy.model
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(p.dtype == torch.float32 for p in trained.values())
    if finetune == "lora":  # the frozen base is stored in bf16, adapters stay fp32
        frozen = [p for p in model.parameters() if not p.requires_grad]
        assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    seen, hooks = _linear_output_dtypes(model)

    out = run_step(ctx, 1, items, [item["messages"] for item in items])

    for hook in hooks:
        hook.remove()
    assert seen == {torch.bfloat16}  # every matmul of rollout and loss ran in bf16
    for key in ("loss", "grad_norm", "kl", "entropy"):
        assert math.isfinite(out.metrics[key]), key
    assert out.metrics["grad_norm"] > 0
    after = dict(model.named_parameters())
    assert any(not torch.equal(after[n], before) for n, before in trained.items())
    assert all(after[n].dtype == torch.float32 for n in trained)
