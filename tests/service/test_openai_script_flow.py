"""A script written for OpenAI's RFT API, run against OpenRFT with only the base URL and
key changed: upload with `expires_after`, validate and run the python grader with raw
HTTP (as `requests` would, reading `x-request-id`), create the job with
`reasoning_effort` and a wandb integration, poll events, list checkpoints, chat with the
`ft:` model and a `ft:...:ckpt-step-N` checkpoint. A worker runs in a thread.
"""

from __future__ import annotations

import io
import json
import re
import time

import httpx
import openai
import pytest
from transformers import AutoTokenizer

pytestmark = pytest.mark.slow

# a graded (not 0/1) reward, so checkpoints differ in valid_reward_mean
GRADER = {"type": "python", "source": (
    "from rapidfuzz import fuzz\n\n"
    "def grade(sample, item):\n"
    "    return fuzz.ratio(sample['output_text'], item['answer']) / 100.0\n")}
TRAIN = [{"messages": [{"role": "user", "content": f"{a}+{a}="}], "answer": f"{2 * a} apples"}
         for a in range(1, 5)]
VALID = [{"messages": [{"role": "user", "content": f"{a}+{a}="}], "answer": f"{2 * a} apples"}
         for a in (6, 7)]


def upload(client: openai.OpenAI, rows: list[dict], name: str) -> str:
    content = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return client.files.create(file=(name, io.BytesIO(content)), purpose="fine-tune",
                               expires_after={"anchor": "created_at", "seconds": 3600}).id


def test_openai_rft_script_runs_unchanged(live, worker, tiny_model_dir) -> None:
    key = live.key("alpha")
    client = live.client(key)  # base_url and api_key are the only changes
    train_id, valid_id = upload(client, TRAIN, "train.jsonl"), upload(client, VALID, "v.jsonl")

    headers = {"Authorization": f"Bearer {key}"}
    url = live.base_url + "/v1/fine_tuning/alpha/graders"
    validated = httpx.post(url + "/validate", json={"grader": GRADER}, headers=headers)
    assert re.match(r"^req_[0-9a-f]{32}$", validated.headers["x-request-id"])
    assert validated.json()["grader"]["name"] == "python"
    ran = httpx.post(url + "/run", headers=headers, timeout=60, json={
        "grader": GRADER, "item": {"answer": "4 apples"}, "model_sample": "4 apples"})
    assert ran.json()["reward"] == 1.0 and ran.headers["x-request-id"]

    job = client.fine_tuning.jobs.create(
        model=str(tiny_model_dir), training_file=train_id, validation_file=valid_id,
        suffix="script", seed=11, integrations=[{"type": "wandb", "wandb": {"project": "rft"}}],
        method={"type": "reinforcement", "reinforcement": {"grader": GRADER, "hyperparameters": {
            "n_epochs": 2, "batch_size": 2, "eval_interval": 1, "eval_samples": 2,
            "reasoning_effort": "low"}}},
        extra_body={"expert": {"group_size": 2, "max_tokens": 8}},
    )
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == 2
    done = wait_for(client, job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model.startswith("ft:model:alpha:script:")

    events = list(client.fine_tuning.jobs.list_events(job.id, limit=200))
    metrics = {e.data["step"]: e.data for e in events if e.type == "metrics"}
    assert sorted(metrics) == [1, 2, 3, 4]  # 4 rows / batch 2 * 2 epochs
    assert any(e.level == "warn" and "wandb" in e.message for e in events)  # not installed

    check_resolved_hyperparameters(done)
    check_trained_tokens(done, metrics, tiny_model_dir)
    assert done.estimated_finish is not None and done.estimated_finish >= done.created_at
    checkpoints = check_best_checkpoints(client, done, metrics)
    check_chat(client, done.fine_tuned_model, checkpoints[0].fine_tuned_model_checkpoint)


def wait_for(client: openai.OpenAI, job_id: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while (job := client.fine_tuning.jobs.retrieve(job_id)).status not in (
            "succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"job still {job.status}"
        time.sleep(0.3)
    return job


def check_resolved_hyperparameters(job) -> None:
    """"auto" replaced by the values used: lr and compute multipliers auto = 1.0, eval
    samples auto = min(32, 2 validation rows); given values unchanged."""
    expected = {"batch_size": 2, "learning_rate_multiplier": 1.0, "n_epochs": 2,
                "reasoning_effort": "low", "compute_multiplier": 1.0, "eval_interval": 1,
                "eval_samples": 2}
    assert job.hyperparameters.model_dump(exclude_none=True) == expected
    shown = job.method.reinforcement.hyperparameters.model_dump(exclude_none=True)
    assert shown == expected


def check_trained_tokens(job, metrics: dict[int, dict], model_dir) -> None:
    """Each of the 4 training rows is sampled twice per epoch (group 2), 2 epochs: every
    prompt counts 4 times; completions are 4 per step at each step's mean length."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt_tokens = sum(len(tokenizer.apply_chat_template(
        row["messages"], add_generation_prompt=True, return_dict=True)["input_ids"])
        for row in TRAIN)
    completions = sum(round(4 * m["completion_tokens_mean"]) for m in metrics.values())
    assert job.trained_tokens == 4 * prompt_tokens + completions


def check_best_checkpoints(client: openai.OpenAI, job, metrics: dict[int, dict]) -> list:
    """OpenAI keeps the 3 checkpoints with the highest valid_reward_mean (ties: newer)."""
    rewards = {step: m["scores"]["valid_reward_mean"] for step, m in metrics.items()}
    best = sorted(rewards, key=lambda s: (rewards[s], s), reverse=True)[:3]
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert sorted(c.step_number for c in checkpoints) == sorted(best), rewards
    for checkpoint in checkpoints:
        assert checkpoint.metrics.model_dump()["step"] == checkpoint.step_number
        assert checkpoint.metrics.model_extra["valid_reward_mean"] == pytest.approx(
            rewards[checkpoint.step_number])
        assert checkpoint.fine_tuned_model_checkpoint == (
            f"{job.fine_tuned_model}:ckpt-step-{checkpoint.step_number}")
    return checkpoints


def check_chat(client: openai.OpenAI, *models: str) -> None:
    for model in models:
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "2+2="}], max_tokens=4)
        assert reply.model == model and isinstance(reply.choices[0].message.content, str)
        assert reply.usage.completion_tokens <= 4
