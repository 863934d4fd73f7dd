"""Helpers shared by the end-to-end service tests: data, job bodies, workers, polling."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import openai

GRADER = {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}", "evaluation_metric": "fuzzy_match"}
TRAIN = [{"messages": [{"role": "user", "content": f"{a}+{a}="}], "answer": str(2 * a)}
         for a in range(1, 5)]
VALID = [{"messages": [{"role": "user", "content": f"{a}+{a}="}], "answer": str(2 * a)}
         for a in (6, 7)]
TERMINAL = ("succeeded", "failed", "cancelled")


def upload(client: openai.OpenAI, rows: list[dict], name: str) -> str:
    content = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return client.files.create(file=(name, io.BytesIO(content)), purpose="fine-tune").id


def create_job(client: openai.OpenAI, model: str, train_id: str, valid_id: str | None,
               n_epochs: int = 1, **expert: object):
    """A few-step RFT job: 4 rows, batch 2, group 2, 8 new tokens, eval+checkpoint each step."""
    return client.fine_tuning.jobs.create(
        model=model, training_file=train_id, validation_file=valid_id, suffix="adder", seed=3,
        method={"type": "reinforcement", "reinforcement": {"grader": GRADER, "hyperparameters": {
            "n_epochs": n_epochs, "batch_size": 2, "eval_interval": 1, "eval_samples": 2}}},
        extra_body={"expert": {"group_size": 2, "max_tokens": 8, **expert}},
    )


def spawn_worker(data_dir: Path, log_path: Path, stale_after_s: float = 15.0) -> subprocess.Popen:
    """`openrft worker` as a separate process on the server's data dir."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", "from openrft.cli import main; main()", "worker",
         "--data-dir", str(data_dir), "--stale-after-s", str(stale_after_s)],
        stdout=log_path.open("ab"), stderr=subprocess.STDOUT, env=env,
    )


def wait_for(client: openai.OpenAI, job_id: str, statuses=TERMINAL, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.status} after {timeout}s")
        time.sleep(0.3)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
