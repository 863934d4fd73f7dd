"""The whole flow through the official openai SDK against `openrft serve --workers 2`.

Real processes and the real engine: the CLI makes the key, the server's two worker
processes share three jobs on a tiny local model (each job runs exactly once), and the
SDK reads events, metrics, checkpoints, models and chats with the fine-tuned model. The
dashboard shows the real job.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import openai
import pytest
from service_flow import (
    TRAIN,
    VALID,
    chromium,
    create_job,
    make_key,
    start_serve,
    upload,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_sdk_drives_serve_upload_train_events_checkpoints_and_chat(tiny_model_dir, tmp_path,
                                                                   spawn) -> None:
    data_dir = tmp_path / "data"
    key = make_key(data_dir, "alpha")
    _, base_url = start_serve(spawn, data_dir, tmp_path / "serve.log", 2,
                              "--model-root", str(tiny_model_dir.parent))
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0,
                           timeout=120)
    train_id = upload(client, TRAIN, "train.jsonl")
    valid_id = upload(client, VALID, "valid.jsonl")
    job = create_job(client, str(tiny_model_dir), train_id, valid_id)
    # two more jobs queued at once: the two worker processes share the three
    others = [create_job(client, str(tiny_model_dir), train_id, None) for _ in range(2)]
    done = wait_for(client, job.id)
    log = (tmp_path / "serve.log").read_text()
    assert done.status == "succeeded", (done.error, log[-3000:])
    check_each_job_ran_once(client, [job.id] + [o.id for o in others])
    check_job_results(client, job.id, done)
    check_chat(client, job.id, done.fine_tuned_model)
    dashboard_screenshot(base_url, key, job.id, tmp_path)


def check_each_job_ran_once(client: openai.OpenAI, job_ids: list[str]) -> None:
    for job_id in job_ids:
        assert wait_for(client, job_id).status == "succeeded"
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job_id, limit=200)]
        assert sum(m.startswith("Started by worker") for m in messages) == 1, messages
        assert not any(m.startswith("Resumed") for m in messages), messages
        steps = [e for e in client.fine_tuning.jobs.list_events(job_id, limit=200)
                 if e.type == "metrics"]
        assert sorted(e.data["step"] for e in steps) == [1, 2]


def check_job_results(client: openai.OpenAI, job_id: str, done) -> None:
    assert done.fine_tuned_model.startswith("ft:model:alpha:adder:")
    assert done.finished_at >= done.created_at
    events = list(client.fine_tuning.jobs.list_events(job_id, limit=100))
    metrics = sorted((e for e in events if e.type == "metrics"), key=lambda e: e.data["step"])
    # 4 rows / batch 2 = 2 steps in one epoch, validation at every step
    assert [e.data["step"] for e in metrics] == [1, 2]
    for event in metrics:
        assert event.data["total_steps"] == 2
        assert event.message.startswith(f"Step {event.data['step']}/2, train mean reward=")
        assert 0.0 <= event.data["scores"]["train_reward_mean"] <= 1.0
        assert 0.0 <= event.data["scores"]["valid_reward_mean"] <= 1.0
    assert "The job has successfully completed" in [e.message for e in events]

    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job_id))
    assert sorted(c.step_number for c in checkpoints) == [1, 2]
    for checkpoint in checkpoints:
        assert checkpoint.id.startswith("ftckpt-") and checkpoint.fine_tuning_job_id == job_id
        assert checkpoint.fine_tuned_model_checkpoint == (
            f"{done.fine_tuned_model}:ckpt-step-{checkpoint.step_number}")
    assert done.fine_tuned_model in [m.id for m in client.models.list()]
    assert client.models.retrieve(done.fine_tuned_model).owned_by == "alpha"


def check_chat(client: openai.OpenAI, job_id: str, model: str) -> None:
    ask = [{"role": "user", "content": "3+3="}]
    plain = client.chat.completions.create(model=model, messages=ask, max_tokens=6,
                                           temperature=0)
    assert plain.object == "chat.completion" and plain.choices[0].message.role == "assistant"
    assert plain.usage.completion_tokens >= 1
    stream = client.chat.completions.create(model=model, messages=ask, max_tokens=6,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    # greedy decoding: the streamed pieces add up to the plain answer
    assert "".join(pieces) == plain.choices[0].message.content
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens
    first_ckpt = list(client.fine_tuning.jobs.checkpoints.list(job_id))[-1]
    served = client.chat.completions.create(
        model=first_ckpt.fine_tuned_model_checkpoint, messages=ask, max_tokens=4)
    assert isinstance(served.choices[0].message.content, str)
    assert client.models.delete(model).deleted is True
    with pytest.raises(openai.BadRequestError) as caught:  # model_not_found, at once
        client.chat.completions.create(model=model, messages=ask, max_tokens=2)
    assert caught.value.body["code"] == "model_not_found"


def dashboard_screenshot(base_url: str, key: str, job_id: str, tmp_path: Path) -> None:
    url = f"{base_url}/?key={key}#/jobs/{job_id}"
    dom = chromium(url, tmp_path / "profile-dom", "--dump-dom")
    assert 'class="train"' in dom and "Step 2/2, train mean reward=" in dom
    shot = tmp_path / "dashboard-real-job.png"
    chromium(url, tmp_path / "profile-shot", f"--screenshot={shot}")
    assert shot.read_bytes()[:4] == b"\x89PNG"
    if os.environ.get("OPENRFT_ARTIFACTS"):
        shutil.copy(shot, Path(os.environ["OPENRFT_ARTIFACTS"]) / shot.name)
