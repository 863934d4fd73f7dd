"""Structured output parsing and schema validation on hand-written answers."""

from __future__ import annotations

import pytest

from openrft.errors import InvalidInput
from openrft.rollout.structured import check_response_format, extract_json, parse_structured_output

SCHEMA = {
    "type": "object",
    "properties": {"diagnosis": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["diagnosis"],
    "additionalProperties": False,
}
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "dx", "strict": True, "schema": SCHEMA},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('Here you go: {"a": [1, 2]} hope it helps', {"a": [1, 2]}),
        ('```json\n{"a": "}"}\n```', {"a": "}"}),
        ('Intro {not json}\n```\n{"b": true}\n```', {"b": True}),
        ("[1, 2, 3] trailing", [1, 2, 3]),
    ],
)
def test_extract_json(text: str, expected) -> None:
    assert extract_json(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [("no json here", "no JSON object or array"), ('{"a": 1,}', "invalid JSON")],
)
def test_extract_json_failures(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        extract_json(text)


def test_schema_valid_answer() -> None:
    answer = 'My answer: {"diagnosis": "Marfan syndrome", "confidence": 0.8}'
    assert parse_structured_output(answer, JSON_SCHEMA) == (
        {"diagnosis": "Marfan syndrome", "confidence": 0.8},
        None,
    )


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ('{"confidence": 0.8}', "schema violation at $: 'diagnosis' is a required property"),
        ('{"diagnosis": 3}', "schema violation at $.diagnosis: 3 is not of type 'string'"),
        ('{"diagnosis": "x", "extra": 1}', "schema violation at $: Additional properties"),
        ("I am not sure", "no JSON object or array in the answer"),
    ],
)
def test_schema_violations_become_parse_errors(answer: str, error: str) -> None:
    value, parse_error = parse_structured_output(answer, JSON_SCHEMA)
    assert value is None and parse_error.startswith(error)


def test_json_object_accepts_any_object_but_not_arrays() -> None:
    fmt = {"type": "json_object"}
    assert parse_structured_output('{"x": null}', fmt) == ({"x": None}, None)
    assert parse_structured_output("[1]", fmt) == (None, "expected a JSON object, got list")


def test_text_format_asks_for_nothing() -> None:
    assert parse_structured_output("anything", {"type": "text"}) == (None, None)


@pytest.mark.parametrize(
    ("fmt", "location"),
    [
        ("json", "response_format"),
        ({"type": "yaml"}, "response_format.type"),
        ({"type": "json_schema"}, "response_format.json_schema.schema"),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "thing"}}},
            "response_format.json_schema.schema",
        ),
    ],
)
def test_bad_response_format_is_invalid_input(fmt, location: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_response_format(fmt)
    assert info.value.location == location
