"""Alpha grader endpoints through the SDK: run and validate, with OpenAI's response shapes."""

from __future__ import annotations

import openai
import pytest

EQ = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
      "reference": "{{item.answer}}", "operation": "eq"}


def test_run_scores_and_reports_all_error_flags(client: openai.OpenAI) -> None:
    hit = client.fine_tuning.alpha.graders.run(grader=EQ, model_sample="4", item={"answer": "4"})
    miss = client.fine_tuning.alpha.graders.run(grader=EQ, model_sample="5", item={"answer": "4"})
    assert (hit.reward, miss.reward) == (1.0, 0.0)
    assert hit.metadata.name == "exact" and hit.metadata.type == "string_check"
    errors = hit.metadata.errors
    assert not any([errors.formula_parse_error, errors.invalid_variable_error,
                    errors.sample_parse_error, errors.other_error,
                    errors.python_grader_runtime_error, errors.api_model_grader_server_error])
    assert hit.metadata.execution_time >= 0


def test_run_flags_a_missing_item_field(client: openai.OpenAI) -> None:
    result = client.fine_tuning.alpha.graders.run(grader=EQ, model_sample="4", item={})
    assert result.reward == 0.0
    assert result.metadata.errors.invalid_variable_error is True


def test_run_parses_json_samples_into_output_json(client: openai.OpenAI) -> None:
    grader = {**EQ, "input": "{{sample.output_json.answer}}"}
    result = client.fine_tuning.alpha.graders.run(
        grader=grader, model_sample='{"answer": "4"}', item={"answer": "4"})
    assert result.reward == 1.0


def test_multi_grader_sub_rewards(client: openai.OpenAI) -> None:
    grader = {"type": "multi", "name": "m", "calculate_output": "0.25 * a + 0.75 * b",
              "graders": {"a": EQ, "b": {**EQ, "name": "contains", "operation": "like",
                                         "reference": "4"}}}
    result = client.fine_tuning.alpha.graders.run(grader=grader, model_sample="44",
                                                  item={"answer": "4"})
    # a: "44" == "4" is false -> 0; b: "44" contains "4" -> 1; 0.25*0 + 0.75*1
    assert result.reward == pytest.approx(0.75)
    assert result.sub_rewards == {"a": 0.0, "b": 1.0}


def test_validate_echoes_and_rejects(client: openai.OpenAI) -> None:
    echoed = client.fine_tuning.alpha.graders.validate(grader=EQ)
    assert echoed.grader.name == "exact" and echoed.grader.operation == "eq"
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.alpha.graders.validate(grader={**EQ, "operation": "equals"})
    assert "operation" in caught.value.body["param"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.alpha.graders.validate(
            grader={**EQ, "reference": "{{ nowhere.answer }}"})
    assert "reference" in caught.value.body["message"]
