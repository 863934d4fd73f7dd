"""The findings task (design (b)): prompt, SFT target, reward, and its rows on real cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from openrft.errors import InvalidInput
from openrft.examples.rare_disease.baseline import HypergeomRanker
from openrft.examples.rare_disease.cases import CaseGenerator, CaseSettings
from openrft.examples.rare_disease.findings_task import (
    ASK,
    findings_f1,
    findings_messages,
    findings_reward,
    findings_target,
    rank_reward,
)
from openrft.examples.rare_disease.hpo_data import HPOData
from openrft.examples.rare_disease.matcher import PhenotypeMatcher, TextPipeline
from openrft.examples.rare_disease.report_act import (
    ReportActSettings,
    RowBuilder,
    list_length,
    prepare_report_data,
)
from openrft.examples.rare_disease.report_demo import act_settings
from openrft.examples.rare_disease.reports import Report, ReportWriter


def test_target_keeps_present_findings_in_report_order_and_drops_negated_ones() -> None:
    report = Report(
        "We saw a 3-year-old girl. There was no seizure. On examination we noted short "
        "stature and big ears. The parents report clumsiness.",
        [{"id": "HP:1", "text": "big ears", "negated": False},
         {"id": "HP:2", "text": "seizure", "negated": True},
         {"id": "HP:3", "text": "short stature", "negated": False},
         {"id": "HP:4", "text": "clumsiness", "negated": False}],
    )
    assert findings_target(report) == "short stature; big ears; clumsiness"


def test_prompt_is_the_report_then_the_instruction() -> None:
    system, user = findings_messages("A report.")
    assert system["role"] == "system" and user == {"role": "user", "content": f"A report.\n{ASK}"}
    assert "ruled out" in ASK and "semicolons" in ASK


def test_reward_is_rank_to_the_minus_half_and_zero_when_unlisted() -> None:
    assert rank_reward(1) == 1.0 and rank_reward(4) == 0.5
    assert math.isclose(rank_reward(20), 1 / math.sqrt(20))
    assert rank_reward(None) == 0.0


def test_findings_f1_counts_each_term_once_and_is_zero_without_a_match() -> None:
    # answer {A, B, C} (B twice), reference {B, C, D, E}: precision 2/3, recall 2/4,
    # F1 = 2 * (1/3) / (2/3 + 1/2) = 4/7
    assert math.isclose(findings_f1(["A", "B", "B", "C"], ["B", "C", "D", "E"]), 4 / 7)
    assert findings_f1(["B", "C"], ["C", "B"]) == 1.0
    assert findings_f1(["A"], ["B"]) == 0.0 and findings_f1([], ["B"]) == 0.0


def test_reward_mixes_rank_and_findings_by_the_reading_weight() -> None:
    # rank 4 (0.5) with F1 4/7: a quarter of the first, three quarters of the second
    f1 = findings_f1(["A", "B", "C"], ["B", "C", "D", "E"])
    assert math.isclose(findings_reward(4, f1), 0.25 * 0.5 + 0.75 * 4 / 7)
    assert findings_reward(4, f1, reading_weight=0.0) == 0.5
    assert math.isclose(findings_reward(None, f1, reading_weight=1.0), 4 / 7)
    # copying a negated finding into the answer costs precision at the same rank
    copied = findings_f1(["B", "C", "N"], ["B", "C"])
    assert findings_reward(1, copied) < findings_reward(1, findings_f1(["B", "C"], ["B", "C"]))


def test_findings_rows_on_the_mini_release(mini: HPOData) -> None:
    # Through the matcher, the SFT target names exactly the report's present terms (the
    # mini release has no synonyms, so no word is ambiguous); the row has no candidates.
    pool = ["OMIM:100", "OMIM:200", "OMIM:400"]
    matcher = PhenotypeMatcher(mini, {})
    pipeline = TextPipeline(matcher, HypergeomRanker(mini, pool))
    builder = RowBuilder(mini, {}, pipeline, ReportActSettings(), seed=3)
    writer = ReportWriter(mini.names, {}, seed=3)  # the builder's own stream, replayed
    cases = CaseGenerator(mini, pool, 3, CaseSettings(absent_probability=1.0)).generate(
        pool, 6, "t")
    negations = 0
    for case in cases:
        row = builder.row(case)
        report = writer.write(case)
        present = {str(m["id"]) for m in report.mentions if not m["negated"]}
        negated = {str(m["id"]) for m in report.mentions if m["negated"]}
        assert row["messages"] == findings_messages(report.text)
        assert set(matcher.find(row["target"])) == present
        assert not negated & set(matcher.find(row["target"]))
        assert "candidates" not in row and row["gene"] == case.gene
        negations += len(negated)
    assert negations > 0  # the reports did negate findings, and the targets left them out


def test_act_settings_per_task_and_act() -> None:
    full = act_settings("full", "m", "findings")
    assert (full.task, full.max_tokens, full.sft_epochs, full.rft_steps, full.sft_rft_steps,
            full.heldout_cases) == ("findings", 64, 3, 100, 40, 600)
    assert (full.rft_reading_weight, full.sft_rft_reading_weight) == (0.75, 0.75)
    assert list_length(full) == 20
    old = act_settings("full", "m", "candidates")  # the H100 run of docs/rare_disease.md
    assert (old.max_tokens, old.sft_epochs, old.rft_steps, old.sft_rft_steps,
            list_length(old)) == (24, 1, 40, 40, 5)
    short = act_settings("short", "m", "findings")
    assert (short.max_tokens, short.sft_epochs, short.rft_steps, short.sft_rft_steps,
            short.heldout_cases, short.model) == (64, 1, 4, 4, 40, "m")


@pytest.mark.parametrize(("written", "asked"), [("findings", "candidates"),
                                                ("candidates", "findings")])
def test_rows_of_the_other_task_are_refused_not_reused(tmp_path: Path, written: str,
                                                        asked: str) -> None:
    field = {"target": "big ears"} if written == "findings" else {"candidates": ["G1"]}
    row = {"messages": [], "gene": "G1", "pipeline_rank": 1, "upper_bound_rank": 1, **field}
    for name in ("train", "valid", "heldout", "grader"):
        suffix = "json" if name == "grader" else "jsonl"
        (tmp_path / f"{name}.{suffix}").write_text(json.dumps(row) + "\n")
    settings = ReportActSettings(task=asked)
    with pytest.raises(InvalidInput, match=f"rows of the {written} task, not the {asked}"):
        prepare_report_data(None, {}, None, settings, 0, tmp_path)  # type: ignore[arg-type]
