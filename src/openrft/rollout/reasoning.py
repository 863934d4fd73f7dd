"""Reasoning models think inside `<think>...</think>` and then answer.

Graders must see only the answer, while the reasoning is kept for display and analysis;
budgets bound how many tokens the thinking may use so an answer always follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from openrft.errors import InvalidInput

THINK_START = "<think>"
THINK_END = "</think>"

ReasoningEffort = Literal["default", "low", "medium", "high"]

# Share of max_tokens the reasoning may use; the rest stays for the answer. "default" is
# unlimited (the reasoning may use all of max_tokens), like a model without a budget.
EFFORT_FRACTIONS: dict[str, float] = {"low": 0.25, "medium": 0.5, "high": 0.75}


def reasoning_budget(effort: str | None, max_tokens: int) -> int | None:
    """Tokens allowed inside `<think>` for an OpenAI-style `reasoning_effort`.

    low = 25 %, medium = 50 %, high = 75 % of `max_tokens` (at least 1 token);
    "default"/None = no budget (None).
    """
    if effort is None or effort == "default":
        return None
    if effort not in EFFORT_FRACTIONS:
        allowed = ", ".join(["default", *EFFORT_FRACTIONS])
        raise InvalidInput("reasoning_effort", f"expected one of {allowed}, got {effort!r}")
    if max_tokens < 1:
        raise InvalidInput("max_tokens", f"must be >= 1, got {max_tokens}")
    return max(1, int(max_tokens * EFFORT_FRACTIONS[effort]))


@dataclass(frozen=True)
class ReasoningParts:
    """A completion split into reasoning and answer. `unclosed` marks a `<think>` that never
    closed (the completion ran out inside the reasoning): the answer is then empty."""

    reasoning: str
    answer: str
    unclosed: bool = False


def parse_reasoning(text: str) -> ReasoningParts:
    """Split `text` into reasoning and answer (both stripped).

    - no think tags: everything is the answer;
    - `<think>R</think>A`: reasoning R, answer A (text before `<think>` is kept in front of A);
    - `R</think>A` without an opening tag (chat templates that open `<think>` in the prompt):
      reasoning R, answer A;
    - `<think>R` never closed: reasoning R, empty answer, `unclosed=True`.
    Only the first think block is reasoning; later tags stay in the answer text.
    """
    start = text.find(THINK_START)
    end = text.find(THINK_END)
    if end != -1 and (start == -1 or end < start):
        return ReasoningParts(text[:end].strip(), text[end + len(THINK_END) :].strip())
    if start == -1:
        return ReasoningParts("", text.strip())
    before, after_start = text[:start], text[start + len(THINK_START) :]
    end = after_start.find(THINK_END)
    if end == -1:
        return ReasoningParts(after_start.strip(), "", unclosed=True)
    answer = before + after_start[end + len(THINK_END) :]
    return ReasoningParts(after_start[:end].strip(), answer.strip())


def split_reasoning(text: str) -> tuple[str, str]:
    """`(reasoning, answer)` of a completion; see `parse_reasoning` for the rules."""
    parts = parse_reasoning(text)
    return parts.reasoning, parts.answer
