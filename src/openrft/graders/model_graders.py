"""`score_model` and `label_model`: an LLM judges each sample (OpenAI's model graders).

The grader's `input` messages are rendered per sample (`{{ item.x }}`,
`{{ sample.output_text }}`), an instruction asking for OpenAI's JSON answer is added to
the leading system message, and the judge (an OpenAI-compatible endpoint or a local HF
model, see `judge_backends`) answers. Replies are read by the tolerant rules of
`judge_parsing`; what cannot be read scores 0 with OpenAI's error flag, so one odd
reply never stops training.
"""

from __future__ import annotations

import functools
import json
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from openrft.data.templates import render, validate_template
from openrft.errors import InvalidInput
from openrft.graders.base import BaseGrader, GradeResult, Score, ScoringError
from openrft.graders.judge_backends import (
    JudgeBackend,
    JudgeOutcome,
    JudgeReply,
    JudgeRequest,
    JudgeSettings,
    resolve_judge,
)
from openrft.graders.judge_parsing import (
    JudgeParseError,
    looks_like_refusal,
    parse_label,
    parse_score,
)
from openrft.graders.schema import LabelModelGrader, SamplingParams, ScoreModelGrader

# Chat templates of open models rarely know "developer"; OpenAI treats it like "system".
_CHAT_ROLE = {"developer": "system"}
_REPLY_KEPT_CHARS = 2000  # judge text kept in metadata for inspection


class _ModelGraderImpl(BaseGrader):
    """Shared plumbing: render messages, ask the judge, turn its reply into a Score."""

    spec: ScoreModelGrader | LabelModelGrader

    def __init__(
        self,
        spec: ScoreModelGrader | LabelModelGrader,
        settings: JudgeSettings | None = None,
        backend: JudgeBackend | None = None,
    ) -> None:
        super().__init__(spec)
        for index, message in enumerate(spec.input):
            validate_template(message.text(), f"input[{index}].content")
        self.settings = settings if settings is not None else JudgeSettings.from_env()
        self.backend = backend if backend is not None else resolve_judge(spec.model, self.settings)

    @abstractmethod
    def instruction(self) -> str:
        """The answer-format instruction added to the judge's system message."""

    @abstractmethod
    def response_format(self) -> dict[str, Any]:
        """OpenAI `response_format` with this grader's JSON schema."""

    @abstractmethod
    def score_reply(self, reply: JudgeReply) -> Score:
        """Read a (non-refused) reply into a Score; ScoringError when unreadable."""

    def request(self, sample: dict[str, Any], item: dict[str, Any]) -> JudgeRequest:
        """The chat request for one sample (InvalidInput when a template field is missing)."""
        messages = [
            {"role": _CHAT_ROLE.get(m.role, m.role), "content": render(m.text(), item, sample)}
            for m in self.spec.input
        ]
        fmt = self.response_format() if self.settings.structured_output else None
        return JudgeRequest(
            messages=_with_instruction(messages, self.instruction()),
            sampling=chat_sampling_params(self.spec.sampling_params),
            response_format=fmt,
        )

    def score(self, sample: dict[str, Any], item: dict[str, Any]) -> Score:
        outcome = self.backend.complete_many([self.request(sample, item)], 1)[0]
        return self._score_outcome(outcome)

    def grade_many(
        self,
        samples: Sequence[dict[str, Any]],
        items: Sequence[dict[str, Any]],
        max_concurrency: int = 8,
    ) -> list[GradeResult]:
        """Render all requests, let the backend answer them together (threads or a batch)."""
        prepared: list[JudgeRequest | Exception] = []
        for sample, item in zip(samples, items, strict=True):
            try:
                prepared.append(self.request(sample, item))
            except InvalidInput as exc:
                prepared.append(exc)
        requests = [p for p in prepared if isinstance(p, JudgeRequest)]
        answers = iter(self.backend.complete_many(requests, max_concurrency))
        results = []
        for entry in prepared:
            outcome = entry if isinstance(entry, Exception) else next(answers)
            waited = outcome.latency_s if isinstance(outcome, JudgeReply) else 0.0
            results.append(self.result(functools.partial(self._score_outcome, outcome), waited))
        return results

    def close(self) -> None:
        self.backend.close()

    def _score_outcome(self, outcome: JudgeOutcome | Exception) -> Score:
        if isinstance(outcome, Exception):
            raise outcome
        if outcome.refusal:
            raise ScoringError("model_grader_refusal_error", f"judge refused: {outcome.refusal}")
        score = self.score_reply(outcome)
        score.metadata.update(
            judge_reply=outcome.text[:_REPLY_KEPT_CHARS],
            judge_backend=self.backend.kind,
            sampled_model_name=outcome.model or self.spec.model,
            token_usage=dict(outcome.usage),
            finish_reason=outcome.finish_reason,
        )
        return score


