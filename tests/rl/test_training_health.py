"""Training-health pathologies built on purpose on the tiny model: each finding fires on
its own pathology (the healthy learning run in test_training_slow.py stays silent), the
no-signal actions pause or fail the run, and the preflight gate fails fast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrft.errors import TrainingHealthError
from openrft.rl.config import config_from_dict
from openrft.rl.trainer import train

NEVER = {"type": "string_check", "name": "never", "input": "{{ sample.output_text }}",
         "reference": "zqzqzq", "operation": "like"}
CONTAINS_E = {"type": "string_check", "name": "contains_e", "input": "{{ sample.output_text }}",
              "reference": "e", "operation": "like"}
CONTAINS_AN = {**CONTAINS_E, "name": "contains_an", "reference": "an"}
# "e" is in ~60% of the tiny model's completions, "an" in ~10%: with these weights the
# within-group reward differences follow "e" almost entirely.
E_DOMINATES = {"type": "multi", "name": "mix", "graders": {"e": CONTAINS_E, "an": CONTAINS_AN},
               "calculate_output": "0.9 * e + 0.1 * an"}
LONGER_IS_BETTER = {"type": "python", "name": "longer_is_better",
                    "source": "def grade(sample, item):\n"
                              "    return min(len(sample['output_text']) / 40, 1.0)\n"}


def _events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def _kinds(findings: list[dict]) -> list[str]:
    return [f["kind"] for f in findings]


def test_a_grader_that_never_passes_reports_no_signal(make_config):
    result = train(config_from_dict(make_config(grader=NEVER, expert={"max_steps": 4})))
    # every 4-token sample is also cut at max_tokens and scores 0: truncation is a
    # plausible cause the monitor cannot rule out, so it may be reported alongside
    assert set(_kinds(result.findings)) <= {"no_signal", "truncation"}
    finding = next(f for f in result.findings if f["kind"] == "no_signal")
    assert finding["step"] == 1 and finding["detected_step"] == 3  # patience 3
    assert finding["numbers"]["all_fail_groups"] == 6  # 2 groups x 3 steps, all zero
    assert "scored the minimum" in finding["message"]
    run = Path(result.output_dir)
    events = [e for e in _events(run) if (e["data"] or {}).get("finding", {}).get("kind")
              == "no_signal"]
    assert len(events) == 1 and events[0]["level"] == "warn"
    assert json.loads((run / "result.json").read_text())["findings"] == result.findings


def test_no_signal_pauses_the_run_and_a_resume_continues(make_config):
    config = config_from_dict(make_config(
        grader=NEVER, expert={"max_steps": 5, "save_every": 10,
                              "monitor": {"on_no_signal": "pause"}}))
    result = train(config)
    run = Path(result.output_dir)
    assert result.stopped == "paused" and result.steps == 3
    assert (run / "checkpoints" / "step-3").is_dir() and not (run / "final").exists()
    assert json.loads((run / "result.json").read_text())["status"] == "paused"
    message = next(f for f in result.findings if f["kind"] == "no_signal")["message"]
    assert "paused itself" in message
    resumed = train(config, resume=True)  # the user chose to go on: no second pause
    assert resumed.stopped is None and resumed.steps == 5
    assert _kinds(resumed.findings).count("no_signal") == 1


def test_no_signal_can_fail_the_run(make_config):
    config = config_from_dict(make_config(grader=NEVER, expert={
        "max_steps": 5, "monitor": {"on_no_signal": "fail"}}))
    with pytest.raises(TrainingHealthError, match="No learning signal"):
        train(config)
    saved = json.loads((Path(config.output_dir) / "result.json").read_text())
    assert saved["status"] == "failed" and saved["steps"] == 3
    assert saved["findings"][0]["severity"] == "error"


def test_preflight_fails_fast_without_signal_unless_overridden(make_config, tmp_path):
    config = config_from_dict(make_config(grader=NEVER, expert={"preflight": True}))
    with pytest.raises(TrainingHealthError) as info:
        train(config)
    message = str(info.value)
    assert message.startswith("Preflight verdict: too_hard (16 rows x 4 samples: pass rate 0%")
    assert "partial credit" in message and "expert.preflight_override: true" in message
    run = Path(config.output_dir)
    assert not (run / "metrics.jsonl").exists()  # no step was paid for
    verdict = next(e for e in _events(run) if (e["data"] or {}).get("preflight"))
    assert verdict["level"] == "error" and verdict["data"]["preflight"]["verdict"] == "too_hard"

    override = config_from_dict(make_config(
        grader=NEVER, output_dir=str(tmp_path / "anyway"),
        expert={"preflight": True, "preflight_override": True}))
    result = train(override)
    assert result.steps == 2
    assert any("training anyway" in e["message"] for e in _events(Path(result.output_dir)))


def test_preflight_with_signal_reports_ok_and_trains(make_config):
    result = train(config_from_dict(make_config(grader=CONTAINS_E, expert={"preflight": True})))
    verdict = next(e for e in _events(Path(result.output_dir)) if (e["data"] or {}).get(
        "preflight"))
    assert verdict["level"] == "info" and verdict["message"].startswith("Preflight verdict: ok")
    assert result.steps == 2


def test_max_tokens_far_too_small_reports_truncation(make_config):
    # one token cannot hold the answer: every sample is cut and scores 0
    result = train(config_from_dict(make_config(expert={"max_steps": 4, "max_tokens": 1})))
    finding = next(f for f in result.findings if f["kind"] == "truncation")
    assert finding["numbers"]["truncated_fraction"] == 1.0
    assert finding["numbers"]["truncated_reward_mean"] == 0.0
    assert "max_tokens=1" in finding["message"]


def test_a_multi_grader_whose_one_part_dominates(make_config):
    result = train(config_from_dict(make_config(grader=E_DOMINATES, expert={"max_steps": 4})))
    assert _kinds(result.findings) == ["grader_dominance"]
    finding = result.findings[0]
    assert "'e' part" in finding["message"]
    assert finding["numbers"]["share_e"] >= 0.8 > finding["numbers"]["share_an"]


def test_a_learning_rate_that_collapses_entropy(make_config):
    # full fine-tuning at lr 3: after one or two updates the policy is (nearly)
    # deterministic, yet it has not solved the task: entropy collapse, then no signal
    config = make_config(
        hyperparameters={"batch_size": 4, "n_epochs": 4, "eval_interval": 100},
        expert={"group_size": 8, "max_tokens": 6, "max_steps": 9, "finetune": "full",
                "base_learning_rate": 3.0, "save_every": 100},
    )
    result = train(config_from_dict(config))
    finding = next(f for f in result.findings if f["kind"] == "entropy_collapse")
    assert finding["numbers"]["entropy_now"] < 0.2 * finding["numbers"]["entropy_start"]
    assert "no_signal" in _kinds(result.findings)


def test_a_grader_that_rewards_length_reports_length_drift(make_config, tiny_model_dir,
                                                            tmp_path):
    from openrft.sft import train_supervised

    # First teach the tiny model to answer briefly (it otherwise never stops), then
    # reward length: completions grow from ~3 tokens to max_tokens within a few steps.
    short = train_supervised(
        tiny_model_dir,
        [{"messages": [{"role": "user", "content": f"question {i}"},
                       {"role": "assistant", "content": "ok"}]} for i in range(16)],
        tmp_path / "short", epochs=8, learning_rate=1e-2, warmup_ratio=0.0, progress=False)
    config = make_config(
        model=str(short), grader=LONGER_IS_BETTER,
        hyperparameters={"batch_size": 4, "n_epochs": 4, "eval_interval": 100},
        expert={"group_size": 8, "max_tokens": 24, "max_steps": 6, "finetune": "full",
                "base_learning_rate": 3e-2, "save_every": 100},
    )
    result = train(config_from_dict(config))
    assert _kinds(result.findings) == ["length_drift"]
    numbers = result.findings[0]["numbers"]
    assert numbers["ratio"] >= 2.5 and numbers["completion_tokens_start"] < 6
    assert "grew from" in result.findings[0]["message"]
