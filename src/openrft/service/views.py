"""Rows to OpenAI objects: the one place that decides how a stored thing is shown."""

from __future__ import annotations

from typing import Any

from openrft.service import schemas
from openrft.service.store.models import FineTunedModel, Job, JobCheckpoint, JobEvent, StoredFile
from openrft.service.store.queries import Page


def file_object(row: StoredFile) -> schemas.FileObject:
    return schemas.FileObject(
        id=row.id, bytes=row.bytes, created_at=row.created_at, filename=row.filename,
        purpose=row.purpose, expires_at=row.expires_at,
    )


def job_hyperparameters(method: dict[str, Any],
                        resolved: dict[str, Any] | None = None) -> dict[str, Any]:
    """The method's hyperparameters: unset values are "auto" until training starts, then
    the values "auto" resolved to, as OpenAI fills them in."""
    body = method.get(method["type"]) or {}
    given = {k: v for k, v in (body.get("hyperparameters") or {}).items() if v is not None}
    keys = ("batch_size", "learning_rate_multiplier", "n_epochs")
    return {**{k: "auto" for k in keys}, **given, **(resolved or {})}


def shown_method(job: Job) -> dict[str, Any]:
    """The stored method, its hyperparameters shown resolved once training has started."""
    if not job.resolved_hyperparameters or job.method["type"] not in job.method:
        return job.method
    body = dict(job.method[job.method["type"]] or {})
    body["hyperparameters"] = job_hyperparameters(job.method, job.resolved_hyperparameters)
    return {**job.method, job.method["type"]: body}


def redacted_method(method: dict[str, Any]) -> dict[str, Any]:
    """The method with the values of tool-server and endpoint-grader `headers` (API keys)
    hidden: they are sent to those servers, never shown back."""

    def hide(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({h: "***" for h in v} if k == "headers" and isinstance(v, dict)
                        else hide(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [hide(v) for v in value]
        return value

    return hide(method)


def job_object(job: Job) -> schemas.FineTuningJob:
    return schemas.FineTuningJob(
        id=job.id,
        created_at=job.created_at,
        error=schemas.JobError(**job.error) if job.error else None,
        fine_tuned_model=job.fine_tuned_model,
        finished_at=job.finished_at,
        hyperparameters=job_hyperparameters(job.method, job.resolved_hyperparameters),
        model=job.model,
        organization_id=job.project_id,
        seed=job.seed,
        status=job.status,  # type: ignore[arg-type]
        trained_tokens=job.trained_tokens,
        training_file=job.training_file,
        validation_file=job.validation_file,
        metadata=job.job_metadata,
        method=redacted_method(shown_method(job)),
        user_provided_suffix=job.suffix,
        integrations=job.integrations,
        estimated_finish=job.estimated_finish,
    )


def event_object(row: JobEvent) -> schemas.FineTuningJobEvent:
    return schemas.FineTuningJobEvent(
        id=row.id, created_at=row.created_at, level=row.level,  # type: ignore[arg-type]
        message=row.message, type=row.type, data=row.data,  # type: ignore[arg-type]
    )


def checkpoint_object(row: JobCheckpoint) -> schemas.FineTuningJobCheckpoint:
    return schemas.FineTuningJobCheckpoint(
        id=row.id, created_at=row.created_at, fine_tuned_model_checkpoint=row.model_name,
        fine_tuning_job_id=row.job_id, step_number=row.step_number, metrics=row.metrics,
    )


def model_object(row: FineTunedModel, project_name: str) -> schemas.ModelObject:
    return schemas.ModelObject(id=row.id, created=row.created_at, owned_by=project_name)


def page(result: Page, convert: Any) -> dict[str, Any]:
    """A cursor page `{object, data, has_more, first_id, last_id}` of converted rows."""
    data = [convert(item) for item in result.items]
    return schemas.ListPage[Any](
        data=data,
        has_more=result.has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    ).model_dump(mode="json")
