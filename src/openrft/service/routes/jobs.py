"""`/v1/fine_tuning/jobs`: create, list, retrieve, cancel, pause, resume, events, checkpoints."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from openrft.service import job_control, views
from openrft.service.deps import PrincipalDep, SessionDep, SettingsDep
from openrft.service.schemas import CreateJobRequest, FineTuningJob
from openrft.service.store import jobs as job_queries

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])

_METADATA_PARAM = re.compile(r"^metadata\[(.+)\]$")


@router.post("", response_model=FineTuningJob)
def create_job(body: CreateJobRequest, principal: PrincipalDep, session: SessionDep,
               settings: SettingsDep) -> FineTuningJob:
    return views.job_object(job_control.create_job(session, settings, principal, body))


@router.get("")
def list_jobs(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    metadata = {
        match.group(1): value
        for key, value in request.query_params.items()
        if (match := _METADATA_PARAM.match(key))
    }
    page = job_queries.list_jobs(session, principal.project_id, after, limit, metadata)
    return views.page(page, views.job_object)


@router.get("/{fine_tuning_job_id}", response_model=FineTuningJob)
def retrieve_job(fine_tuning_job_id: str, principal: PrincipalDep,
                 session: SessionDep) -> FineTuningJob:
    return views.job_object(job_control.owned_job(session, principal, fine_tuning_job_id))


@router.post("/{fine_tuning_job_id}/cancel", response_model=FineTuningJob)
def cancel_job(fine_tuning_job_id: str, principal: PrincipalDep,
               session: SessionDep) -> FineTuningJob:
    job = job_control.owned_job(session, principal, fine_tuning_job_id)
    return views.job_object(job_control.cancel_job(session, job))


@router.post("/{fine_tuning_job_id}/pause", response_model=FineTuningJob)
def pause_job(fine_tuning_job_id: str, principal: PrincipalDep,
              session: SessionDep) -> FineTuningJob:
    job = job_control.owned_job(session, principal, fine_tuning_job_id)
    return views.job_object(job_control.pause_job(session, job))


@router.post("/{fine_tuning_job_id}/resume", response_model=FineTuningJob)
def resume_job(fine_tuning_job_id: str, principal: PrincipalDep,
               session: SessionDep) -> FineTuningJob:
    job = job_control.owned_job(session, principal, fine_tuning_job_id)
    return views.job_object(job_control.resume_job(session, job))


@router.get("/{fine_tuning_job_id}/events")
def list_events(
    fine_tuning_job_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> dict[str, Any]:
    job = job_control.owned_job(session, principal, fine_tuning_job_id)
    return views.page(job_queries.list_events(session, job.id, after, limit), views.event_object)


@router.get("/{fine_tuning_job_id}/checkpoints")
def list_checkpoints(
    fine_tuning_job_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    job = job_control.owned_job(session, principal, fine_tuning_job_id)
    page = job_queries.list_checkpoints(session, job.id, after, limit)
    return views.page(page, views.checkpoint_object)


@router.get("/{fine_tuning_job_id}/metrics")
def job_metrics(fine_tuning_job_id: str, principal: PrincipalDep,
                session: SessionDep) -> dict[str, Any]:
    """OpenRFT extension for the dashboard: every metrics row, the training-health
    findings and the latest samples."""
    job = job_control.owned_job(session, principal, fine_tuning_job_id)
    samples = job_queries.latest_samples(session, job.id)
    return {
        "object": "openrft.job.metrics",
        "job_id": job.id,
        "total_steps": job.total_steps,
        "metrics": job_queries.metric_rows(session, job.id),
        "findings": job_queries.finding_rows(session, job.id),
        "samples": {"step": samples.step, "data": samples.samples} if samples else None,
    }
