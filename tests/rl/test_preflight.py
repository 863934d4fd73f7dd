"""Preflight verdicts: by hand on crafted groups, and on the tiny model end to end."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest
import yaml

from openrft.errors import InvalidInput
from openrft.eval.evaluate import RowResult, SampleResult, summarize
from openrft.rl.preflight import analyse, preflight, preflight_config
from openrft.rollout.engine import GenerationParams


def _graded(groups: list[list[float]], finish: str = "stop") -> object:
    rows = [
        RowResult(i, [], [SampleResult(output_text="x", score=s, finish_reason=finish,
                                       completion_tokens=3) for s in group])
        for i, group in enumerate(groups)
    ]
    return summarize(rows, samples_per_row=len(groups[0]))


def test_all_zero_groups_are_too_hard_with_group_size_advice() -> None:
    # 9 of 10 groups all-zero; 1 pass in 40 samples: pass rate 1/40
    groups = [[0.0] * 4 for _ in range(9)] + [[1.0, 0.0, 0.0, 0.0]]
    report = analyse(_graded(groups), pass_threshold=1.0)
    assert report.verdict == "too_hard"
    assert report.groups.all_fail == pytest.approx(0.9)
    assert report.pass_rate == pytest.approx(1 / 40)
    # smallest G with 1 - (1 - 1/40)^G >= 1/2 is 28 (0.975^27 = 0.505, 0.975^28 = 0.492)
    assert any("about 28 samples per group" in a for a in report.advice)
    assert any("compute_multiplier" in a for a in report.advice)


def test_all_pass_groups_are_too_easy() -> None:
    groups = [[1.0] * 4 for _ in range(9)] + [[1.0, 0.0, 1.0, 1.0]]
    report = analyse(_graded(groups), pass_threshold=1.0)
    assert report.verdict == "too_easy"
    assert report.groups.all_pass == pytest.approx(0.9)


def test_constant_partial_scores_are_low_signal() -> None:
    groups = [[0.5] * 4 for _ in range(6)] + [[0.2, 0.9, 0.5, 0.1] for _ in range(4)]
    report = analyse(_graded(groups), pass_threshold=1.0)
    assert report.verdict == "low_signal"
    assert report.groups.zero_variance == pytest.approx(0.6)


def test_floor_and_threshold_of_a_wider_score_range() -> None:
    # a 0..10 judge: 1.0 is neither full marks nor nothing
    groups = [[1.0, 1.0, 1.0, 1.0] for _ in range(9)] + [[10.0, 0.0, 0.0, 0.0]]
    report = analyse(_graded(groups), pass_threshold=10.0, fail_floor=0.0)
    assert report.verdict == "low_signal"  # 9 flat groups but neither all-pass nor all-fail
    assert (report.groups.all_pass, report.groups.all_fail) == (0.0, 0.0)


def test_mixed_groups_are_ok_and_truncation_is_flagged() -> None:
    groups = [[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.5, 0.0], [1.0, 1.0, 1.0, 1.0]]
    report = analyse(_graded(groups, finish="length"), pass_threshold=1.0)
    assert report.verdict == "ok"
    assert report.truncation_rate == 1.0
    assert any("max_tokens" in w for w in report.warnings)
    assert sum(report.histogram_counts) == 12
    # four 0.0, one 0.5, seven 1.0 over bins of width 0.1 on [0, 1]
    assert report.histogram_counts == [4, 0, 0, 0, 0, 1, 0, 0, 0, 7]
    assert report.rewards.quantiles[0.5] == pytest.approx(1.0)


RANDOM_ANSWER = "".join(random.Random(7).choices(string.ascii_letters + string.digits, k=40))
ROWS = [
    {"messages": [{"role": "user", "content": f"What is {a} + {b}?"}], "answer": RANDOM_ANSWER}
    for a, b in [(1, 2), (3, 4), (5, 6)]
]


def _string_check(operation: str) -> dict[str, str]:
    return {
        "type": "string_check",
        "name": "answer",
        "input": "{{ sample.output_text }}",
        "reference": "{{ item.answer }}",
        "operation": operation,
    }


SHORT = GenerationParams(max_tokens=8, temperature=1.0, seed=0)


def test_tiny_model_flags_an_impossible_task_as_too_hard(tiny_model_dir: Path) -> None:
    report = preflight(tiny_model_dir, ROWS, _string_check("eq"), group_size=3, params=SHORT,
                       progress=False)
    assert report.verdict == "too_hard"
    assert report.groups.all_fail == 1.0 and report.pass_rate == 0.0
    assert report.n_rows == 3 and report.group_size == 3
    assert report.evaluation is not None and report.evaluation.n_samples == 9
    assert any("SFT" in a or "demonstrations" in a for a in report.advice)


def test_tiny_model_flags_an_always_passing_grader_as_too_easy(tiny_model_dir: Path) -> None:
    report = preflight(tiny_model_dir, ROWS, _string_check("ne"), group_size=3, params=SHORT,
                       progress=False)
    assert report.verdict == "too_easy"
    assert report.groups.all_pass == 1.0 and report.rewards.mean == 1.0


def test_preflight_config_uses_the_runs_group_size_and_subset(tiny_model_dir: Path, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS * 3))
    config = {
        "model": str(tiny_model_dir),
        "training_file": "train.jsonl",
        "grader": _string_check("eq"),
        "seed": 3,
        "hyperparameters": {"compute_multiplier": 0.25},  # group size round(8 * 0.25) = 2
        "expert": {"max_tokens": 6},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    report = preflight_config(path, max_rows=4, progress=False)
    assert (report.group_size, report.n_rows) == (2, 4)
    assert report.settings["max_tokens"] == 6
    assert report.mean_completion_tokens <= 6
    assert json.loads(json.dumps(report.to_dict()))["verdict"] == "too_hard"
    # 9 rows, batch auto = min(8, rows) = 8, steps/epoch = 2, auto epochs = 10 -> 20 steps
    assert (report.settings["batch_size"], report.settings["total_steps"]) == (8, 20)
    per_row = report.elapsed_s / 4
    assert report.estimated_sampling_s_per_step == pytest.approx(8 * per_row)
    assert report.estimated_sampling_s_total == pytest.approx(20 * 8 * per_row)


def test_group_size_below_two_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="group_size"):
        preflight(None, ROWS, _string_check("eq"), group_size=1, progress=False)
