"""Reading a judge model's reply: a score for `score_model`, a label for `label_model`.

Judges are asked for JSON, but endpoints without structured outputs (and small local
models) answer in many shapes. These rules are documented in docs/model_graders.md and
are deliberately strict past the listed shapes: a reply we cannot read unambiguously is
a parse error (score 0), never a guess.

Score, first rule that applies wins:
1. JSON (the whole reply, a ```fenced``` block, or the first embedded `{...}` object
   holding the key): an object's `result` (else `score`) or a bare JSON number.
2. A labelled number, e.g. `Score: 0.8`, `result = 7/10` (the last one if several).
3. The whole reply is a number or a fraction, e.g. `0.8`, `7/10`.
A fraction `a/b` is a grade "a out of b": equal to `a` when `b` is the top of the
grader's range (`4/5` on [1, 5] -> 4), else mapped linearly onto the range
(`7/10` on [0, 1] -> 0.7; on [-1, 1] -> 0.4).

Label, first rule that applies wins:
1. JSON with a `label` key whose value is one of the labels (exact, else the single
   case-insensitive match).
2. The whole reply (quotes, trailing punctuation and markdown stars stripped) equals a
   label, exactly or case-insensitively.
3. Exactly one distinct label is mentioned as a whole word or phrase (case-insensitive;
   a longer label wins over one it contains, e.g. "very good" over "good").
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER_OR_FRACTION = re.compile(rf"\s*({_NUMBER})(?:\s*/\s*({_NUMBER}))?\s*")
_LABELLED_NUMBER = re.compile(
    rf"\b(?:final\s+)?(?:result|score|grade|rating)\b\**\s*(?:is|[:=])?\s*\**\s*"
    rf"({_NUMBER}(?:\s*/\s*{_NUMBER})?)",
    re.IGNORECASE,
)
_FENCED_BLOCK = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.DOTALL)
_REFUSAL_OPENING = re.compile(
    r"^\W*(?:I['’]?m sorry|I am sorry|sorry, I|I can(?:not|['’]?t)|I won['’]?t|I['’]?m unable"
    r"|I am unable|I['’]?m not able|As an AI)",
    re.IGNORECASE,
)
_STRIP_AROUND_LABEL = " \t\r\n\"'`*.!:;"


class JudgeParseError(ValueError):
    """The reply does not match any documented shape."""


@dataclass
class ParsedScore:
    """A score read from a reply, before clamping to the grader's range."""

    value: float
    steps: list[Any] = field(default_factory=list)


def looks_like_refusal(text: str) -> bool:
    """Whether an unreadable reply opens like a refusal ("I'm sorry, I can't ...")."""
    return bool(_REFUSAL_OPENING.match(text))


def parse_score(text: str, score_range: tuple[float, float]) -> ParsedScore:
    """The score a judge gave, per the module's rules; JudgeParseError if none."""
    for candidate in _json_values(text, keys=("result", "score")):
        parsed = _score_from_json(candidate, score_range)
        if parsed is not None:
            return parsed
    labelled = _LABELLED_NUMBER.findall(text)
    if labelled:
        return ParsedScore(_number_or_fraction(labelled[-1], score_range))
    try:
        return ParsedScore(_number_or_fraction(text.strip().rstrip("."), score_range))
    except JudgeParseError:
        raise JudgeParseError(f"no score found in reply {_preview(text)}") from None


def parse_label(text: str, labels: list[str]) -> str:
    """The one label a judge chose, per the module's rules; JudgeParseError if none."""
    for candidate in _json_values(text, keys=("label",)):
        if isinstance(candidate, dict) and isinstance(candidate.get("label"), str):
            matched = _match_label(candidate["label"], labels)
            if matched is None:
                raise JudgeParseError(f"label {candidate['label']!r} is not one of {labels}")
            return matched
    whole = _match_label(text, labels)
    if whole is not None:
        return whole
    mentioned = _mentioned_labels(text, labels)
    if len(mentioned) == 1:
        return mentioned.pop()
    if mentioned:
        raise JudgeParseError(f"reply mentions several labels {sorted(mentioned)}")
    raise JudgeParseError(f"no label of {labels} in reply {_preview(text)}")


def _json_values(text: str, keys: tuple[str, ...]) -> list[Any]:
    """JSON values in the reply: the whole text or its fenced blocks, else embedded objects.

    Embedded objects are only taken when they hold one of `keys`, so prose with a
    stray brace does not hide a later labelled score.
    """
    values = list(_decode_all(_whole_and_fenced(text)))
    if values:
        return values
    return [
        obj
        for obj in _embedded_objects(text)
        if isinstance(obj, dict) and any(key in obj for key in keys)
    ]


def _whole_and_fenced(text: str) -> Iterator[str]:
    yield text.strip()
    for block in _FENCED_BLOCK.findall(text):
        yield block.strip()


def _decode_all(snippets: Iterator[str]) -> Iterator[Any]:
    for snippet in snippets:
        try:
            yield json.loads(snippet)
        except ValueError:
            continue


def _embedded_objects(text: str) -> Iterator[Any]:
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        yield value


def _score_from_json(value: Any, score_range: tuple[float, float]) -> ParsedScore | None:
    if isinstance(value, dict):
        for key in ("result", "score"):
            if key in value:
                steps = value.get("steps")
                number = _json_number(value[key], score_range)
                return ParsedScore(number, steps if isinstance(steps, list) else [])
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ParsedScore(_finite(float(value)))
    if isinstance(value, str):  # a quoted reply: "0.8"
        try:
            return ParsedScore(_number_or_fraction(value, score_range))
        except JudgeParseError:
            return None
    return None


def _json_number(value: Any, score_range: tuple[float, float]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise JudgeParseError(f"result {value!r} is not a number")
    if isinstance(value, str):
        return _number_or_fraction(value, score_range)
    return _finite(float(value))


def _number_or_fraction(text: str, score_range: tuple[float, float]) -> float:
    match = _NUMBER_OR_FRACTION.fullmatch(text)
    if match is None:
        raise JudgeParseError(f"{_preview(text)} is not a number")
    numerator = _finite(float(match.group(1)))
    if match.group(2) is None:
        return numerator
    denominator = _finite(float(match.group(2)))
    if denominator <= 0:
        raise JudgeParseError(f"fraction {text.strip()!r} has a non-positive denominator")
    low, high = score_range
    if denominator == high:
        return numerator
    return low + (numerator / denominator) * (high - low)


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise JudgeParseError(f"score {value} is not finite")
    return value


def _match_label(text: str, labels: list[str]) -> str | None:
    stripped = text.strip(_STRIP_AROUND_LABEL)
    if stripped in labels:
        return stripped
    folded = [label for label in labels if label.casefold() == stripped.casefold()]
    return folded[0] if len(folded) == 1 else None


def _mentioned_labels(text: str, labels: list[str]) -> set[str]:
    by_fold = {label.casefold(): label for label in labels}
    alternatives = sorted(by_fold, key=len, reverse=True)  # longest first: "very good" > "good"
    pattern = r"(?<!\w)(" + "|".join(re.escape(label) for label in alternatives) + r")(?!\w)"
    found = re.findall(pattern, text, flags=re.IGNORECASE)
    return {by_fold[word.casefold()] for word in found}


def _preview(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
