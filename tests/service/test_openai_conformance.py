"""Requests shaped as OpenAI's API reference and guides show them, sent raw (httpx, as a
`requests` script would) and through the official SDK's typed parameters, with and
without the optional fields; plus the graders guide's JSON examples round-tripped
through `graders/validate` and `graders/run` (tests/service/openai_examples/).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import openai
import pytest

EXAMPLES = json.loads((Path(__file__).parent / "openai_examples" / "graders_guide.json")
                      .read_text())["examples"]
PYTHON_GRADER = {"type": "python", "source": "def grade(sample, item):\n"
                 "    return float(sample['output_text'].strip() == item['answer'])"}
RFT_ROWS = [{"messages": [{"role": "user", "content": f"{a}+{a}="}], "answer": str(2 * a)}
            for a in range(4)]
SFT_ROWS = [{"messages": [{"role": "user", "content": f"{a}+{a}="},
                          {"role": "assistant", "content": str(2 * a)}]} for a in range(4)]


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture
def http(live) -> httpx.Client:
    key = live.key("alpha")
    with httpx.Client(base_url=live.base_url + "/v1", timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as session:
        yield session


def upload_raw(http: httpx.Client, rows: list[dict], **form: str) -> dict:
    answer = http.post("/files", files={"file": ("data.jsonl", jsonl(rows))},
                       data={"purpose": "fine-tune", **form})
    assert answer.status_code == 200, answer.text
    return answer.json()


# --- files -------------------------------------------------------------------------


def test_upload_with_expires_after_via_sdk_and_raw(client, http) -> None:
    sdk_file = client.files.create(file=("t.jsonl", io.BytesIO(jsonl(RFT_ROWS))),
                                   purpose="fine-tune",
                                   expires_after={"anchor": "created_at", "seconds": 3600})
    assert sdk_file.expires_at == sdk_file.created_at + 3600
    assert client.files.retrieve(sdk_file.id).expires_at == sdk_file.expires_at
    plain = upload_raw(http, RFT_ROWS)
    assert plain["expires_at"] is None and plain["object"] == "file"
    raw_file = upload_raw(http, RFT_ROWS, **{"expires_after[anchor]": "created_at",
                                              "expires_after[seconds]": "2592000"})
    assert raw_file["expires_at"] == raw_file["created_at"] + 2592000


@pytest.mark.parametrize(("anchor", "seconds", "param"), [
    ("last_active_at", "3600", "expires_after.anchor"),
    ("created_at", "60", "expires_after.seconds"),  # OpenAI: at least one hour
    ("created_at", "2592001", "expires_after.seconds"),  # at most 30 days
])
def test_bad_expires_after_is_400(http, anchor, seconds, param) -> None:
    answer = http.post("/files", files={"file": ("d.jsonl", jsonl(RFT_ROWS))},
                       data={"purpose": "fine-tune", "expires_after[anchor]": anchor,
                             "expires_after[seconds]": seconds})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param


# --- graders -----------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["id"] for e in EXAMPLES])
def test_graders_guide_examples_validate(http, example) -> None:
    answer = http.post("/fine_tuning/alpha/graders/validate", json={"grader": example["grader"]})
    assert answer.status_code == 200, answer.text
    echoed = answer.json()["grader"]
    assert echoed["type"] == example["grader"]["type"]
    assert echoed["name"] == example["grader"].get("name", example["grader"]["type"])
    for key, sub in example["grader"].get("graders", {}).items():
        assert echoed["graders"][key]["name"] == sub["name"]


RUNS = [(e["id"], e["grader"], run) for e in EXAMPLES for run in e["runs"]]


@pytest.mark.parametrize(("example_id", "grader", "case"), RUNS,
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(RUNS)])
def test_graders_guide_examples_run(http, example_id, grader, case) -> None:
    answer = http.post("/fine_tuning/alpha/graders/run", json={
        "grader": grader, "item": case["item"], "model_sample": case["model_sample"]})
    assert answer.status_code == 200, answer.text
    expected = case["reward"]
    if expected == "rapidfuzz":  # a second implementation: the library the guide names
        from rapidfuzz import fuzz, utils

        expected = fuzz.WRatio(case["model_sample"], case["item"]["reference_answer"],
                               processor=utils.default_process) / 100.0
    body = answer.json()
    assert body["reward"] == pytest.approx(expected), (case["why"], body)
    assert not any(v is True for v in body["metadata"]["errors"].values()), body


def test_sdk_graders_validate_and_run_without_name(client) -> None:
    validated = client.fine_tuning.alpha.graders.validate(grader=PYTHON_GRADER)
    assert validated.grader.name == "python"
    result = client.fine_tuning.alpha.graders.run(grader=PYTHON_GRADER, model_sample="4",
                                                  item={"answer": "4"})
    assert result.reward == 1.0 and result.metadata.type == "python"


def test_multi_accepts_the_sdk_single_grader_shape(http) -> None:
    # openai-python types MultiGrader.graders as one grader object, not a mapping
    grader = {"type": "multi", "name": "m", "calculate_output": "2 * exact",
              "graders": {"type": "string_check", "name": "exact", "operation": "eq",
                          "input": "{{sample.output_text}}", "reference": "{{item.answer}}"}}
    answer = http.post("/fine_tuning/alpha/graders/run", json={
        "grader": grader, "model_sample": "4", "item": {"answer": "4"}})
    assert answer.status_code == 200 and answer.json()["reward"] == 2.0


# --- jobs --------------------------------------------------------------------------


def test_minimal_job_body_from_the_api_reference(http, tiny_model_dir) -> None:
    training = upload_raw(http, SFT_ROWS)["id"]
    answer = http.post("/fine_tuning/jobs", json={"training_file": training,
                                                  "model": str(tiny_model_dir)})
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert job["object"] == "fine_tuning.job" and job["status"] == "queued"
    assert job["method"]["type"] == "supervised"
    assert job["hyperparameters"] == {"batch_size": "auto", "learning_rate_multiplier": "auto",
                                      "n_epochs": "auto"}
    for field in ("integrations", "metadata", "user_provided_suffix", "estimated_finish",
                  "trained_tokens", "fine_tuned_model", "finished_at", "error"):
        assert job[field] is None, field
    assert isinstance(job["seed"], int)  # generated when omitted, as OpenAI does


def test_rft_job_body_with_every_optional_field(http, tiny_model_dir) -> None:
    training, validation = upload_raw(http, RFT_ROWS)["id"], upload_raw(http, RFT_ROWS)["id"]
    response_format = {"type": "json_schema", "json_schema": {
        "name": "answer", "strict": True, "schema": {
            "type": "object", "properties": {"answer": {"type": "string"}},
            "required": ["answer"], "additionalProperties": False}}}
    hyperparameters = {"batch_size": 2, "learning_rate_multiplier": 0.5, "n_epochs": 1,
                       "reasoning_effort": "medium", "compute_multiplier": 0.25,
                       "eval_interval": 1, "eval_samples": 2}
    integrations = [{"type": "wandb", "wandb": {"project": "rft", "entity": "me", "name": "run-1",
                                                  "tags": ["a"]}}]
    body = {
        "model": str(tiny_model_dir), "training_file": training, "validation_file": validation,
        "suffix": "adder-v1", "seed": 42, "metadata": {"team": "maths", "ticket": "T-1"},
        "integrations": integrations,
        "method": {"type": "reinforcement", "reinforcement": {
            "grader": {"type": "string_check", "operation": "eq",  # no name, as OpenAI allows
                       "input": "{{sample.output_json.answer}}", "reference": "{{item.answer}}"},
            "response_format": response_format, "hyperparameters": hyperparameters}},
    }
    answer = http.post("/fine_tuning/jobs", json=body)
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert (job["seed"], job["user_provided_suffix"]) == (42, "adder-v1")
    assert job["metadata"] == body["metadata"] and job["integrations"] == integrations
    reinforcement = job["method"]["reinforcement"]
    assert reinforcement["response_format"] == response_format
    assert reinforcement["hyperparameters"] == hyperparameters
    assert reinforcement["grader"]["type"] == "string_check"
    assert http.get(f"/fine_tuning/jobs/{job['id']}").json()["integrations"] == integrations


def test_sdk_typed_create_with_reasoning_effort_values(client, tiny_model_dir) -> None:
    training = client.files.create(file=("t.jsonl", io.BytesIO(jsonl(RFT_ROWS))),
                                   purpose="fine-tune").id
    for effort in ("default", "low", "medium", "high"):
        job = client.fine_tuning.jobs.create(
            model=str(tiny_model_dir), training_file=training, suffix="e", seed=1,
            metadata={"effort": effort},
            integrations=[{"type": "wandb", "wandb": {"project": "p"}}],
            method={"type": "reinforcement", "reinforcement": {
                "grader": PYTHON_GRADER, "hyperparameters": {"reasoning_effort": effort}}})
        assert job.method.reinforcement.hyperparameters.reasoning_effort == effort
        assert job.integrations[0].wandb.project == "p"
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(
            model=str(tiny_model_dir), training_file=training,
            method={"type": "reinforcement", "reinforcement": {
                "grader": PYTHON_GRADER, "hyperparameters": {"reasoning_effort": "minimal"}}})
    assert "reasoning_effort" in caught.value.param


def test_top_level_hyperparameters_with_an_rft_method_are_refused(client,
                                                                   tiny_model_dir) -> None:
    training = client.files.create(file=("t.jsonl", io.BytesIO(jsonl(RFT_ROWS))),
                                   purpose="fine-tune").id
    with pytest.raises(openai.BadRequestError) as caught:  # would otherwise be ignored
        client.fine_tuning.jobs.create(
            model=str(tiny_model_dir), training_file=training, hyperparameters={"n_epochs": 2},
            method={"type": "reinforcement", "reinforcement": {"grader": PYTHON_GRADER}})
    assert caught.value.param == "hyperparameters"
    assert "method.reinforcement.hyperparameters" in caught.value.message


LABEL_MODEL = {"type": "label_model", "name": "judge", "model": "gpt-4o-2024-08-06",
               "input": [{"role": "user", "content": "Is {{sample.output_text}} {{item.answer}}?"}],
               "labels": ["yes", "no"], "passing_labels": ["yes"]}


def test_top_level_label_model_is_rejected_as_openai_does(client, tiny_model_dir) -> None:
    training = client.files.create(file=("t.jsonl", io.BytesIO(jsonl(RFT_ROWS))),
                                   purpose="fine-tune").id
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(
            model=str(tiny_model_dir), training_file=training,
            method={"type": "reinforcement", "reinforcement": {"grader": LABEL_MODEL}})
    assert caught.value.param == "method.reinforcement.grader.type"
    assert caught.value.code == "invalid_value" and "label_model" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:  # an unknown type is not "in multi"
        client.fine_tuning.jobs.create(
            model=str(tiny_model_dir), training_file=training,
            method={"type": "reinforcement", "reinforcement": {"grader": {"type": "regex"}}})
    assert "unknown grader type 'regex'" in caught.value.message
    assert list(client.fine_tuning.jobs.list()) == []
    # inside a multi grader it is allowed, and graders/validate accepts it on its own
    multi = {"type": "multi", "graders": {"judge": LABEL_MODEL}, "calculate_output": "judge"}
    job = client.fine_tuning.jobs.create(
        model=str(tiny_model_dir), training_file=training,
        method={"type": "reinforcement", "reinforcement": {"grader": multi}})
    assert job.status == "queued"
    assert client.fine_tuning.alpha.graders.validate(grader=LABEL_MODEL).grader.type == \
        "label_model"
