"""End to end: the tiny model learns a toy task, and a SIGKILLed run resumes bit-exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from openrft.rl.config import config_from_dict
from openrft.rl.trainer import train

CONTAINS_E = {"type": "string_check", "name": "contains_e", "input": "{{ sample.output_text }}",
              "reference": "e", "operation": "like"}
TIMING = {"step_seconds", "tokens_per_second", "sampling_seconds", "grading_seconds",
          "training_seconds", "grader_latency_s"}


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


@pytest.mark.slow
@pytest.mark.parametrize(("fast_path", "max_staleness"), [("auto", 0), ("off", 0), ("auto", 1)])
def test_tiny_model_learns_to_say_an(make_config, fast_path, max_staleness):
    # The random tiny model writes "an" in ~10% of 6-token completions (a rare but
    # reachable behaviour); 15 GRPO steps of full fine-tuning make it near certain, on
    # the fast path and on the plain reference path alike, and in the async mode, whose
    # batches lag the policy by one update, to the same thresholds.
    config = make_config(
        hyperparameters={"batch_size": 4, "n_epochs": 4, "eval_interval": 100},
        expert={"group_size": 8, "max_tokens": 6, "max_steps": 15, "finetune": "full",
                "base_learning_rate": 1e-2, "save_every": 100, "fast_path": fast_path,
                "max_staleness": max_staleness},
    )
    result = train(config_from_dict(config))
    metrics = _metrics(Path(result.output_dir))
    # the fast path replays the rollout's forward (fp32, on-policy; not in a step whose
    # groups all scored alike: no row is trained), the plain path and async mode never
    replays = fast_path == "auto" and max_staleness == 0
    assert any(row["forward_replayed"] for row in metrics) == replays
    assert [row["staleness"] for row in metrics] == [0] + [max_staleness] * 14
    rewards = [row["train_reward_mean"] for row in metrics]
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert first < 0.35, rewards  # it starts out mostly wrong
    assert last >= first + 0.4, rewards  # and learns
    assert last >= 0.7, rewards
    assert result.full_valid_mean_reward >= 0.5  # held-out prompts, sampled at temperature 1
    assert result.findings == []  # a healthy run: the training-health monitor stays silent


def _train_process(spawn, config_path: Path, *flags: str) -> subprocess.Popen:
    """`train()` in a fresh process. Both runs being compared get the same environment:
    one thread and MKL's conditional-numerical-reproducibility mode, without which MKL may
    round differently with different memory alignment (rare 1-ulp differences that
    sampling then amplifies)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MKL_CBWR": "COMPATIBLE"}
    code = "import sys; from openrft.rl.trainer import train; train(sys.argv[1], resume=" \
           f"{'--resume' in flags})"
    return spawn([sys.executable, "-c", code, str(config_path)], env=env,
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err.decode()[-2000:]


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_same_result(make_config, tmp_path, spawn):
    settings = {
        "grader": CONTAINS_E,
        "hyperparameters": {"batch_size": 2, "n_epochs": 3, "eval_interval": 2},
        "expert": {"max_steps": 6, "base_learning_rate": 1e-2, "save_every": 1},
    }
    paths = {}
    for name in ("a", "b"):
        paths[name] = tmp_path / f"{name}.yaml"
        config = make_config(**settings, output_dir=str(tmp_path / name))
        paths[name].write_text(yaml.safe_dump(config))
    straight = _train_process(spawn, paths["a"])

    run = tmp_path / "b"
    process = _train_process(spawn, paths["b"])
    deadline = time.monotonic() + 300
    while not (run / "checkpoints" / "step-2").is_dir() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL  # killed mid-run, not finished
    assert not (run / "final").exists()
    _finish(_train_process(spawn, paths["b"], "--resume"))
    _finish(straight)

    resumed_rows, straight_rows = _metrics(run), _metrics(tmp_path / "a")
    assert [row["step"] for row in resumed_rows] == [1, 2, 3, 4, 5, 6]
    differences = [(a["step"], k, a[k], b.get(k)) for a, b in zip(resumed_rows, straight_rows,
                   strict=True) for k in a if a[k] != b.get(k)]
    assert not differences
    results = [json.loads((tmp_path / name / "result.json").read_text()) for name in "ab"]
    assert results[0]["full_valid_mean_reward"] == results[1]["full_valid_mean_reward"]
    final = "final/adapter_model.safetensors"
    assert (run / final).read_bytes() == (tmp_path / "a" / final).read_bytes()
    # keep_checkpoints = 3 with validation at steps 2, 4, 6: a finished run keeps the three
    # scored checkpoints (a scored checkpoint outranks any unscored one)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-2", "step-4", "step-6"
    ]
