"""Service jobs on a Ray cluster: each claimed job runs as a Ray job (`JobSubmissionClient`).

The worker still claims the job, heartbeats and records its outcome; the store stays the
only record of a job (Ray forgets its jobs with the cluster). The Ray job's entrypoint
(`python -m openrft.service.ray_jobs`) runs the same `run_training` a local worker runs,
with a reporter that writes to the same store, so events, metrics, checkpoints, pause
and cancel (read from the store between steps) work unchanged. The head node must see
the service's data directory and database (a shared filesystem and PostgreSQL on more
than one machine; docs/scaling.md).

Mapping: Ray SUCCEEDED -> the outcome the entrypoint wrote; FAILED -> the job fails with
the entrypoint's error; STOPPED -> stopped. A worker that takes over a stale job stops
the previous attempt's Ray job before submitting its own. A lost cluster pauses the job
with an error event; `resume` continues it from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openrft.errors import OpenRFTError
from openrft.rl.reporter import StopRequest
from openrft.service.job_reporter import StoreReporter
from openrft.service.settings import ServiceSettings
from openrft.service.store import jobs as job_queries
from openrft.service.store.db import Database
from openrft.service.store.models import Job
from openrft.service.training import TrainingOutcome, run_training

log = logging.getLogger(__name__)

OUTCOME = "ray_outcome.json"  # written by the entrypoint into the job's run directory
POLL_S = 1.0


def submission_id(job_id: str, attempt: int) -> str:
    """One Ray job per claim of a store job."""
    return f"{job_id}-attempt-{attempt}"


class RayJobRunner:
    """A Worker's `train_fn` that runs each job as a Ray job on the cluster at `address`
    (the dashboard's HTTP address, e.g. http://head:8265)."""

    def __init__(self, address: str, client_factory: Callable[[str], Any] | None = None) -> None:
        if client_factory is None:
            from ray.job_submission import JobSubmissionClient

            client_factory = JobSubmissionClient
        self.address = address
        self._client_factory = client_factory

    def __call__(self, job: Job, settings: ServiceSettings,
                 reporter: StoreReporter) -> TrainingOutcome:
        try:
            client = self._client_factory(self.address)
            self._stop_earlier_attempts(client, job)
            sid = self._submit(client, job, settings, reporter)
            status = self._wait(client, sid, reporter)
        except OpenRFTError:
            raise
        except Exception as exc:  # noqa: BLE001 - every client error means the cluster is gone
            return self._cluster_lost(job, reporter, exc)
        return self._outcome(client, sid, status, job)

    def _submit(self, client: Any, job: Job, settings: ServiceSettings,
                reporter: StoreReporter) -> str:
        sid = submission_id(job.id, job.attempts)
        (Path(job.output_dir) / OUTCOME).unlink(missing_ok=True)
        env = {"OPENRFT_DATA_DIR": str(settings.data_dir),
               "OPENRFT_DATABASE_URL": settings.db_url,
               "OPENRFT_WORKER_ID": reporter.worker_id,
               "OPENRFT_MODEL_NAME": reporter.model_name}
        entrypoint = f"{shlex.quote(sys.executable)} -m openrft.service.ray_jobs {job.id}"
        client.submit_job(entrypoint=entrypoint, submission_id=sid,
                          runtime_env={"env_vars": env})
        with reporter.db.session() as session:
            job_queries.add_event(session, job.id,
                                  f"Submitted to the Ray cluster at {self.address} as {sid}")
        return sid

    def _wait(self, client: Any, sid: str, reporter: StoreReporter) -> str:
        while True:
            status = str(client.get_job_status(sid))
            status = status.rsplit(".", 1)[-1]  # JobStatus.RUNNING -> RUNNING
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                return status
            if reporter.lost_claim.is_set() or reporter.shutdown.is_set():
                client.stop_job(sid)  # the next claim resumes from the last checkpoint
            time.sleep(POLL_S)

    def _outcome(self, client: Any, sid: str, status: str, job: Job) -> TrainingOutcome:
        path = Path(job.output_dir) / OUTCOME
        written = json.loads(path.read_text()) if path.exists() else {}
        if status == "SUCCEEDED" and "stopped" in written:
            return TrainingOutcome(written.get("final_model_dir"), bool(written["stopped"]))
        if status == "STOPPED":
            return TrainingOutcome(None, stopped=True)
        message = written.get("error") or _last_lines(client.get_job_logs(sid))
        raise OpenRFTError(f"Ray job {sid} failed: {message}")

    def _stop_earlier_attempts(self, client: Any, job: Job) -> None:
        for attempt in range(1, job.attempts):
            sid = submission_id(job.id, attempt)
            try:
                if client.stop_job(sid):
                    log.info("stopped %s, left running by a worker that went away", sid)
                    _wait_until_ended(client, sid)
            except RuntimeError:  # no such Ray job (that attempt never submitted one)
                continue

    def _cluster_lost(self, job: Job, reporter: StoreReporter, exc: Exception) -> TrainingOutcome:
        """The cluster is unreachable: pause the job at its last checkpoint, say why."""
        with reporter.db.session() as session:
            job_queries.add_event(
                session, job.id, f"Lost the Ray cluster at {self.address} "
                f"({type(exc).__name__}); the job is paused at its last checkpoint: "
                "resume it once the cluster is back", level="error")
            stored = job_queries.get_job_by_id(session, job.id)
            if stored is not None and stored.requested_stop is None:
                stored.requested_stop = "pause"
        return TrainingOutcome(None, stopped=True)


def _wait_until_ended(client: Any, sid: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if str(client.get_job_status(sid)).rsplit(".", 1)[-1] in ("SUCCEEDED", "FAILED",
                                                                  "STOPPED"):
            return
        time.sleep(POLL_S)


def _last_lines(text: str, count: int = 5) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "no output"


class _OwnedStoreReporter(StoreReporter):
    """The entrypoint's reporter: it stops when its worker no longer owns the job."""

    def should_stop(self) -> StopRequest:
        with self.db.session() as session:
            job = job_queries.get_job_by_id(session, self.job_id)
            owner = job.worker_id if job is not None else None
        if owner != self.worker_id:
            self.lost_claim.set()
        return super().should_stop()


def run_entrypoint(job_id: str) -> int:
    """The Ray job: train the store's job `job_id`; write the outcome for the worker."""
    settings = ServiceSettings(data_dir=Path(os.environ["OPENRFT_DATA_DIR"]),
                               database_url=os.environ["OPENRFT_DATABASE_URL"])
    db = Database(settings.db_url)
    with db.session() as session:
        job = job_queries.get_job_by_id(session, job_id)
    if job is None:
        raise SystemExit(f"no job {job_id} in {settings.db_url}")
    reporter = _OwnedStoreReporter(db, job_id, os.environ["OPENRFT_WORKER_ID"],
                                   os.environ["OPENRFT_MODEL_NAME"])
    outcome_path = Path(job.output_dir) / OUTCOME
    try:
        outcome = run_training(job, settings, reporter)
    except Exception as exc:  # noqa: BLE001 - reported to the worker, which fails the job
        log.exception("job %s failed", job_id)
        _write(outcome_path, {"error": str(exc) or type(exc).__name__})
        return 1
    _write(outcome_path, {"final_model_dir": outcome.final_model_dir,
                          "stopped": outcome.stopped})
    return 0


def _write(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record))
    temporary.replace(path)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.exit(run_entrypoint(sys.argv[1]))
