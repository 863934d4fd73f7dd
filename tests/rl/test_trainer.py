"""train() on the tiny model: run directory, LoRA/full, KL, pause/cancel, parse errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from openrft.errors import InvalidInput
from openrft.rl.config import config_from_dict
from openrft.rl.reporter import NullReporter
from openrft.rl.trainer import train

# "e" is in ~60% of random completions: groups almost always have reward variance, so
# the first update is never a no-op (needed where a test expects the policy to move).
CONTAINS_E = {"type": "string_check", "name": "contains_e", "input": "{{ sample.output_text }}",
              "reference": "e", "operation": "like"}


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


class Recorder(NullReporter):
    """Records hook calls; asks to stop with `request` once `stop_after` steps are done."""

    def __init__(self, request=None, stop_after: int = 0) -> None:
        self.calls: list[str] = []
        self.steps: list[int] = []
        self.request, self.stop_after = request, stop_after

    def on_start(self, total_steps, config):
        self.calls.append("start")
        self.total = total_steps

    def on_step(self, metrics):
        self.steps.append(metrics["step"])

    def on_samples(self, step, samples):
        self.calls.append("samples")

    def on_checkpoint(self, step, path, metrics):
        self.calls.append(f"checkpoint-{step}")

    def on_end(self, result):
        self.calls.append(f"end-{result['status']}")

    def should_stop(self):
        return self.request if self.request and len(self.steps) >= self.stop_after else None


REQUIRED_METRICS = {
    "step", "epoch", "train_reward_mean", "train_reward_std", "kl", "entropy",
    "clip_fraction", "completion_tokens_mean", "zero_variance_groups", "grader_errors",
    "grader_latency_s", "step_seconds", "tokens_per_second", "learning_rate",
    "sample_parse_errors",
}


def test_lora_run_writes_the_run_directory(make_config, tmp_path):
    reporter = Recorder()
    result = train(config_from_dict(make_config()), reporter)
    run = Path(result.output_dir)
    assert result.steps == 2 and result.stopped is None
    rows = _metrics(run)
    assert [r["step"] for r in rows] == [1, 2]
    assert REQUIRED_METRICS <= set(rows[0])
    assert "valid_reward_mean" not in rows[0] and 0 <= rows[1]["valid_reward_mean"] <= 1
    assert rows[0]["kl"] == 0.0  # beta = 0: no reference pass
    assert 0 < rows[0]["entropy"] <= torch.log(torch.tensor(600.0)).item()
    assert rows[0]["completion_tokens_mean"] <= 4
    # 2 prompts x 4 samples, each 0 or 1
    assert rows[0]["train_reward_mean"] * 8 == pytest.approx(round(rows[0]["train_reward_mean"]
                                                                   * 8))
    samples = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 8  # keep_samples = 4 per step
    assert {"prompt", "reasoning", "output_text", "score", "errors"} <= set(samples[0])
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["group_size"] == 4 and resolved["learning_rate"] == pytest.approx(2e-5)
    assert (run / "checkpoints" / "step-2" / "adapter_model.safetensors").exists()
    assert (run / "final" / "adapter_config.json").exists()
    assert (run / "rewards.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((run / "result.json").read_text())
    assert saved["full_valid_mean_reward"] == result.full_valid_mean_reward
    assert 0 <= result.full_valid_mean_reward <= 1
    assert reporter.calls[0] == "start" and reporter.calls[-1] == "end-succeeded"
    assert "checkpoint-2" in reporter.calls and reporter.steps == [1, 2]


def test_final_model_loads_and_differs_from_the_base(make_config, tiny_model_dir):
    from openrft.models.load import load_model

    config = make_config(grader=CONTAINS_E, expert={"base_learning_rate": 1e-2})
    result = train(config_from_dict(config))
    tuned = load_model(result.final_model_dir).model
    base = load_model(tiny_model_dir).model
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        tuned_logits = tuned(ids.to(tuned.device)).logits.cpu()
        assert not torch.allclose(tuned_logits, base(ids.to(base.device)).logits.cpu())


def test_kl_under_lora_is_zero_at_step_one_then_positive(make_config):
    # LoRA's B matrices start at 0: the policy equals the base model before the first update.
    config = make_config(grader=CONTAINS_E, expert={"beta": 0.04, "base_learning_rate": 1e-2})
    rows = _metrics(Path(train(config_from_dict(config)).output_dir))
    assert rows[0]["kl"] == 0.0
    assert rows[1]["kl"] > 0.0


def test_full_finetuning_with_kl_reference(make_config, tiny_model_dir):
    config = make_config(grader=CONTAINS_E,
                         expert={"finetune": "full", "beta": 0.04, "base_learning_rate": 1e-3})
    result = train(config_from_dict(config))
    rows = _metrics(Path(result.output_dir))
    assert rows[0]["kl"] == 0.0 and rows[1]["kl"] > 0.0
    assert (Path(result.final_model_dir) / "model.safetensors").exists()


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo"])
def test_multiple_iterations_and_micro_batches(make_config, loss_type):
    # 2 policy epochs per batch: the second one is off-policy, so ratios leave 1.
    config = make_config(grader=CONTAINS_E, expert={"num_iterations": 2, "grad_accum_steps": 3,
                                 "loss_type": loss_type, "base_learning_rate": 5e-2,
                                 "max_steps": 1})
    row = _metrics(Path(train(config_from_dict(config)).output_dir))[0]
    assert 0.0 <= row["clip_fraction"] <= 1.0
    assert row["learning_rate"] == pytest.approx(5e-2)


def test_unparsable_structured_output_is_graded_like_in_evaluation(make_config):
    # the rule of openrft.rollout.grading (tests/rollout/test_grading.py runs the same
    # samples through evaluate): an unparsable sample still reaches the grader
    response_format = {"type": "json_schema", "json_schema": {"name": "a", "strict": True,
                       "schema": {"type": "object", "properties": {"x": {"type": "integer"}},
                                  "required": ["x"], "additionalProperties": False}}}
    any_text = {"type": "string_check", "name": "t", "input": "{{ sample.output_text }}",
                "reference": "", "operation": "ne"}  # 1.0 for any non-empty answer
    config = make_config(response_format=response_format, grader=any_text,
                         hyperparameters={"eval_interval": 1}, expert={"max_steps": 1})
    result = train(config_from_dict(config))
    row = _metrics(Path(result.output_dir))[0]
    assert row["sample_parse_errors"] == 8  # 4 random tokens never form {"x": int}
    assert row["grader_errors"] == 0
    assert row["valid_parse_error_mean"] == 1.0
    assert row["train_reward_mean"] > 0.0  # the old rule scored every one of them 0
    for sample in _samples(result):
        assert sample["parse_error"] and sample["errors"] == []
        assert sample["score"] == (1.0 if sample["output_text"] else 0.0)


def _samples(result) -> list[dict]:
    lines = (Path(result.output_dir) / "samples.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_cancel_stops_without_a_final_model(make_config):
    reporter = Recorder(request="cancel", stop_after=1)
    result = train(config_from_dict(make_config()), reporter)
    assert result.stopped == "cancelled" and result.steps == 1
    assert result.final_model_dir is None
    assert reporter.calls[-1] == "end-cancelled"


def test_pause_checkpoints_then_resume_matches_an_uninterrupted_run(make_config, tmp_path):
    settings = {
        "grader": CONTAINS_E,
        "hyperparameters": {"eval_interval": 1},
        "expert": {"max_steps": 3, "base_learning_rate": 1e-2, "save_every": 10},
    }
    straight = train(config_from_dict(make_config(**settings, output_dir=str(tmp_path / "a"))))

    config = config_from_dict(make_config(**settings, output_dir=str(tmp_path / "b")))
    paused = train(config, Recorder(request="pause", stop_after=1))
    assert paused.stopped == "paused" and paused.steps == 1
    assert (tmp_path / "b" / "checkpoints" / "step-1").is_dir()
    # a different LoRA shape cannot load this checkpoint: refused before any model loads
    settings_rank4 = {**settings, "expert": {**settings["expert"], "lora_rank": 4}}
    with pytest.raises(InvalidInput, match="lora_rank"):
        train(config_from_dict(make_config(**settings_rank4, output_dir=str(tmp_path / "b"))),
              resume=True)
    resumed = train(config, resume=True)
    assert resumed.steps == 3
    assert _deterministic(_metrics(tmp_path / "b")) == _deterministic(_metrics(tmp_path / "a"))
    assert resumed.full_valid_mean_reward == straight.full_valid_mean_reward
    assert _adapter(resumed.final_model_dir) == _adapter(straight.final_model_dir)


def test_refuses_to_overwrite_a_run(make_config):
    config = config_from_dict(make_config(expert={"max_steps": 1}))
    train(config)
    with pytest.raises(InvalidInput, match="already holds a run"):
        train(config)


def _deterministic(rows: list[dict]) -> list[dict]:
    """Metric rows without wall-clock fields."""
    timing = {"step_seconds", "tokens_per_second", "sampling_seconds", "grading_seconds",
              "training_seconds", "grader_latency_s"}
    return [{k: v for k, v in row.items() if k not in timing} for row in rows]


def _adapter(final_dir: str) -> bytes:
    return (Path(final_dir) / "adapter_model.safetensors").read_bytes()
