"""read_jsonl: rows back, and every bad file reported as one InvalidInput naming file:line."""

from __future__ import annotations

import pytest

from openrft.data.jsonl import (
    parse_jsonl_numbered,
    read_jsonl,
    read_jsonl_numbered,
)
from openrft.errors import InvalidInput


def test_reads_objects_and_skips_blank_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"b": [1, 2]}\n', encoding="utf-8")
    assert read_jsonl(path) == [{"a": 1}, {"b": [1, 2]}]
    assert [n for n, _ in read_jsonl_numbered(path)] == [1, 4]


def test_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2\n', encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        read_jsonl(path)
    assert info.value.location == f"{path}:3"
    assert "invalid JSON" in info.value.message


def test_non_object_line_rejected_by_read_jsonl_but_not_by_numbered(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n"just text"\n', encoding="utf-8")
    assert read_jsonl_numbered(path) == [(1, {"a": 1}), (2, "just text")]
    with pytest.raises(InvalidInput) as info:
        read_jsonl(path)
    assert info.value.location == f"{path}:2"
    assert "a string" in info.value.message


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InvalidInput, match="file not found"):
        read_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(InvalidInput, match="directory"):
        read_jsonl(tmp_path)


def test_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(InvalidInput) as info:
        read_jsonl(path)
    assert info.value.location == f"{path}:2"


def test_parse_text_uses_source_name():
    with pytest.raises(InvalidInput, match=r"^upload\.jsonl:1: invalid JSON"):
        parse_jsonl_numbered("nope\n", "upload.jsonl")
