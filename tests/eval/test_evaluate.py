"""evaluate(): a scripted engine for exact metrics, the tiny model for the real path."""

from __future__ import annotations

import itertools
import json
import statistics
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from openrft.errors import InvalidInput
from openrft.eval.evaluate import evaluate
from openrft.eval.report import report_json, report_table, write_report_chart
from openrft.graders.base import BaseGrader, Score
from openrft.graders.schema import StringCheckGrader
from openrft.rollout.engine import GenerationParams, Messages, Sample

EXACT = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "operation": "eq",
}


def _row(question: str, **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}], **fields}


class ScriptedEngine:
    """Answers each prompt with a fixed list of completions (one per sample)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[int, int]] = []

    def generate(self, prompts: list[Messages], n: int, params: GenerationParams) -> list[Sample]:
        self.calls.append((len(prompts), n))
        return [
            Sample(
                prompt_index=i,
                output_text=text,
                completion_ids=[0] * len(text),
                finish_reason="length" if text.endswith("...") else "stop",
            )
            for i, prompt in enumerate(prompts)
            for text in self.answers[prompt[-1]["content"]][:n]
        ]

    def sync_weights(self, model: Any) -> None:
        pass


def test_scripted_metrics_match_hand_values() -> None:
    rows = [_row("q1", answer="a"), _row("q2", answer="b"), _row("q3", answer="c")]
    engine = ScriptedEngine(
        {"q1": ["a", "x", "a", "y"], "q2": ["x", "y", "z", "w..."], "q3": ["c", "c", "c", "c"]}
    )
    report = evaluate(None, rows, EXACT, samples_per_row=4, engine=engine, batch_size=2,
                      progress=False)
    # passes per row: 2/4, 0/4, 4/4
    assert report.mean_reward == pytest.approx(6 / 12)
    assert report.pass_at_k[1] == pytest.approx((0.5 + 0 + 1) / 3)
    # pass@2, row 1: 1 - C(2,2)/C(4,2) = 5/6; row 2: 0; row 3: 1
    assert report.pass_at_k[2] == pytest.approx((5 / 6 + 0 + 1) / 3)
    assert report.pass_at_k[4] == pytest.approx(2 / 3)
    assert set(report.pass_at_k) == {1, 2, 4}
    assert report.top_at_k == {}  # string_check reports no ranks
    assert (report.n_rows, report.n_samples, report.samples_per_row) == (3, 12, 4)
    assert report.truncation_rate == pytest.approx(1 / 12)
    assert engine.calls == [(2, 4), (1, 4)]  # batches of 2 prompts
    assert [r.index for r in report.rows] == [0, 1, 2]
    assert report.rows[0].scores == [1.0, 0.0, 1.0, 0.0]


class RankGrader(BaseGrader):
    """Reports where the reference appears in a comma-separated answer list (1-based)."""

    def score(self, sample: dict[str, Any], item: dict[str, Any]) -> Score:
        ranked = sample["output_text"].split(",")
        rank = ranked.index(item["answer"]) + 1 if item["answer"] in ranked else None
        return Score(value=1.0 / rank if rank else 0.0, metadata={"rank": rank})


def test_top_at_k_from_grader_ranks() -> None:
    grader = RankGrader(
        StringCheckGrader(type="string_check", name="rank", input="", reference="",
                          operation="eq")
    )
    rows = [_row(f"q{i}", answer="g") for i in range(4)]
    engine = ScriptedEngine(
        {
            "q0": ["g,a,b"],  # rank 1
            "q1": ["a,b,c,d,g"],  # rank 5
            "q2": ["a,b,c,d,e,f,g"],  # rank 7
            "q3": ["a,b"],  # absent
        }
    )
    report = evaluate(None, rows, grader, engine=engine, progress=False)
    assert report.top_at_k == pytest.approx({1: 0.25, 5: 0.5, "max": 0.75})
    assert [s.rank for r in report.rows for s in r.samples] == [1, 5, 7, None]


def test_ranks_inside_a_multi_grader_are_found() -> None:
    from openrft.eval.evaluate import find_rank

    multi = {"graders": {"fmt": {"metadata": {}}, "genes": {"metadata": {"rank": 3}}}}
    assert find_rank(multi) == (True, 3)
    assert find_rank({"rank": None, "graders": {"g": {"metadata": {"rank": 1}}}}) == (True, None)
    assert find_rank({"graders": {"g": {"metadata": {"listed": 2}}}}) == (False, None)
    assert find_rank({"graders": "not a dict"}) == (False, None)


@pytest.mark.parametrize(
    ("extra", "bounds"),
    [
        ({}, (0.0, 1.0)),
        ({"range": [0, 10]}, (0.0, 10.0)),
        ({"range": [-1, 1], "pass_threshold": 0.5}, (-1.0, 0.5)),
    ],
)
def test_score_bounds_follow_the_grader(extra: dict[str, Any], bounds: tuple[float, float]):
    from openrft.eval.evaluate import score_bounds

    judge = {"type": "score_model", "name": "j", "model": "m",
             "input": [{"role": "user", "content": "{{ sample.output_text }}"}], **extra}
    assert score_bounds(judge) == bounds
    assert score_bounds(EXACT) == (0.0, 1.0)


def test_text_similarity_pass_threshold_defines_pass_at_k() -> None:
    fuzzy = {"type": "text_similarity", "name": "f", "input": "{{ sample.output_text }}",
             "reference": "{{ item.answer }}", "evaluation_metric": "fuzzy_match",
             "pass_threshold": 0.8}
    # rapidfuzz ratio: "abcdefghij" vs "abcdefghiX" = 0.9 (passes 0.8), vs "xyz" = 0 (fails)
    engine = ScriptedEngine({"q": ["abcdefghiX", "xyz"]})
    report = evaluate(None, [_row("q", answer="abcdefghij")], fuzzy, samples_per_row=2,
                      engine=engine, progress=False)
    assert report.pass_threshold == 0.8
    assert report.rows[0].scores == pytest.approx([0.9, 0.0])
    assert report.pass_at_k == pytest.approx({1: 0.5, 2: 1.0})


def test_grader_errors_are_counted_not_raised() -> None:
    # no response_format, so samples have no output_json: every grade fails, scoring 0
    grader = dict(EXACT, input="{{ sample.output_json.answer }}")
    engine = ScriptedEngine({"q": ["a", "b"]})
    report = evaluate(None, [_row("q", answer="a")], grader, samples_per_row=2, engine=engine,
                      progress=False)
    assert report.grader_errors == 2 and sum(report.grader_error_codes.values()) == 2
    assert report.mean_reward == 0.0


def test_rows_lacking_a_grader_field_are_rejected_before_generating() -> None:
    engine = ScriptedEngine({"q": ["a"]})
    grader = dict(EXACT, reference="{{ item.missing }}")
    with pytest.raises(InvalidInput, match=r"rows\[0\]"):
        evaluate(None, [_row("q", answer="a")], grader, engine=engine, progress=False)
    assert engine.calls == []


@pytest.mark.parametrize(
    ("rows", "location"),
    [
        ([], "rows"),
        ([{"answer": "a"}], "rows[0]: messages"),
        ([_row("q", answer="a"), {"messages": [{"role": "assistant", "content": "x"}]}], "rows[1]"),
    ],
)
def test_bad_rows_are_rejected_with_their_location(rows: list[Any], location: str) -> None:
    with pytest.raises(InvalidInput) as info:
        evaluate(None, rows, EXACT, engine=ScriptedEngine({}), progress=False)
    assert str(info.value).startswith(location)


def test_bad_jsonl_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(_row("q", answer="a")) + "\n" + '{"messages": 3}\n')
    with pytest.raises(InvalidInput, match=r"rows\.jsonl:2"):
        evaluate(None, path, EXACT, engine=ScriptedEngine({}), progress=False)


# --- the real path: tiny model, HF engine, string_check -------------------------------

NEEDLE = {
    "type": "string_check",
    "name": "needle",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.needle }}",
    "operation": "ilike",
}
TINY_ROWS = [
    _row("What is 1 + 2?", needle=""),  # "" is in every text: always passes
    _row("What is 3 * 4?", needle="qqqqqqqqqqqqqqqq"),  # never generated: always fails
    _row("Explain the rare disease.", needle="e"),
    _row("What is the gene?", needle="a"),
]


@pytest.fixture(scope="module")
def tiny_report(tiny_model_dir: Path):
    params = GenerationParams(max_tokens=12, temperature=1.0, seed=123)
    return evaluate(tiny_model_dir, TINY_ROWS, NEEDLE, samples_per_row=5, params=params,
                    batch_size=3, progress=False)


def test_tiny_model_end_to_end_structure(tiny_report) -> None:
    report = tiny_report
    assert (report.n_rows, report.n_samples, report.samples_per_row) == (4, 20, 5)
    assert [len(r.samples) for r in report.rows] == [5] * 4
    assert report.rows[0].messages == TINY_ROWS[0]["messages"]
    assert all(0 < s.completion_tokens <= 12 for r in report.rows for s in r.samples)
    assert report.rows[0].scores == [1.0] * 5
    assert report.rows[1].scores == [0.0] * 5
    assert report.grader_errors == 0 and report.parse_errors == 0


def test_tiny_model_metrics_agree_with_rescored_samples(tiny_report) -> None:
    report = tiny_report
    # Re-grade every sample with the string_check rule written out here.
    rescored = [
        [float(row["needle"].lower() in s.output_text.lower()) for s in result.samples]
        for row, result in zip(TINY_ROWS, report.rows, strict=True)
    ]
    assert [r.scores for r in report.rows] == rescored
    flat = [s for r in rescored for s in r]
    assert report.mean_reward == pytest.approx(statistics.fmean(flat))
    assert report.std == pytest.approx(statistics.stdev(flat))
    for k, value in report.pass_at_k.items():
        expected = statistics.fmean(_enumerated_pass_at_k(r, k) for r in rescored)
        assert value == pytest.approx(expected)
    truncated = [s.finish_reason == "length" for r in report.rows for s in r.samples]
    assert report.truncation_rate == pytest.approx(sum(truncated) / 20)


def _enumerated_pass_at_k(scores: list[float], k: int) -> float:
    subsets = list(itertools.combinations(scores, k))
    return float(Fraction(sum(max(s) >= 1.0 for s in subsets), len(subsets)))


def test_tiny_model_evaluation_is_reproducible_with_a_seed(tiny_model_dir: Path, tiny_report):
    params = GenerationParams(max_tokens=12, temperature=1.0, seed=123)
    again = evaluate(tiny_model_dir, TINY_ROWS, NEEDLE, samples_per_row=5, params=params,
                     batch_size=3, progress=False)
    texts = [[s.output_text for s in r.samples] for r in again.rows]
    assert texts == [[s.output_text for s in r.samples] for r in tiny_report.rows]


def test_report_renders_as_table_json_and_png(tiny_report, tmp_path: Path) -> None:
    from rich.console import Console

    console = Console(record=True, width=100)
    console.print(report_table(tiny_report))
    text = console.export_text()
    assert "pass@5" in text and "mean reward" in text
    data = json.loads(report_json(tiny_report))
    assert data["pass_at_k"].keys() == {"1", "2", "5"}
    assert len(data["rows"]) == 4 and len(data["rows"][0]["samples"]) == 5
    png = write_report_chart(tiny_report, tmp_path / "chart.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
