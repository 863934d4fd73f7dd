"""Job queries: creation, listing, state transitions, atomic claiming and heartbeats.

Claiming is a compare-and-set (`UPDATE jobs SET status='running', worker_id=:me WHERE
id=:id AND status='queued'`): the database applies it atomically on SQLite and
PostgreSQL alike, so two workers never run the same job. A running job whose heartbeat
is older than `stale_after_s` is re-claimed the same way (matching the old worker id and
heartbeat), and the new worker resumes it from its last checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Update, select, update
from sqlalchemy.orm import Session

from openrft.service.store.ids import new_id, now
from openrft.service.store.models import Job, JobCheckpoint, JobEvent, JobSamples
from openrft.service.store.queries import Page, paginate

TERMINAL = ("succeeded", "failed", "cancelled")


def add_job(session: Session, job: Job) -> Job:
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, project_id: str, job_id: str) -> Job | None:
    return session.scalar(select(Job).where(Job.id == job_id, Job.project_id == project_id))


def get_job_by_id(session: Session, job_id: str) -> Job | None:
    """Unscoped lookup, for workers (which act for every project)."""
    return session.get(Job, job_id, populate_existing=True)


def list_jobs(session: Session, project_id: str, after: str | None, limit: int,
              metadata: dict[str, str]) -> Page:
    query = select(Job).where(Job.project_id == project_id)
    if not metadata:
        return paginate(session, query, Job.id, after, limit)
    # metadata filtering happens in Python: JSON operators differ between SQLite and
    # PostgreSQL, and a project's job list is small.
    rows = [
        job
        for job in session.scalars(query.order_by(Job.id.desc()))
        if all((job.job_metadata or {}).get(k) == v for k, v in metadata.items())
        and (after is None or job.id < after)
    ]
    return Page(items=rows[:limit], has_more=len(rows) > limit)


def set_status(session: Session, job: Job, status: str, **fields: Any) -> None:
    job.status = status
    for name, value in fields.items():
        setattr(job, name, value)
    if status in TERMINAL:
        job.finished_at = now()
    session.flush()


def add_event(session: Session, job_id: str, message: str, level: str = "info",
              type: str = "message", data: dict[str, Any] | None = None) -> JobEvent:
    event = JobEvent(
        id=new_id("ftevent-"), job_id=job_id, created_at=now(), level=level, type=type,
        message=message, data=data,
    )
    session.add(event)
    session.flush()
    return event


def list_events(session: Session, job_id: str, after: str | None, limit: int) -> Page:
    query = select(JobEvent).where(JobEvent.job_id == job_id)
    return paginate(session, query, JobEvent.id, after, limit)


def add_checkpoint(session: Session, job_id: str, step: int, model_name: str, path: str,
                   metrics: dict[str, Any]) -> JobCheckpoint:
    checkpoint = JobCheckpoint(
        id=new_id("ftckpt-"), job_id=job_id, created_at=now(), step_number=step,
        model_name=model_name, path=path, metrics=metrics,
    )
    session.add(checkpoint)
    session.flush()
    return checkpoint


def drop_pruned_checkpoints(session: Session, job_id: str) -> None:
    """Forget checkpoints whose directory the trainer pruned (it keeps the newest few)."""
    rows = session.scalars(select(JobCheckpoint).where(JobCheckpoint.job_id == job_id))
    for row in rows:
        if not Path(row.path).exists():
            session.delete(row)
    session.flush()


def forget_steps_after(session: Session, job_id: str, step: int) -> None:
    """Drop metrics events and health findings past `step`: a resumed run repeats those
    steps (and finds again what they showed)."""
    events = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id))
    for event in events:
        data = event.data or {}
        if event.type == "metrics" and data.get("step", 0) > step:
            session.delete(event)
        elif (data.get("finding") or {}).get("detected_step", 0) > step:
            session.delete(event)
    session.flush()


def list_checkpoints(session: Session, job_id: str, after: str | None, limit: int) -> Page:
    query = select(JobCheckpoint).where(JobCheckpoint.job_id == job_id)
    return paginate(session, query, JobCheckpoint.id, after, limit)


def add_samples(session: Session, job_id: str, step: int, samples: list[Any]) -> None:
    session.add(JobSamples(job_id=job_id, step=step, created_at=now(), samples=samples))
    session.flush()


def latest_samples(session: Session, job_id: str) -> JobSamples | None:
    return session.scalar(
        select(JobSamples).where(JobSamples.job_id == job_id).order_by(JobSamples.seq.desc())
    )


def metric_rows(session: Session, job_id: str) -> list[dict[str, Any]]:
    """The `data` of every metrics event, oldest first (for reward curves)."""
    rows = session.scalars(
        select(JobEvent.data)
        .where(JobEvent.job_id == job_id, JobEvent.type == "metrics")
        .order_by(JobEvent.id)
    )
    return [row for row in rows if row]


def finding_rows(session: Session, job_id: str) -> list[dict[str, Any]]:
    """Every training-health finding reported for the job (rl/monitor.py), oldest first."""
    rows = session.scalars(
        select(JobEvent.data)
        .where(JobEvent.job_id == job_id, JobEvent.level.in_(("warn", "error")))
        .order_by(JobEvent.seq)
    )
    return [row["finding"] for row in rows if row and isinstance(row.get("finding"), dict)]


# --- scheduling --------------------------------------------------------------------


def claim_next_job(session: Session, worker_id: str, stale_after_s: float) -> Job | None:
    """Atomically take one queued job, or re-take a running job whose worker went silent."""
    clock = time.time()
    queued = session.scalars(
        select(Job.id).where(Job.status == "queued").order_by(Job.id).limit(8)
    ).all()
    for job_id in queued:
        take_queued = (
            update(Job)
            .where(Job.id == job_id, Job.status == "queued")
            .values(status="running", worker_id=worker_id, heartbeat_at=clock,
                    attempts=Job.attempts + 1)
        )
        if _rows_updated(session, take_queued) == 1:
            session.commit()
            return get_job_by_id(session, job_id)
    stale = session.execute(
        select(Job.id, Job.worker_id, Job.heartbeat_at)
        .where(Job.status == "running", Job.heartbeat_at < clock - stale_after_s)
        .order_by(Job.id)
        .limit(8)
    ).all()
    for job_id, old_worker, old_beat in stale:
        take_over = (
            update(Job)
            .where(Job.id == job_id, Job.status == "running", Job.worker_id == old_worker,
                   Job.heartbeat_at == old_beat)
            .values(worker_id=worker_id, heartbeat_at=clock, attempts=Job.attempts + 1)
        )
        if _rows_updated(session, take_over) == 1:
            session.commit()
            return get_job_by_id(session, job_id)
    return None


def _rows_updated(session: Session, statement: Update) -> int:
    """How many rows an UPDATE changed: 1 means our compare-and-set won."""
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def heartbeat(session: Session, job_id: str, worker_id: str) -> bool:
    """Refresh the claim; False means another worker took the job (stop working on it)."""
    return _rows_updated(
        session,
        update(Job)
        .where(Job.id == job_id, Job.worker_id == worker_id, Job.status == "running")
        .values(heartbeat_at=time.time()),
    ) == 1


def finish_job(session: Session, job_id: str, owner: str, status: str,
               **fields: Any) -> bool:
    """Record the outcome of worker `owner`, only if it still owns the job."""
    values: dict[str, Any] = {"status": status, **fields}
    if status in TERMINAL:
        values["finished_at"] = now()
    return _rows_updated(
        session,
        update(Job)
        .where(Job.id == job_id, Job.worker_id == owner, Job.status == "running")
        .values(**values),
    ) == 1


def requested_stop(session: Session, job_id: str) -> str | None:
    return session.scalar(select(Job.requested_stop).where(Job.id == job_id))
