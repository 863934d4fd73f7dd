"""The prompt, the answer schema and the rank grader (run through the real python grader)."""

from __future__ import annotations

import json

import pytest

from openrft.examples.rare_disease.cases import Case
from openrft.examples.rare_disease.task import (
    GRADER,
    GRADER_SOURCE,
    INVALID_PENALTY,
    MAX_GENES,
    RESPONSE_FORMAT,
    assistant_text,
    case_row,
)
from openrft.graders.base import build_grader

ITEM = {"gene": "FBN1"}


def local_grade(sample: dict) -> dict:
    """The grader source executed directly (no sandbox) as a second path to the result."""
    namespace: dict = {}
    exec(compile(GRADER_SOURCE, "grader", "exec"), namespace)  # noqa: S102
    return namespace["grade"](sample, ITEM)


def genes_sample(genes: list) -> dict:
    return {"output_text": json.dumps({"genes": genes}), "output_json": {"genes": genes}}


@pytest.mark.parametrize(
    ("sample", "score", "rank"),
    [
        (genes_sample(["FBN1", "TGFBR2"]), 1.0, 1),
        (genes_sample(["COL1A1", "TGFBR2", "ACTA2", "fbn1"]), 0.5, 4),  # 4 ** -0.5
        (genes_sample(["COL1A1", "TGFBR2"]), 0.0, None),
        (genes_sample([]), 0.0, None),
        ({"output_text": '{"genes": ["X", "FBN1"]}'}, 2 ** -0.5, 2),  # parsed from text
        ({"output_text": "FBN1 is my answer"}, INVALID_PENALTY, None),
        (genes_sample("FBN1"), INVALID_PENALTY, None),
        (genes_sample([1, "FBN1"]), INVALID_PENALTY, None),
        (genes_sample(["G"] * MAX_GENES + ["FBN1"]), INVALID_PENALTY, None),
        # a gene listed twice counts once: FBN1 is the 3rd distinct gene, not the 4th
        (genes_sample(["CEP55", "NSDHL", "NSDHL", "FBN1"]), 3 ** -0.5, 3),
        (genes_sample(["cep55", "CEP55 ", "FBN1", "FBN1"]), 2 ** -0.5, 2),
    ],
)
def test_rank_scores_by_hand(sample: dict, score: float, rank: int | None) -> None:
    result = local_grade(sample)
    assert result["score"] == pytest.approx(score)
    assert result["metadata"]["rank"] == rank


@pytest.fixture(scope="module")
def python_grader():
    grader = build_grader(GRADER)
    yield grader
    grader.close()


def test_python_grader_sandbox_agrees(python_grader) -> None:
    samples = [
        genes_sample(["FBN1"]),
        genes_sample(["A", "B", "C", "FBN1"]),
        genes_sample(["A"]),
        {"output_text": "not json"},
    ]
    results = python_grader.grade_many(samples, [ITEM] * len(samples))
    assert [r.score for r in results] == pytest.approx([1.0, 0.5, 0.0, INVALID_PENALTY])
    assert [r.metadata.get("rank") for r in results] == [1, 4, None, None]
    assert all(r.ok for r in results)


def test_prompt_lists_present_and_absent_by_name() -> None:
    case = Case(
        case_id="c1",
        present=[{"id": "HP:1", "name": "Short stature"}, {"id": "HP:2", "name": "Ptosis"}],
        absent=[{"id": "HP:3", "name": "Seizure"}],
        gene="FBN1",
        disease_id="OMIM:1",
        disease_name="Marfan syndrome",
    )
    row = case_row(case)
    assert row["gene"] == "FBN1" and row["case_id"] == "c1"
    [message] = row["messages"]
    assert message["role"] == "user"
    lines = message["content"].splitlines()
    assert lines[0] == "Present: Short stature; Ptosis"
    assert lines[1] == "Absent: Seizure"
    assert "FBN1" not in message["content"] and "Marfan" not in message["content"]


def test_reference_answer_matches_schema_and_scores_one() -> None:
    from jsonschema import validate

    text = assistant_text("Marfan syndrome", ["FBN1", "TGFBR2"])
    reasoning, answer = text.removeprefix("<think>").split("</think>")
    assert "Marfan syndrome" in reasoning and "FBN1" in reasoning
    validate(json.loads(answer), RESPONSE_FORMAT["json_schema"]["schema"])
    assert local_grade({"output_text": answer})["score"] == 1.0
