"""The candidate re-ranking grader (free text, dedup) and the prompt."""

from __future__ import annotations

import pytest

from openrft.examples.rare_disease.report_task import (
    GRADER,
    GRADER_SOURCE,
    candidate_lines,
    reference_answer,
    report_messages,
)
from openrft.graders.base import build_grader

ITEM = {"gene": "SPAST", "candidates": ["KIF5A", "SPAST", "SPART", "ATL1", "NT5C2"]}


def local_grade(text: str) -> dict:
    namespace: dict = {}
    exec(compile(GRADER_SOURCE, "grader", "exec"), namespace)  # noqa: S102
    return namespace["grade"]({"output_text": text}, ITEM)


@pytest.mark.parametrize(
    ("text", "score", "rank"),
    [
        ("SPAST", 1.0, 1),
        ("spast, KIF5A", 1.0, 1),  # case does not matter
        ("KIF5A, SPART, SPAST", 3 ** -0.5, 3),
        ("KIF5A, KIF5A, KIF5A, SPAST", 2 ** -0.5, 2),  # a gene named twice counts once
        ("The answer is SPASTIC paraplegia: KIF5A", 0.1, None),  # whole words; format credit
        ("FBN1, TTN", 0.0, None),  # no candidate named
        ("", 0.0, None),
        ("ATL1; NT5C2; SPART; KIF5A; SPAST; SPAST", 5 ** -0.5, 5),
    ],
)
def test_rank_by_hand(text: str, score: float, rank: int | None) -> None:
    result = local_grade(text)
    assert result["score"] == pytest.approx(score)
    assert result["metadata"]["rank"] == rank


def test_sandboxed_grader_agrees() -> None:
    grader = build_grader(GRADER)
    try:
        texts = ["SPAST", "ATL1, SPAST", "nothing", "ATL1"]
        results = grader.grade_many([{"output_text": t} for t in texts], [ITEM] * 4)
    finally:
        grader.close()
    assert [r.score for r in results] == pytest.approx([1.0, 2 ** -0.5, 0.0, 0.1])
    assert [r.metadata.get("rank") for r in results] == [1, 2, None, None]


def test_prompt_and_reference() -> None:
    lines = candidate_lines(["B2", "A1"], {"B2": ["Seizure", "Tall stature"]})
    assert lines == ["A1 (0 fit)", "B2 (2 fit): Seizure; Tall stature"]
    findings = {"B2": ["Seizure", "Tall stature", "Ataxia"], "A1": ["Ataxia", "Seizure"]}
    assert candidate_lines(["B2", "A1"], findings) == [
        "All fit: Seizure; Ataxia", "A1 (2 fit)", "B2 (3 fit): Tall stature"
    ]
    messages = report_messages("A boy. No seizure.", ["B2", "A1"], {})
    assert messages[0]["role"] == "system" and messages[1]["content"].startswith("A boy.")
    assert reference_answer("SPART", ["KIF5A", "SPART", "ATL1"]) == "SPART, KIF5A, ATL1"
