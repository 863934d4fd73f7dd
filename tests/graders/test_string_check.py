"""string_check: OpenAI's eq / ne / like / ilike, scores exactly 1.0 or 0.0."""

from __future__ import annotations

import pytest

from openrft.errors import InvalidInput
from openrft.graders import build_grader, run


def grader(operation: str, reference: str = "{{ item.reference }}") -> dict:
    return {
        "type": "string_check",
        "name": "check",
        "input": "{{ sample.output_text }}",
        "reference": reference,
        "operation": operation,
    }


# (operation, model output, reference, expected) from the graders guide's definitions:
# eq/ne case-sensitive equality, like = input contains reference (case-sensitive),
# ilike = contains ignoring case.
CASES = [
    ("eq", "Paris", "Paris", 1.0),
    ("eq", "paris", "Paris", 0.0),
    ("eq", "Paris ", "Paris", 0.0),
    ("ne", "Paris", "Paris", 0.0),
    ("ne", "paris", "Paris", 1.0),
    ("like", "The capital is Paris.", "Paris", 1.0),
    ("like", "The capital is paris.", "Paris", 0.0),
    ("like", "Paris", "The capital is Paris", 0.0),  # direction: input contains reference
    ("ilike", "THE CAPITAL IS PARIS", "paris", 1.0),
    ("ilike", "Lyon", "paris", 0.0),
    ("like", "anything", "", 1.0),  # every string contains the empty string
    ("eq", "", "", 1.0),
]


@pytest.mark.parametrize(("operation", "output", "reference", "expected"), CASES)
def test_operations(operation, output, reference, expected):
    result = run(grader(operation), {"output_text": output}, {"reference": reference})
    assert result.ok
    assert result.score == expected
    assert result.type == "string_check" and result.name == "check"


def test_literal_input_and_templated_reference_from_tools():
    # The tool-call example of OpenAI's graders guide: a literal input, a sample reference.
    spec = {
        "type": "string_check",
        "name": "function_name",
        "input": "get_acceptors",
        "reference": "{{sample.output_tools[0].function.name}}",
        "operation": "eq",
    }
    sample = {"output_text": "", "output_tools": [{"function": {"name": "get_acceptors"}}]}
    assert run(spec, sample, {}).score == 1.0


def test_missing_item_field_is_invalid_variable_error_with_score_zero():
    result = run(grader("eq"), {"output_text": "Paris"}, {"answer": "Paris"})
    assert result.score == 0.0
    assert [e.code for e in result.errors] == ["invalid_variable_error"]
    assert "item has no field 'reference'" in result.errors[0].message


def test_unknown_operation_names_field():
    with pytest.raises(InvalidInput) as info:
        build_grader(grader("contains"))
    assert info.value.location == "grader.operation"


def test_bad_template_rejected_when_built_naming_field():
    with pytest.raises(InvalidInput) as info:
        build_grader(grader("eq", reference="{{ itme.reference }}"))
    assert info.value.location == "grader.reference"
    assert "unknown namespace 'itme'" in info.value.message
