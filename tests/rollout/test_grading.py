"""One rule for structured output that did not parse, in training and in evaluation.

The rule (openrft.rollout.grading): every sample is graded; one that did not parse reaches
the grader with output_text only, as OpenAI's graders see a sample that is not valid JSON.
The same three answers go through the trainer's grading and through `evaluate`; the
expected scores below follow from the rule and the graders' definitions.
"""

from __future__ import annotations

from typing import Any

import pytest

from openrft.eval.evaluate import evaluate
from openrft.graders.base import make_reward_fn
from openrft.rl.step import grade_samples as training_grade_samples
from openrft.rollout.engine import GenerationParams, Messages, Sample
from openrft.rollout.structured import parse_structured_output

FORMAT = {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": {
    "type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"],
    "additionalProperties": False}}}
# parses; not JSON at all; JSON that breaks the schema
ANSWERS = ['{"x": 1}', "oops", '{"x": "one"}']
ROW = {"messages": [{"role": "user", "content": "x?"}], "x": "1"}

# any non-empty answer passes: a 1.0 proves the sample was graded
ANY_TEXT = {"type": "string_check", "name": "t", "input": "{{ sample.output_text }}",
            "reference": "", "operation": "ne"}
# reads output_json: unresolvable when the answer did not parse
JSON_FIELD = {"type": "string_check", "name": "j", "input": "{{ sample.output_json.x }}",
              "reference": "{{ item.x }}", "operation": "eq"}

CASES = [
    (ANY_TEXT, [1.0, 1.0, 1.0], [[], [], []]),
    (JSON_FIELD, [1.0, 0.0, 0.0], [[], ["invalid_variable_error"], ["invalid_variable_error"]]),
]


def parsed_samples() -> list[Sample]:
    samples = []
    for text in ANSWERS:
        value, error = parse_structured_output(text, FORMAT)
        samples.append(Sample(prompt_index=0, output_text=text, output_json=value,
                              parse_error=error))
    return samples


class FixedEngine:
    """Answers the one prompt with ANSWERS, parsed as the real engines do."""

    def generate(self, prompts: list[Messages], n: int, params: GenerationParams) -> list[Sample]:
        assert len(prompts) == 1 and n == len(ANSWERS)
        return parsed_samples()

    def sync_weights(self, model: Any) -> None:
        pass


def test_the_answers_parse_as_the_cases_assume() -> None:
    assert [s.parse_error is None for s in parsed_samples()] == [True, False, False]


@pytest.mark.parametrize(("grader", "scores", "codes"), CASES, ids=["output_text", "output_json"])
def test_training_grades_unparsable_samples_by_the_rule(grader, scores, codes) -> None:
    reward_fn, built = make_reward_fn(grader)
    try:
        results = training_grade_samples(reward_fn, parsed_samples(), [ROW])
    finally:
        built.close()
    assert [r.score for r in results] == scores
    assert [[e.code for e in r.errors] for r in results] == codes  # no sample_parse_error


@pytest.mark.parametrize(("grader", "scores", "codes"), CASES, ids=["output_text", "output_json"])
def test_evaluation_grades_unparsable_samples_by_the_rule(grader, scores, codes) -> None:
    report = evaluate(None, [ROW], grader, engine=FixedEngine(), samples_per_row=3,
                      progress=False)
    [row] = report.rows
    assert [s.score for s in row.samples] == scores
    assert [[e.code for e in s.errors] for s in row.samples] == codes
    assert report.parse_errors == 2
    assert [s.parse_error is not None for s in row.samples] == [False, True, True]
