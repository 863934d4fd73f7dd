"""The whole pipeline end to end on a tiny model (its statistics: tests/eval/test_stats.py)."""

from __future__ import annotations

import json

import pytest

from openrft.examples.tool_lookup.run import RunSettings, run


@pytest.mark.slow
def test_pipeline_end_to_end_on_a_tiny_model(tmp_path, smollm2_template) -> None:
    from transformers import AutoTokenizer

    from openrft.models.tiny import build_tiny_model

    # the demonstrations are written in SmolLM2's format: give the tiny model its template
    model_dir = build_tiny_model(tmp_path / "tiny", max_positions=2048)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = smollm2_template
    tokenizer.save_pretrained(model_dir)
    settings = RunSettings(model=str(model_dir), n_sft=4, n_rft=4, n_test=3, sft_epochs=1,
                           rft_steps=1, rft_batch_size=2, group_size=2, max_tokens=8)
    results = run(tmp_path / "run", settings)

    def diseases(name: str) -> set[str]:
        lines = (tmp_path / "run" / name).read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        return {r.get("disease") or r["messages"][1]["content"] for r in rows}

    test = diseases("test.jsonl")
    assert len(test) == 3 and not test & diseases("rft.jsonl")
    sft_questions = diseases("sft.jsonl")
    assert not any(d in q for d in test for q in sft_questions)
    for arm in ("untuned", "sft", "sft_rft"):
        assert len(results[arm]["answer"]) == len(results[arm]["tool"]) == 3
        assert results[arm]["accuracy"] == pytest.approx(sum(results[arm]["answer"]) / 3)
    ci = results["ci_answer"]["sft_rft_minus_sft"]
    assert ci["low"] <= ci["mean"] <= ci["high"]
    metrics = [json.loads(line) for line in
               (tmp_path / "run" / "rft" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1]
    assert "tool_calls_per_rollout" in metrics[0]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["settings"] == vars(
        settings)


def test_a_rerun_resumes_its_own_run_and_refuses_another_runs_out_dir(tmp_path) -> None:
    from openrft.errors import InvalidInput
    from openrft.examples.tool_lookup.run import _resumable

    settings = RunSettings(seed=3)
    fresh = _resumable(tmp_path, settings, 10)
    assert fresh == {"settings": vars(settings), "n_eligible": 10}
    saved = {**fresh, "untuned": {"accuracy": 0.0}}
    (tmp_path / "results.json").write_text(json.dumps(saved))
    assert _resumable(tmp_path, settings, 10) == saved  # finished stages are kept
    with pytest.raises(InvalidInput, match="holds a run with other settings"):
        _resumable(tmp_path, RunSettings(seed=4), 10)
