"""`string_check`: exact or substring comparison of two rendered templates, 1.0 or 0.0.

Semantics from OpenAI's graders guide: `eq` / `ne` compare case-sensitively; `like`
is 1 when the input contains the reference (case-sensitive), `ilike` the same ignoring
case (Unicode case folding, so `Straße` ilike `STRASSE`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openrft.data.templates import render, validate_template
from openrft.graders.base import BaseGrader, Score
from openrft.graders.schema import StringCheckGrader

_OPERATIONS: dict[str, Callable[[str, str], bool]] = {
    "eq": lambda text, reference: text == reference,
    "ne": lambda text, reference: text != reference,
    "like": lambda text, reference: reference in text,
    "ilike": lambda text, reference: reference.casefold() in text.casefold(),
}


class StringCheckGraderImpl(BaseGrader):
    """Renders `input` and `reference`, then applies `operation`."""

    spec: StringCheckGrader

    def __init__(self, spec: StringCheckGrader) -> None:
        super().__init__(spec)
        validate_template(spec.input, "input")
        validate_template(spec.reference, "reference")
        self._compare = _OPERATIONS[spec.operation]

    def score(self, sample: dict[str, Any], item: dict[str, Any]) -> Score:
        text = render(self.spec.input, item, sample)
        reference = render(self.spec.reference, item, sample)
        return Score(value=1.0 if self._compare(text, reference) else 0.0)
