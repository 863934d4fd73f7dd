"""Graders: the reward signal, field-for-field compatible with OpenAI's grader objects."""

from openrft.graders.base import (
    BaseGrader,
    GradeError,
    GradeResult,
    GradingError,
    Score,
    build_grader,
    grade_batch,
    make_reward_fn,
    parse_grader,
    run,
    validate,
)

__all__ = [
    "BaseGrader",
    "GradeError",
    "GradeResult",
    "GradingError",
    "Score",
    "build_grader",
    "grade_batch",
    "make_reward_fn",
    "parse_grader",
    "run",
    "validate",
]
