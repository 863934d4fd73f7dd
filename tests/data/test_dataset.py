"""load_dataset: OpenAI RFT rows in, every invalid file rejected with file:line: field path."""

from __future__ import annotations

import json

import pytest

from openrft.data.dataset import load_dataset
from openrft.errors import InvalidInput

GRADER = {
    "type": "string_check",
    "name": "answer",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "operation": "eq",
}


def _write(tmp_path, lines: list[str]):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _row(**extra) -> str:
    return json.dumps({"messages": [{"role": "user", "content": "2+2?"}], **extra})


def _error(path, grader=None) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        load_dataset(path, grader)
    return info.value


def test_valid_rows_keep_reference_fields_and_line_numbers(tmp_path):
    system = {"role": "system", "content": "Be brief."}
    parts = {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text",
                                                                          "text": "b"}]}
    path = _write(tmp_path, [_row(answer="4"), "", json.dumps({"messages": [system, parts],
                                                               "answer": "x"})])
    dataset = load_dataset(path, GRADER)
    assert len(dataset) == 2
    assert dataset.rows[0]["answer"] == "4"
    assert dataset.line_numbers == [1, 3]
    # list-of-parts content is flattened to text for the chat template
    assert dataset.prompt(1) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "ab"},
    ]


def test_bad_json_names_the_line(tmp_path):
    path = _write(tmp_path, [_row(), _row(), '{"messages": ['])
    error = _error(path)
    assert error.location == f"{path}:3"
    assert "invalid JSON" in error.message


def test_missing_messages(tmp_path):
    path = _write(tmp_path, [_row(), json.dumps({"answer": "4"})])
    assert str(_error(path)) == f"{path}:2: messages: Field required"


def test_wrong_role_names_the_message_index(tmp_path):
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}
    path = _write(tmp_path, [json.dumps(row)])
    error = _error(path)
    assert error.location == f"{path}:1: messages[1].role"
    assert "'user'" in error.message


def test_last_message_must_be_user(tmp_path):
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}
    path = _write(tmp_path, [_row(), _row(), json.dumps(row)])
    error = _error(path)
    assert error.location == f"{path}:3: messages[1].role"
    assert "must end with a user message" in error.message


def test_content_part_without_text(tmp_path):
    row = {"messages": [{"role": "user", "content": [{"type": "text"}]}]}
    path = _write(tmp_path, [json.dumps(row)])
    assert _error(path).location == f"{path}:1: messages[0].content[0].text"


def test_empty_messages_and_non_object_lines(tmp_path):
    path = _write(tmp_path, [json.dumps({"messages": []})])
    assert _error(path).location == f"{path}:1: messages"
    path = _write(tmp_path, [_row(), "[1, 2]"])
    assert _error(path).location == f"{path}:2"


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    error = _error(path)
    assert error.location == str(path)
    assert "no rows" in error.message


def test_row_missing_a_field_the_grader_uses(tmp_path):
    path = _write(tmp_path, [_row(answer="4"), _row(answer="5"), _row(other="6")])
    error = _error(path, GRADER)
    assert error.location == f"{path}:3: item.answer"
    # without the grader, the same file is fine
    assert len(load_dataset(path)) == 3


def test_missing_file(tmp_path):
    assert "not found" in _error(tmp_path / "nope.jsonl").message
