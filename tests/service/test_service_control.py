"""Pause, resume and cancel of RUNNING jobs, and supervised jobs, with the real engine.

A worker runs in a thread of the test process (the same Worker class `openrft worker`
runs), so these tests share the already loaded torch and stay quick.
"""

from __future__ import annotations

import io
import json
import threading
import time

import openai
import pytest
from service_flow import TRAIN, create_job, upload, wait_for

from openrft.service.worker import Worker

pytestmark = pytest.mark.slow


def wait_for_step(client: openai.OpenAI, job_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job_id)):
        assert time.monotonic() < deadline, "no training step reported"
        time.sleep(0.1)


def metric_steps(client: openai.OpenAI, job_id: str) -> list[int]:
    events = client.fine_tuning.jobs.list_events(job_id, limit=500)
    return sorted(e.data["step"] for e in events if e.type == "metrics")


def test_pause_running_job_then_resume_to_success(live, worker, tiny_model_dir) -> None:
    client = live.client(live.key("alpha"))
    # 4 rows / batch 2 * 3 epochs = 6 steps: long enough to pause mid-run
    job = create_job(client, str(tiny_model_dir), upload(client, TRAIN, "t.jsonl"), None,
                     n_epochs=3)
    wait_for_step(client, job.id)
    assert client.fine_tuning.jobs.pause(job.id).status == "running"  # stops between steps
    paused = wait_for(client, job.id, statuses=("paused", "succeeded", "failed"))
    assert paused.status == "paused" and paused.fine_tuned_model is None
    steps_at_pause = metric_steps(client, job.id)
    assert 1 <= len(steps_at_pause) < 6
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    # pausing saves a checkpoint at the last finished step
    assert max(c.step_number for c in checkpoints) == max(steps_at_pause)

    assert client.fine_tuning.jobs.resume(job.id).status == "queued"
    done = wait_for(client, job.id)
    assert done.status == "succeeded" and done.fine_tuned_model.startswith("ft:")
    assert metric_steps(client, job.id) == list(range(1, 7))  # nothing redone, nothing lost
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=500)]
    assert any(m.startswith("Resumed from ") and m.endswith(f"at step {max(steps_at_pause)}")
               for m in messages)


def test_cancel_running_job(live, worker, tiny_model_dir) -> None:
    client = live.client(live.key("alpha"))
    job = create_job(client, str(tiny_model_dir), upload(client, TRAIN, "t.jsonl"), None,
                     n_epochs=3)
    wait_for_step(client, job.id)
    client.fine_tuning.jobs.cancel(job.id)
    done = wait_for(client, job.id)
    assert done.status == "cancelled" and done.fine_tuned_model is None
    assert done.finished_at is not None
    assert len(metric_steps(client, job.id)) < 6
    assert done.fine_tuned_model not in [m.id for m in client.models.list()]


def _upload_doubling_rows(client) -> str:
    """Four SFT rows "a+a=" -> 2a, uploaded; the file id."""
    rows = [{"messages": [{"role": "user", "content": f"{a}+{a}="},
                          {"role": "assistant", "content": str(2 * a)}]} for a in range(1, 5)]
    content = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return client.files.create(file=("sft.jsonl", io.BytesIO(content)),
                               purpose="fine-tune").id


def test_supervised_job_trains_and_serves(live, worker, tiny_model_dir) -> None:
    client = live.client(live.key("alpha"))
    file_id = _upload_doubling_rows(client)
    job = client.fine_tuning.jobs.create(
        model=str(tiny_model_dir), training_file=file_id, suffix="sft",
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 2, "batch_size": 2}}})
    done = wait_for(client, job.id)
    assert done.status == "succeeded", done.error
    assert done.hyperparameters.n_epochs == 2
    steps = metric_steps(client, job.id)
    assert steps == [1, 2, 3, 4]  # 4 rows / batch 2 * 2 epochs
    reply = client.chat.completions.create(model=done.fine_tuned_model, max_tokens=3,
                                           messages=[{"role": "user", "content": "1+1="}])
    assert isinstance(reply.choices[0].message.content, str)


def test_paused_supervised_job_resumes_from_its_checkpoint(live, worker,
                                                          tiny_model_dir) -> None:
    client = live.client(live.key("alpha"))
    file_id = _upload_doubling_rows(client)
    job = client.fine_tuning.jobs.create(  # 4 rows / batch 2 * 30 epochs = 60 steps
        model=str(tiny_model_dir), training_file=file_id,
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 30, "batch_size": 2}}})
    wait_for_step(client, job.id)
    client.fine_tuning.jobs.pause(job.id)
    paused = wait_for(client, job.id, statuses=("paused", "succeeded", "failed"))
    assert paused.status == "paused", paused.error
    at_pause = max(metric_steps(client, job.id))
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert max(c.step_number for c in checkpoints) == at_pause < 60

    assert client.fine_tuning.jobs.resume(job.id).status == "queued"
    done = wait_for(client, job.id)
    assert done.status == "succeeded", done.error
    assert metric_steps(client, job.id) == list(range(1, 61))  # nothing redone, nothing lost
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=500)]
    assert any(m.startswith("Resumed from ") and m.endswith(f"at step {at_pause}")
               for m in messages)


def test_ft_model_is_a_base_for_the_next_job(live, worker, tiny_model_dir) -> None:
    client = live.client(live.key("alpha"))
    train_id = upload(client, TRAIN, "t.jsonl")
    first = wait_for(client, create_job(client, str(tiny_model_dir), train_id, None).id)
    assert first.status == "succeeded", first.error
    second = create_job(client, first.fine_tuned_model, train_id, None)
    assert second.model == first.fine_tuned_model
    done = wait_for(client, second.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model.startswith("ft:model:alpha:adder:")
    assert done.fine_tuned_model != first.fine_tuned_model
    # another project cannot train on (or even name) this project's model
    other = live.client(live.key("beta"))
    with pytest.raises(openai.BadRequestError) as caught:
        other.fine_tuning.jobs.create(model=first.fine_tuned_model,
                                      training_file=upload(other, TRAIN, "mine.jsonl"),
                                      method=second.method.model_dump(exclude_none=True))
    assert caught.value.body["code"] == "model_not_found"
    assert first.fine_tuned_model not in caught.value.body["message"].split("available")[1]


def test_stopping_a_worker_requeues_its_job_at_a_checkpoint(live, worker, tiny_model_dir) -> None:
    client = live.client(live.key("alpha"))
    job = create_job(client, str(tiny_model_dir), upload(client, TRAIN, "t.jsonl"), None,
                     n_epochs=3)
    wait_for_step(client, job.id)
    worker.stop_requested.set()  # what SIGTERM does in `openrft worker`
    requeued = wait_for(client, job.id, statuses=("queued", "succeeded", "failed"))
    assert requeued.status == "queued"
    steps = metric_steps(client, job.id)
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert max(c.step_number for c in checkpoints) == max(steps) < 6

    successor = Worker(live.settings)
    thread = threading.Thread(target=successor.run_forever, daemon=True)
    thread.start()
    try:
        done = wait_for(client, job.id)
    finally:
        successor.stop_requested.set()
        thread.join(timeout=120)
    assert done.status == "succeeded"
    assert metric_steps(client, job.id) == list(range(1, 7))
