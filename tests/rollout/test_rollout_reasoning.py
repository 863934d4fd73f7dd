"""split_reasoning / parse_reasoning and reasoning_budget on hand-written cases."""

from __future__ import annotations

import pytest

from openrft.errors import InvalidInput
from openrft.rollout.reasoning import parse_reasoning, reasoning_budget, split_reasoning


@pytest.mark.parametrize(
    ("text", "reasoning", "answer"),
    [
        ("The answer is 4.", "", "The answer is 4."),
        ("  4 \n", "", "4"),
        ("<think>2+2=4</think>The answer is 4.", "2+2=4", "The answer is 4."),
        ("<think>\n2+2=4\n</think>\n\n4", "2+2=4", "4"),
        ("2+2=4</think>4", "2+2=4", "4"),  # template opened <think> in the prompt
        ("<think></think>4", "", "4"),
        ("Sure. <think>hmm</think> 4", "hmm", "Sure.  4"),
        ("<think>a</think>b<think>c</think>d", "a", "b<think>c</think>d"),
        ("", "", ""),
    ],
)
def test_split_reasoning(text: str, reasoning: str, answer: str) -> None:
    assert split_reasoning(text) == (reasoning, answer)
    assert not parse_reasoning(text).unclosed


@pytest.mark.parametrize("text", ["<think>still thinking", "<think>", "x <think>y"])
def test_unclosed_think_is_reasoning_only_and_marked(text: str) -> None:
    parts = parse_reasoning(text)
    assert parts.unclosed and parts.answer == ""
    assert parts.reasoning == text.split("<think>", 1)[1].strip()


@pytest.mark.parametrize(
    ("effort", "max_tokens", "expected"),
    [
        ("default", 100, None),
        (None, 100, None),
        ("low", 100, 25),
        ("medium", 100, 50),
        ("high", 100, 75),
        ("low", 10, 2),  # 2.5 rounds down
        ("low", 2, 1),  # never zero
    ],
)
def test_reasoning_budget(effort, max_tokens: int, expected) -> None:
    assert reasoning_budget(effort, max_tokens) == expected


def test_reasoning_budget_rejects_unknown_effort() -> None:
    with pytest.raises(InvalidInput, match="reasoning_effort: expected one of default, low"):
        reasoning_budget("extreme", 100)
