"""Training data in OpenAI's reinforcement fine-tuning JSONL format, validated up front.

Each line is `{"messages": [...], <any reference fields>}`. The prompt must end with a
user message (the model writes the next turn); every other key is the `item` the grader
sees through `{{ item.x }}`. Every row is validated before training starts, so a bad
line 4,000 never kills a run an hour in: the first error names `file:line: field.path`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from openrft.data.jsonl import read_jsonl_numbered, require_objects
from openrft.errors import InvalidInput

Role = Literal["system", "developer", "user", "assistant", "tool"]


class TextPart(BaseModel):
    """One text part of a list-valued message content (images are not supported)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text", "input_text", "output_text"] = "text"
    text: str


class ChatMessage(BaseModel):
    """A chat message; extra keys (name, tool_calls, tool_call_id) pass through."""

    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[TextPart] | None = None

    @model_validator(mode="after")
    def _content_required(self) -> ChatMessage:
        # Only an assistant turn that calls tools may leave content empty.
        if self.content is None and not (self.role == "assistant" and self.model_extra):
            raise ValueError("content is required")
        return self


class PromptRow(BaseModel):
    """One dataset row: the prompt messages plus arbitrary reference fields."""

    model_config = ConfigDict(extra="allow")

    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None


@dataclass
class Dataset:
    """Validated rows of one JSONL file, in file order.

    `rows[i]` is the raw JSON object (the grader's `item`); `line_numbers[i]` is its
    1-based line in `source`, kept so later checks can still say `file:line`.
    """

    source: str
    rows: list[dict[str, Any]]
    line_numbers: list[int]

    def __len__(self) -> int:
        return len(self.rows)

    def prompt(self, index: int) -> list[dict[str, Any]]:
        """The chat messages of row `index`, as plain dicts (content flattened to text)."""
        return [_plain_message(m) for m in self.rows[index]["messages"]]


def _plain_message(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(part["text"] for part in content)
    return {**message, "content": content if content is not None else ""}


def field_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as a readable path: ('messages', 1, 'role') -> messages[1].role."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part.startswith(("function-", "union[")) and part not in ("str", "list[TextPart]"):
            path += f".{part}" if path else part
    return path


def validate_row(row: dict[str, Any], location: str) -> None:
    """Raise InvalidInput("file:line: messages[1].role", why) if `row` is not a valid prompt."""
    try:
        parsed = PromptRow.model_validate(row)
    except ValidationError as exc:
        # A union (str | list of parts) reports one error per branch: the deepest is the
        # one that says what is actually wrong (e.g. content[0].text missing).
        error = max(exc.errors(), key=lambda e: len(e["loc"]))
        path = field_path(tuple(error["loc"]))
        message = error["msg"].removeprefix("Value error, ")
        raise InvalidInput(f"{location}: {path}" if path else location, message) from None
    last = len(parsed.messages) - 1
    if parsed.messages[last].role != "user":
        raise InvalidInput(
            f"{location}: messages[{last}].role",
            f"the prompt must end with a user message, got {parsed.messages[last].role!r}",
        )


def load_dataset(path: str | Path, grader: dict[str, Any] | None = None) -> Dataset:
    """Read and validate every row of a JSONL file; with `grader`, check its item fields too.

    Raises InvalidInput on an empty file, a bad line, a malformed row, or a row lacking a
    field the grader's `{{ item.x }}` templates reference.
    """
    source = str(path)
    numbered = read_jsonl_numbered(path)
    if not numbered:
        raise InvalidInput(source, "the file has no rows")
    rows = require_objects(numbered, source)
    line_numbers = [line for line, _ in numbered]
    for row, line in zip(rows, line_numbers, strict=True):
        validate_row(row, f"{source}:{line}")
    dataset = Dataset(source=source, rows=rows, line_numbers=line_numbers)
    if grader is not None:
        check_grader_fields(dataset, grader)
    return dataset


def check_grader_fields(dataset: Dataset, grader: dict[str, Any]) -> None:
    """Fail before training if a row lacks an `{{ item.x }}` field the grader uses."""
    from openrft.data.templates import check_template_fields

    for row, line in zip(dataset.rows, dataset.line_numbers, strict=True):
        missing = check_template_fields(grader, row)
        if missing:
            raise InvalidInput(
                f"{dataset.source}:{line}: {missing[0]}",
                "the grader references this field but the row does not have it",
            )
