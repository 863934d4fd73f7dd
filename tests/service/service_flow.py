"""Helpers shared by the end-to-end service tests: data, job bodies, workers, polling."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from process_groups import start, stop_group

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


CLI = [sys.executable, "-c", "from openrft.cli import main; main()"]
Spawn = Callable[..., subprocess.Popen]  # the `spawn` fixture (tests/conftest.py)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_key(data_dir: Path, project: str) -> str:
    """`openrft keys create`: the key is the last line of its output."""
    done = subprocess.run([*CLI, "keys", "create", "--project", project, "--data-dir",
                           str(data_dir)], capture_output=True, text=True, check=True, timeout=120)
    return done.stdout.strip().splitlines()[-1]


def start_serve(spawn: Spawn, data_dir: Path, log_path: Path, workers: int,
                *options: str) -> tuple[subprocess.Popen, str]:
    """`openrft serve --workers N [options]` as a process (in its own process group, through
    the `spawn` fixture); returns it and its base URL once it answers."""
    port = free_port()
    process = spawn(
        [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
         str(data_dir), "--workers", str(workers), *options],
        stdout=log_path.open("ab"), stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(base_url + "/", timeout=2).status_code == 200:
                return process, base_url
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("openrft serve did not start: " + log_path.read_text()[-2000:])
        time.sleep(0.3)


def chromium(url: str, profile: Path, *mode: str) -> str:
    """Debian's headless chromium on `url` (--dump-dom or --screenshot=...); returns stdout."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not installed at {CHROMIUM} (CI installs it via apt)")
    browser = start(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--window-size=1280,1400",
         "--virtual-time-budget=4000", *mode, url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        stdout, stderr = browser.communicate(timeout=120)
    finally:
        stop_group(browser, grace_s=5)  # chromium's helper processes go with it
    assert browser.returncode == 0, stderr[-2000:]
    return stdout


def spawn_worker(spawn: Spawn, data_dir: Path, log_path: Path,
                 stale_after_s: float = 15.0) -> subprocess.Popen:
    """`openrft worker` as a separate process on the server's data dir (own process group)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return spawn(
        [*CLI, "worker", "--data-dir", str(data_dir), "--stale-after-s", str(stale_after_s)],
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
