"""Fine-tuning job API without a worker: creation checks, listing, and the state machine."""

from __future__ import annotations

import io
import json

import openai
import pytest

GRADER = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}", "operation": "eq"}
ROWS = [{"messages": [{"role": "user", "content": f"{a}+{a}="}], "answer": str(2 * a)}
        for a in range(4)]


def upload(client: openai.OpenAI, rows: list[dict]) -> str:
    content = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return client.files.create(file=("d.jsonl", io.BytesIO(content)), purpose="fine-tune").id


def rft(grader: dict = GRADER, **hyper) -> dict:
    return {"type": "reinforcement",
            "reinforcement": {"grader": grader, "hyperparameters": hyper}}


@pytest.fixture
def train_id(client) -> str:
    return upload(client, ROWS)


def test_create_queues_the_job_with_openai_shape(client, train_id, tiny_model_dir) -> None:
    job = client.fine_tuning.jobs.create(
        model=str(tiny_model_dir), training_file=train_id, validation_file=train_id,
        method=rft(n_epochs=1), suffix="adder", seed=7, metadata={"team": "a"})
    assert job.id.startswith("ftjob-") and job.object == "fine_tuning.job"
    assert job.status == "queued" and job.seed == 7 and job.fine_tuned_model is None
    assert job.method.type == "reinforcement"
    assert job.method.reinforcement.grader.name == "exact"
    assert job.training_file == train_id and job.metadata == {"team": "a"}
    assert client.fine_tuning.jobs.retrieve(job.id).id == job.id
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
    assert any(train_id in m for m in messages) and any("queued" in m for m in messages)


def test_list_paginates_and_filters_by_metadata(client, train_id, tiny_model_dir) -> None:
    ids = [client.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=train_id,
                                          method=rft(), metadata={"n": str(i % 2)}).id
           for i in range(3)]
    page = client.fine_tuning.jobs.list(limit=2)
    assert page.has_more is True and [j.id for j in page.data] == ids[::-1][:2]
    assert [j.id for j in client.fine_tuning.jobs.list(limit=1)] == ids[::-1]
    odd = client.fine_tuning.jobs.list(metadata={"n": "1"})
    assert [j.id for j in odd.data] == [ids[1]]


def test_cancel_pause_resume_state_machine(client, train_id, tiny_model_dir) -> None:
    job = client.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=train_id,
                                         method=rft())
    assert client.fine_tuning.jobs.pause(job.id).status == "paused"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.pause(job.id)
    assert client.fine_tuning.jobs.resume(job.id).status == "queued"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.resume(job.id)
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.cancel(job.id)
    assert "cancelled" in caught.value.body["message"]


@pytest.mark.parametrize(
    ("change", "expected_in_message"),
    [
        ({"grader": {**GRADER, "reference": "{{item.solution}}"}}, ":1"),
        ({"grader": {**GRADER, "operation": "equals"}}, "method.reinforcement.grader"),
        ({"hyper": {"batch_size": 0}}, "batch_size"),
        ({"hyper": {"compute_multiplier": 11}}, "compute_multiplier"),
        ({"expert": {"group_size": 1}}, "group_size"),
        ({"expert": {"no_such_knob": 1}}, "no_such_knob"),
        ({"integrations": [{"type": "mlflow", "mlflow": {"project": "p"}}]}, "integrations"),
        ({"integrations": [{"type": "wandb", "wandb": {}}]}, "integrations.0.wandb.project"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),  # OpenAI: <= 16 pairs
        ({"metadata": {"k" * 65: "v"}}, "metadata"),  # keys <= 64 characters
        ({"metadata": {"k": "v" * 513}}, "metadata"),  # values <= 512 characters
        ({"suffix": "s" * 65}, "suffix"),  # <= 64 characters
    ],
)
def test_bad_job_requests_are_400_and_store_nothing(client, train_id, tiny_model_dir, change,
                                                    expected_in_message) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(
            model=str(tiny_model_dir), training_file=train_id,
            method=rft(change.get("grader", GRADER), **change.get("hyper", {})),
            extra_body={k: change[k] for k in ("expert", "integrations", "metadata", "suffix")
                        if k in change})
    assert expected_in_message in caught.value.body["message"], caught.value.body
    assert list(client.fine_tuning.jobs.list()) == []


def test_grader_field_missing_names_file_and_line(client, tiny_model_dir) -> None:
    rows = [*ROWS, {"messages": [{"role": "user", "content": "x"}]}]  # line 5 lacks "answer"
    file_id = upload(client, rows)
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=file_id,
                                       method=rft())
    message = caught.value.body["message"]
    assert f"{file_id}:5" in message and "answer" in message


def test_other_bad_requests(client, train_id, tiny_model_dir) -> None:
    with pytest.raises(openai.BadRequestError):  # dpo is not implemented
        client.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=train_id,
                                       method={"type": "dpo", "dpo": {}})
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model="ft:nope:alpha::123", training_file=train_id,
                                       method=rft())
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:  # RFT rows are not SFT rows
        client.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=train_id,
                                       method={"type": "supervised", "supervised": {}})
    assert "assistant" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:  # missing required field
        client.post("/fine_tuning/jobs", body={"model": "m"}, cast_to=object)
    assert caught.value.body["param"] == "training_file"
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")
