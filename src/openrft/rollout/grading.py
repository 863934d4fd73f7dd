"""Grading rollout samples, with the one rule for output that did not parse.

Training (every step and each validation pass) and evaluation (`openrft eval`, the
preflight check, the flagship example) grade samples only through `grade_samples`, so a
sample scores the same in all of them.

The rule: every sample is graded. A sample whose answer did not parse as the requested
`response_format` reaches the grader with `output_text` and without `output_json`, which
is what OpenAI's graders see for a model sample that is not valid JSON (`graders/run`:
"output_json will be populated if the model sample is a valid JSON string"). The grader
decides the score: one that reads `{{ sample.output_json.x }}` cannot resolve it and scores
0 with an `invalid_variable_error`; a python grader may apply its own penalty. The parse
failure stays on the sample (`Sample.parse_error`) and is counted on its own
(`sample_parse_errors` in training, `parse_errors` in evaluation), not as a grader error.

The one exception: an episode discarded because a tool failed for good
(`Sample.discard_reason`, docs/agentic.md) is not graded; it scores 0 with an
`other_error` naming the reason (training also leaves it out of the update).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openrft.graders.base import ErrorFlag, GradeResult, RewardFn
from openrft.rollout.engine import Sample


def grade_samples(
    reward_fn: RewardFn, samples: Sequence[Sample], items: Sequence[dict[str, Any]]
) -> list[GradeResult]:
    """One GradeResult per sample, each graded with its own prompt's row
    (`items[sample.prompt_index]`) and seeing only `Sample.grader_view()`; discarded
    episodes score 0 ungraded."""
    kept = [i for i, sample in enumerate(samples) if sample.discard_reason is None]
    graded = iter(reward_fn(
        [samples[i].grader_view() for i in kept],
        [items[samples[i].prompt_index] for i in kept],
    ))
    return [
        next(graded) if sample.discard_reason is None else GradeResult(
            score=0.0,
            errors=[ErrorFlag("other_error", f"rollout discarded: {sample.discard_reason}")])
        for sample in samples
    ]
