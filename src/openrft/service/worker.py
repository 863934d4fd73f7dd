"""Job workers: claim a queued job atomically, heartbeat while training, record the outcome.

Any number of worker processes may share one store. A worker that dies mid-job stops
heartbeating; once its heartbeat is older than `stale_after_s`, another worker claims
the job and resumes it from its last checkpoint (see store/jobs.py for the claim).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from openrft.errors import InvalidInput, NotFound, OpenRFTError
from openrft.service.errors import library_error_fields
from openrft.service.job_reporter import StoreReporter, fine_tuned_model_name
from openrft.service.model_access import trained_model_name
from openrft.service.settings import ServiceSettings
from openrft.service.store import jobs as job_queries
from openrft.service.store import queries
from openrft.service.store.db import Database
from openrft.service.store.models import Job, Project
from openrft.service.training import TrainingOutcome, run_training

log = logging.getLogger(__name__)

TrainFn = Callable[[Job, ServiceSettings, StoreReporter], TrainingOutcome]


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """One worker: `run_once()` handles at most one job; `run_forever()` loops until stopped."""

    def __init__(self, settings: ServiceSettings, db: Database | None = None,
                 train_fn: TrainFn = run_training) -> None:
        self.settings = settings
        self.db = db or Database(settings.db_url)
        self.db.create_tables()
        self.worker_id = new_worker_id()
        self.train_fn = train_fn
        self.stop_requested = threading.Event()

    def run_forever(self) -> None:
        """Poll for jobs until `stop_requested` (SIGTERM) is set.

        A stop during a job checkpoints it and puts it back in the queue, so shutting a
        worker down (or restarting `openrft serve`) loses no finished step.
        """
        log.info("worker %s polling %s", self.worker_id, self.db.url)
        while not self.stop_requested.is_set():
            try:
                busy = self.run_once()
            except SQLAlchemyError:  # e.g. the database is briefly unreachable: try again
                log.exception("worker %s: store error while claiming", self.worker_id)
                busy = False
            if not busy:
                self.stop_requested.wait(self.settings.poll_interval_s)

    def run_once(self) -> bool:
        """Claim and run one job; False when there was nothing to do."""
        with self.db.session() as session:
            job = job_queries.claim_next_job(session, self.worker_id, self.settings.stale_after_s)
            if job is None:
                return False
            project = session.get(Project, job.project_id)
            resume_step = _resume_step(job)
            resumed = job.attempts > 1 or resume_step > 0
            if resumed:
                job_queries.forget_steps_after(session, job.id, resume_step)
            job_queries.add_event(
                session, job.id,
                f"{'Resumed' if resumed else 'Started'} by worker {self.worker_id}",
            )
        name = fine_tuned_model_name(trained_model_name(job), project.name if project else "",
                                     job.suffix, job.id)
        self._run_claimed(job, name)
        return True

    def _run_claimed(self, job: Job, model_name: str) -> None:
        if job.requested_stop == "cancel":  # asked while its previous worker was gone
            self._finish(job, "cancelled", "Job cancelled", requested_stop=None)
            return
        if job.requested_stop == "pause":
            self._finish(job, "paused", "Job paused", requested_stop=None)
            return
        reporter = StoreReporter(self.db, job.id, self.worker_id, model_name,
                                 shutdown=self.stop_requested)
        beating = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job.id, reporter, beating),
                                daemon=True)
        beat.start()
        try:
            outcome = self.train_fn(job, self.settings, reporter)
        except Exception as exc:  # noqa: BLE001 - any failure fails the job, not the worker
            self._fail(job, exc)
            return
        finally:
            beating.set()
            beat.join()
        if reporter.lost_claim.is_set():
            log.warning("job %s was re-claimed by another worker; dropping result", job.id)
            return
        self._record_outcome(job, outcome, model_name)

    def _heartbeat(self, job_id: str, reporter: StoreReporter, done: threading.Event) -> None:
        while not done.wait(self.settings.heartbeat_interval_s):
            try:
                with self.db.session() as session:
                    owned = job_queries.heartbeat(session, job_id, self.worker_id)
            except SQLAlchemyError:  # a missed beat is harmless; a dead beat thread is not
                log.warning("worker %s: heartbeat failed, retrying", self.worker_id)
                continue
            if not owned:
                reporter.lost_claim.set()
                return

    def _record_outcome(self, job: Job, outcome: TrainingOutcome, model_name: str) -> None:
        if outcome.stopped or outcome.final_model_dir is None:
            with self.db.session() as session:
                requested = job_queries.requested_stop(session, job.id)
            if requested is None and self.stop_requested.is_set():
                self._finish(job, "queued", "Worker stopped: job re-queued, it continues from "
                                            "its last checkpoint", worker_id=None,
                             heartbeat_at=None)
            elif requested == "pause":
                self._finish(job, "paused", "Job paused; resume continues from the last "
                                            "checkpoint", requested_stop=None)
            else:
                self._finish(job, "cancelled", "Job cancelled", requested_stop=None)
            return
        with self.db.session() as session:
            if job_queries.finish_job(session, job.id, self.worker_id, "succeeded",
                                      fine_tuned_model=model_name):
                queries.add_fine_tuned_model(session, job, model_name, outcome.final_model_dir)
                job_queries.add_event(session, job.id, f"New fine-tuned model created: "
                                                       f"{model_name}")
                job_queries.add_event(session, job.id, "The job has successfully completed")

    def _finish(self, job: Job, status: str, message: str, **fields: object) -> None:
        with self.db.session() as session:
            if job_queries.finish_job(session, job.id, self.worker_id, status, **fields):
                job_queries.add_event(session, job.id, message)

    def _fail(self, job: Job, exc: Exception) -> None:
        error: dict[str, str | None]
        if isinstance(exc, NotFound) and exc.kind == "model":  # name it as the client did
            log.warning("job %s: %s", job.id, exc)
            error = {"code": "model_not_found", "param": "model",
                     "message": f"The model '{job.model}' could not be loaded on this server "
                                "(removed since the job was created?)"}
        elif isinstance(exc, InvalidInput | NotFound):  # the API's own codes (service/errors)
            code, param = library_error_fields(exc)
            error = {"code": code, "message": str(exc), "param": param}
        elif isinstance(exc, OpenRFTError):
            error = {"code": "training_error", "message": str(exc), "param": None}
        else:
            log.exception("job %s failed", job.id)
            error = {"code": "server_error", "message": f"{type(exc).__name__}: {exc}",
                     "param": None}
        with self.db.session() as session:
            if job_queries.finish_job(session, job.id, self.worker_id, "failed", error=error):
                job_queries.add_event(session, job.id, f"Job failed: {error['message']}",
                                      level="error")


def _resume_step(job: Job) -> int:
    """The step a resumed job continues after: its latest complete checkpoint on disk (RFT
    and supervised alike), which can be one step past the store's checkpoint rows when a
    worker died between writing the checkpoint and recording it."""
    from openrft.checkpoint import CHECKPOINTS, latest_checkpoint

    checkpoint = latest_checkpoint(Path(job.output_dir) / CHECKPOINTS)
    return int(checkpoint.name.removeprefix("step-")) if checkpoint else 0
