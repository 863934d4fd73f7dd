"""The grading core: results, the grader registry, and run / validate / grade_batch.

Every grader type implements `BaseGrader.score(sample, item) -> Score` and raises
`ScoringError(code, message)` when it cannot score. `BaseGrader.result` is the one place
a `GradeResult` is made (timing, error flags, score 0 on failure), so no grader repeats
the bookkeeping, batched ones included.
Error codes are OpenAI's `metadata.errors` flag names, so the service can report them
unchanged.
"""

from __future__ import annotations

import importlib
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from openrft.errors import InvalidInput
from openrft.graders.schema import Grader, GraderSpec

# OpenAI's grader error flags (graders/run `metadata.errors`).
ERROR_CODES = (
    "formula_parse_error",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
    "invalid_variable_error",
    "other_error",
    "python_grader_server_error",
    "python_grader_runtime_error",
    "model_grader_server_error",
    "model_grader_refusal_error",
    "model_grader_parse_error",
    # OpenRFT's endpoint grader (no OpenAI name exists for these):
    "endpoint_grader_server_error",
    "endpoint_grader_parse_error",
)


@dataclass
class ErrorFlag:
    """Why a grader could not score: an OpenAI error flag name (`ERROR_CODES`) and a human
    message. A record in `GradeResult.errors`, never raised (see `ScoringError`)."""

    code: str
    message: str


@dataclass
class Score:
    """What a grader implementation returns: the value plus optional details."""

    value: float
    sub_scores: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    errors: list[ErrorFlag] = field(default_factory=list)


@dataclass
class GradeResult:
    """The outcome of grading one sample: `score` is always a finite float."""

    score: float
    errors: list[ErrorFlag] = field(default_factory=list)
    latency_s: float = 0.0
    name: str = ""
    type: str = ""
    sub_scores: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


