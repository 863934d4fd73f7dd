"""`/v1/files`: upload (purpose fine-tune, rows validated), list, retrieve, content, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import FileResponse

from openrft.service import views
from openrft.service.deps import PrincipalDep, SessionDep, SettingsDep
from openrft.service.errors import UPLOAD_ERROR_RESPONSES, file_not_found
from openrft.service.schemas import FileDeleted, FileObject
from openrft.service.store import queries
from openrft.service.store.ids import new_id, now
from openrft.service.store.models import StoredFile
from openrft.service.uploads import expiry_seconds, receive_upload

router = APIRouter(prefix="/v1/files", tags=["files"])


@router.post("", response_model=FileObject, responses=UPLOAD_ERROR_RESPONSES)
def create_file(
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File()],
    purpose: Annotated[str, Form()],
    expires_anchor: Annotated[str | None, Form(alias="expires_after[anchor]")] = None,
    expires_seconds: Annotated[str | None, Form(alias="expires_after[seconds]")] = None,
) -> FileObject:
    """OpenAI's upload, `expires_after` included (the SDK sends it as two form fields)."""
    lifetime = expiry_seconds(expires_anchor, expires_seconds)
    filename = Path(file.filename or "upload.jsonl").name
    received = receive_upload(file.file, filename, purpose, settings.files_dir,
                              settings.max_upload_bytes)
    file_id = new_id("file-")
    final_path = settings.files_dir / file_id
    received.publish(final_path)
    try:
        row = queries.add_file(session, StoredFile(
            id=file_id, project_id=principal.project_id, filename=filename, purpose=purpose,
            bytes=received.size, sha256=received.sha256, path=str(final_path),
            rows=received.rows, created_at=(created := now()),
            expires_at=created + lifetime if lifetime else None,
        ))
        session.commit()
    except BaseException:
        final_path.unlink(missing_ok=True)
        raise
    return views.file_object(row)


@router.get("")
def list_files(
    principal: PrincipalDep,
    session: SessionDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
    order: Literal["asc", "desc"] = "desc",
    purpose: str | None = None,
) -> dict[str, Any]:
    page = queries.list_files(session, principal.project_id, after, limit, purpose, order)
    return views.page(page, views.file_object)


def _owned(session: SessionDep, principal: PrincipalDep, file_id: str) -> StoredFile:
    row = queries.get_file(session, principal.project_id, file_id)
    if row is None:
        raise file_not_found(file_id)
    return row


@router.get("/{file_id}", response_model=FileObject)
def retrieve_file(file_id: str, principal: PrincipalDep, session: SessionDep) -> FileObject:
    return views.file_object(_owned(session, principal, file_id))


@router.get("/{file_id}/content")
def file_content(file_id: str, principal: PrincipalDep, session: SessionDep) -> FileResponse:
    row = _owned(session, principal, file_id)
    return FileResponse(row.path, media_type="application/octet-stream", filename=row.filename)


@router.delete("/{file_id}", response_model=FileDeleted)
def delete_file(file_id: str, principal: PrincipalDep, session: SessionDep) -> FileDeleted:
    row = _owned(session, principal, file_id)
    queries.mark_file_deleted(session, row)
    session.commit()
    Path(row.path).unlink(missing_ok=True)  # jobs keep their own copy of their data
    return FileDeleted(id=file_id)
