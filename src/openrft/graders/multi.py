"""`multi`: grade with every sub-grader, then combine their scores with a formula.

`sub_scores` maps each grader key to its score (OpenAI reports them per sub-grader);
a sub-grader that fails scores 0 in the formula and its errors are reported, prefixed
with its key. A formula that cannot be evaluated on these scores (division by zero,
log of 0, overflow) gives score 0 with a `formula_parse_error`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from openrft.graders.base import BaseGrader, GradeError, GradingError, Score, build_grader
from openrft.graders.formula import parse_formula
from openrft.graders.schema import MultiGrader


class MultiGraderImpl(BaseGrader):
    """Sub-graders built once; the formula checked against their keys when built."""

    spec: MultiGrader

    def __init__(self, spec: MultiGrader) -> None:
        super().__init__(spec)
        self.formula = parse_formula(spec.calculate_output, spec.graders.keys())
        self.graders: dict[str, BaseGrader] = {}
        try:
            for key, sub_spec in spec.graders.items():
                self.graders[key] = build_grader(sub_spec, where=f"graders.{key}")
        except BaseException:
            self.close()
            raise

    def score(self, sample: dict[str, Any], item: dict[str, Any]) -> Score:
        sub_scores: dict[str, float] = {}
        errors: list[GradeError] = []
        details: dict[str, Any] = {}
        for key, grader in self.graders.items():
            result = grader.grade(sample, item)
            sub_scores[key] = result.score
            errors.extend(GradeError(e.code, f"{key}: {e.message}") for e in result.errors)
            details[key] = {
                "type": result.type,
                "score": result.score,
                "latency_s": result.latency_s,
                "errors": [asdict(error) for error in result.errors],
                "metadata": result.metadata,
            }
        try:
            value = self.formula.evaluate(sub_scores)
        except GradingError as exc:
            errors.append(GradeError(exc.code, exc.message))
            value = 0.0
        metadata = {"graders": details}
        return Score(value=value, sub_scores=sub_scores, errors=errors, metadata=metadata)

    def close(self) -> None:
        for grader in self.graders.values():
            grader.close()
