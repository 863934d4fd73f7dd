"""`/v1/models`: the project's fine-tuned models, the base models its jobs used, and every
model the server offers to all projects (aliases, catalog, models directory, roots)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from openrft.service import views
from openrft.service.deps import PrincipalDep, SessionDep, SettingsDep
from openrft.service.errors import APIError, model_not_found
from openrft.service.model_access import server_models
from openrft.service.schemas import ModelDeleted, ModelObject
from openrft.service.store import queries

router = APIRouter(prefix="/v1/models", tags=["models"])

BASE_OWNER = "openrft"


def _all_models(session: SessionDep, principal: PrincipalDep,
                settings: SettingsDep) -> list[ModelObject]:
    tuned = [views.model_object(m, principal.project_name)
             for m in queries.list_fine_tuned_models(session, principal.project_id)]
    base = [ModelObject(id=name, created=created, owned_by=BASE_OWNER)
            for name, created in queries.list_base_models(session, principal.project_id)]
    used = {m.id for m in base}
    offered = [ModelObject(id=name, created=0, owned_by=BASE_OWNER)
               for name in server_models(settings) if name not in used]
    return tuned + base + offered


@router.get("")
def list_models(principal: PrincipalDep, session: SessionDep,
                settings: SettingsDep) -> dict[str, Any]:
    data = _all_models(session, principal, settings)
    return {"object": "list", "data": [m.model_dump() for m in data]}


@router.get("/{model:path}", response_model=ModelObject)
def retrieve_model(model: str, principal: PrincipalDep, session: SessionDep,
                   settings: SettingsDep) -> ModelObject:
    for candidate in _all_models(session, principal, settings):
        if candidate.id == model:
            return candidate
    raise model_not_found(model)


@router.delete("/{model:path}", response_model=ModelDeleted)
def delete_model(model: str, principal: PrincipalDep, session: SessionDep,
                 settings: SettingsDep) -> ModelDeleted:
    row = queries.get_fine_tuned_model(session, principal.project_id, model)
    if row is None:
        if any(m.id == model for m in _all_models(session, principal, settings)):
            raise APIError(400, f"'{model}' is a base model; only fine-tuned models can be "
                                "deleted", param="model", code="model_not_deletable")
        raise model_not_found(model)
    queries.mark_model_deleted(session, row)
    session.commit()
    return ModelDeleted(id=model)
