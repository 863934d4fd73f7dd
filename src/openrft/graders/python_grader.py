"""The `python` grader: the user's `grade(sample, item) -> float`, run in a sandbox.

The source is checked with `ast` only (the host never executes it); grading runs it
under bubblewrap (see `sandbox.py`). Results follow OpenAI's semantics: a finite number,
else score 0 with `python_grader_runtime_error`. OpenRFT extension: `grade` may return
`{"score": number, "metadata": {...}}`; the metadata lands in `GradeResult.metadata`.
"""

from __future__ import annotations

import ast
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from openrft.errors import GraderUnavailable, InvalidInput
from openrft.graders.base import BaseGrader, GradeResult, Score, ScoringError
from openrft.graders.sandbox import (
    RUNTIME,
    CallOutcome,
    SandboxLimits,
    encode_request,
    find_bubblewrap,
    run_calls,
)
from openrft.graders.schema import PythonGrader


def check_grade_function(source: str, grader_name: str) -> None:
    """Raise InvalidInput unless `source` parses and defines `def grade(sample, item)`.

    The location is the `source` field (base.build_grader roots it, e.g. grader.source);
    the message names the grader and the line.
    """
    prefix = f"python grader {grader_name!r}"
    try:
        tree = ast.parse(source, filename="<grader>")
    except SyntaxError as exc:
        raise InvalidInput(
            "source", f"{prefix}, line {exc.lineno}: syntax error: {exc.msg}"
        ) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting
        raise InvalidInput("source", f"{prefix}: cannot be parsed: {exc}") from None
    definitions = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "grade"
    ]
    if not definitions:
        problem = "must define a top-level function `def grade(sample, item)`"
        raise InvalidInput("source", f"{prefix}: {problem}")
    grade = definitions[-1]  # the definition Python would keep
    prefix += f", line {grade.lineno}"
    if isinstance(grade, ast.AsyncFunctionDef):
        raise InvalidInput("source", f"{prefix}: `grade` must be a plain function, not async")
    args = grade.args
    parameters = [a.arg for a in args.posonlyargs + args.args]
    if len(parameters) != 2 or args.vararg or args.kwarg or args.kwonlyargs:
        problem = (
            f"`grade` must take exactly two parameters (sample, item), not ({ast.unparse(args)})"
        )
        raise InvalidInput("source", f"{prefix}: {problem}")


def require_bubblewrap() -> str:
    bwrap = find_bubblewrap()
    if bwrap is None:
        raise GraderUnavailable(
            "the python grader runs user code under bubblewrap, but `bwrap` is not on PATH; "
            "install it (Debian/Ubuntu: apt-get install bubblewrap)"
        )
    return bwrap


def score_from_response(response: dict[str, Any]) -> Score:
    """Turn the runner's answer into a Score; anything but a finite number is an error."""
    error = response.get("error")
    if error is not None:
        message = str(error.get("message")) if isinstance(error, dict) else str(error)
        line = error.get("line") if isinstance(error, dict) else None
        where = f" (line {line} of the grader source)" if line else ""
        raise ScoringError(RUNTIME, f"{message}{where}")
    value, metadata = response.get("score"), response.get("metadata", {})
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScoringError(RUNTIME, f"grade() must return a number, got {value!r}")
    if not math.isfinite(value):
        raise ScoringError(RUNTIME, f"grade() returned {value}; the score must be finite")
    if not isinstance(metadata, dict):
        raise ScoringError(RUNTIME, f"'metadata' must be a dict, got {type(metadata).__name__}")
    return Score(value=float(value), metadata=metadata)


class PythonGraderImpl(BaseGrader):
    """Grades with user Python code in a bubblewrap sandbox, one sandbox per batch."""

    spec: PythonGrader

    def __init__(self, spec: PythonGrader, limits: SandboxLimits | None = None) -> None:
        super().__init__(spec)
        check_grade_function(spec.source, spec.name)
        self.bwrap = require_bubblewrap()
        self.limits = limits or SandboxLimits.from_env()

    def score(self, sample: dict[str, Any], item: dict[str, Any]) -> Score:
        outcome = self._run([sample], [item])[0]
        if outcome.error is not None:
            raise outcome.error
        return self._with_pass(score_from_response(outcome.response or {}))

    def _with_pass(self, score: Score) -> Score:
        if self.spec.pass_threshold is not None:
            score.metadata = {**score.metadata,
                              "passed": score.value >= self.spec.pass_threshold}
        return score

    def grade_many(
        self,
        samples: Sequence[dict[str, Any]],
        items: Sequence[dict[str, Any]],
        max_concurrency: int = 8,
    ) -> list[GradeResult]:
        """Grade a batch in as few sandboxes as the CPUs allow (the source loads once each)."""
        workers = max(
            1, min(max_concurrency, len(samples), (os.cpu_count() or 1) // self.limits.cpus)
        )
        shards = [(samples[k::workers], items[k::workers]) for k in range(workers)]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            shard_outcomes = list(pool.map(lambda shard: self._run(*shard), shards))
        outcomes: list[CallOutcome] = [CallOutcome()] * len(samples)
        for k, shard in enumerate(shard_outcomes):
            outcomes[k::workers] = shard
        return [self._result(outcome) for outcome in outcomes]

    def _run(
        self, samples: Sequence[dict[str, Any]], items: Sequence[dict[str, Any]]
    ) -> list[CallOutcome]:
        """Outcomes in order; requests that are not JSON fail alone without a sandbox."""
        outcomes: list[CallOutcome | None] = []
        lines: list[bytes] = []
        for sample, item in zip(samples, items, strict=True):
            try:
                lines.append(encode_request(sample, item))
                outcomes.append(None)
            except ScoringError as exc:
                outcomes.append(CallOutcome(error=exc))
        answered = iter(
            run_calls(self.bwrap, self.spec.source, lines, self.limits) if lines else []
        )
        return [outcome if outcome is not None else next(answered) for outcome in outcomes]

    def _result(self, outcome: CallOutcome) -> GradeResult:
        def score() -> Score:
            if outcome.error is not None:
                raise outcome.error
            return self._with_pass(score_from_response(outcome.response or {}))

        return self.result(score, waited_s=outcome.latency_s)
