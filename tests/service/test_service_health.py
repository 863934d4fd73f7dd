"""Training health in the service: findings as warn/error job events and in the metrics
endpoint, a job that pauses itself for lack of signal, and the preflight gate failing a
job fast. The worker runs in a thread of the test process with the real engine."""

from __future__ import annotations

import httpx
import pytest
from service_flow import TRAIN, upload, wait_for

from openrft.service.job_reporter import StoreReporter
from openrft.service.store import jobs as job_queries
from openrft.service.store.models import Job

NEVER = {"type": "string_check", "name": "never", "input": "{{ sample.output_text }}",
         "reference": "zqzqzq", "operation": "like"}


def _finding(kind: str, step: int, detected: int, action: str = "warn") -> dict:
    return {"kind": kind, "severity": "warn", "message": f"{kind} since step {step}",
            "numbers": {"share": 1.0}, "step": step, "detected_step": detected,
            "action": action}


def _job(client, tiny_model_dir, **expert):
    return client.fine_tuning.jobs.create(
        model=str(tiny_model_dir), training_file=upload(client, TRAIN, "t.jsonl"), seed=3,
        method={"type": "reinforcement", "reinforcement": {
            "grader": NEVER, "hyperparameters": {"n_epochs": 3, "batch_size": 2}}},
        extra_body={"expert": {"group_size": 2, "max_tokens": 4, **expert}},
    )


def _metrics(live, key: str, job_id: str) -> dict:
    response = httpx.get(f"{live.base_url}/v1/fine_tuning/jobs/{job_id}/metrics",
                         headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_findings_are_warn_events_listed_by_the_metrics_endpoint(live, tiny_model_dir) -> None:
    key = live.key("alpha")
    client = live.client(key)
    job = _job(client, tiny_model_dir)
    reporter = StoreReporter(live.db, job.id, "worker-x", "ft:m:alpha::1")
    reporter.on_step({"step": 1, "train_reward_mean": 0.0})
    reporter.on_event("warn", "truncation since step 1",
                      {"finding": _finding("truncation", 1, 3)})
    reporter.on_event("error", "kl_blowup since step 4",
                      {"finding": {**_finding("kl_blowup", 4, 4), "severity": "error"}})
    reporter.on_event("warn", "Config changed since the run started: seed")  # not a finding
    events = {e.message: e for e in client.fine_tuning.jobs.list_events(job.id, limit=50)}
    assert events["truncation since step 1"].level == "warn"
    assert events["kl_blowup since step 4"].level == "error"
    assert events["truncation since step 1"].data["finding"]["detected_step"] == 3
    findings = _metrics(live, key, job.id)["findings"]
    assert [(f["kind"], f["step"]) for f in findings] == [("truncation", 1), ("kl_blowup", 4)]
    with live.db.session() as session:  # a resume after step 3 forgets the step-4 finding
        assert session.get(Job, job.id).requested_stop is None  # warn: no pause asked
        job_queries.forget_steps_after(session, job.id, 3)
    assert [f["kind"] for f in _metrics(live, key, job.id)["findings"]] == ["truncation"]


def test_a_pause_finding_records_a_pause_request(live, tiny_model_dir) -> None:
    client = live.client(live.key("alpha"))
    job = _job(client, tiny_model_dir)
    reporter = StoreReporter(live.db, job.id, "worker-x", "ft:m:alpha::1")
    reporter.on_event("warn", "no signal", {"finding": _finding("no_signal", 1, 3, "pause")})
    with live.db.session() as session:
        assert session.get(Job, job.id).requested_stop == "pause"


@pytest.mark.slow
def test_job_without_signal_pauses_itself_then_preflight_fails_one_fast(
        live, worker, tiny_model_dir) -> None:
    key = live.key("alpha")
    client = live.client(key)
    job = _job(client, tiny_model_dir, monitor={"patience": 2, "on_no_signal": "pause"})
    paused = wait_for(client, job.id, statuses=("paused", "succeeded", "failed", "cancelled"))
    assert paused.status == "paused" and paused.fine_tuned_model is None
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    warning = next(e for e in events
                   if ((e.data or {}).get("finding") or {}).get("kind") == "no_signal")
    assert warning.level == "warn" and "paused itself" in warning.message
    findings = _metrics(live, key, job.id)["findings"]
    assert ("no_signal", 1, 2) in [(f["kind"], f["step"], f["detected_step"]) for f in findings]
    assert max(c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id)) == 2

    gated = _job(client, tiny_model_dir, preflight=True)
    failed = wait_for(client, gated.id)
    assert failed.status == "failed" and failed.error.code == "training_error"
    assert failed.error.message.startswith("Preflight verdict: too_hard")
    assert "expert.preflight_override: true" in failed.error.message
    events = list(client.fine_tuning.jobs.list_events(gated.id, limit=100))
    verdict = next(e for e in events if (e.data or {}).get("preflight"))
    assert verdict.level == "error" and verdict.data["preflight"]["verdict"] == "too_hard"
    assert not any(e.type == "metrics" for e in events)  # failed before step 1
