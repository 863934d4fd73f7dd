"""Structured output: parse a completion's answer as JSON and validate it against a schema.

`response_format` follows OpenAI: `{"type": "json_schema", "json_schema": {"name", "strict",
"schema"}}` or `{"type": "json_object"}` (or `{"type": "text"}`, which asks for nothing).
The HF engine does not constrain decoding (grammar-constrained decoding is a GPU/vLLM
feature; the vLLM engine passes the schema to vLLM's guided decoding), so a completion may
fail to parse: the sample then gets `parse_error` with the reason and no `output_json`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from openrft.errors import InvalidInput

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def check_response_format(response_format: Any) -> dict[str, Any] | None:
    """Validate the shape of `response_format`; return its JSON schema (None if it has none).

    Raises InvalidInput naming the field (`response_format.json_schema.schema`, ...).
    """
    if not isinstance(response_format, dict):
        raise InvalidInput("response_format", "must be an object with a 'type'")
    kind = response_format.get("type")
    if kind in ("text", "json_object"):
        return None
    if kind != "json_schema":
        raise InvalidInput(
            "response_format.type", f"expected text, json_object or json_schema, got {kind!r}"
        )
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise InvalidInput("response_format.json_schema.schema", "must be a JSON schema object")
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    schema = spec["schema"]
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as err:
        raise InvalidInput("response_format.json_schema.schema", err.message) from None
    return schema


def extract_json(text: str) -> Any:
    """The first JSON value in `text`: inside a ```json fence if there is one, else starting
    at the first `{` or `[`; trailing text after the value is ignored. Raises ValueError."""
    fenced = _FENCE.search(text)
    candidate = fenced.group(1) if fenced else text
    starts = [i for i in (candidate.find("{"), candidate.find("[")) if i != -1]
    if not starts:
        raise ValueError("no JSON object or array in the answer")
    try:
        value, _ = json.JSONDecoder().raw_decode(candidate, min(starts))
    except json.JSONDecodeError as err:
        raise ValueError(f"invalid JSON: {err.msg} at char {err.pos}") from None
    return value


def parse_structured_output(answer: str, response_format: dict[str, Any]) -> tuple[Any, str | None]:
    """`(output_json, parse_error)` for an answer: exactly one of them is None unless the
    format is plain text (then both are)."""
    schema = check_response_format(response_format)
    if response_format.get("type") == "text":
        return None, None
    try:
        value = extract_json(answer)
    except ValueError as err:
        return None, str(err)
    if schema is None:  # json_object: any JSON object
        if not isinstance(value, dict):
            return None, f"expected a JSON object, got {type(value).__name__}"
        return value, None
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for

    error = best_match(validator_for(schema)(schema).iter_errors(value))
    if error is not None:
        return None, f"schema violation at {error.json_path}: {error.message}"
    return value, None
