"""Graders: the reward signal, field-for-field compatible with OpenAI's grader objects."""

from openrft.graders.base import (
    BaseGrader,
    ErrorFlag,
    GradeResult,
    Score,
    ScoringError,
    build_grader,
    grade_batch,
    make_reward_fn,
    parse_grader,
    run,
    validate,
)

__all__ = [
    "BaseGrader",
    "ErrorFlag",
    "GradeResult",
    "ScoringError",
    "Score",
    "build_grader",
    "grade_batch",
    "make_reward_fn",
    "parse_grader",
    "run",
    "validate",
]