class ScoreModelGraderImpl(_ModelGraderImpl):
    """`score_model`: the judge's number, clamped to `range` (default [0, 1])."""

    spec: ScoreModelGrader

    def instruction(self) -> str:
        low, high = self.spec.score_range
        return (
            "Respond with only a JSON object of the form "
            '{"steps": [{"description": "...", "conclusion": "..."}], "result": <number>}: '
            "`steps` is your reasoning, step by step, and `result` is the final score, "
            f"a number from {_number_text(low)} to {_number_text(high)} (inclusive)."
        )

    def response_format(self) -> dict[str, Any]:
        step = {
            "type": "object",
            "properties": {"description": {"type": "string"}, "conclusion": {"type": "string"}},
            "required": ["description", "conclusion"],
            "additionalProperties": False,
        }
        schema = {
            "type": "object",
            "properties": {"steps": {"type": "array", "items": step}, "result": {"type": "number"}},
            "required": ["steps", "result"],
            "additionalProperties": False,
        }
        return _json_schema_format("score_model_result", schema)

    def score_reply(self, reply: JudgeReply) -> Score:
        low, high = self.spec.score_range
        try:
            parsed = parse_score(reply.text, (low, high))
        except JudgeParseError as exc:
            raise _unreadable(reply, str(exc)) from None
        value = min(max(parsed.value, low), high)
        metadata: dict[str, Any] = {
            "result": parsed.value,
            "steps": parsed.steps,
            "range": [low, high],
        }
        threshold = self.spec.pass_threshold
        if threshold is not None:
            metadata.update(pass_threshold=threshold, passed=value >= threshold)
        return Score(value, metadata=metadata)


class LabelModelGraderImpl(_ModelGraderImpl):
    """`label_model`: 1.0 when the judge's label is in `passing_labels`, else 0.0."""

    spec: LabelModelGrader

    def instruction(self) -> str:
        labels = ", ".join(json.dumps(label) for label in self.spec.labels)
        return (
            'Respond with only a JSON object of the form {"label": <label>}, where <label> '
            f"is exactly one of: {labels}."
        )

    def response_format(self) -> dict[str, Any]:
        schema = {
            "type": "object",
            "properties": {"label": {"type": "string", "enum": list(self.spec.labels)}},
            "required": ["label"],
            "additionalProperties": False,
        }
        return _json_schema_format("label_model_result", schema)

    def score_reply(self, reply: JudgeReply) -> Score:
        try:
            label = parse_label(reply.text, self.spec.labels)
        except JudgeParseError as exc:
            raise _unreadable(reply, str(exc)) from None
        passed = label in self.spec.passing_labels
        return Score(1.0 if passed else 0.0, metadata={"label": label, "passed": passed})


def chat_sampling_params(params: SamplingParams | None) -> dict[str, Any]:
    """OpenAI's grader `sampling_params` as chat-completions keys (unset ones left out)."""
    if params is None:
        return {}
    mapped = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "seed": params.seed,
        "max_tokens": params.max_completions_tokens,
        "reasoning_effort": params.reasoning_effort,
    }
    return {key: value for key, value in mapped.items() if value is not None}


def _with_instruction(messages: list[dict[str, str]], instruction: str) -> list[dict[str, str]]:
    """Append the instruction to a leading system message, or add one at the front.

    Many chat templates accept a system message only first, so it is never appended
    as a separate trailing message.
    """
    if messages and messages[0]["role"] == "system":
        first = {"role": "system", "content": f"{messages[0]['content']}\n\n{instruction}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


def _unreadable(reply: JudgeReply, reason: str) -> ScoringError:
    if looks_like_refusal(reply.text):
        return ScoringError("model_grader_refusal_error", f"judge refused: {reply.text[:200]}")
    suffix = " (reply truncated at the token limit)" if reply.finish_reason == "length" else ""
    return ScoringError("model_grader_parse_error", f"{reason}{suffix}")


def _json_schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
