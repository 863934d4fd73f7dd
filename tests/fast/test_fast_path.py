"""The fast path against the plain reference path (`expert.fast_path: off`) for a whole
GRPO step, and the fence itself: nothing outside openrft/fast imports its insides."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import openrft
from openrft.fast import FastPath
from openrft.graders.base import make_reward_fn
from openrft.rl.config import config_from_dict, resolve
from openrft.rl.policy_setup import build_policy, make_generation_params, make_rollout_engine
from openrft.rl.step import PlainPath, StepContext, run_step
from openrft.rollout.decode import TransformersForward

PACKAGE = Path(openrft.__file__).parent
# "e" is common enough in the tiny model's completions that groups' rewards differ
CONTAINS_E = {"type": "string_check", "name": "contains_e", "input": "{{ sample.output_text }}",
              "reference": "e", "operation": "like"}


def _one_step(make_config, fast_path: str, **expert):
    config = config_from_dict(make_config(grader=CONTAINS_E, expert={
        "fast_path": fast_path, "max_tokens": 6, "temperature": 0.9, **expert}))
    cfg = resolve(config, n_train_rows=16, n_valid_rows=4)
    policy, tokenizer, _ = build_policy(cfg, None)
    reward_fn, _ = make_reward_fn(cfg.grader)
    engine = make_rollout_engine(cfg, policy, tokenizer)
    ctx = StepContext(cfg, policy, engine, reward_fn, make_generation_params(cfg))
    names = {id(p): n for n, p in policy.model.named_parameters()}
    grads = {}  # every trainable weight's gradient, as the optimizer step receives it
    policy.optimizer.register_step_pre_hook(lambda optimizer, *_: grads.update(
        {names[id(p)]: p.grad.clone() for group in optimizer.param_groups
         for p in group["params"]}))
    items = [{"messages": [{"role": "user", "content": f"q{i} " + "word " * 5 * i}],
              "target": "an"} for i in range(cfg.batch_size)]
    output = run_step(ctx, 1, items, [i["messages"] for i in items])
    return policy, engine, output, grads


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_a_step_on_the_fast_path_equals_the_plain_step(make_config, finetune):
    """Same seed: the same sampled completions, the same metrics and every trainable
    weight's gradient at the optimizer step the same, up to float32 rounding. (Not the
    weights after AdamW: its first step is ~lr * sign(gradient), which rounding flips
    where a gradient is ~0.)"""
    runs = {path: _one_step(make_config, path, finetune=finetune) for path in ("auto", "off")}
    (fast_policy, _, fast, fast_grads) = runs["auto"]
    (plain_policy, plain_engine, plain, plain_grads) = runs["off"]
    assert isinstance(fast_policy.path, FastPath) and isinstance(plain_policy.path, PlainPath)
    assert type(plain_engine.decode_forward(plain_policy.model)) is TransformersForward
    assert fast.metrics["zero_variance_groups"] < 2  # a group with signal: rows are trained
    assert fast.metrics["forward_replayed"] and not plain.metrics["forward_replayed"]
    assert [s["output_text"] for s in fast.samples] == [s["output_text"] for s in plain.samples]
    for key in ("train_reward_mean", "completion_tokens_mean", "loss", "grad_norm", "entropy",
                "clip_fraction", "kl"):
        assert fast.metrics[key] == pytest.approx(plain.metrics[key], rel=1e-4, abs=1e-6), key
    assert plain.metrics["grad_norm"] > 0
    assert plain_grads.keys() == fast_grads.keys() and plain_grads
    assert all(name.count("lora_") for name in plain_grads) == (finetune == "lora")
    for name, grad in plain_grads.items():
        scale = float(grad.abs().max())
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-5 * scale,
                                   msg=lambda m, name=name: f"{name}: {m}")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_nothing_outside_the_fence_imports_its_insides():
    """Only `openrft.fast` itself (its __init__: FastPath, decode_forward) is imported
    from outside the package."""
    leaks = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in PACKAGE.rglob("*.py") if "fast" not in path.relative_to(PACKAGE).parts
        for name in _imported_modules(path) if name.startswith("openrft.fast.")
    }
    assert not leaks


def test_the_step_does_not_know_the_engines_or_the_fast_path():
    imports = _imported_modules(PACKAGE / "rl" / "step.py")
    assert not {name for name in imports
                if name.startswith("openrft.fast") or name == "openrft.rollout.hf"}
    assert "isinstance" not in (PACKAGE / "rl" / "step.py").read_text()