class ScoringError(Exception):
    """Raised inside a grader implementation's `score`; `BaseGrader.result` turns it into
    an ErrorFlag with score 0."""

    def __init__(self, code: str, message: str) -> None:
        assert code in ERROR_CODES, code
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class BaseGrader(ABC):
    """A validated grader object ready to score samples."""

    def __init__(self, spec: GraderSpec) -> None:
        self.spec = spec

    @abstractmethod
    def score(self, sample: dict[str, Any], item: dict[str, Any]) -> Score:
        """Score one sample against its dataset row; raise ScoringError on failure."""

    def grade(self, sample: dict[str, Any], item: dict[str, Any]) -> GradeResult:
        """Score with timing and error capture: never raises for a bad sample."""
        return self.result(lambda: self.score(sample, item))

    def result(self, score: Callable[[], Score], waited_s: float = 0.0) -> GradeResult:
        """The one way a GradeResult is made: call `score` and time it (plus `waited_s`
        spent before, e.g. on a batched judge or sandbox call). A ScoringError, a template
        naming a field the row lacks (invalid_variable_error) or a non-finite value scores
        0 with its error flag."""
        start = time.perf_counter()
        try:
            outcome = score()
            value, errors = float(outcome.value), list(outcome.errors)
            if not math.isfinite(value):
                value, errors = 0.0, errors + [ErrorFlag("other_error", "score is not finite")]
            sub_scores, metadata = outcome.sub_scores, outcome.metadata
        except ScoringError as exc:
            value, errors, sub_scores, metadata = 0.0, [ErrorFlag(exc.code, exc.message)], {}, {}
        except InvalidInput as exc:  # a template pointing at a field this row lacks
            value, sub_scores, metadata = 0.0, {}, {}
            errors = [ErrorFlag("invalid_variable_error", str(exc))]
        return GradeResult(
            score=value,
            errors=errors,
            latency_s=waited_s + time.perf_counter() - start,
            name=self.spec.name,
            type=self.spec.type,
            sub_scores=sub_scores,
            metadata=metadata,
        )

    def grade_many(
        self,
        samples: Sequence[dict[str, Any]],
        items: Sequence[dict[str, Any]],
        max_concurrency: int = 8,
    ) -> list[GradeResult]:
        """Grade many samples; graders that can batch (local judges) override this."""
        if len(samples) != len(items):  # pool.map below would silently drop the excess
            raise InvalidInput("grade_many", f"{len(samples)} samples but {len(items)} items")
        if max_concurrency <= 1 or len(samples) <= 1:
            return [self.grade(s, i) for s, i in zip(samples, items, strict=True)]
        with ThreadPoolExecutor(max_workers=max_concurrency) as pool:
            return list(pool.map(self.grade, samples, items))

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release held resources (processes, models); default: nothing."""


# type -> "module:Class"; imported lazily so `string_check` never loads torch.
_IMPLEMENTATIONS = {
    "string_check": "openrft.graders.string_check:StringCheckGraderImpl",
    "text_similarity": "openrft.graders.text_similarity:TextSimilarityGraderImpl",
    "python": "openrft.graders.python_grader:PythonGraderImpl",
    "score_model": "openrft.graders.model_graders:ScoreModelGraderImpl",
    "label_model": "openrft.graders.model_graders:LabelModelGraderImpl",
    "multi": "openrft.graders.multi:MultiGraderImpl",
    "endpoint": "openrft.graders.endpoint:EndpointGraderImpl",
}

_ADAPTER: TypeAdapter[GraderSpec] = TypeAdapter(Grader)


_GRADER_TYPES = tuple(_IMPLEMENTATIONS)


def _field_path(loc: tuple[int | str, ...]) -> str:
    """`grader.graders.x.operation` from pydantic's loc, without the union tags.

    Pydantic puts the discriminator value in the loc of a tagged union
    (`('multi', 'graders', 'x', 'string_check', 'operation')`); users wrote no such key.
    """
    parts: list[str] = []
    for index, part in enumerate(loc):
        at_union = index == 0 or (index >= 2 and loc[index - 2] == "graders")
        if at_union and part in _GRADER_TYPES:
            continue
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts)


def _format_validation_error(exc: ValidationError, where: str) -> InvalidInput:
    first = exc.errors()[0]
    location, message = where + _field_path(tuple(first["loc"])), first["msg"]
    kinds = ", ".join(_GRADER_TYPES)
    if first["type"] == "union_tag_not_found":
        location, message = f"{location}.type", f"missing field 'type' (one of {kinds})"
    elif first["type"] == "union_tag_invalid":
        tag = first.get("ctx", {}).get("tag", "")
        message = f"unknown grader type '{tag}' (one of {kinds})"
        if tag == "multi":
            message = "a multi grader cannot contain another multi grader"
        location = f"{location}.type"
    return InvalidInput(location, message)


def parse_grader(grader: dict[str, Any] | GraderSpec, where: str = "grader") -> GraderSpec:
    """Validate a raw grader dict into its pydantic model (InvalidInput on error)."""
    if isinstance(grader, BaseModel):
        return grader  # type: ignore[return-value]
    if not isinstance(grader, dict):
        raise InvalidInput(where, f"a grader must be a JSON object, got {type(grader).__name__}")
    try:
        return _ADAPTER.validate_python(grader)
    except ValidationError as exc:
        raise _format_validation_error(exc, where) from None


def build_grader(grader: dict[str, Any] | GraderSpec, where: str = "grader") -> BaseGrader:
    """Validate a grader and build its implementation (checks formulas, compiles code)."""
    spec = parse_grader(grader, where)
    module_name, class_name = _IMPLEMENTATIONS[spec.type].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        return cls(spec)
    except InvalidInput as exc:  # implementations name fields relative to the grader
        is_field_path = re.fullmatch(r"[\w.\[\]-]+", exc.location) is not None
        already_rooted = exc.location.startswith((f"{where}.", f"{where}[")) or (
            exc.location == where
        )
        if not is_field_path or already_rooted:  # e.g. "environment X", a file:line
            raise
        location = f"{where}.{exc.location}" if exc.location else where
        raise InvalidInput(location, exc.message) from None


def validate(grader: dict[str, Any]) -> GraderSpec:
    """Check a grader object fully (fields, templates, formula, code); raise InvalidInput."""
    built = build_grader(grader)
    built.close()
    return built.spec


def run(grader: dict[str, Any], sample: dict[str, Any], item: dict[str, Any]) -> GradeResult:
    """Grade one sample (`output_text`, optional `output_json`) against one row."""
    built = build_grader(grader)
    try:
        return built.grade(sample, item)
    finally:
        built.close()


def grade_batch(
    grader: dict[str, Any] | BaseGrader,
    samples: Sequence[dict[str, Any]],
    items: Sequence[dict[str, Any]],
    max_concurrency: int = 8,
) -> list[GradeResult]:
    """Grade `samples[i]` against `items[i]` with bounded concurrency."""
    if len(samples) != len(items):
        raise InvalidInput("grade_batch", f"{len(samples)} samples but {len(items)} items")
    if isinstance(grader, BaseGrader):
        return grader.grade_many(samples, items, max_concurrency)
    built = build_grader(grader)
    try:
        return built.grade_many(samples, items, max_concurrency)
    finally:
        built.close()


RewardFn = Callable[[Sequence[dict[str, Any]], Sequence[dict[str, Any]]], list[GradeResult]]


def make_reward_fn(grader: dict[str, Any], max_concurrency: int = 8) -> tuple[RewardFn, BaseGrader]:
    """Build a grader once and return `rewards = fn(samples, items)` for the trainer.

    The trainer never parses grader configs; it calls this function. Call
    `.close()` on the returned grader when training ends.
    """
    built = build_grader(grader)

    def reward_fn(
        samples: Sequence[dict[str, Any]], items: Sequence[dict[str, Any]]
    ) -> list[GradeResult]:
        return built.grade_many(samples, items, max_concurrency)

    return reward_fn, built
