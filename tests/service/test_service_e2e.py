"""The whole flow through the official openai SDK with the real engine and a worker process."""

from __future__ import annotations

import openai
import pytest
from flow import TRAIN, VALID, create_job, spawn_worker, stop, upload, wait_for

pytestmark = pytest.mark.slow


def test_sdk_drives_upload_train_events_checkpoints_and_chat(live, tiny_model_dir,
                                                             tmp_path) -> None:
    client = live.client(live.key("alpha"))
    train_id = upload(client, TRAIN, "train.jsonl")
    valid_id = upload(client, VALID, "valid.jsonl")
    job = create_job(client, str(tiny_model_dir), train_id, valid_id)
    worker = spawn_worker(live.settings.data_dir, tmp_path / "worker.log")
    try:
        done = wait_for(client, job.id)
    finally:
        stop(worker)
    assert done.status == "succeeded", (done.error, (tmp_path / "worker.log").read_text()[-3000:])
    assert done.fine_tuned_model.startswith("ft:model:alpha:adder:")
    assert done.finished_at >= done.created_at

    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    metrics = sorted((e for e in events if e.type == "metrics"), key=lambda e: e.data["step"])
    # 4 rows / batch 2 = 2 steps in one epoch
    assert [e.data["step"] for e in metrics] == [1, 2]
    for event in metrics:
        assert event.data["total_steps"] == 2
        assert event.message.startswith(f"Step {event.data['step']}/2, train mean reward=")
        assert 0.0 <= event.data["scores"]["train_reward_mean"] <= 1.0
        assert 0.0 <= event.data["scores"]["valid_reward_mean"] <= 1.0
    messages = [e.message for e in events]
    assert "The job has successfully completed" in messages

    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert sorted(c.step_number for c in checkpoints) == [1, 2]
    for checkpoint in checkpoints:
        assert checkpoint.id.startswith("ftckpt-")
        assert checkpoint.fine_tuning_job_id == job.id
        assert checkpoint.fine_tuned_model_checkpoint == (
            f"{done.fine_tuned_model}:ckpt-step-{checkpoint.step_number}")

    assert done.fine_tuned_model in [m.id for m in client.models.list()]
    assert client.models.retrieve(done.fine_tuned_model).owned_by == "alpha"

    ask = [{"role": "user", "content": "3+3="}]
    plain = client.chat.completions.create(model=done.fine_tuned_model, messages=ask,
                                           max_tokens=6, temperature=0)
    assert plain.object == "chat.completion" and plain.choices[0].message.role == "assistant"
    assert plain.usage.completion_tokens >= 1
    stream = client.chat.completions.create(model=done.fine_tuned_model, messages=ask,
                                            max_tokens=6, temperature=0, stream=True)
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    # greedy decoding: the streamed pieces add up to the plain answer
    assert "".join(pieces) == plain.choices[0].message.content
    # a checkpoint is servable by its name too
    ckpt = client.chat.completions.create(
        model=checkpoints[0].fine_tuned_model_checkpoint, messages=ask, max_tokens=4)
    assert isinstance(ckpt.choices[0].message.content, str)

    deleted = client.models.delete(done.fine_tuned_model)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=done.fine_tuned_model, messages=ask, max_tokens=2)
