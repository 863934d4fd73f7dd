"""multi: sub-graders built once, scores combined by calculate_output, errors carried."""

from __future__ import annotations

import pytest

from openrft.errors import InvalidInput
from openrft.graders import build_grader, run, validate

EXACT = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "operation": "eq",
}
OVERLAP = {
    "type": "text_similarity",
    "name": "overlap",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "evaluation_metric": "rouge_1",
}


def multi(formula: str, **graders) -> dict:
    return {
        "type": "multi",
        "name": "combined",
        "graders": graders or {"exact": EXACT, "overlap": OVERLAP},
        "calculate_output": formula,
    }


def test_weighted_sum_with_hand_computed_sub_scores():
    # "the cat sat" vs "the cat sat down": exact 0; rouge_1 P = 3/3, R = 3/4 -> F = 6/7.
    result = run(
        multi("0.3 * exact + 0.7 * overlap"),
        {"output_text": "the cat sat"},
        {"answer": "the cat sat down"},
    )
    assert result.ok
    assert result.sub_scores == pytest.approx({"exact": 0.0, "overlap": 6 / 7})
    assert result.score == pytest.approx(0.7 * 6 / 7)
    assert result.type == "multi" and result.name == "combined"
    details = result.metadata["graders"]
    assert details["overlap"]["type"] == "text_similarity"
    assert details["exact"]["errors"] == []


def test_openai_guide_tool_call_example():
    grader = {
        "type": "multi",
        "name": "tools",
        "graders": {
            "function_name": {
                "name": "function_name",
                "type": "string_check",
                "input": "get_acceptors",
                "reference": "{{sample.output_tools[0].function.name}}",
                "operation": "eq",
            },
            "arguments": {
                "name": "arguments",
                "type": "string_check",
                "input": '{"smiles": "{{item.smiles}}"}',
                "reference": "{{sample.output_tools[0].function.arguments}}",
                "operation": "eq",
            },
        },
        "calculate_output": "0.5 * function_name + 0.5 * arguments",
    }
    call = {"function": {"name": "get_acceptors", "arguments": '{"smiles": "CCO"}'}}
    assert run(grader, {"output_text": "", "output_tools": [call]}, {"smiles": "CCO"}).score == 1.0
    assert run(grader, {"output_text": "", "output_tools": [call]}, {"smiles": "CO"}).score == 0.5


def test_sub_grader_error_scores_zero_and_is_reported_with_its_key():
    result = run(multi("exact + overlap"), {"output_text": "x"}, {"not_answer": "x"})
    assert result.score == 0.0
    assert result.sub_scores == {"exact": 0.0, "overlap": 0.0}
    assert {e.code for e in result.errors} == {"invalid_variable_error"}
    assert sorted(e.message.split(":")[0] for e in result.errors) == ["exact", "overlap"]


def test_partial_sub_grader_failure_keeps_the_others():
    broken = {**EXACT, "reference": "{{ item.missing }}"}
    result = run(
        multi("exact + overlap", exact=broken, overlap=OVERLAP),
        {"output_text": "a b"},
        {"answer": "a b"},
    )
    assert result.sub_scores == {"exact": 0.0, "overlap": 1.0}
    assert result.score == 1.0
    assert [e.message.split(":")[0] for e in result.errors] == ["exact"]


def test_formula_math_error_gives_zero_and_formula_error_with_sub_scores():
    result = run(multi("overlap / exact"), {"output_text": "a b"}, {"answer": "a c"})
    assert result.score == 0.0
    assert [e.code for e in result.errors] == ["formula_parse_error"]
    assert "division by zero" in result.errors[0].message
    assert result.sub_scores == pytest.approx({"exact": 0.0, "overlap": 0.5})


def test_comparison_gate():
    gate = multi("(overlap >= 0.5) * overlap")
    assert run(gate, {"output_text": "a b"}, {"answer": "a c"}).score == pytest.approx(0.5)
    assert run(gate, {"output_text": "a x y"}, {"answer": "a c"}).score == 0.0


@pytest.mark.parametrize(
    ("grader", "location", "message"),
    [
        (multi("exact + typo"), "grader.calculate_output", "unknown name 'typo'"),
        (multi("exact.__class__"), "grader.calculate_output", "attribute access"),
        (
            multi("x", x={**EXACT, "operation": "contains"}),
            "grader.graders.x.operation",
            "Input should be",
        ),
        (
            multi("x", x={**EXACT, "input": "{{ smple.output_text }}"}),
            "grader.graders.x.input",
            "unknown namespace 'smple'",
        ),
        (
            multi("x", x=multi("exact")),
            "grader.graders.x.type",
            "cannot contain another multi",
        ),
        ({**multi("exact"), "graders": {}}, "grader.graders", "at least 1"),
    ],
)
def test_invalid_multi_graders_name_the_field(grader, location, message):
    with pytest.raises(InvalidInput) as info:
        validate(grader)
    assert info.value.location == location
    assert message in info.value.message


def test_close_reaches_sub_graders():
    built = build_grader(multi("exact"))
    closed = []
    for key, sub in built.graders.items():
        sub.close = lambda key=key: closed.append(key)
    built.close()
    assert sorted(closed) == ["exact", "overlap"]


def test_grade_many_batches_each_sub_grader_once_and_matches_per_sample_grading():
    """A python sub-grader inside multi sees the whole batch in one sandbox (its module
    global counts calls 1, 2, 3), and the combined scores equal per-sample grading."""
    from openrft.graders import build_grader

    counter_source = (
        "calls = 0\n"
        "def grade(sample, item):\n"
        "    global calls\n"
        "    calls += 1\n"
        "    return calls\n"
    )
    grader = {
        "type": "multi",
        "name": "m",
        "graders": {
            "counter": {"type": "python", "name": "c", "source": counter_source},
            "exact": {
                "type": "string_check",
                "name": "e",
                "operation": "eq",
                "input": "{{ sample.output_text }}",
                "reference": "{{ item.answer }}",
            },
        },
        "calculate_output": "counter * 10 + exact",
    }
    samples = [{"output_text": t} for t in ["a", "b", "c"]]
    items = [{"answer": "a"}, {"answer": "x"}, {"answer": "c"}]
    built = build_grader(grader)
    try:
        results = built.grade_many(samples, items)
    finally:
        built.close()
    # One sandbox for the batch: calls 1, 2, 3; exact matches rows 0 and 2.
    assert [r.score for r in results] == [11.0, 20.0, 31.0]
    assert [r.sub_scores["exact"] for r in results] == [1.0, 0.0, 1.0]
    assert all(r.type == "multi" and not r.errors for r in results)


def test_grade_many_reports_non_finite_formula_result():
    from openrft.graders import build_grader

    sub = {
        "type": "string_check",
        "name": "e",
        "operation": "eq",
        "input": "{{ sample.output_text }}",
        "reference": "yes",
    }
    grader = {"type": "multi", "name": "m", "graders": {"e": sub},
              "calculate_output": "exp(1000 * (e + 1))"}
    built = build_grader(grader)
    try:
        [result] = built.grade_many([{"output_text": "yes"}], [{}])
    finally:
        built.close()
    assert result.score == 0.0
    assert result.errors and result.errors[0].code in {"other_error", "formula_parse_error"}
