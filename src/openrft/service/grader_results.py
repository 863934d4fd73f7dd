"""A `GradeResult` in the shape of OpenAI's `POST /fine_tuning/alpha/graders/run` response."""

from __future__ import annotations

import json
from typing import Any

from openrft.graders.base import ERROR_CODES, GradeResult

# Error flags that come with a details / type string in OpenAI's response.
_DETAIL_FIELDS = {
    "python_grader_runtime_error": "python_grader_runtime_error_details",
    "python_grader_server_error": "python_grader_server_error_type",
    "model_grader_server_error": "model_grader_server_error_details",
}


def sample_from_text(model_sample: str) -> dict[str, Any]:
    """`sample` for a grader: output_text, plus output_json when the text parses as JSON."""
    sample: dict[str, Any] = {"output_text": model_sample}
    try:
        sample["output_json"] = json.loads(model_sample)
    except ValueError:
        pass
    return sample


def error_flags(result: GradeResult) -> dict[str, Any]:
    """Every OpenAI error flag (False unless raised) plus the details fields."""
    flags: dict[str, Any] = {code: False for code in ERROR_CODES}
    flags.update({field: None for field in _DETAIL_FIELDS.values()})
    for error in result.errors:
        flags[error.code] = True
        if error.code in _DETAIL_FIELDS:
            flags[_DETAIL_FIELDS[error.code]] = error.message
    return flags


def _find_usage(metadata: dict[str, Any]) -> tuple[str | None, dict[str, dict[str, int]]]:
    """The judge model name and its token usage, if a model grader ran."""
    model = metadata.get("sampled_model_name")
    usage = metadata.get("token_usage")
    if model and isinstance(usage, dict):
        counts = {k: int(usage.get(k, 0)) for k in ("prompt_tokens", "completion_tokens")}
        counts["total_tokens"] = int(usage.get("total_tokens", sum(counts.values())))
        counts["cached_tokens"] = int(usage.get("cached_tokens", 0))
        return model, {model: counts}
    return model, {}


def run_response(result: GradeResult) -> dict[str, Any]:
    model, usage_per_model = _find_usage(result.metadata)
    total_tokens = sum(u["total_tokens"] for u in usage_per_model.values()) or None
    return {
        "reward": result.score,
        "sub_rewards": dict(result.sub_scores),
        "model_grader_token_usage_per_model": usage_per_model,
        "metadata": {
            "name": result.name,
            "type": result.type,
            "errors": error_flags(result),
            "execution_time": result.latency_s,
            "scores": dict(result.sub_scores),
            "token_usage": total_tokens,
            "sampled_model_name": model,
        },
    }
