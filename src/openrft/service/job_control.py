"""The job state machine, as seen from the API: create, cancel, pause, resume.

    validating_files -> queued -> running -> succeeded | failed | cancelled
                          ^   \\-> paused <-/    (pause: checkpoint, then stop)
                          \\------ resume -/

A queued or paused job changes state at once. A running job gets a *requested* stop
that its worker reads between steps (`Reporter.should_stop`), so the final state is
written by the worker after it saved a checkpoint.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from openrft.service.auth import Principal
from openrft.service.errors import APIError, job_not_found
from openrft.service.job_spec import prepare_job
from openrft.service.schemas import CreateJobRequest
from openrft.service.settings import ServiceSettings
from openrft.service.store import jobs as job_queries
from openrft.service.store.models import Job


def create_job(session: Session, settings: ServiceSettings, principal: Principal,
               body: CreateJobRequest) -> Job:
    job = prepare_job(session, settings, principal, body)
    job_queries.add_job(session, job)
    job_queries.add_event(session, job.id, f"Validating training file: {job.training_file}"
                          + (f" and validation file: {job.validation_file}"
                             if job.validation_file else ""))
    job_queries.add_event(session, job.id, "Created fine-tuning job: " + job.id)
    job_queries.set_status(session, job, "queued")
    job_queries.add_event(session, job.id, "Files validated, job queued")
    session.commit()
    return job


def owned_job(session: Session, principal: Principal, job_id: str) -> Job:
    job = job_queries.get_job(session, principal.project_id, job_id)
    if job is None:
        raise job_not_found(job_id)
    return job


def cancel_job(session: Session, job: Job) -> Job:
    if job.status in job_queries.TERMINAL:
        raise APIError(400, f"Job {job.id} has already {job.status}; it cannot be cancelled",
                       code="invalid_state")
    if job.status == "running":
        job.requested_stop = "cancel"
        job_queries.add_event(session, job.id, "Cancellation requested")
    else:
        job_queries.set_status(session, job, "cancelled", requested_stop=None)
        job_queries.add_event(session, job.id, "Job cancelled")
    session.commit()
    return job


def pause_job(session: Session, job: Job) -> Job:
    if job.status not in ("queued", "running"):
        raise APIError(400, f"Job {job.id} is {job.status}; only a queued or running job "
                            "can be paused", code="invalid_state")
    if job.status == "running":
        job.requested_stop = "pause"
        job_queries.add_event(session, job.id, "Pause requested")
    else:
        job_queries.set_status(session, job, "paused")
        job_queries.add_event(session, job.id, "Job paused")
    session.commit()
    return job


def resume_job(session: Session, job: Job) -> Job:
    if job.status != "paused":
        raise APIError(400, f"Job {job.id} is {job.status}; only a paused job can be resumed",
                       code="invalid_state")
    job_queries.set_status(session, job, "queued", requested_stop=None)
    job_queries.add_event(session, job.id, "Job resumed: queued to continue from its last "
                                           "checkpoint")
    session.commit()
    return job
