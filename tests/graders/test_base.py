"""The grading core: run / validate / grade_batch, bounded concurrency, error capture."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from openrft.errors import InvalidInput
from openrft.graders import (
    BaseGrader,
    Score,
    ScoringError,
    build_grader,
    grade_batch,
    make_reward_fn,
    run,
    validate,
)
from openrft.graders.schema import StringCheckGrader

SPEC = StringCheckGrader(
    type="string_check", name="probe", input="x", reference="x", operation="eq"
)
EQ = {
    "type": "string_check",
    "name": "eq",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "operation": "eq",
}


class ScriptedGrader(BaseGrader):
    """Returns whatever `behaviour(sample)` says; records concurrency and closing."""

    def __init__(self, behaviour, delay_s: float = 0.0) -> None:
        super().__init__(SPEC)
        self.behaviour, self.delay_s = behaviour, delay_s
        self.active = self.max_active = 0
        self.lock = threading.Lock()
        self.closed = False

    def score(self, sample, item):
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay_s)
            return self.behaviour(sample)
        finally:
            with self.lock:
                self.active -= 1

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("limit", [1, 3])
def test_grade_batch_bounds_concurrency_and_keeps_order(limit):
    grader = ScriptedGrader(lambda s: Score(value=s["i"] / 10), delay_s=0.05)
    samples = [{"i": i} for i in range(9)]
    results = grade_batch(grader, samples, [{}] * 9, max_concurrency=limit)
    assert [r.score for r in results] == [i / 10 for i in range(9)]
    assert grader.max_active == limit  # 9 samples x 50 ms: the limit is reached, never passed


def test_grade_batch_length_mismatch():
    with pytest.raises(InvalidInput, match="2 samples but 1 items"):
        grade_batch(EQ, [{"output_text": "a"}, {"output_text": "b"}], [{"answer": "a"}])


def test_grade_batch_from_dict():
    results = grade_batch(
        EQ, [{"output_text": "a"}, {"output_text": "b"}], [{"answer": "a"}, {"answer": "a"}]
    )
    assert [r.score for r in results] == [1.0, 0.0]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_scores_become_zero_with_other_error(value):
    result = ScriptedGrader(lambda s: Score(value=value)).grade({}, {})
    assert result.score == 0.0
    assert [e.code for e in result.errors] == ["other_error"]


def test_grading_error_becomes_zero_with_its_code_and_latency():
    def fail(sample):
        raise ScoringError("python_grader_runtime_error", "boom")

    result = ScriptedGrader(fail, delay_s=0.01).grade({}, {})
    assert (result.score, result.ok) == (0.0, False)
    assert result.errors[0].code == "python_grader_runtime_error"
    assert result.errors[0].message == "boom"
    assert result.latency_s >= 0.01


def test_invalid_input_during_scoring_is_invalid_variable_error():
    result = run(EQ, {"output_text": "a"}, {})
    assert result.score == 0.0
    assert result.errors[0].code == "invalid_variable_error"


def test_unknown_error_code_is_a_programming_error():
    with pytest.raises(AssertionError):
        ScoringError("not_a_flag", "x")


def test_run_and_validate():
    assert run(EQ, {"output_text": "a"}, {"answer": "a"}).score == 1.0
    spec = validate(EQ)
    assert isinstance(spec, StringCheckGrader) and spec.operation == "eq"


def test_make_reward_fn_reuses_one_grader():
    reward_fn, grader = make_reward_fn(EQ, max_concurrency=2)
    results = reward_fn([{"output_text": "a"}, {"output_text": "b"}], [{"answer": "b"}] * 2)
    assert [r.score for r in results] == [0.0, 1.0]
    grader.close()


def test_a_missing_name_defaults_to_the_type_as_openai_accepts():
    nameless = {k: v for k, v in EQ.items() if k != "name"}
    assert validate(nameless).name == "string_check"
    multi = validate({"type": "multi", "graders": {"a": nameless}, "calculate_output": "a"})
    assert (multi.name, multi.graders["a"].name) == ("multi", "string_check")
    assert validate({**nameless, "name": "kept"}).name == "kept"


def test_build_grader_accepts_a_parsed_spec():
    assert build_grader(validate(EQ)).spec.name == "eq"


@pytest.mark.parametrize(
    ("grader", "location", "message"),
    [
        ({**EQ, "operation": "contains"}, "grader.operation", "'eq', 'ne', 'like' or 'ilike'"),
        ({k: v for k, v in EQ.items() if k != "input"}, "grader.input", "Field required"),
        ({**EQ, "extra": 1}, "grader.extra", "Extra inputs"),
        ({"name": "x"}, "grader.type", "missing field 'type'"),
        ({"type": "regex", "name": "x"}, "grader.type", "unknown grader type 'regex'"),
        (
            {
                "type": "text_similarity",
                "name": "t",
                "input": "a",
                "reference": "b",
                "evaluation_metric": "bleu",
                "pass_threshold": 2,
            },
            "grader.pass_threshold",
            "less than or equal to 1",
        ),
        (
            {
                "type": "score_model",
                "name": "s",
                "model": "m",
                "input": [{"role": "x", "content": "a"}],
            },
            "grader.input[0].role",
            "Input should be",
        ),
        (["not", "a", "dict"], "grader", "must be a JSON object"),
    ],
)
def test_bad_grader_dicts_name_the_field_path(grader, location, message):
    with pytest.raises(InvalidInput) as info:
        validate(grader)
    assert info.value.location == location
    assert message in info.value.message


def test_core_graders_stay_light():
    # Grading with string_check / bleu / multi must not load torch or an embedder:
    # the service and CLI grade without paying for a model import.
    code = (
        "import sys, openrft.graders as g\n"
        "g.run({'type': 'multi', 'name': 'm', 'calculate_output': 'x + y', 'graders': {"
        "'x': {'type': 'string_check', 'name': 'x', 'input': 'a', 'reference': 'a',"
        " 'operation': 'eq'},"
        "'y': {'type': 'text_similarity', 'name': 'y', 'input': 'a b', 'reference': 'a b',"
        " 'evaluation_metric': 'bleu'}}}, {'output_text': ''}, {})\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("concurrency", [1, 4])
def test_grade_many_rejects_mismatched_lengths_instead_of_truncating(concurrency):
    from openrft.graders import build_grader

    grader = build_grader(
        {"type": "string_check", "name": "e", "operation": "eq",
         "input": "{{ sample.output_text }}", "reference": "x"}
    )
    samples = [{"output_text": "x"}] * 3
    with pytest.raises(InvalidInput, match="3 samples but 2 items"):
        grader.grade_many(samples, [{}, {}], concurrency)


def test_multi_grade_many_rejects_mismatched_lengths():
    from openrft.graders import build_grader

    sub = {"type": "string_check", "name": "e", "operation": "eq",
           "input": "{{ sample.output_text }}", "reference": "x"}
    grader = build_grader({"type": "multi", "name": "m", "graders": {"e": sub},
                           "calculate_output": "e"})
    with pytest.raises(InvalidInput, match="3 samples but 2 items"):
        grader.grade_many([{"output_text": "x"}] * 3, [{}, {}], 4)
