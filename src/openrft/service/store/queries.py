"""Queries for projects, API keys, files and fine-tuned models (jobs: store/jobs.py).

Route handlers never write SQL: they call these functions with a session. Every
lookup takes the caller's project, so another project's objects are simply not found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from openrft.service.store.ids import new_id, now
from openrft.service.store.models import (
    ApiKey,
    FineTunedModel,
    Job,
    JobCheckpoint,
    Project,
    StoredFile,
)


@dataclass
class Page:
    """One page of a cursor-paginated list (newest first)."""

    items: list[Any]
    has_more: bool


def paginate(session: Session, query: Select[Any], id_column: Any, after: str | None,
             limit: int, order: str = "desc") -> Page:
    """Rows after the `after` id in `order` (ids sort by creation), at most `limit`."""
    if after:
        query = query.where(id_column < after if order == "desc" else id_column > after)
    ordering = id_column.desc() if order == "desc" else id_column.asc()
    rows = list(session.scalars(query.order_by(ordering).limit(limit + 1)))
    return Page(items=rows[:limit], has_more=len(rows) > limit)


# --- projects and keys -------------------------------------------------------------


def get_or_create_project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        project = Project(id=new_id("proj-"), name=name, created_at=now())
        session.add(project)
        session.flush()
    return project


def add_api_key(session: Session, project: Project, key_id: str, secret_sha256: str) -> ApiKey:
    key = ApiKey(id=key_id, project_id=project.id, secret_sha256=secret_sha256, created_at=now())
    session.add(key)
    session.flush()
    return key


def find_api_key(session: Session, key_id: str) -> tuple[ApiKey, Project] | None:
    row = session.execute(
        select(ApiKey, Project)
        .join(Project, Project.id == ApiKey.project_id)
        .where(ApiKey.id == key_id, ApiKey.revoked.is_(False))
    ).first()
    return (row[0], row[1]) if row else None


# --- files -------------------------------------------------------------------------


def add_file(session: Session, file: StoredFile) -> StoredFile:
    session.add(file)
    session.flush()
    return file


def _live_file() -> Any:
    """Not deleted and not past its `expires_at` (an expired file is gone, as on OpenAI)."""
    return and_(StoredFile.deleted.is_(False),
                or_(StoredFile.expires_at.is_(None), StoredFile.expires_at > now()))


def get_file(session: Session, project_id: str, file_id: str) -> StoredFile | None:
    return session.scalar(
        select(StoredFile).where(
            StoredFile.id == file_id, StoredFile.project_id == project_id, _live_file()
        )
    )


def list_files(session: Session, project_id: str, after: str | None, limit: int,
               purpose: str | None, order: str = "desc") -> Page:
    query = select(StoredFile).where(StoredFile.project_id == project_id, _live_file())
    if purpose:
        query = query.where(StoredFile.purpose == purpose)
    return paginate(session, query, StoredFile.id, after, limit, order)


def mark_file_deleted(session: Session, file: StoredFile) -> None:
    file.deleted = True
    session.flush()


# --- fine-tuned models -------------------------------------------------------------


def add_fine_tuned_model(session: Session, job: Job, name: str, path: str) -> FineTunedModel:
    model = FineTunedModel(
        id=name, project_id=job.project_id, job_id=job.id, path=path, created_at=now()
    )
    session.merge(model)
    session.flush()
    return model


def get_fine_tuned_model(session: Session, project_id: str, name: str) -> FineTunedModel | None:
    return session.scalar(
        select(FineTunedModel).where(
            FineTunedModel.id == name,
            FineTunedModel.project_id == project_id,
            FineTunedModel.deleted.is_(False),
        )
    )


def get_checkpoint_model(session: Session, project_id: str, name: str) -> JobCheckpoint | None:
    """A checkpoint served by its `ft:...:ckpt-step-N` name (project-scoped)."""
    return session.scalar(
        select(JobCheckpoint)
        .join(Job, Job.id == JobCheckpoint.job_id)
        .where(JobCheckpoint.model_name == name, Job.project_id == project_id)
    )


def list_fine_tuned_models(session: Session, project_id: str) -> list[FineTunedModel]:
    return list(
        session.scalars(
            select(FineTunedModel)
            .where(FineTunedModel.project_id == project_id, FineTunedModel.deleted.is_(False))
            .order_by(FineTunedModel.created_at.desc())
        )
    )


def list_base_models(session: Session, project_id: str) -> list[tuple[str, int]]:
    """Base models (not `ft:` names) this project's jobs used, with first-use time."""
    rows = session.execute(
        select(Job.model, Job.created_at)
        .where(Job.project_id == project_id, Job.model.not_like("ft:%"))
        .order_by(Job.created_at)
    )
    first_use: dict[str, int] = {}
    for model, created in rows:
        first_use.setdefault(model, created)
    return list(first_use.items())


def mark_model_deleted(session: Session, model: FineTunedModel) -> None:
    model.deleted = True
    session.flush()
