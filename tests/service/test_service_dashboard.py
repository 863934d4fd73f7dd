"""The dashboard in a real headless browser (Debian's chromium): jobs list and a job page."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from service_flow import TRAIN, chromium, create_job, upload

from openrft.service.job_reporter import StoreReporter
from openrft.service.store import jobs as job_queries
from openrft.service.store.models import Job

# Hand-chosen step rewards: the chart must plot exactly these.
TRAIN_REWARDS = [0.25, 0.5, 0.75]
VALID_REWARDS = {2: 0.4, 3: 0.6}
# A training-health finding that began at step 2 (rl/monitor.py's Finding.to_dict()).
NO_SIGNAL = {"kind": "no_signal", "severity": "warn", "step": 2, "detected_step": 3,
             "message": "No learning signal: <all groups scored alike>", "numbers": {},
             "action": "warn"}


def report_a_run(live, job_id: str, tmp_path: Path) -> None:
    """Write a finished 3-step run through the service's real StoreReporter."""
    reporter = StoreReporter(live.db, job_id, "worker-x", "ft:model:alpha:adder:1")
    reporter.on_start(3, {})
    for step, train in enumerate(TRAIN_REWARDS, start=1):
        metrics = {"step": step, "train_reward_mean": train}
        if step in VALID_REWARDS:
            metrics["valid_reward_mean"] = VALID_REWARDS[step]
        reporter.on_step(metrics)
    reporter.on_event("warn", NO_SIGNAL["message"], {"finding": NO_SIGNAL})
    checkpoint = tmp_path / "ckpt-3"
    checkpoint.mkdir()
    reporter.on_checkpoint(3, str(checkpoint), {"valid_reward_mean": 0.6})
    reporter.on_samples(3, [{"prompt": [{"role": "user", "content": "2+2="}],
                             "output_text": "<b>4</b>", "score": 1.0}])
    with live.db.session() as session:
        job_queries.set_status(session, session.get(Job, job_id), "succeeded")


def polyline_points(dom: str, name: str) -> list[tuple[float, float]]:
    match = re.search(rf'<polyline class="{name}" points="([^"]*)"', dom)
    assert match, f"no {name} curve in the page"
    return [tuple(map(float, p.split(","))) for p in match.group(1).split()]


def test_dashboard_renders_jobs_and_live_job_page(live, tiny_model_dir, tmp_path) -> None:
    key = live.key("alpha")
    client = live.client(key)
    job = create_job(client, str(tiny_model_dir), upload(client, TRAIN, "t.jsonl"), None)
    report_a_run(live, job.id, tmp_path)

    listing = chromium(f"{live.base_url}/?key={key}", tmp_path / "p1", "--dump-dom")
    assert f'href="#/jobs/{job.id}"' in listing and "succeeded" in listing

    page_url = f"{live.base_url}/?key={key}#/jobs/{job.id}"
    dom = chromium(page_url, tmp_path / "p2", "--dump-dom")
    assert "Step 3/3, train mean reward=0.75, valid mean reward=0.60" in dom
    assert "<dt>Status</dt>" in dom and "[object" not in dom
    assert "ft:model:alpha:adder:1:ckpt-step-3" in dom
    assert "&lt;b&gt;4&lt;/b&gt;" in dom  # model output shown as text, never as HTML
    train = polyline_points(dom, "train")
    valid = polyline_points(dom, "valid")
    assert len(train) == 3 and len(valid) == 2
    # SVG y grows downwards: rising rewards mean falling y; x follows the steps.
    assert train[0][1] > train[1][1] > train[2][1]
    assert [p[0] for p in valid] == [p[0] for p in train[1:]]
    # equal rewards sit at equal heights: the valid reward at step 3 (0.6) lies between
    # the train rewards 0.5 and 0.75 of steps 2 and 3
    assert train[1][1] > valid[1][1] > train[2][1]

    # the finding: a badge on the job, a row in the health table, a marker at step 2
    assert '<span class="badge warn"' in dom and "no signal · step 2" in dom
    assert "No learning signal: &lt;all groups scored alike&gt;" in dom  # text, not HTML
    marker = re.search(r'<line class="finding warn" x1="([\d.]+)"', dom)
    assert marker and float(marker.group(1)) == pytest.approx(train[1][0], abs=0.06)

    shot = tmp_path / "dashboard.png"
    chromium(page_url, tmp_path / "p3", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if os.environ.get("OPENRFT_ARTIFACTS"):
        shutil.copy(shot, Path(os.environ["OPENRFT_ARTIFACTS"]) / "dashboard.png")


def test_dashboard_data_needs_a_key(live, tmp_path) -> None:
    dom = chromium(f"{live.base_url}/", tmp_path / "p", "--dump-dom")
    assert "Enter an API key" in dom
    bad = chromium(f"{live.base_url}/?key=sk-orft-bad-key", tmp_path / "q", "--dump-dom")
    assert "Incorrect API key" in bad
