"""JSONL reading that reports bad lines as `file:line` instead of a traceback.

Shared by the dataset loader, the grader CLI and the service's file upload: every
caller gets the same one-line error for a malformed file. Blank lines are skipped but
still counted, so error locations match what an editor shows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openrft.errors import InvalidInput


def parse_jsonl_numbered(text: str, source: str) -> list[tuple[int, Any]]:
    """(1-based line number, parsed JSON value) for every non-blank line of `text`.

    `source` names the text in errors (a path, an upload's filename). The line numbers
    let later validation (e.g. a row missing a field a grader needs) still say `file:7`.
    """
    values: list[tuple[int, Any]] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values.append((line_number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"{source}:{line_number}", f"invalid JSON: {exc.msg} (column {exc.colno})"
            ) from None
    return values


def read_text_file(path: str | Path) -> str:
    """A UTF-8 text file's content, or InvalidInput naming the path (and line) on failure."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(str(path), "file not found") from None
    except IsADirectoryError:
        raise InvalidInput(str(path), "is a directory, expected a file") from None
    except OSError as exc:
        raise InvalidInput(str(path), f"cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidInput(f"{path}:{line}", "not valid UTF-8") from None


def read_jsonl_numbered(path: str | Path) -> list[tuple[int, Any]]:
    """(line number, JSON value) pairs of a JSONL file; values may be any JSON type."""
    return parse_jsonl_numbered(read_text_file(path), str(path))


def require_objects(numbered: list[tuple[int, Any]], source: str) -> list[dict[str, Any]]:
    """The values, checked to be JSON objects (InvalidInput `source:line` otherwise)."""
    for line_number, value in numbered:
        if not isinstance(value, dict):
            raise InvalidInput(
                f"{source}:{line_number}",
                f"expected a JSON object, got {_json_type_name(value)}",
            )
    return [value for _, value in numbered]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file where every line must be a JSON object.

    Raises InvalidInput("rows.jsonl:7", "invalid JSON: ...") on the first bad line.
    """
    return require_objects(read_jsonl_numbered(path), str(path))


def _json_type_name(value: Any) -> str:
    names = {str: "a string", list: "an array", bool: "a boolean", type(None): "null"}
    if isinstance(value, bool) or value is None:
        return names[type(value)]
    if isinstance(value, int | float):
        return "a number"
    return names.get(type(value), type(value).__name__)
