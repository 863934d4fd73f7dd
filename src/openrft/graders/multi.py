"""`multi`: grade with every sub-grader, then combine their scores with a formula.

`sub_scores` maps each grader key to its score (OpenAI reports them per sub-grader);
a sub-grader that fails scores 0 in the formula and its errors are reported, prefixed
with its key. A formula that cannot be evaluated on these scores (division by zero,
log of 0, overflow) gives score 0 with a `formula_parse_error`.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from openrft.graders.base import (
    BaseGrader,
    ErrorFlag,
    GradeResult,
    Score,
    ScoringError,
    build_grader,
)
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
        results = {key: grader.grade(sample, item) for key, grader in self.graders.items()}
        return self._combine(results)

    def grade_many(
        self,
        samples: Sequence[dict[str, Any]],
        items: Sequence[dict[str, Any]],
        max_concurrency: int = 8,
    ) -> list[GradeResult]:
        """Each sub-grader grades the whole batch at once (a python grader then starts one
        sandbox, a local judge runs one batched generation), then the formula per sample.
        Each sub-grader's grade_many rejects mismatched lengths."""
        start = time.perf_counter()
        per_grader = {
            key: grader.grade_many(samples, items, max_concurrency)
            for key, grader in self.graders.items()
        }
        latency = (time.perf_counter() - start) / max(len(samples), 1)
        rows = [{key: results[i] for key, results in per_grader.items()}
                for i in range(len(samples))]
        return [self.result(functools.partial(self._combine, row), waited_s=latency)
                for row in rows]

    def _combine(self, results: dict[str, GradeResult]) -> Score:
        sub_scores: dict[str, float] = {}
        errors: list[ErrorFlag] = []
        details: dict[str, Any] = {}
        for key, result in results.items():
            sub_scores[key] = result.score
            errors.extend(ErrorFlag(e.code, f"{key}: {e.message}") for e in result.errors)
            details[key] = {
                "type": result.type,
                "score": result.score,
                "latency_s": result.latency_s,
                "errors": [asdict(error) for error in result.errors],
                "metadata": result.metadata,
            }
        try:
            value = self.formula.evaluate(sub_scores)
        except ScoringError as exc:
            errors.append(ErrorFlag(exc.code, exc.message))
            value = 0.0
        if not math.isfinite(value):
            errors.append(ErrorFlag("other_error", "formula result is not finite"))
            value = 0.0
        metadata = {"graders": details}
        return Score(value=value, sub_scores=sub_scores, errors=errors, metadata=metadata)

    def close(self) -> None:
        for grader in self.graders.values():
            grader.close()
