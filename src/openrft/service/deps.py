"""FastAPI dependencies, as `Annotated` aliases the route handlers declare."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from openrft.service.auth import Principal, authenticate
from openrft.service.models_cache import ModelCache
from openrft.service.settings import ServiceSettings
from openrft.service.store.db import Database


def _database(request: Request) -> Database:
    return request.app.state.db


def _settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


def _model_cache(request: Request) -> ModelCache:
    return request.app.state.model_cache


def _session(db: Annotated[Database, Depends(_database)]) -> Iterator[Session]:
    with db.session() as session:
        yield session


def _principal(
    db: Annotated[Database, Depends(_database)],
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    with db.session() as session:
        return authenticate(session, authorization)


DatabaseDep = Annotated[Database, Depends(_database)]
SettingsDep = Annotated[ServiceSettings, Depends(_settings)]
SessionDep = Annotated[Session, Depends(_session)]
PrincipalDep = Annotated[Principal, Depends(_principal)]
ModelCacheDep = Annotated[ModelCache, Depends(_model_cache)]
